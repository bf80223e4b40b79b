"""Partitioned level-synchronous breadth-first search on every core (``--workers N``) or on Ray.

Each of W partitions owns the states whose fingerprint falls in it
(``parallel_part``). Per BFS level every partition expands its frontier and
sends each successor to its owner; owners deduplicate; no partition starts a
level before every partition has finished the one before, so depths are
exact. Order keys
(see ``parallel_part``) make counts, verdicts, findings, parents and so
traces identical to the single-process BFS.

Small searches stay in this process: the search runs as one "solo"
partition, in the single-process BFS's order, until a level's frontier
reaches ``FAN_OUT_FRONTIER`` states (and, with the default worker count,
until the model proves costly enough per transition: ``FAN_OUT_MIN_COST``);
only then are workers started and the prefix's visited keys and frontier
dealt out to them. A search that never meets both stays in one process.
Workers are forked processes (``parallel_procs``) or Ray actors
(``ray_backend``).

Limits: ``timeout`` and ``max-memory`` (each worker's share) are checked by
the workers inside a level, ``max-states`` at the end of each level once the
search has fanned out (so it may overshoot by up to one level), ``max-depth``
exactly; any of them stops every worker and the search is BOUNDED.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from checker.lang.model import Model
from checker.search.explore import Finding, Search, explore
from checker.search.limits import peak_mb
from checker.search.parallel_part import PREFIX_PID, REF_BITS, Candidate, Event, LevelReport, Partition, Reducer
from checker.spec.errors import SpecError
from checker.spec.options import Options

# Fan out once one level holds this many states. Measured on the 2-core machine (README, "Every core
# and beyond one machine"): starting two forked workers and dealing out the prefix costs 20-80 ms, and
# a level below this width is expanded in one process in about that time or less.
FAN_OUT_FRONTIER = 4096
# With the default worker count, fan out only if one transition costs at least this much CPU time in
# the prefix: partitioning adds about 1 us of CPU per transition (owner hash, box, transfer, merge),
# which a cheap model (the lock programs: 0.3-0.5 us) never earns back; a vfio_ap spec (2-6 us) does.
# An explicit --workers N or --ray always fans out.
FAN_OUT_MIN_COST = 2e-6


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_states: int | None
    max_mb: int | None
    deadline: float | None  # time.time() seconds: comparable across processes and machines
    stop: Any = None  # limits.StopRequest (signals): the coordinator checks it between levels


Progress = Callable[[int, int], None]  # (depth just completed, next frontier size)
LevelStep = Callable[[int, frozenset[str], bool, float | None], list[LevelReport]]


class Backend(Protocol):
    """W partitions somewhere else (processes, Ray actors)."""

    parts: int

    def run(self, level: int, frontier: int, m: Merge, limits: Limits, progress: Progress) -> tuple[int, int]:
        """Search from ``level`` (``frontier`` states) to the end or a limit, folding reports into ``m``;
        returns (deepest level expanded, frontier left)."""
        ...

    def lookup(self, pid: int, idx: int) -> tuple[int, int]: ...

    def lock_order(self) -> list[tuple[bytes, set[tuple[int, int, int]]]]: ...

    def peak_mb(self) -> float: ...

    def close(self) -> None: ...


BackendFactory = Callable[[Partition], Backend]


def resolve_workers(opts: Options) -> int:
    """``--workers`` / ``check: workers:``; by default one process. Measured on the 2-core machine
    (final-5threads, default reductions): the single process runs the whole search in C (0.2 s,
    1.3-2.7 M states/s), two partitioned workers, on the C successor function but with the loop,
    the exchange and the store in Python, take 3.4 s: the coordination costs more than a second
    core gives. ``--workers N`` asks for N partitions, ``--workers 0`` for one per core."""
    if opts.workers is None:
        return 1
    return opts.workers if opts.workers > 0 else (os.cpu_count() or 1)


def wants_partitions(opts: Options) -> bool:
    """Breadth-first with more than one worker, or on Ray: the partitioned search. Worker processes
    are forked; where fork does not exist (Windows) the search runs in one process."""
    if opts.ray is not None:
        return opts.strategy == "bfs"
    return opts.strategy == "bfs" and resolve_workers(opts) > 1 and "fork" in mp.get_all_start_methods()


def run_search(model: Model, opts: Options, reducer: Reducer | None = None, stop: Any = None,
               identity: str = "") -> tuple[Search, int, str]:
    """The search ``opts`` asks for, with how many workers ran it and where. ``reducer``: the
    reductions (checker.search.reduce) for either search; None: none. ``stop``: a signal's stop
    request; ``identity``: what a checkpoint must match (checkpoints run in one process)."""
    if opts.strategy != "bfs" and (opts.ray is not None or (opts.workers or 1) > 1):
        flag = "--ray" if opts.ray is not None else "--workers"
        raise SpecError("", flag, f"the partitioned search is breadth-first; --strategy {opts.strategy} "
                                  "runs in one process (use --workers 1)")
    if opts.checkpoint or opts.resume or not wants_partitions(opts):
        return explore(model, opts, stop, identity, reducer), 1, "in-process"  # type: ignore[arg-type]
    if opts.ray is not None:
        from checker.search.ray_backend import ray_factory

        return partitioned_bfs(model, opts, ray_factory(model, opts), "ray", FAN_OUT_FRONTIER, reducer=reducer,
                               stop=stop)
    from checker.search.native.driver import use_native_successors
    from checker.search.parallel_procs import process_factory

    if opts.core != "python":  # forked workers inherit the C successor function and race checks
        use_native_successors(model, opts)
    min_cost = FAN_OUT_MIN_COST if opts.workers == 0 else None
    return partitioned_bfs(model, opts, process_factory(resolve_workers(opts)), "processes", FAN_OUT_FRONTIER,
                           min_cost, reducer, stop)


class Merge:
    """The coordinator's view: totals, the smallest candidate per property, deadlock info."""

    def __init__(self) -> None:
        self.states = 0
        self.transitions = 0
        self.deadlocks = 0
        self.candidates: dict[str, Candidate] = {}
        self.deadlock_info: list[tuple[Event, object]] = []
        self.limit = ""
        self.pending = 0
        self.unseen = False
        self.mb = 0.0

    def add(self, reports: list[LevelReport]) -> int:
        """Fold one level's reports in; returns the next frontier's size."""
        new = 0
        self.mb = 0.0
        for r in reports:
            new += r.new_states
            self.transitions += r.transitions
            self.deadlocks += r.deadlocks
            self.deadlock_info.extend(r.deadlock_info)
            self.pending += r.pending
            self.unseen = self.unseen or r.unseen
            self.limit = self.limit or r.limit
            self.mb += r.mb
            for prop, c in r.candidates.items():
                old = self.candidates.get(prop)
                if old is None or c.event < old.event:
                    self.candidates[prop] = c
        self.states += new
        return new

    def found(self) -> frozenset[str]:
        return frozenset(self.candidates)


