"""User-facing errors: a spec that cannot be used, and an apcheck bug.

Every spec problem is printed as ``file:line:col: error: path: message`` (the
compiler convention editors jump to), exits 2 and never shows a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def closest(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    c = closest(name, known)
    return f" (did you mean {c!r}?)" if c is not None else ""


class SpecError(Exception):
    """One problem in a spec.

    ``where`` is ``"file:line:col"`` (1-based), ``"file"`` or ``""`` when no
    position is known; ``path`` is the dotted spec path (``threads[1].run[0].apid``).
    """

    def __init__(self, where: str, path: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.path = path
        self.message = message

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        path = f"{self.path}: " if self.path else ""
        return f"{head}error: {path}{self.message}"

    def lines(self) -> list[str]:
        return [str(self)]


class SpecErrors(SpecError):
    """Several problems found in one pass, in file order.

    A subclass of SpecError (carrying the first error's fields) so callers can
    catch one type whether a spec had one mistake or many.
    """

    errors: list[SpecError]

    def __init__(self, errors: Sequence[SpecError]) -> None:
        if not errors:
            raise ValueError("SpecErrors needs at least one error")
        flat: list[SpecError] = []
        for e in errors:
            flat.extend(e.errors if isinstance(e, SpecErrors) else [e])
        first = flat[0]
        super().__init__(first.where, first.path, first.message)
        self.errors = flat

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        return [SpecError.__str__(e) for e in self.errors]


class InternalError(RuntimeError):
    """apcheck itself is broken (a built-in module failed to import, ...): exit 4."""
