"""State-space reductions: partial-order (ample sets) and symmetry (canonical forms).

The explorers, sequential or partitioned, see one object, a ``Reducer``:

- ``select(state, succs)``: the subset of ``succs`` (the full successor list of
  ``state``, as ``Model.successors`` returns it) to expand, order preserved;
- ``canonical(state)``: the representative of ``state``'s symmetry class
  (identity when symmetry reduction is off);
- ``describe()``: what ran, for the JSON ``stats``.

Both ``select`` and ``canonical`` are functions of the state alone, never of
the visited store or of the search order, so a partitioned or parallel search
visits exactly the states a sequential one does and reports identical counts.

How an explorer uses it (``explore.bfs`` does exactly this):

1. ``succs = model.successors(s)``; the per-state checks (deadlock when empty,
   data races, leak checks) see this full list;
2. ``succs = reducer.select(s, succs)``; record the violations (``n < 0``) in it
   and count its transitions;
3. for each successor ``n >= 0``: ``n = reducer.canonical(n)`` before the
   visited lookup (hash-partition on the canonical state). Initial states are
   their own canonical forms (symmetry checks it).

Traces from a symmetric search are made concrete in ``checker.search.run``
(``symmetry.concretize``). ``describe()["ample_states"]`` counts what one
process selected; a partitioned search sums its workers'.
"""

from __future__ import annotations

from typing import Protocol


class Reducer(Protocol):
    def select(self, state: int, succs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The successors of ``state`` to expand (a sub-list of ``succs``, order preserved)."""
        ...

    def canonical(self, state: int) -> int:
        """The symmetry representative of ``state`` (``state`` itself without symmetry)."""
        ...

    def describe(self) -> dict[str, object]:
        """Which reductions ran and which properties were searched unreduced, and why."""
        ...


class NoReduction:
    """The identity reducer: every successor expanded, every state its own representative."""

    def select(self, state: int, succs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return succs

    def canonical(self, state: int) -> int:
        return state

    def describe(self) -> dict[str, object]:
        return {"requested": "none", "ran": [], "skipped": {}, "unreduced": {}, "shortest_traces": True}



def reducer_for(model: object, options: object) -> Reducer:
    """The reducer a search of ``model`` (a ProgramModel) under ``options`` uses.

    Every explorer, sequential or partitioned, builds its reducer here so they agree."""
    from checker.search.reduce.combined import build_reducer

    return build_reducer(model, options)

__all__ = ["NoReduction", "Reducer", "reducer_for"]
