"""The `dashboard` settings section: the time zone the dashboard page shows times in.

The store and the API keep every time in UTC; only the page converts them, and it
names the zone beside every time it shows."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass

from server.kernel.settings import SettingError


@dataclass(frozen=True)
class DashboardSettings:
    # An IANA time zone name: `UTC`, `Africa/Nairobi`, `Africa/Banjul`.
    display_timezone: str = "UTC"

    def check(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.display_timezone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise SettingError(
                f"display_timezone: {self.display_timezone!r} is not a time zone name "
                "(e.g. UTC, Africa/Nairobi)"
            ) from None
