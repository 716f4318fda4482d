"""CSV answers for spreadsheets: sent a batch at a time as they are read (the whole file
is never held in memory), every cell guarded against formula injection.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula, and some
read past a leading tab or carriage return to find one; a payer's name or an account
number is text anyone can choose. Such a cell is written with a leading apostrophe, which
spreadsheets show as text. A plain number (`-5.00`, `+254`) is left as it is: it is no
formula, and a spreadsheet reads it as the number it is."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sequence
from typing import Any, cast

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

log = logging.getLogger("gateway.http")

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
CONTENT_TYPE = "text/csv; charset=utf-8"

Record = Sequence[str]


def spreadsheet_cell(value: str) -> str:
    """The cell as a spreadsheet should show it: text, never a formula."""
    if value.startswith(FORMULA_STARTS) and PLAIN_NUMBER.fullmatch(value) is None:
        return "'" + value
    return value


def csv_text(records: Iterable[Record]) -> str:
    """The records as CSV lines (CRLF, as RFC 4180), every cell guarded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([spreadsheet_cell(cell) for cell in record] for record in records)
    return buffer.getvalue()


async def send_csv(
    handler: RequestHandler, file_name: str, batches: AsyncIterable[Sequence[Record]]
) -> None:
    """Answer with the records of `batches` as a CSV attachment named `file_name`, one
    write and one flush per batch: the client receives each batch while the next is read,
    and a slow client slows the reading down (a flush waits for the socket); a client that
    goes away stops the reading. The first batch is read before anything is sent, so a
    failure there is still an error answer."""
    handler.set_header("Content-Type", CONTENT_TYPE)
    handler.set_header("Content-Disposition", f'attachment; filename="{file_name}"')
    records = aiter(batches)
    sent = False
    try:
        async for batch in records:
            handler.write(csv_text(batch))
            await handler.flush()
            sent = True
    except StreamClosedError:  # the client went away: read no further
        log.info("csv_abandoned file=%s", file_name)
        return
    except Exception:
        if sent:
            # Rows are out already: end the connection without the closing chunk, so
            # the client sees a broken download, never a short file that looks whole.
            log.error("csv_cut_off file=%s", file_name)
            # HTTP1Connection.close (server.body_limit's wrapper passes it on)
            cast(Any, handler.request.connection).close()
        raise
    finally:
        if isinstance(records, AsyncGenerator):
            await records.aclose()
    handler.finish()
