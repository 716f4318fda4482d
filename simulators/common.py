"""What every provider simulator shares: fault injection, request recording, the runner.

A simulator is an aiohttp app whose provider routes go through one pipeline
(record the request, apply an armed fault, answer) and whose ``/_sim/`` routes
form a JSON control API for tests. The provider-specific parts (error
envelopes, the provider routes, the engine state) live in the simulator modules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

CONTROL_PREFIX = "/_sim/"
DEFAULT_ENDPOINT_TIMEOUT = 30.0  # seconds a "timeout" fault holds an endpoint call
REDACTED = "[redacted]"

JsonObject = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ProviderAnswer = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

# --------------------------------------------------------------------------- small helpers


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def json_object(text: str, *, exact_decimals: bool = False) -> JsonObject | None:
    """The JSON object in text, or None; exact_decimals keeps ``5.00`` a Decimal, not a float."""
    try:
        value = json.loads(text, parse_float=Decimal if exact_decimals else None)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return value if isinstance(value, dict) else None


def json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def format_minor(minor: int) -> str:
    """Minor units to the providers' money format: 500 -> "5.00"."""
    return f"{minor // 100}.{minor % 100:02d}"


# Far above any real payment; keeps absurd amounts (1e999999999) out of the arithmetic.
MAX_AMOUNT_MINOR = 10**15


def parse_amount_minor(
    value: object, *, allow_zero: bool = False, max_minor: int = MAX_AMOUNT_MINOR
) -> int | None:
    """Minor units of a positive amount with at most two decimals (number or string), or None.

    allow_zero also accepts 0; max_minor is the largest amount accepted.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero):
        return None
    # Bounds before multiplying: an extreme exponent would overflow the Decimal context
    # (1e999999999) or underflow to a zero amount (1e-999999999).
    if 0 < amount < Decimal("0.01"):
        return None
    if amount > Decimal(max_minor).scaleb(-2):
        return None
    cents = amount * 100
    if cents != cents.to_integral_value():
        return None
    return int(cents)


def drop_connection(request: web.Request) -> web.Response:
    """Close the socket without answering.

    The returned response is never sent: aiohttp fails to write it to the closed
    transport and treats that as a client disconnect, which it does not log.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


# --------------------------------------------------------------------------- credentials


