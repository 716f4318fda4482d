"""`python run.py export NAME --from D --to D [--out FILE] [filters]`: the rows of
`GET /api/v1/exports/<name>.csv`, read and written by the same code, to a file or to
standard output, with progress on standard error.

The filters are the HTTP query's, as options (`--bill-ref`, `--needs-review true`),
loaded by the export's own schema: an option another export takes is refused, naming it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from marshmallow import ValidationError

from server.kernel.errors import ApiError
from server.kernel.schemas import shared
from server.ops.export_definitions import EXPORTS
from server.ops.exports import Exports, Prepared
from server.web.csv_answer import csv_text

# Progress every this many rows written.
PROGRESS_ROWS = 10_000
PREFIX = "filter_"


def _filters() -> dict[str, tuple[str, list[str]]]:
    """Every query parameter of an export: its description, and the exports taking it."""
    taken: dict[str, tuple[str, list[str]]] = {}
    for name, export in EXPORTS.items():
        for field_name, field in shared(export.filters).fields.items():
            description = field.metadata.get("description", "filter")
            taken.setdefault(field.data_key or field_name, (description, []))[1].append(name)
    return taken


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=list(EXPORTS), help="the export")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the CSV to FILE (default: standard output); it appears there complete, "
        "once every row is written",
    )
    for key, (description, exports) in _filters().items():
        window = key in ("from", "to")
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            dest=PREFIX + key,
            required=window,
            metavar="WHEN" if window else "VALUE",
            help=description + ("" if len(exports) == len(EXPORTS) else f" ({', '.join(exports)})"),
        )


def _given(args: argparse.Namespace) -> dict[str, str]:
    return {
        key.removeprefix(PREFIX): value
        for key, value in vars(args).items()
        if key.startswith(PREFIX) and value is not None
    }


async def write_export(
    exports: Exports,
    args: argparse.Namespace,
    *,
    progress_rows: int = PROGRESS_ROWS,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Write the export `args` ask for; the exit status. A refused filter names its
    option (1); a failure midway leaves no file behind."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    export = EXPORTS[args.name]
    try:
        prepared = exports.prepare(export, shared(export.filters).load(_given(args)))
    except (ValidationError, ApiError) as err:
        messages = (
            err.normalized_messages()
            if isinstance(err, ValidationError)
            else err.details.get("fields", {})
        )
        for line in _refusals(args.name, messages):
            print(f"refused: {line}", file=stderr)
        return 1
    if args.out is None:
        rows = await _write(exports, prepared, stdout, stderr, progress_rows)
        stdout.flush()
    else:
        partial = args.out.with_name(args.out.name + ".part")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                rows = await _write(exports, prepared, out, stderr, progress_rows)
            os.replace(partial, args.out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    print(
        f"exported {rows} rows of {args.name} ({prepared.window.first} to "
        f"{prepared.window.last}) to {args.out or 'standard output'}",
        file=stderr,
        flush=True,
    )
    return 0


async def _write(
    exports: Exports, prepared: Prepared, out: TextIO, stderr: TextIO, progress_rows: int
) -> int:
    """The CSV of `prepared` into `out`, `  N rows` on `stderr` every `progress_rows`
    rows; how many rows (the header not counted)."""
    rows = shown = 0
    header = 1  # the first batch starts with the header
    async for batch in exports.batches(prepared):
        out.write(csv_text(batch))
        rows += len(batch) - header
        header = 0
        if rows - shown >= progress_rows:
            shown = rows
            print(f"  {rows} rows", file=stderr, flush=True)
    return rows


def _refusals(name: str, messages: Mapping[str, Any]) -> Iterator[str]:
    """One line per refused parameter, naming it as the option it was given as."""
    for key, problems in messages.items():
        option = f"--{str(key).replace('_', '-')}"
        if problems == ["Unknown field."]:
            yield f"{option} is not a filter of the {name} export"
        else:
            yield f"{option}: {' '.join(str(problem) for problem in problems)}"
