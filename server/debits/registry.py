"""The channels the gateway knows, registered once in the composition root
(server.startup.services.channel_registry): every list of channels (query filters,
the dashboard and its page) comes from here, and the debit engine finds its adapters
here, by channel and by PSP kind. A debit channel whose adapter names no PSP kind
names its own merchant account and is started without a PSP (M-Pesa Express: the
shortcode)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.debits.contract import DebitAdapter
from server.ledger.documents import Transaction


class Direction(StrEnum):
    INBOUND = "inbound"  # the payer pays in; the provider tells the gateway
    DEBIT = "debit"  # the gateway asks the provider to take the money


@dataclass(frozen=True)
class Channel:
    name: str  # the transactions' `channel`
    label: str  # its name for people
    debit: DebitAdapter | None = None

    @property
    def direction(self) -> Direction:
        return Direction.INBOUND if self.debit is None else Direction.DEBIT


class ChannelRegistry:
    def __init__(self, channels: Iterable[Channel]) -> None:
        self._channels: dict[str, Channel] = {}
        self._by_psp_kind: dict[str, DebitAdapter] = {}
        self._debits: list[DebitAdapter] = []
        for channel in channels:
            if channel.name in self._channels:
                raise ValueError(f"channel {channel.name} registered twice")
            self._channels[channel.name] = channel
            if channel.debit is None:
                continue
            if channel.debit.channel != channel.name:
                raise ValueError(
                    f"channel {channel.name} has the adapter of {channel.debit.channel}"
                )
            self._debits.append(channel.debit)
            kind = channel.debit.psp_kind
            if kind is None:
                if not (channel.debit.merchant_account and channel.debit.currency):
                    raise ValueError(
                        f"channel {channel.name} has no PSP kind, so it must name its "
                        "merchant account and currency"
                    )
                continue
            if kind in self._by_psp_kind:
                raise ValueError(f"two debit channels for PSP kind {kind}")
            self._by_psp_kind[kind] = channel.debit

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._channels)

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(self._channels.values())

    @property
    def debits(self) -> tuple[DebitAdapter, ...]:
        return tuple(self._debits)

    @property
    def psp_kinds(self) -> tuple[str, ...]:
        """The PSP kinds a debit can be started for (POST /api/v1/transactions)."""
        return tuple(self._by_psp_kind)

    @property
    def waiting_states(self) -> frozenset[str]:
        """The states in which a debit waits for its payer, whatever its channel."""
        return frozenset(adapter.waiting_state for adapter in self.debits)

    def debit_for_psp(self, psp_kind: str) -> DebitAdapter | None:
        return self._by_psp_kind.get(psp_kind)

    def debit(self, channel: str) -> DebitAdapter | None:
        registered = self._channels.get(channel)
        return registered.debit if registered is not None else None

    def shown(self, transaction: Transaction) -> dict[str, Any]:
        """The channel's own fields of a transaction, as the API shows them."""
        adapter = self.debit(transaction["channel"])
        return adapter.shown(transaction) if adapter is not None else {}