def basic_auth_matches(authorization: str | None, login: str, password: str) -> bool:
    """Whether an Authorization header is HTTP Basic for exactly login:password."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("latin-1")
    except binascii.Error:
        return False
    expected = f"{login}:{password}"
    return secrets.compare_digest(decoded.encode("latin-1"), expected.encode("latin-1"))


class BearerTokens:
    """Issued access tokens and when they expire."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}  # token -> monotonic expiry (math.inf: never)

    def issue(self, token: str, ttl_seconds: float) -> str:
        self._expiry[token] = time.monotonic() + ttl_seconds
        return token

    def valid(self, authorization: str | None) -> bool:
        """Whether the header is ``Bearer <token>`` for an issued, unexpired token."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        expiry = self._expiry.get(token)
        if scheme.lower() != "bearer" or expiry is None:
            return False
        if expiry <= time.monotonic():
            del self._expiry[token]
            return False
        return True

    def clear(self) -> int:
        count = len(self._expiry)
        self._expiry.clear()
        return count


# --------------------------------------------------------------------------- faults


class ControlError(Exception):
    """A control API request the simulator cannot act on (answered with HTTP 400)."""


@dataclass
class Fault:
    id: int
    target: str
    kind: str
    seconds: float | None
    times: int  # remaining uses; 0 = until cleared

    def as_json(self) -> JsonObject:
        return {
            "id": self.id,
            "target": self.target,
            "kind": self.kind,
            "seconds": self.seconds,
            "times": self.times,
        }


def _parse_fault(
    payload: JsonObject,
    fault_id: int,
    kinds: Mapping[str, Sequence[str]],
    endpoint_targets: Collection[str],
) -> Fault:
    """Validate a fault request; a ``timeout`` or ``slow_body`` on an endpoint target
    defaults to 30 seconds."""
    target, kind = payload.get("target"), payload.get("kind")
    if not isinstance(target, str) or target not in kinds:
        raise ControlError(f"target must be one of {sorted(kinds)}")
    if not isinstance(kind, str) or kind not in kinds[target]:
        raise ControlError(f"kind for {target} must be one of {list(kinds[target])}")
    seconds = payload.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds < math.inf
    ):
        raise ControlError("seconds must be a non-negative number")
    if kind == "latency" and seconds is None:
        raise ControlError("latency needs seconds")
    if kind in ("timeout", "slow_body") and target in endpoint_targets and seconds is None:
        seconds = DEFAULT_ENDPOINT_TIMEOUT
    times = payload.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise ControlError("times must be a non-negative integer (0 = until cleared)")
    return Fault(fault_id, target, kind, None if seconds is None else float(seconds), times)


class FaultBook:
    """Armed faults; each matching request or callback consumes one use.

    kinds maps every target to the fault kinds it allows; endpoint_targets are
    the targets that are provider endpoints (see _parse_fault).
    """

    def __init__(
        self, kinds: Mapping[str, Sequence[str]], endpoint_targets: Collection[str]
    ) -> None:
        self._kinds = kinds
        self._endpoint_targets = endpoint_targets
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, payload: JsonObject) -> Fault:
        fault = _parse_fault(payload, self._next_id, self._kinds, self._endpoint_targets)
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def take(self, target: str | None) -> Fault | None:
        for fault in self._faults:
            if fault.target != target:
                continue
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
            return fault
        return None

    def clear(self) -> int:
        count = len(self._faults)
        self._faults.clear()
        return count

    def as_json(self) -> list[JsonObject]:
        return [fault.as_json() for fault in self._faults]


@dataclass(frozen=True)
class Magic:
    """A magic value: an outcome a request's own input selects, without the control API.

    It is applied like the armed fault of the same target and kind (and only
    when no such fault is armed), and recorded as ``"magic:<kind>"``. A kind
    that is not a fault kind names a behaviour the engine applies itself; the
    pipeline only records it.
    """

    target: str
    kind: str
    seconds: float | None = None

    @property
    def label(self) -> str:
        return f"magic:{self.kind}"


# --------------------------------------------------------------------------- recording


def redact(value: Any, fields: Collection[str]) -> Any:
    """A copy of a JSON value with the values of the named keys, at any depth, redacted."""
    if isinstance(value, dict):
        return {
            key: REDACTED if key in fields else redact(item, fields) for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, fields) for item in value]
    return value


def redacted_headers(request: web.Request) -> dict[str, str]:
    """Request headers with the Authorization credential hidden (its scheme is kept)."""
    headers = dict(request.headers)
    for name in list(headers):
        if name.lower() == "authorization":
            scheme = headers[name].partition(" ")[0]
            headers[name] = f"{scheme} {REDACTED}"
    return headers


class RequestLog:
    """Provider requests as ``/_sim/requests`` lists them, secrets redacted."""

    def __init__(self, redacted_fields: Collection[str] = ()) -> None:
        self.items: list[JsonObject] = []
        self._redacted_fields = frozenset(redacted_fields)
        self._next_id = 1  # not reset by clear(): ids stay unique for the app's life

    async def record(self, request: web.Request) -> JsonObject:
        text = await request.text()
        body = json_or_text(text) if text else None
        record: JsonObject = {
            "id": self._next_id,
            "at": now_iso(),
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": redacted_headers(request),
            "body": redact(body, self._redacted_fields),
            "fault": None,
            "status": None,
            "answer": None,
        }
        self._next_id += 1
        self.items.append(record)
        return record

    @staticmethod
    def finish(record: JsonObject, response: web.StreamResponse) -> None:
        record["status"] = response.status
        if isinstance(response, web.Response) and response.text is not None:
            record["answer"] = json_or_text(response.text)

    def clear(self) -> None:
        self.items.clear()


# --------------------------------------------------------------------------- engine and app


class SimEngine:
    """What every simulated provider keeps besides its own state."""

    def __init__(self, faults: FaultBook, requests: RequestLog) -> None:
        self.faults = faults
        self.requests = requests
        self._closing = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Wake requests sleeping in a latency/timeout fault so the server stops promptly."""
        self._closing.set()

    @property
    def closing(self) -> bool:
        """Whether the server is stopping (a pause that returns may have been cut short)."""
        return self._closing.is_set()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def magic(self, request: web.Request) -> Magic | None:
        """The magic value a provider request carries, if any (asked only when no fault is armed).

        Called after the request is recorded (its body is read and cached), before
        it is answered; a use-once magic value is consumed here.
        """
        return None


SIM_ENGINE = web.AppKey("sim_engine", SimEngine)


