"""Qmoney (Gambia) OTP debit simulator: login, getMoney, verifyCode.

The provider side follows PROTOCOLS.md section 2: getMoney opens a pending
debit and "texts" a one-time password to the payer, verifyCode completes the
debit with that OTP. Here the texts land in per-wallet outboxes that tests read
through the control API under ``/_sim/`` (which also injects faults, changes
token/OTP lifetimes at runtime and inspects recorded traffic).

Money is kept in integer bututs (1/100 GMD); request JSON is parsed with
Decimal floats so ``"amount": 5.00`` stays exact.

Magic values: a client that never calls ``/_sim/`` picks an outcome with the
payer wallet (``fromUser.userIdentifier`` of getMoney). These wallets exist at
start and after a reset besides the configured ones (a configured wallet with
the same id is an ordinary wallet: no magic). ``/_sim/state`` leaves them out
of ``wallets``; ``GET /_sim/wallets`` lists every wallet and its magic. A fault
outcome is applied exactly like that fault armed for the endpoint (an armed
fault takes precedence) and recorded in ``/_sim/requests`` as
``"fault": "magic:<kind>"``; on verifyCode it applies once per debit, to the
first verifyCode naming it, as a fault armed with ``times: 1`` would:

========== ========== ===================================================================
wallet     balance    outcome
========== ========== ===================================================================
10000001   0.00       verifyCode answers ``-120008`` (balance not sufficient); debit failed
10000002   10000.00   the OTP expires at once: verifyCode answers ``-150006``
                      (``magic:otp_expired``); debit expired
10000003   10000.00   verifyCode applies the debit, then closes the connection without
                      answering (``drop_after``): the timeout after the debit
10000004   10000.00   verifyCode answers only after 30 s (``timeout``): the caller times
                      out first; the debit is applied when it finally answers (at once
                      when the simulator stops)
10000005   10000.00   getMoney answers HTTP 500 without acting (``http_500``), every time
========== ========== ===================================================================
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

from simulators.common import (
    DEFAULT_ENDPOINT_TIMEOUT,
    BearerTokens,
    ControlError,
    FaultBook,
    Handler,
    JsonObject,
    Magic,
    RequestLog,
    SimEngine,
    SimulatorServer,
    basic_auth_matches,
    control_body,
    create_sim_app,
    format_minor,
    json_object,
    now_iso,
    parse_amount_minor,
)

ENDPOINT_TARGETS = ("login", "getMoney", "verifyCode")
FAULT_KINDS = {
    target: ("latency", "http_500", "timeout", "drop", "drop_after", "malformed", "slow_body")
    for target in ENDPOINT_TARGETS
}
REDACTED_FIELDS = ("password", "transactionPin", "otp")
NO_EXPIRY = "-1"  # accessTokenExpiry meaning "no stated expiry"

T = TypeVar("T")

SUCCESS = "1"
MISSING_PARAMETER = ("-150008", "Mandatory parameter missing")
OTP_EXPIRED = "otp_expired"  # a magic kind the engine applies itself (see verify)


@dataclass(frozen=True)
class _MagicWallet:
    name: str  # as GET /_sim/wallets shows it
    balance: str
    magic: Magic | None = None


# Payer wallet -> its seeded balance and magic (see the module docstring).
MAGIC_WALLETS = {
    "10000001": _MagicWallet("insufficient_balance", "0.00"),
    "10000002": _MagicWallet(OTP_EXPIRED, "10000.00", Magic("verifyCode", OTP_EXPIRED)),
    "10000003": _MagicWallet("drop_after", "10000.00", Magic("verifyCode", "drop_after")),
    "10000004": _MagicWallet(
        "timeout", "10000.00", Magic("verifyCode", "timeout", DEFAULT_ENDPOINT_TIMEOUT)
    ),
    "10000005": _MagicWallet("http_500", "10000.00", Magic("getMoney", "http_500")),
}


@dataclass
class QmoneySimSettings:
    """How the simulated Qmoney behaves; token expiry and OTP lifetime can change at runtime."""

    # Basic credential for /login: base64("channel_id:channel_secret")
    channel_id: str = "sandbox-channel"
    channel_secret: str = "sandbox-channel-secret"
    username: str = "14001502"  # the merchant's API user
    password: str = "sandbox-qmoney"
    merchant_account: str = "14001502"  # toUser.userIdentifier must be this
    merchant_pin: str = "1234"  # transactionPin must be this
    # accessTokenExpiry sent on login, seconds as a string; "-1": no stated expiry (never expires)
    token_expiry: str = "3600"
    otp_lifetime_seconds: float = 300.0
    # wallet id -> balance (decimal string, GMD)
    wallets: dict[str, str] = field(default_factory=lambda: {"5811724c": "10000.00"})
    merchant_balance: str = "0.00"


# --------------------------------------------------------------------------- parsing


def parse_token_expiry(value: object) -> str:
    """A token expiry as sent on login: whole seconds >= 0 (9 digits at most) or "-1"."""
    text = _text(value) or ""
    if text != NO_EXPIRY and not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValueError(f"token expiry must be whole seconds or {NO_EXPIRY}, not {value!r}")
    return str(int(text))


def parse_otp_lifetime(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"OTP lifetime must be a positive number of seconds, not {value!r}")
    return float(value)


def parse_balance(value: object) -> int:
    """A wallet balance (decimal string or number, >= 0, two decimals at most) in bututs."""
    minor = parse_amount_minor(value, allow_zero=True)
    if minor is None:
        raise ValueError(f"balance must be a non-negative amount with two decimals, not {value!r}")
    return minor


def _text(value: object) -> str | None:
    """A non-empty string, or an integer as a string; None for anything else (missing)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _required(value: T | None) -> T:
    if value is None:
        raise _Refused(*MISSING_PARAMETER)
    return value


