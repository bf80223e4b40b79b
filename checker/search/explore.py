"""Explorers: breadth-first (default; shortest counterexamples), depth-first, random walks.

The visited store holds exact states when they fit in 128 bits (or with
``--exact``), otherwise xxh3_64 fingerprints of their bytes. Parents and the
action taken are kept in flat arrays indexed by discovery order, so a trace is
rebuilt by walking parents and replaying actions (``run.replay``).
"""

from __future__ import annotations

import random
import resource
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import xxhash

from checker.lang.model import Model
from checker.spec.options import Options

EXACT_BITS = 128


@dataclass
class Finding:
    """A violation or witness: the state index where it shows, and the firing action if any."""

    index: int
    state: int
    action: int = -1  # the action that fired into the violation (-1: the state itself)
    code: int = -1  # violation code for action checks
    message: str = ""


@dataclass
class Search:
    parent: array  # type: ignore[type-arg]
    via: array  # type: ignore[type-arg]
    states: int = 0
    transitions: int = 0
    deadlock_states: int = 0
    max_depth: int = 0
    seconds: float = 0.0
    complete: bool = False
    limit: str = ""
    store: str = "exact"
    findings: dict[str, Finding] = field(default_factory=dict)  # property -> first (shortest in BFS)
    deadlock_info: list[object] = field(default_factory=list)
    peak_mb: float = 0.0