class _Progress:
    def __init__(self, opts: Options, t0: float) -> None:
        self.opts, self.t0, self.last = opts, t0, t0

    def level(self, m: Merge, depth: int, frontier: int, workers: int) -> None:
        now = time.perf_counter()
        if self.opts.quiet or now < self.last + self.opts.progress_seconds:
            return
        self.last = now
        rate = m.states / max(now - self.t0, 1e-9)
        print(f"apcheck: {m.states:,} states, {m.transitions:,} transitions, depth {depth}, "
              f"frontier {frontier:,}, {rate:,.0f} states/s, {workers} worker(s)", file=sys.stderr, flush=True)


def drive(step: LevelStep, level: int, frontier: int, m: Merge, limits: Limits, progress: Progress, *,
          whole_levels: bool, stop_at: Callable[[int], bool] | None = None) -> tuple[int, int, int]:
    """Run levels with ``step`` until the frontier is empty, a limit, or ``stop_at(frontier)``;
    returns (deepest level expanded, next level, frontier left).

    ``whole_levels``: the max-states, timeout and memory checks happen here between levels (the
    partitions' own checks cover timeout and memory inside a level)."""
    depth = max(level - 1, 0)
    while frontier:
        further = level < limits.max_depth
        if stop_at is not None and further and stop_at(frontier):
            break
        depth = level
        frontier = m.add(step(level, m.found(), further, limits.deadline))
        level += 1
        if limits.stop is not None and limits.stop.reason:  # SIGINT/SIGTERM: stop after this level
            m.limit = m.limit or limits.stop.reason
        progress(depth, frontier)
        if not further:  # the states at the bound were checked, not expanded
            m.limit = m.limit or ("max-depth" if m.unseen else "")
            frontier = 0
        if m.limit or not frontier:
            break
        if not whole_levels:
            continue
        if limits.max_states is not None and m.states >= limits.max_states:
            m.limit = "max-states"
        elif limits.deadline is not None and time.time() > limits.deadline:
            m.limit = "timeout"
        elif limits.max_mb is not None and m.mb > limits.max_mb:
            m.limit = "memory"
        if m.limit:
            break
    return depth, level, frontier


class _Solo:
    """The in-process prefix's levels, and the decision to fan out: a wide enough level, and
    (``min_cost``) enough CPU time per transition so far."""

    def __init__(self, prefix: Partition, width: int, min_cost: float | None) -> None:
        self.prefix, self.width, self.min_cost = prefix, width, min_cost
        self.cpu, self.transitions = 0.0, 0

    def step(self, level: int, found: frozenset[str], further: bool, deadline: float | None) -> list[LevelReport]:
        t = time.process_time()
        rep = self.prefix.expand_solo(level, found, further, deadline)
        self.cpu += time.process_time() - t
        self.transitions += rep.transitions
        return [rep]

    def fan_out(self, frontier: int) -> bool:
        if frontier < self.width:
            return False
        return self.min_cost is None or (self.transitions > 0 and self.cpu >= self.min_cost * self.transitions)


