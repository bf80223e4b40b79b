"""A grid of instance sizes for ``apcheck prove --parametric --sizes``: parse it, combine per-size verdicts.

A size is a number of VMs, adapters and domains; the design's ``sized_constants`` hook turns it into
constants (ap_model/universal.py). Each size is proved for any number of threads on its own; a goal
is PROVED for the grid only when it is PROVED at every size of it, and its scope names the grid
exactly (never "all sizes"). Otherwise the goal gets the worst status of the grid, at the first size
where that status was reached.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from checker.prove.prove_results import BOUNDED, CTI, PROVED, UNKNOWN, VIOLATED, PropertyProof

DIMENSIONS = ("vms", "adapters", "domains")  # in grid order: the last one varies fastest
# worst last: a violation beats an inconclusive answer, which beats a bounded or a proved one
SEVERITY = {PROVED: 0, BOUNDED: 1, CTI: 2, UNKNOWN: 3, VIOLATED: 4}
_ITEM = re.compile(r"^\s*([A-Za-z_-]+)\s*=\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$")


class SizesError(ValueError):
    """A bad ``--sizes`` text: the message says what is wrong and what is expected."""


@dataclass(frozen=True)
class Size:
    vms: int
    adapters: int
    domains: int

    def label(self) -> str:
        return f"vms {self.vms}, adapters {self.adapters}, domains {self.domains}"

    def key(self) -> str:
        """For file names: ``v2a1d1``."""
        return f"v{self.vms}a{self.adapters}d{self.domains}"


@dataclass(frozen=True)
class Grid:
    ranges: tuple[tuple[int, int], ...]  # (lo, hi) per DIMENSIONS

    def sizes(self) -> list[Size]:
        return [Size(*s) for s in product(*[range(lo, hi + 1) for lo, hi in self.ranges])]

    def text(self) -> str:
        """``vms 1..2, adapters 1..2, domains 1 (4 sizes)``."""
        dims = ", ".join(f"{d} {lo}" if lo == hi else f"{d} {lo}..{hi}" for d, (lo, hi) in zip(DIMENSIONS, self.ranges))
        n = len(self.sizes())
        return f"{dims} ({n} size{'s' if n != 1 else ''})"


def parse_sizes(text: str) -> Grid:
    """``vms=1..2,adapters=1..2,domains=1..2``; a dimension not given is 1 (the scope says so)."""
    given: dict[str, tuple[int, int]] = {}
    if not text.strip():
        raise SizesError("empty: expected e.g. vms=1..2,adapters=1..2,domains=1..2")
    for item in text.split(","):
        m = _ITEM.match(item)
        if m is None:
            raise SizesError(f"{item.strip()!r}: expected NAME=N or NAME=N..M (NAME one of {', '.join(DIMENSIONS)})")
        name, lo, hi = m.group(1), int(m.group(2)), int(m.group(3) or m.group(2))
        if name not in DIMENSIONS:
            close = difflib.get_close_matches(name, DIMENSIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SizesError(f"unknown dimension {name!r}{hint}; known: {', '.join(DIMENSIONS)}")
        if name in given:
            raise SizesError(f"{name} given twice")
        if lo < 1:
            raise SizesError(f"{item.strip()!r}: a size counts instances, from 1")
        if hi < lo:
            raise SizesError(f"{item.strip()!r}: empty range ({lo} > {hi})")
        given[name] = (lo, hi)
    return Grid(tuple(given.get(d, (1, 1)) for d in DIMENSIONS))


@dataclass
class SizeOutcome:
    """One size's proof: its rows (one per goal, ``auto:lock-ownership`` first), the operation instances
    of its universal scenario, the cross-check done before its PROVED rows, its wall-clock seconds."""

    size: Size
    rows: list[PropertyProof]
    threads: int
    seconds: float
    crosscheck: str = ""
    written: dict[str, str] = field(default_factory=dict)  # goal -> counterexample spec written at this size
    matrices: str = ""  # the design's word on which matrices this size's operations reach (sized_coverage)

    def proved(self) -> int:
        return sum(1 for r in self.rows if r.status == PROVED)

    def summary(self) -> str:
        return (f"size {self.size.label()}: {self.proved()}/{len(self.rows)} PROVED, {self.threads} operation "
                f"instances, {self.seconds:.1f} s")

    def to_json(self) -> dict[str, Any]:
        return {"vms": self.size.vms, "adapters": self.size.adapters, "domains": self.size.domains,
                "operation_instances": self.threads,
                "statuses": {r.property: r.status for r in self.rows},
                "details": {r.property: r.detail for r in self.rows if r.status != PROVED},
                "seconds": round(self.seconds, 3), "crosscheck": self.crosscheck or None,
                "counterexamples": dict(self.written), "matrices": self.matrices}


def combine(grid: Grid, outcomes: Sequence[SizeOutcome], scope: str) -> list[PropertyProof]:
    """One row per goal for the whole grid: PROVED (with ``scope``) when PROVED at every size; else the worst
    status, at the first size where it was reached, with that size's detail (and its lemmas)."""
    n = len(outcomes)
    every, of_n = ("the one size", "1 size") if n == 1 else (f"each of the {n} sizes", f"the {n} sizes")
    out: list[PropertyProof] = []
    for first in outcomes[0].rows:
        at = [(o.size, _row(o, first.property)) for o in outcomes]
        seconds = sum(r.seconds for _, r in at)
        if all(r.status == PROVED for _, r in at):
            out.append(PropertyProof(first.property, first.kind, PROVED,
                                     f"{first.detail.split(' (')[0]} at {every}", first.k, 0,
                                     first.lemmas, first.assumed, seconds=seconds, scope=scope))
            continue
        worst = max(SEVERITY[r.status] for _, r in at)
        size, row = next((s, r) for s, r in at if SEVERITY[r.status] == worst)
        proved = sum(1 for _, r in at if r.status == PROVED)
        first_bad = next(s for s, r in at if r.status != PROVED)
        also = "" if first_bad == size else f"; first not PROVED at size {first_bad.label()}"
        detail = f"at size {size.label()}: {row.detail} (PROVED at {proved} of {of_n}{also})"
        out.append(PropertyProof(first.property, first.kind, row.status, detail, row.k, row.bmc_depth, row.lemmas,
                                 row.assumed, cti=row.cti, trace=row.trace, seconds=seconds))
    return out


def _row(outcome: SizeOutcome, name: str) -> PropertyProof:
    """The size's row for goal ``name`` (a derived goal may exist at one size and not another)."""
    row = next((r for r in outcome.rows if r.property == name), None)
    return row or PropertyProof(name, "derived", UNKNOWN, "not a goal at this size", 0, 0)


__all__ = ["DIMENSIONS", "Grid", "Size", "SizeOutcome", "SizesError", "combine", "parse_sizes"]
