"""The Model protocol the explorers see (the shape of Stateright's ``Model``).

States are non-negative ints (packed fields). ``successors(s)`` returns
``(action, next)`` pairs in a fixed order; a negative ``next`` (``-1-k``)
means the action fired into safety violation ``k`` (``violation(k)``).
``actions``/``next_state`` are derived from it for tools that want them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StateCheck:
    """A named predicate over states: an ``always`` invariant or a ``sometimes`` witness."""

    name: str
    pred: Callable[[int], bool]


class Model(Protocol):
    def init_states(self) -> Sequence[int]: ...

    def successors(self, state: int) -> list[tuple[int, int]]: ...

    def violation(self, code: int) -> tuple[str, str]:
        """(property, message) of a violation code."""
        ...

    def is_done(self, state: int) -> bool:
        """Every thread finished: a terminal state that is not a deadlock."""
        ...

    def invariants(self) -> Sequence[StateCheck]: ...

    def witnesses(self) -> Sequence[StateCheck]: ...

    def terminal_checks(self) -> Sequence[StateCheck]:
        """Checked on terminal states (e.g. no leaked object); failing ones are violations."""
        ...

    def state_checks(self) -> Sequence[tuple[str, Callable[[int, list[tuple[int, int]]], str | None]]]:
        """Per-state checks needing the enabled transitions (data races): (property, fn) -> message."""
        ...

    def on_deadlock(self, state: int) -> object:
        """Called for every deadlock state; the returned value is collected (wait cycles)."""
        ...

    @property
    def state_bits(self) -> int: ...


def actions(model: Model, state: int) -> list[int]:
    return [a for a, _ in model.successors(state)]


def next_state(model: Model, state: int, action: int) -> int | None:
    for a, n in model.successors(state):
        if a == action:
            return n
    return None
