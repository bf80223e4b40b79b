"""The partitioned search's workers as Ray actors (``apcheck check SPEC --ray [ADDRESS]``).

Optional: needs the extra ``apcheck[ray]``. One actor per partition. An
actor cannot inherit the compiled successor function, so it rebuilds the
model from the Program (plain data, picklable) and compiles it itself; the
generated code is the same, so successors, keys and owners are the same.
Per level the driver asks every actor to expand (one returned object per
owner, ``num_returns=W``) and hands each owner the references to its boxes:
boxes go from actor to actor through Ray's object store, never through the
driver.

No address: start a local Ray instance (or use the one this process already
started, as the tests do). An address (``auto``, ``ray://head:10001``,
``head:6379``) connects to a running cluster; every node needs apcheck
installed (README, "Every core and beyond one machine"). The number of
actors is ``--workers`` if given, else the cluster's CPU count.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

from checker.lang.model import Model
from checker.search.limits import peak_mb
from checker.search.parallel import Backend, BackendFactory, Limits, Merge, Progress, drive
from checker.search.parallel_part import Box, LevelReport, Partition, Reducer, Seed
from checker.spec.errors import SpecError
from checker.spec.options import Options


def import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise SpecError("", "--ray", "needs the ray package: pip install 'apcheck[ray]'") from None


class PartitionActor:
    """One partition inside a Ray actor (wrapped with ``ray.remote`` at run time: ray stays optional)."""

    def __init__(self, program: Any, opts: Options, pid: int, parts: int, seed: Seed, reducer: Reducer | None) -> None:
        from checker.search.progmodel import ProgramModel

        model = ProgramModel(program, opts.properties, opts.skip)
        if opts.core != "python":  # the C successor function and race checks, compiled on this node
            from checker.search.native.driver import use_native_successors

            use_native_successors(model, replace(opts, core="native"))
        self.part = Partition(model, opts, pid, parts, reducer)  # the reducer must pickle to reach the actor
        self.part.seed_from(seed)

    def expand(self, level: int, found: frozenset[str], further: bool, deadline: float | None) -> tuple[Box, ...]:
        boxes = tuple(self.part.expand(level, found, further, deadline))
        return boxes if len(boxes) > 1 else boxes[0]  # type: ignore[return-value]  # num_returns=1: the object

    def absorb(self, level: int, found: frozenset[str], further: bool, *boxes: Box) -> LevelReport:
        return self.part.absorb(level, found, list(boxes), probe=not further)

    def lookup(self, idx: int) -> tuple[int, int]:
        return self.part.lookup(idx)

    def lock_order(self) -> tuple[bytes, set[tuple[int, int, int]]]:
        comp: Any = getattr(self.part.model, "comp", None)
        return (bytes(comp.fired), set(comp.dynamic_edges)) if comp is not None else (b"", set())

    def peak_mb(self) -> float:
        return peak_mb()


class RayBackend:
    def __init__(self, ray: Any, prefix: Partition, program: Any, opts: Options, parts: int, started: bool) -> None:
        self.ray, self.parts, self.started = ray, parts, started
        actor = ray.remote(PartitionActor)
        self.actors = [actor.remote(program, opts, pid, parts, prefix.share(pid, parts), prefix.reducer)
                       for pid in range(parts)]

    def run(self, level: int, frontier: int, m: Merge, limits: Limits, progress: Progress) -> tuple[int, int]:
        depth, _, left = drive(self.level, level, frontier, m, limits, progress, whole_levels=True)
        return depth, left

    def level(self, level: int, found: frozenset[str], further: bool, deadline: float | None) -> list[LevelReport]:
        w = self.parts
        out = [a.expand.options(num_returns=w).remote(level, found, further, deadline) for a in self.actors]
        if w == 1:
            out = [[r] for r in out]
        reports: list[LevelReport] = self.ray.get(
            [a.absorb.remote(level, found, further, *[out[src][dest] for src in range(w)])
             for dest, a in enumerate(self.actors)])
        return reports

    def lookup(self, pid: int, idx: int) -> tuple[int, int]:
        out: tuple[int, int] = self.ray.get(self.actors[pid].lookup.remote(idx))
        return out

    def lock_order(self) -> list[tuple[bytes, set[tuple[int, int, int]]]]:
        out: list[tuple[bytes, set[tuple[int, int, int]]]] = self.ray.get([a.lock_order.remote() for a in self.actors])
        return out

    def peak_mb(self) -> float:
        return float(sum(self.ray.get([a.peak_mb.remote() for a in self.actors])))

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.started:
            self.ray.shutdown()


def ray_factory(model: Model, opts: Options) -> BackendFactory:
    """Checks that ray is importable now (a usage error before the search starts); connects on fan-out."""
    ray = import_ray()
    program = getattr(model, "program", None)
    if program is None:
        raise SpecError("", "--ray", "runs Program models only")

    def make(prefix: Partition) -> Backend:
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=opts.ray or None, include_dashboard=False, logging_level="ERROR",
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise SpecError("", "--ray", f"cannot start or reach Ray at {opts.ray or 'a local instance'}: {e}") \
                    from None
        parts = opts.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        return RayBackend(ray, prefix, program, opts, parts, started)

    return make
