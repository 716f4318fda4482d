"""The period close as CSV lines and as a printable page, both made from its JSON answer
(server.ops.close_report), so the three forms always agree.

The page is plain HTML with its stylesheet inline (print rules included), no script and
nothing loaded from elsewhere; its Content-Security-Policy allows that stylesheet alone,
by its hash."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from html import escape
from typing import Any

from server.ops.close_report import FIGURES

KEY_COLUMNS = ("channel", "provider", "provider_name", "currency")
HEADINGS = {
    "received": "Received",
    "applied": "Applied to policies",
    "unmatched_at_end": "Unmatched at the end",
    "recovered": "Recovered by reconciliation",
    "in_doubt": "Still in doubt",
}

STYLE = """
body { font: 10pt/1.4 system-ui, sans-serif; color: #111; margin: 2em; }
h1 { font-size: 16pt; margin: 0 0 .3em; }
h2 { font-size: 12pt; margin: 1.5em 0 .5em; }
p.note { color: #444; margin: .2em 0; }
p.warning { font-weight: bold; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #999; padding: .25em .5em; vertical-align: top; }
th { background: #eee; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dt { font-weight: bold; margin-top: .4em; }
dd { margin: 0 0 0 1.5em; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
  th { background: none; }
}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def file_name(report: Mapping[str, Any]) -> str:
    return f"close-{report['period']}.csv"


def csv_lines(report: Mapping[str, Any]) -> Iterator[list[str]]:
    """A header, then one line per row of the answer: a count and a total per figure,
    totals as decimal strings in the line's currency."""
    yield [*KEY_COLUMNS, *(f"{name}_{part}" for name in FIGURES for part in ("count", "total"))]
    for row in report["rows"]:
        yield [
            *(str(row[column] or "") for column in KEY_COLUMNS),
            *(str(row[name][part]) for name in FIGURES for part in ("count", "total")),
        ]


def page(report: Mapping[str, Any]) -> str:
    """The printable page of the answer."""
    labels = {channel["name"]: channel["label"] for channel in report["channels"]}
    title = f"Period close {report['period']}"
    warning = (
        ""
        if report["complete"]
        else '<p class="note warning">The period has not ended: these are the figures so far.</p>'
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="note">{escape(report["from"])} to {escape(report["to"])}: {escape(report["days"])};
from {escape(report["starts_at"])} to {escape(report["ends_at"])} (UTC).</p>
<p class="note">Generated {escape(report["generated_at"])}. Amounts of different currencies
are never added together; an M-Pesa Express payment also counts under the paybill, so compare
channel by channel.</p>
{warning}
<h2>By channel, provider and currency</h2>
{_table(report["rows"], labels, with_provider=True)}
<h2>Per channel and currency</h2>
{_table(report["totals"], labels, with_provider=False)}
<h2>What the figures mean</h2>
<dl>
{"".join(_definition(entry) for entry in report["definitions"])}
</dl>
</body>
</html>
"""


def _table(
    rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str], *, with_provider: bool
) -> str:
    if not rows:
        return '<p class="note">Nothing in this period.</p>'
    keys = ["Channel", *(["Provider"] if with_provider else []), "Currency"]
    head = "".join(f'<th rowspan="2">{key}</th>' for key in keys)
    head += "".join(f'<th colspan="2">{HEADINGS[name]}</th>' for name in FIGURES)
    parts = "<th>count</th><th>amount</th>" * len(FIGURES)
    body = "".join(_row(row, labels, with_provider) for row in rows)
    return (
        f"<table>\n<thead><tr>{head}</tr><tr>{parts}</tr></thead>\n"
        f"<tbody>\n{body}</tbody>\n</table>"
    )


def _row(row: Mapping[str, Any], labels: Mapping[str, str], with_provider: bool) -> str:
    cells = [labels.get(row["channel"], row["channel"])]
    if with_provider:
        name = row.get("provider_name")
        cells.append(f"{name} ({row['provider']})" if name else row["provider"])
    cells.append(row["currency"])
    text = "".join(f"<td>{escape(cell)}</td>" for cell in cells)
    for name in FIGURES:
        figure = row[name]
        text += f'<td class="number">{figure["count"]}</td>'
        text += f'<td class="number">{escape(figure["total"])}</td>'
    return f"<tr>{text}</tr>\n"


def _definition(entry: Mapping[str, str]) -> str:
    return f"<dt>{HEADINGS[entry['figure']]}</dt><dd>{escape(entry['means'])}</dd>\n"
