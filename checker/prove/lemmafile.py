"""``--save-lemmas``: write found invariants into a spec's ``prove:`` block, as text.

The spec is edited as text, not re-dumped, so its comments, key order and
layout stay as the author wrote them: the ``found:`` entry of the ``prove:``
block is replaced (or added; a ``prove:`` block is appended when there is
none). Each invariant is a YAML literal block (``- |``) holding SMT-LIB text.
The caller re-loads the spec afterwards and restores the original on error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOP = re.compile(r"^prove:\s*(#.*)?$")
HEADER = "found:  # invariants found by Spacer (apcheck prove --engine spacer --save-lemmas); re-proved on every run"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _found_lines(texts: Sequence[str], ind: int) -> list[str]:
    pad = " " * ind
    out = [pad + HEADER]
    for t in texts:
        out.append(f"{pad}  - |")
        out += [f"{pad}    {ln}" if ln else "" for ln in t.rstrip("\n").split("\n")]
    return out


def with_found(source: str, texts: Sequence[str]) -> str:
    """``source`` (a spec's text) with its ``prove: found:`` entry set to ``texts``."""
    lines = source.split("\n")
    trailing_newline = source.endswith("\n")
    if trailing_newline:
        lines.pop()
    start = next((i for i, ln in enumerate(lines) if _TOP.match(ln)), None)
    if start is None:
        body = _found_lines(texts, 2) if texts else []
        return "\n".join(lines + ["prove:"] + body) + "\n" if body else source
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith((" ", "\t"))):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines after the block stay after it
    block = lines[start + 1:end]
    keys = [ln for ln in block if ln.strip() and not ln.lstrip().startswith("#")]
    ind = _indent(keys[0]) if keys else 2
    kept: list[str] = []
    skipping = False
    for ln in block:
        if skipping and (not ln.strip() or _indent(ln) > ind):
            continue
        skipping = _indent(ln) == ind and ln.strip().startswith("found:")
        if not skipping:
            kept.append(ln)
    new = kept + (_found_lines(texts, ind) if texts else [])
    out = lines[:start + 1] + new + lines[end:]
    return "\n".join(out) + ("\n" if trailing_newline else "")


__all__ = ["HEADER", "with_found"]
