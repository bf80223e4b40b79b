"""Reading input files (specs, lock programs) in bounded time and memory.

A file is read up to its size limit plus one byte, so ``program: /dev/zero`` or a
multi-gigabyte file costs at most the limit; bytes that are not UTF-8, control
characters and lone surrogates are refused with the line and column where they
are (``InputError``), before any parser sees them.
"""

from __future__ import annotations

import re

# control characters YAML and JSON text never needs (tab, LF, CR are fine), and the
# code points that cannot be encoded back (lone surrogates) or are non-characters
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


class InputError(ValueError):
    """A file that cannot be read as text: ``line``/``col`` are 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int = 0, col: int = 0) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


def position(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` (a character index, or a byte index in bytes)."""
    nl = "\n" if isinstance(text, str) else b"\n"
    line = text.count(nl, 0, offset) + 1  # type: ignore[arg-type]
    start = text.rfind(nl, 0, offset) + 1  # type: ignore[arg-type]
    return line, offset - start + 1


def bad_character(text: str) -> InputError | None:
    """The first control character or lone surrogate of ``text``, as an error; else None."""
    m = _BAD_CHAR.search(text)
    if m is None:
        return None
    line, col = position(text, m.start())
    what = "lone surrogate" if "\ud800" <= m.group() <= "\udfff" else "control character"
    return InputError(f"{what} U+{ord(m.group()):04X} is not allowed", line, col)


def read_text(path: str, limit: int, what: str = "file") -> str:
    """The UTF-8 text of ``path``, at most ``limit`` bytes; OSError propagates (no such file, ...)."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{what} larger than {limit:,} bytes (the input limit; see README, 'Input limits')", 1, 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = position(data, e.start)
        raise InputError(f"not UTF-8 text ({e.reason}: byte 0x{data[e.start]:02x})", line, col) from None
    err = bad_character(text)
    if err is not None:
        raise err
    return text
