"""The callback URLs the gateway registers with Daraja.

Daraja refuses a URL containing any of FORBIDDEN_URL_WORDS (in any case), so
the gateway's own paths avoid them and every built URL is checked.
"""

from __future__ import annotations

FORBIDDEN_URL_WORDS = ("mpesa", "m-pesa", "safaricom", "exe", "exec", "cmd", "sql", "query")

VALIDATION_PATH = "/api/v1/c2b/validation/{secret}"
CONFIRMATION_PATH = "/api/v1/c2b/confirmation/{secret}"
STK_CALLBACK_PATH = "/api/v1/stk/callback/{secret}"
# Transaction Status and Account Balance results, and their queue timeouts.
RESULT_PATH = "/api/v1/daraja/results/{secret}"
QUEUE_TIMEOUT_PATH = "/api/v1/daraja/timeouts/{secret}"
# Pull Transactions' registration asks for a callback URL; the gateway pulls instead.
PULL_CALLBACK_PATH = "/api/v1/daraja/pull/{secret}"


class CallbackUrlError(ValueError):
    """A callback URL Daraja would refuse."""


def forbidden_word_in(text: str) -> str | None:
    """The first word Daraja forbids that occurs in text, or None."""
    lowered = text.lower()
    return next((word for word in FORBIDDEN_URL_WORDS if word in lowered), None)


def callback_urls(public_url: str, secret: str) -> tuple[str, str]:
    """(validation URL, confirmation URL) under the gateway's public base URL."""
    base = public_url.rstrip("/")
    urls = (
        base + VALIDATION_PATH.format(secret=secret),
        base + CONFIRMATION_PATH.format(secret=secret),
    )
    for url in urls:
        _check(url)
    return urls


def stk_callback_url(public_url: str, secret: str) -> str:
    """The CallBackURL of an M-Pesa Express prompt, under the gateway's public base URL."""
    return _check(public_url.rstrip("/") + STK_CALLBACK_PATH.format(secret=secret))


def result_urls(public_url: str, secret: str) -> tuple[str, str]:
    """(ResultURL, QueueTimeOutURL) of the initiator APIs."""
    base = public_url.rstrip("/")
    return (
        _check(base + RESULT_PATH.format(secret=secret)),
        _check(base + QUEUE_TIMEOUT_PATH.format(secret=secret)),
    )


def pull_callback_url(public_url: str, secret: str) -> str:
    return _check(public_url.rstrip("/") + PULL_CALLBACK_PATH.format(secret=secret))


def _check(url: str) -> str:
    word = forbidden_word_in(url)
    if word:
        raise CallbackUrlError(
            f"callback URL contains {word!r}, which Daraja refuses: "
            "change server.public_url or c2b.callback_secret"
        )
    return url
