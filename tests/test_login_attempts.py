"""The login-attempt record shared by concurrent logins."""

from datetime import UTC, datetime, timedelta

import pytest

from server.auth.attempts import LoginAttemptRepository


@pytest.mark.asyncio
async def test_a_login_that_took_its_time_before_another_opened_the_record_is_not_locked(
    store,
) -> None:
    """Two concurrent logins: the second opens the record with its own, later `now`;
    the first, whose `now` is a moment earlier, still gets its check."""
    attempts = LoginAttemptRepository(store)
    opened = datetime.now(UTC)  # the record's expiry is a TTL index: it must lie ahead
    await attempts.open("address:127.0.0.1", 20, opened, opened + timedelta(minutes=15))
    assert await attempts.take("address:127.0.0.1", opened - timedelta(milliseconds=5))