def _peak_mb() -> float:
    """This process's own resident high-water mark (VmHWM). ru_maxrss is not used first:
    after vfork + exec it carries the parent's peak into a child."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _arrays(model: Model) -> tuple[array, array]:  # type: ignore[type-arg]
    """Parent indices (int32: up to 2**31 states) and action ids in the narrowest type that fits."""
    n = getattr(model, "action_count", 1 << 32)
    return array("i"), array("B" if n <= 0xFF else "H" if n <= 0xFFFF else "I")


def _current_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return _peak_mb()


def key_function(bits: int, exact: bool) -> Callable[[int], int] | None:
    """None: the state is its own key. Else: xxh3_64 over its little-endian bytes."""
    if exact or bits <= EXACT_BITS:
        return None
    nbytes = (bits + 7) // 8
    h = xxhash.xxh3_64_intdigest

    def fp(s: int) -> int:
        return h(s.to_bytes(nbytes, "little"))

    return fp


class _Progress:
    def __init__(self, opts: Options) -> None:
        self.quiet = opts.quiet
        self.every = opts.progress_seconds
        self.t0 = time.perf_counter()
        self.next = self.t0 + self.every

    def maybe(self, states: int, transitions: int, depth: int, frontier: int) -> None:
        now = time.perf_counter()
        if self.quiet or now < self.next:
            return
        self.next = now + self.every
        rate = states / max(now - self.t0, 1e-9)
        print(f"apcheck: {states:,} states, {transitions:,} transitions, depth {depth}, "
              f"frontier {frontier:,}, {rate:,.0f} states/s", file=sys.stderr, flush=True)


class _Recorder:
    """Records the first finding per property and evaluates state predicates."""

    def __init__(self, model: Model, search: Search) -> None:
        self.model, self.search = model, search
        self.invs = list(model.invariants())
        self.wits = list(model.witnesses())
        self.terms = list(model.terminal_checks())
        self.state_checks = list(model.state_checks())
        self.deadlocks: set[int] = set()

    def record(self, prop: str, f: Finding) -> None:
        if prop not in self.search.findings:
            self.search.findings[prop] = f

    def new_state(self, idx: int, s: int) -> None:
        if self.invs:
            for c in list(self.invs):
                if not c.pred(s):
                    self.record(c.name, Finding(idx, s))
                    self.invs.remove(c)
        if self.wits:
            for c in list(self.wits):
                if c.pred(s):
                    self.record(c.name, Finding(idx, s))
                    self.wits.remove(c)

    def expanded(self, idx: int, s: int, out: list[tuple[int, int]]) -> None:
        """Called for states with no plain successor or with special checks."""
        for prop, fn in self.state_checks:
            if prop in self.search.findings:
                continue
            msg = fn(s, out)
            if msg is not None:
                self.record(prop, Finding(idx, s, message=msg))
        if not out:
            if self.model.is_done(s):
                for c in self.terms:
                    if not c.pred(s):
                        self.record(c.name, Finding(idx, s))
            elif s not in self.deadlocks:  # random walks can meet one deadlock state many times
                self.deadlocks.add(s)
                self.search.deadlock_states += 1
                self.search.deadlock_info.append(self.model.on_deadlock(s))
                self.record("deadlock", Finding(idx, s))

    def violation(self, idx: int, s: int, a: int, code: int) -> None:
        prop, msg = self.model.violation(code)
        self.record(prop, Finding(idx, s, a, code, msg))


def _start(model: Model, opts: Options) -> tuple[Search, _Recorder, Callable[[int], int] | None, set[int], list[int]]:
    """Store, recorder and the distinct initial states (already recorded)."""
    keyf = key_function(model.state_bits, opts.exact)
    search = Search(*_arrays(model), store="exact" if keyf is None else "fingerprint")
    rec = _Recorder(model, search)
    seen: set[int] = set()
    inits = []
    for s in model.init_states():
        k = s if keyf is None else keyf(s)
        if k not in seen:
            seen.add(k)
            search.parent.append(-1)
            search.via.append(0)
            inits.append(s)
            rec.new_state(len(search.parent) - 1, s)
    return search, rec, keyf, seen, inits


def _finish(search: Search, t0: float, limit: str, pending: int) -> Search:
    search.states = len(search.parent)
    search.complete = not limit and not pending
    search.limit = limit
    search.seconds = time.perf_counter() - t0
    search.peak_mb = _peak_mb()
    return search


def bfs(model: Model, opts: Options) -> Search:
    t0 = time.perf_counter()
    search, rec, keyf, seen, inits = _start(model, opts)
    parent, via = search.parent, search.via
    queue: deque[int] = deque(inits)
    succ = model.successors
    seen_add, q_pop, q_app, p_app, v_app = seen.add, queue.popleft, queue.append, parent.append, via.append
    special = bool(rec.state_checks)
    check_new = bool(rec.invs or rec.wits)
    max_states = opts.max_states or (1 << 62)
    max_depth = opts.max_depth if opts.max_depth is not None else (1 << 62)
    deadline = t0 + opts.timeout if opts.timeout else None
    max_mb = opts.max_memory_mb
    prog = _Progress(opts)
    cur = -1
    depth = 0
    level_end = len(parent)
    transitions = 0
    limit = ""
    capped = opts.max_states is not None
    try:
        while queue:
            s = q_pop()
            cur += 1
            if cur == level_end:
                depth += 1
                level_end = len(parent)
            out = succ(s)
            transitions += len(out)
            if special or not out:
                rec.expanded(cur, s, out)
            if depth >= max_depth:
                # the frontier at the bound: checked, not expanded; bounded only if it leads further
                if not limit and any(n >= 0 and (n if keyf is None else keyf(n)) not in seen for _, n in out):
                    limit = "max-depth"
                continue
            if capped and len(parent) >= max_states:
                limit = "max-states"
                break
            for a, n in out:
                if n < 0:
                    rec.violation(cur, s, a, -1 - n)
                    continue
                k = n if keyf is None else keyf(n)
                if k in seen:
                    continue
                seen_add(k)
                p_app(cur)
                v_app(a)
                q_app(n)
                if check_new:
                    rec.new_state(len(parent) - 1, n)
                    check_new = bool(rec.invs or rec.wits)
            if cur & 0xFFF == 0:
                if deadline is not None and time.perf_counter() > deadline:
                    limit = "timeout"
                    break
                if max_mb is not None and cur & 0xFFFF == 0 and _current_mb() > max_mb:
                    limit = "memory"
                    break
                prog.maybe(len(parent), transitions, depth, len(queue))
    except MemoryError:  # out of memory: stop cleanly, keep what was found
        limit = "memory"
    search.transitions = transitions
    search.max_depth = max(search.max_depth, depth)
    return _finish(search, t0, limit, len(queue))


def dfs(model: Model, opts: Options) -> Search:
    """Depth-first with an explicit stack; traces are valid but not shortest."""
    t0 = time.perf_counter()
    search, rec, keyf, seen, inits = _start(model, opts)
    parent, via = search.parent, search.via
    stack: list[tuple[int, int, int]] = [(s, i, 0) for i, s in enumerate(inits)]  # (state, index, depth)
    max_states = opts.max_states or (1 << 62)
    max_depth = opts.max_depth if opts.max_depth is not None else (1 << 62)
    deadline = t0 + opts.timeout if opts.timeout else None
    prog = _Progress(opts)
    limit, steps = "", 0
    try:
        while stack:
            s, idx, d = stack.pop()
            search.max_depth = max(search.max_depth, d)
            out = model.successors(s)
            search.transitions += len(out)
            if rec.state_checks or not out:
                rec.expanded(idx, s, out)
            if d >= max_depth:
                if any(n >= 0 and (n if keyf is None else keyf(n)) not in seen for _, n in out):
                    limit = "max-depth"
                continue
            if len(parent) >= max_states:
                limit = "max-states"
                stack.append((s, idx, d))
                break
            for a, n in reversed(out):
                if n < 0:
                    rec.violation(idx, s, a, -1 - n)
                    continue
                k = n if keyf is None else keyf(n)
                if k in seen:
                    continue
                seen.add(k)
                parent.append(idx)
                via.append(a)
                stack.append((n, len(parent) - 1, d + 1))
                rec.new_state(len(parent) - 1, n)
            steps += 1
            if steps & 0xFFF == 0:
                if deadline is not None and time.perf_counter() > deadline:
                    limit = "timeout"
                    break
                prog.maybe(len(parent), search.transitions, d, len(stack))
    except MemoryError:  # out of memory: stop cleanly, keep what was found
        limit = "memory"
    return _finish(search, t0, limit, len(stack))


def random_walks(model: Model, opts: Options) -> Search:
    """Seeded random simulation: ``walks`` walks of up to ``walk_depth`` steps. Never exhaustive."""
    t0 = time.perf_counter()
    rng = random.Random(opts.seed)
    search = Search(*_arrays(model), store="exact")
    rec = _Recorder(model, search)
    parent, via = search.parent, search.via
    distinct: set[int] = set()
    deadline = t0 + opts.timeout if opts.timeout else None
    inits = list(model.init_states())
    depth_cap = opts.max_depth if opts.max_depth is not None else opts.walk_depth
    for _ in range(opts.walks):
        s = inits[rng.randrange(len(inits))]
        parent.append(-1)
        via.append(0)
        idx = len(parent) - 1
        distinct.add(s)
        rec.new_state(idx, s)
        for d in range(depth_cap):
            out = model.successors(s)
            search.transitions += len(out)
            if rec.state_checks or not out:
                rec.expanded(idx, s, out)
            if not out:
                break
            a, n = out[rng.randrange(len(out))]
            if n < 0:
                rec.violation(idx, s, a, -1 - n)
                break
            parent.append(idx)
            via.append(a)
            idx = len(parent) - 1
            s = n
            distinct.add(s)
            rec.new_state(idx, s)
            search.max_depth = max(search.max_depth, d + 1)
        if deadline is not None and time.perf_counter() > deadline:
            break
    _finish(search, t0, "random simulation", 0)
    search.states = len(distinct)  # walks revisit states; count each once
    return search


def path_to(search: Search, index: int) -> list[int]:
    """Actions from an initial state to the state with discovery index ``index``."""
    acts: list[int] = []
    while search.parent[index] != -1:
        acts.append(search.via[index])
        index = search.parent[index]
    acts.reverse()
    return acts


def explore(model: Model, opts: Options) -> Search:
    if opts.core != "python":  # the C core (checker.search.native): a native BFS, or C successors
        from checker.search.native.driver import explore_native

        native = explore_native(model, opts, bfs)
        if native is not None:
            return native
    if opts.strategy == "dfs":
        return dfs(model, opts)
    if opts.strategy == "random":
        return random_walks(model, opts)
    return bfs(model, opts)
