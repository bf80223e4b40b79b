"""Run options, resolved CLI > spec ``check:`` block > defaults into one frozen object."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

STRATEGIES = ("bfs", "dfs", "random")
REDUCTIONS = ("none", "por", "symmetry", "all")  # all: every reduction sound for the selected properties
CORES = ("auto", "python", "native")  # checker.search.native.driver


@dataclass(frozen=True)
class Options:
    strategy: str = "bfs"
    max_states: int | None = None
    max_depth: int | None = None
    timeout: float | None = None  # seconds
    max_memory_mb: int | None = None  # stop cleanly (BOUNDED) past this resident size
    seed: int = 0
    walks: int = 1000  # random simulation: number of walks
    walk_depth: int = 200  # random simulation: steps per walk
    exact: bool = False  # store whole states even when they are wider than 128 bits
    reduction: str = "all"  # none | por (partial-order) | symmetry | all (checker.search.reduce)
    core: str = "auto"  # successor core: auto | python | native (checker.search.native.driver)
    quiet: bool = False
    progress_seconds: float = 3.0
    properties: tuple[str, ...] = ()  # empty = all
    skip: tuple[str, ...] = ()
    checkpoint: str | None = None  # save the search to this file periodically and when it stops short
    checkpoint_seconds: float = 60.0  # between two periodic checkpoints
    resume: str | None = None  # continue the search saved in this checkpoint
    workers: int | None = None  # partitioned BFS over this many processes; None: one; 0: every core
    ray: str | None = None  # run the partitioned BFS on Ray: a cluster address, or "" to start a local instance

    def with_overrides(self, **kw: Any) -> Options:
        """Apply non-None overrides (CLI flags)."""
        known = {f.name for f in fields(self)}
        clean = {k: v for k, v in kw.items() if v is not None and k in known}
        return replace(self, **clean)


OPTION_TYPES: dict[str, str] = {
    "strategy": "one of: bfs|dfs|random",
    "max_states": "int",
    "max_depth": "int",
    "timeout": "number",
    "max_memory_mb": "int",
    "seed": "int",
    "walks": "int",
    "walk_depth": "int",
    "exact": "bool",
    "reduction": "one of: none|por|symmetry|all",
    "workers": "int",
    "core": "one of: auto|python|native",
}