def partitioned_bfs(model: Model, opts: Options, factory: BackendFactory, backend_name: str,
                    fan_out: int, min_cost: float | None = None,
                    reducer: Reducer | None = None, stop: Any = None) -> tuple[Search, int, str]:
    """The search; returns it with the number of workers that ran and the backend that ran them
    ("in-process" when the search never fanned out). ``stop``: a limits.StopRequest set by a signal
    handler; the search ends after the level it is in, BOUNDED, keeping what it found."""
    t0 = time.perf_counter()
    limits = Limits(opts.max_depth if opts.max_depth is not None else 1 << 62, opts.max_states,
                    opts.max_memory_mb, time.time() + opts.timeout if opts.timeout else None, stop)
    prefix = Partition(model, opts, PREFIX_PID, 1, reducer)
    prefix.seed_initial()
    m = Merge()
    m.add([prefix.take_report()])
    m.states = prefix.store_size()
    backend: Backend | None = None
    show = _Progress(opts, t0)
    depth = 0
    try:
        # in this process, in the single-process BFS's order, until a level is wide enough
        solo = _Solo(prefix, fan_out, min_cost)
        depth, level, frontier = drive(solo.step, 0, prefix.frontier_size(), m, limits,
                                       lambda d, f: show.level(m, d, f, 1), whole_levels=False,
                                       stop_at=solo.fan_out)
        if frontier and not m.limit:
            backend = factory(prefix)
            parts = backend.parts
            if hasattr(backend, "stop"):
                backend.stop = stop
            depth, frontier = backend.run(level, frontier, m, limits, lambda d, f: show.level(m, d, f, parts))
            if stop is not None and stop.reason:
                m.limit = stop.reason
        if m.limit:
            m.pending += frontier
        search = _search(model, opts, prefix, backend, m, depth, t0)
    except MemoryError:  # out of memory in this process: stop cleanly, keep the counts
        m.limit = "memory"
        search = _search(model, opts, prefix, backend, m, depth, t0)
    finally:
        if backend is not None:
            backend.close()
    if backend is None:
        return search, 1, "in-process"
    return search, backend.parts, backend_name


def _path(prefix: Partition, backend: Backend | None, ref: int) -> list[int]:
    """Actions from the initial state to the state stored at ``ref``, walking parents across partitions."""
    acts: list[int] = []
    mask = (1 << REF_BITS) - 1
    while True:
        pid, idx = ref >> REF_BITS, ref & mask
        if pid == PREFIX_PID:
            ref, a = prefix.lookup(idx)
        else:
            assert backend is not None
            ref, a = backend.lookup(pid, idx)
        if ref < 0:
            break
        acts.append(a)
    acts.reverse()
    return acts


def _search(model: Model, opts: Options, prefix: Partition, backend: Backend | None, m: Merge, depth: int,
            t0: float) -> Search:
    """A Search as run.py reads it: the parent arrays hold just the paths to the findings."""
    search = Search(array("i"), array("I"), store="fingerprint" if prefix.fingerprints else "exact")
    for prop, c in sorted(m.candidates.items(), key=lambda pc: pc[1].event):  # the order one worker records
        search.parent.append(-1)
        search.via.append(0)
        for a in _path(prefix, backend, c.ref):
            search.parent.append(len(search.parent) - 1)
            search.via.append(a)
        search.findings[prop] = Finding(len(search.parent) - 1, c.state, c.action, c.code, c.message)
    search.deadlock_info = [info for _, info in sorted(m.deadlock_info, key=lambda ei: ei[0])]
    search.states, search.transitions, search.deadlock_states = m.states, m.transitions, m.deadlocks
    search.max_depth = depth
    search.limit = m.limit
    search.complete = not m.limit and not m.pending
    peak = peak_mb()
    if backend is not None:
        _merge_lock_order(model, backend.lock_order())
        peak += backend.peak_mb()
    search.peak_mb = peak
    search.seconds = time.perf_counter() - t0
    return search


def _merge_lock_order(model: Model, parts: list[tuple[bytes, set[tuple[int, int, int]]]]) -> None:
    """Fired flags and run-time lock-order edges from every worker, into this process's compiled model."""
    comp = getattr(model, "comp", None)
    if comp is None:
        return
    for fired, dynamic in parts:
        for i, f in enumerate(fired):
            if f:
                comp.fired[i] = 1
        comp.dynamic_edges.update(dynamic)