def _user(data: JsonObject, name: str) -> str | None:
    user = data.get(name)
    return _text(user.get("userIdentifier")) if isinstance(user, dict) else None


def _payments(data: JsonObject) -> list[JsonObject]:
    """The payment entries; empty when they are missing or not objects."""
    payment = data.get("payment")
    if not isinstance(payment, list) or not all(isinstance(entry, dict) for entry in payment):
        return []
    return payment


def _same(given: str, expected: str) -> bool:
    # surrogatepass: JSON may carry lone surrogates, which must compare unequal, not crash.
    return secrets.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


# --------------------------------------------------------------------------- model


class _Refused(Exception):
    """A provider call Qmoney answers with HTTP 200 and a non-success responseCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response({"responseCode": self.code, "responseMessage": self.message})


@dataclass
class _DebitRequest:
    payer: str
    amount_minor: int


@dataclass
class _Debit:
    transaction_id: str
    wallet: str
    amount_minor: int
    otp: str
    otp_sent_at: float  # monotonic
    magic: Magic | None = None  # a magic verifyCode outcome (payer wallet) not yet applied
    otp_expires_at_once: bool = False
    status: str = "pending"
    created_at: str = field(default_factory=now_iso)
    completed_at: str | None = None  # when it left "pending", whatever the outcome

    def close(self, status: str) -> None:
        self.status = status
        self.completed_at = now_iso()

    def as_json(self) -> JsonObject:
        return {
            "transactionId": self.transaction_id,
            "wallet": self.wallet,
            "amount": format_minor(self.amount_minor),
            "status": self.status,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
        }


# --------------------------------------------------------------------------- engine


class _QmoneyEngine(SimEngine):
    """State of one simulated Qmoney: wallets, tokens, debits and the OTP outboxes."""

    def __init__(self, settings: QmoneySimSettings) -> None:
        super().__init__(FaultBook(FAULT_KINDS, ENDPOINT_TARGETS), RequestLog(REDACTED_FIELDS))
        self.settings = settings
        # Validated once, restored by reset; the settings object itself is never changed.
        self._initial_token_expiry = parse_token_expiry(settings.token_expiry)
        self._initial_otp_lifetime = parse_otp_lifetime(settings.otp_lifetime_seconds)
        configured = {w: parse_balance(b) for w, b in settings.wallets.items()}
        self.magic_wallets = {
            wallet: magic for wallet, magic in MAGIC_WALLETS.items() if wallet not in configured
        }
        self._initial_wallets = {
            **configured,
            **{wallet: parse_balance(m.balance) for wallet, m in self.magic_wallets.items()},
        }
        self._initial_merchant_balance = parse_balance(settings.merchant_balance)
        self.tokens = BearerTokens()
        self._used_transaction_ids: set[str] = set()  # kept across resets: ids never recur
        self.reset()

    def reset(self) -> None:
        """Back to the initial settings and wallets; forget debits, OTPs, tokens, traffic."""
        self.token_expiry = self._initial_token_expiry
        self.otp_lifetime_seconds = self._initial_otp_lifetime
        self.wallets = dict(self._initial_wallets)
        self.merchant_balance = self._initial_merchant_balance
        self.debits: dict[str, _Debit] = {}
        self.outboxes: dict[str, list[JsonObject]] = {}
        self.tokens.clear()
        self.requests.clear()
        self.faults.clear()

    # ---- login

    def channel_valid(self, authorization: str | None) -> bool:
        settings = self.settings
        return basic_auth_matches(authorization, settings.channel_id, settings.channel_secret)

    def login(self, payload: JsonObject) -> JsonObject:
        grant_type = _required(_text(payload.get("grantType")))
        username = _required(_text(payload.get("username")))
        password = _required(_text(payload.get("password")))
        if grant_type != "password":
            raise _Refused("-5100006", "Invalid grant type")
        settings = self.settings
        if not (_same(username, settings.username) and _same(password, settings.password)):
            raise _Refused("-5100002", "Invalid username or password")
        ttl = math.inf if self.token_expiry == NO_EXPIRY else int(self.token_expiry)
        token = self.tokens.issue(secrets.token_urlsafe(32), ttl)
        return {
            "access_token": token,
            "accessTokenExpiry": self.token_expiry,
            "twoFactorEnable": "false",
        }

    # ---- getMoney

    def debit_request(self, payload: JsonObject) -> _DebitRequest:
        """The checked getMoney request.

        Problems are reported in a fixed order: anything missing, then receiver,
        PIN, payer wallet and amount.
        """
        data = _required(payload.get("data") if isinstance(payload.get("data"), dict) else None)
        payer, receiver = _required(_user(data, "fromUser")), _required(_user(data, "toUser"))
        pin = _required(_text(data.get("transactionPin")))
        _required(_text(data.get("serviceId")))
        _required(_text(data.get("productId")))
        payments = _payments(data)
        amount = _required(payments[0].get("amount") if payments else None)
        if receiver != self.settings.merchant_account:
            raise _Refused("-150004", "Invalid receiver account")
        if not _same(pin, self.settings.merchant_pin):
            raise _Refused("-150002", "Invalid transaction PIN")
        if payer not in self.wallets:
            raise _Refused("-120001", "Payer wallet not found")
        amount_minor = parse_amount_minor(amount)
        if amount_minor is None or len(payments) > 1:  # one debit carries one amount
            raise _Refused("-150009", "Invalid amount")
        return _DebitRequest(payer, amount_minor)

    def start_debit(self, request: _DebitRequest) -> _Debit:
        """Open a pending debit and send its OTP; the balance is only checked on verify."""
        magic_wallet = self.magic_wallets.get(request.payer)
        magic = None if magic_wallet is None else magic_wallet.magic
        if magic is not None and magic.target != "verifyCode":
            magic = None
        debit = _Debit(
            self._new_transaction_id(),
            request.payer,
            request.amount_minor,
            otp=f"{secrets.randbelow(10**6):06d}",
            otp_sent_at=time.monotonic(),
            magic=magic,
            otp_expires_at_once=magic is not None and magic.kind == OTP_EXPIRED,
        )
        self.debits[debit.transaction_id] = debit
        self.outboxes.setdefault(debit.wallet, []).append(
            {
                "otp": debit.otp,
                "transactionId": debit.transaction_id,
                "amount": format_minor(debit.amount_minor),
                "sent_at": now_iso(),
            }
        )
        return debit

    def _new_transaction_id(self) -> str:
        while True:
            transaction_id = str(10**11 + secrets.randbelow(9 * 10**11))  # 12 digits
            if transaction_id not in self._used_transaction_ids:
                self._used_transaction_ids.add(transaction_id)
                return transaction_id

    # ---- verifyCode

    def verify(self, transaction_id: str, otp: str) -> JsonObject:
        """Complete a pending debit; an expired OTP or a short balance closes it for good."""
        debit = self.debits.get(transaction_id)
        if debit is None or debit.status != "pending":
            raise _Refused("-150001", "Session not found")
        expired = time.monotonic() - debit.otp_sent_at > self.otp_lifetime_seconds
        if expired or debit.otp_expires_at_once:
            debit.close("expired")
            raise _Refused("-150006", "OTP expired")
        if not _same(otp, debit.otp):
            raise _Refused("-150005", "OTP validation failed")  # still pending: payer may retry
        balance = self.wallets[debit.wallet]
        if balance < debit.amount_minor:
            debit.close("failed")
            raise _Refused("-120008", "Balance not sufficient")
        self.wallets[debit.wallet] = balance - debit.amount_minor
        self.merchant_balance += debit.amount_minor
        debit.close("completed")
        return {
            "transactionId": debit.transaction_id,
            "balanceData": [
                {
                    "walletExternalId": debit.wallet,
                    "availableBalance": format_minor(self.wallets[debit.wallet]),
                }
            ],
        }

    # ---- magic values

    async def magic(self, request: web.Request) -> Magic | None:
        """getMoney from a magic payer wallet; the first verifyCode naming a magic debit."""
        route = request.match_info.route.name
        if route not in ("getMoney", "verifyCode"):
            return None
        payload = json_object(await request.text())
        if payload is None:
            return None
        data = payload.get("data")
        if route == "getMoney":
            payer = _user(data, "fromUser") if isinstance(data, dict) else None
            magic_wallet = self.magic_wallets.get(payer or "")
            magic = None if magic_wallet is None else magic_wallet.magic
            return magic if magic is not None and magic.target == route else None
        data = data if isinstance(data, dict) else payload  # both verifyCode forms
        debit = self.debits.get(_text(data.get("transactionId")) or "")
        if debit is None or debit.status != "pending" or debit.magic is None:
            return None
        magic = debit.magic
        if magic.kind != OTP_EXPIRED:  # a fault: applied once, as if armed with times=1
            debit.magic = None
        return magic

    # ---- control views

    def wallet_json(self, wallet: str) -> JsonObject:
        magic_wallet = self.magic_wallets.get(wallet)
        return {
            "wallet": wallet,
            "balance": format_minor(self.wallets[wallet]),
            "magic": None if magic_wallet is None else magic_wallet.name,
        }

    def settings_json(self) -> JsonObject:
        return {
            "token_expiry": self.token_expiry,
            "otp_lifetime_seconds": self.otp_lifetime_seconds,
        }

    def state_json(self) -> JsonObject:
        return {
            **self.settings_json(),
            "wallets": {
                wallet: format_minor(minor)
                for wallet, minor in self.wallets.items()
                if wallet not in self.magic_wallets
            },
            "merchant_balance": format_minor(self.merchant_balance),
            "debits": [debit.as_json() for debit in self.debits.values()],
        }


ENGINE = web.AppKey("qmoney_engine", _QmoneyEngine)


# --------------------------------------------------------------------------- provider API


def _success(message: str, data: JsonObject) -> web.Response:
    return web.json_response({"responseCode": SUCCESS, "responseMessage": message, "data": data})


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _internal_error() -> web.Response:
    body = {"responseCode": "-1", "responseMessage": "Internal server error"}
    return web.json_response(body, status=500)


async def _payload(request: web.Request) -> JsonObject:
    """The request's JSON object (Decimal floats); a body that is not one misses everything."""
    payload = json_object(await request.text(), exact_decimals=True)
    if payload is None:
        raise _Refused(*MISSING_PARAMETER)
    return payload


