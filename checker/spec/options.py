"""Run options, resolved CLI > spec ``check:`` block > defaults into one frozen object."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

STRATEGIES = ("bfs", "dfs", "random")
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
    core: str = "auto"  # successor core: auto | python | native (checker.search.native.driver)
    quiet: bool = False
    progress_seconds: float = 3.0
    properties: tuple[str, ...] = ()  # empty = all
    skip: tuple[str, ...] = ()

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
    "core": "one of: auto|python|native",
}
