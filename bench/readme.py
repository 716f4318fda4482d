"""`python -m bench report`: the run's output becomes the README's benchmark block.

What the run prints (it is markdown) is shown as it comes and kept; at the end it
replaces what stands between START and END in README.md, markers kept."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TextIO

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


class Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def recorded() -> Iterator[Tee]:
    """Standard output, shown and kept (in the Tee's `copy`) while the block runs."""
    tee = Tee(sys.stdout)
    with redirect_stdout(tee):
        yield tee


def with_block(text: str, block: str) -> str:
    """`text` with what stands between the markers replaced by `block`."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START} ... {END} block")
    return f"{text[: start + len(START)]}\n{block.strip()}\n{text[end:]}"


def check(readme: Path) -> None:
    """Refuse before a long run a file whose block could not be rewritten after it."""
    with_block(readme.read_text(), "")


def rewrite(readme: Path, block: str) -> None:
    readme.write_text(with_block(readme.read_text(), block))