async def _provider_call(
    request: web.Request,
    handler: Handler,
    answer: ProviderAnswer,
    internal_error: Callable[[], web.Response],
) -> web.StreamResponse:
    """Record a provider request, apply the fault armed for its route, answer.

    Fault kinds: ``drop`` closes the socket without acting; ``http_500`` answers
    internal_error() without acting; ``latency``/``timeout`` sleep, then act and
    answer; ``malformed`` acts, then answers a truncated (non-JSON) body;
    ``drop_after`` acts, then closes the socket (the record keeps the lost answer);
    ``slow_body`` acts, sends the status, headers and half the body, and the rest
    only after ``seconds``.
    With no fault armed, a magic value in the request applies the same way.
    """
    engine = request.app[SIM_ENGINE]
    record = await engine.requests.record(request)
    fault = engine.faults.take(request.match_info.route.name)
    if fault is not None:
        kind, seconds, record["fault"] = fault.kind, fault.seconds, fault.kind
    elif (magic := await engine.magic(request)) is not None:
        kind, seconds, record["fault"] = magic.kind, magic.seconds, magic.label
    else:
        kind, seconds = None, None
    if kind == "drop":
        return drop_connection(request)
    if kind in ("latency", "timeout"):
        await engine.pause(seconds or 0.0)
    response = internal_error() if kind == "http_500" else await answer(request, handler)
    if kind == "malformed":
        response = _truncated(response)
    engine.requests.finish(record, response)
    if kind == "drop_after":
        return drop_connection(request)
    if kind == "slow_body":
        return await _sent_slowly(request, response, seconds or 0.0, engine)
    return response


async def _sent_slowly(
    request: web.Request, response: web.StreamResponse, seconds: float, engine: SimEngine
) -> web.StreamResponse:
    """The answer's head and first half at once, the rest after `seconds`: a provider
    (or a proxy) whose body arrives slower than the caller waits."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes | bytearray) or not body:
        body = b"{}"
    slow = web.StreamResponse(
        status=response.status, headers={"Content-Type": response.headers["Content-Type"]}
    )
    slow.content_length = len(body)
    try:
        await slow.prepare(request)
        await slow.write(body[: len(body) // 2])
        await engine.pause(seconds)
        await slow.write(body[len(body) // 2 :])
        await slow.write_eof()
    except ConnectionResetError:  # the caller gave up waiting
        pass
    return slow


def _truncated(response: web.StreamResponse) -> web.Response:
    """The answer cut in half, as a proxy failing mid-body would leave it: not JSON."""
    text = response.text if isinstance(response, web.Response) and response.text else "{}"
    return web.Response(status=200, text=text[: len(text) // 2], content_type="application/json")


async def control_body(request: web.Request, *, exact_decimals: bool = False) -> JsonObject:
    payload = json_object(await request.text(), exact_decimals=exact_decimals)
    if payload is None:
        raise ControlError("body must be a JSON object")
    return payload


async def _control_call(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except web.HTTPException as exc:  # unknown path or method
        return web.json_response({"error": exc.reason}, status=exc.status)


async def _add_fault(request: web.Request) -> web.Response:
    fault = request.app[SIM_ENGINE].faults.add(await control_body(request))
    return web.json_response(fault.as_json())


async def _list_faults(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[SIM_ENGINE].faults.as_json()})


async def _clear_faults(request: web.Request) -> web.Response:
    return web.json_response({"cleared": request.app[SIM_ENGINE].faults.clear()})


async def _list_requests(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[SIM_ENGINE].requests.items})


def create_sim_app(
    engine: SimEngine, answer: ProviderAnswer, internal_error: Callable[[], web.Response]
) -> web.Application:
    """An app with the provider pipeline and the shared control routes (faults, requests).

    answer(request, handler) gives the provider's answer without faults; the
    caller adds its provider routes (named after their fault targets) and the
    rest of its control API.
    """

    @web.middleware
    async def dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await _control_call(request, handler)
        return await _provider_call(request, handler, answer, internal_error)

    async def on_shutdown(_app: web.Application) -> None:
        engine.begin_shutdown()

    app = web.Application(middlewares=[dispatch])
    app[SIM_ENGINE] = engine
    app.on_shutdown.append(on_shutdown)
    app.router.add_post("/_sim/faults", _add_fault)
    app.router.add_get("/_sim/faults", _list_faults)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_get("/_sim/requests", _list_requests)
    return app


class SimulatorServer(ABC):
    """A simulator app on a real socket, for tests and ``python -m simulators``."""

    def __init__(self) -> None:
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @abstractmethod
    def build_app(self) -> web.Application:
        """A fresh app (fresh state) to serve."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = ephemeral) with fresh state; returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(self.build_app(), handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_port = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        self._runner = runner
        self.base_url = f"http://{url_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; the app's shutdown and cleanup hooks have run when this returns."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()