async def _login(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    if not engine.channel_valid(request.headers.get("Authorization")):
        return _oauth_error(
            401, "unauthorized", "Full authentication is required to access this resource"
        )
    return _success("Success", engine.login(await _payload(request)))


async def _get_money(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    debit = engine.start_debit(engine.debit_request(await _payload(request)))
    return _success("OTP Send Successfully", {"transactionId": debit.transaction_id})


async def _verify_code(request: web.Request) -> web.Response:
    payload = await _payload(request)
    data = payload["data"] if isinstance(payload.get("data"), dict) else payload  # both forms
    transaction_id, otp = _text(data.get("transactionId")), _text(data.get("otp"))
    if transaction_id is None:
        raise _Refused("-20002", "Transaction id missing")
    if otp is None:
        raise _Refused(*MISSING_PARAMETER)
    return _success("Success", request.app[ENGINE].verify(transaction_id, otp))


async def _provider_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_error = request.match_info.http_exception
    if route_error is not None:
        description = f"No endpoint {request.method} {request.path}"
        error = route_error.reason.lower().replace(" ", "_")
        return _oauth_error(route_error.status, error, description)
    engine = request.app[ENGINE]
    if request.match_info.route.name != "login" and not engine.tokens.valid(
        request.headers.get("Authorization")
    ):
        return _oauth_error(401, "invalid_token", "Invalid access token")
    try:
        return await handler(request)
    except _Refused as refusal:
        return refusal.response()


# --------------------------------------------------------------------------- control API


async def _get_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].state_json())


async def _latest_otp(request: web.Request) -> web.Response:
    wallet = request.match_info["wallet"]
    outbox = request.app[ENGINE].outboxes.get(wallet)
    if not outbox:
        return web.json_response({"error": f"no OTP sent to {wallet}"}, status=404)
    return web.json_response(outbox[-1])


async def _outbox(request: web.Request) -> web.Response:
    outbox = request.app[ENGINE].outboxes.get(request.match_info["wallet"], [])
    return web.json_response({"items": outbox})


async def _list_wallets(request: web.Request) -> web.Response:
    """Every wallet, the magic ones included (``/_sim/state`` leaves those out)."""
    engine = request.app[ENGINE]
    return web.json_response({"items": [engine.wallet_json(wallet) for wallet in engine.wallets]})


async def _get_wallet(request: web.Request) -> web.Response:
    wallet = request.match_info["wallet"]
    engine = request.app[ENGINE]
    if wallet not in engine.wallets:
        return web.json_response({"error": f"unknown wallet {wallet}"}, status=404)
    return web.json_response(engine.wallet_json(wallet))


async def _put_wallet(request: web.Request) -> web.Response:
    wallet = request.match_info["wallet"]
    payload = await control_body(request, exact_decimals=True)
    try:
        balance = parse_balance(payload.get("balance"))
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    request.app[ENGINE].wallets[wallet] = balance
    return web.json_response({"wallet": wallet, "balance": format_minor(balance)})


async def _change_settings(request: web.Request) -> web.Response:
    """Change token_expiry and/or otp_lifetime_seconds; nothing changes if either is bad.

    A new token expiry applies to tokens issued from now on; a new OTP lifetime
    to every pending debit at its next verify.
    """
    payload = await control_body(request)
    parsers = {"token_expiry": parse_token_expiry, "otp_lifetime_seconds": parse_otp_lifetime}
    if unknown := sorted(set(payload) - set(parsers)):
        raise ControlError(f"unknown settings {unknown}; known: {sorted(parsers)}")
    try:
        changes = {name: parsers[name](value) for name, value in payload.items()}
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    engine = request.app[ENGINE]
    for name, value in changes.items():
        setattr(engine, name, value)
    return web.json_response(engine.settings_json())


async def _revoke_tokens(request: web.Request) -> web.Response:
    return web.json_response({"revoked": request.app[ENGINE].tokens.clear()})


async def _reset(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    engine.reset()
    return web.json_response(engine.state_json())


# --------------------------------------------------------------------------- application


def create_app(settings: QmoneySimSettings) -> web.Application:
    """Provider API plus ``/_sim/`` control API; raises ValueError for invalid settings."""
    engine = _QmoneyEngine(settings)
    app = create_sim_app(engine, _provider_answer, _internal_error)
    app[ENGINE] = engine
    app.router.add_post("/login", _login, name="login")
    app.router.add_post("/getMoney", _get_money, name="getMoney")
    app.router.add_post("/verifyCode", _verify_code, name="verifyCode")
    app.router.add_get("/_sim/state", _get_state)
    app.router.add_get("/_sim/otp/{wallet}", _latest_otp)
    app.router.add_get("/_sim/outbox/{wallet}", _outbox)
    app.router.add_get("/_sim/wallets", _list_wallets)
    app.router.add_get("/_sim/wallets/{wallet}", _get_wallet)
    app.router.add_put("/_sim/wallets/{wallet}", _put_wallet)
    app.router.add_post("/_sim/settings", _change_settings)
    app.router.add_post("/_sim/tokens/revoke", _revoke_tokens)
    app.router.add_post("/_sim/reset", _reset)
    return app


class QmoneySimulator(SimulatorServer):
    """The simulator on a real socket, for tests and ``python -m simulators qmoney``."""

    def __init__(self, settings: QmoneySimSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or QmoneySimSettings()

    def build_app(self) -> web.Application:
        return create_app(self.settings)
