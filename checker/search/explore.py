"""Explorers: breadth-first (default; shortest counterexamples), depth-first, random walks.

The visited store holds exact states when they fit in 128 bits (or with
``--exact``), otherwise xxh3_64 fingerprints of their bytes. Parents and the
action taken are kept in flat arrays indexed by discovery order, so a trace is
rebuilt by walking parents and replaying actions (``run.replay``).
"""

from __future__ import annotations

import random
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import xxhash

from checker.lang.model import Model
from checker.search import checkpoint as ckpt
from checker.search.limits import POLL_EVERY, Limits, StopRequest, peak_mb
from checker.search.reduce import Reducer
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


def _arrays(model: Model) -> tuple[array, array]:  # type: ignore[type-arg]
    """Parent indices (int32: up to 2**31 states) and action ids in the narrowest type that fits."""
    n = getattr(model, "action_count", 1 << 32)
    return array("i"), array("B" if n <= 0xFF else "H" if n <= 0xFFFF else "I")


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

    def beyond(self, idx: int, s: int, out: list[tuple[int, int]], seen_key: Callable[[int], bool]) -> bool:
        """A state on the depth bound: its transitions are checked but their targets are not stored.

        A violation one step past the bound is still a violation of a reachable state; the
        finding names the firing action, so its trace ends with that step. True when some
        successor is new, i.e. the bound really cut the search."""
        cut = False
        for a, n in out:
            if n < 0:
                self.violation(idx, s, a, -1 - n)
                continue
            if seen_key(n):
                continue
            cut = True
            self.past(idx, s, a, n)
        return cut

    def past(self, idx: int, s: int, a: int, n: int) -> None:
        """A new successor ``n`` one step past the depth bound, by action ``a`` of state ``s``: the
        invariants it breaks and the witnesses it satisfies are findings of that step."""
        for c in list(self.invs):
            if not c.pred(n):
                self.record(c.name, Finding(idx, s, a))
                self.invs.remove(c)
        for c in list(self.wits):
            if c.pred(n):
                self.record(c.name, Finding(idx, s, a))
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
    search.peak_mb = peak_mb()
    return search


class _Checkpoints:
    """Saves the search every ``opts.checkpoint_seconds`` and when it stops short; restores it."""

    def __init__(self, opts: Options, strategy: str, identity: str, model: Model) -> None:
        self.path, self.every = opts.checkpoint, opts.checkpoint_seconds
        self.strategy, self.identity = strategy, identity
        self.next = time.perf_counter() + self.every
        self.key_bytes = 8 if key_function(model.state_bits, opts.exact) is not None \
            else max(1, (model.state_bits + 7) // 8)
        self.state_bytes = max(1, (model.state_bits + 7) // 8)
        self.take: Callable[[], ckpt.Snapshot] | None = None

    def snapshot(self, search: Search, rec: _Recorder, seen: set[int], pending: list[int],
                 counters: dict[str, int], index: list[int] | None = None,
                 depth: list[int] | None = None) -> ckpt.Snapshot:
        f = [{"property": p, "index": x.index, "state": x.state, "action": x.action, "code": x.code,
              "message": x.message} for p, x in search.findings.items()]
        info = [sorted(str(c) for c in x) if isinstance(x, frozenset) else [] for x in search.deadlock_info]
        counters = dict(counters, deadlock_states=search.deadlock_states, max_depth=search.max_depth)
        return ckpt.Snapshot(self.strategy, self.identity, search.parent, search.via, list(seen), pending,
                             index or [], depth or [], counters, f, info, sorted(rec.deadlocks),
                             [c.name for c in rec.invs + rec.wits], self.key_bytes, self.state_bytes)

    def maybe_save(self) -> None:
        if self.path and self.take is not None and time.perf_counter() >= self.next:
            self.save()

    def save(self) -> None:
        if self.path and self.take is not None:
            ckpt.save(self.path, self.take())
            self.next = time.perf_counter() + self.every

    def load(self, path: str, search: Search, rec: _Recorder, seen: set[int]) -> ckpt.Snapshot:
        snap = ckpt.load(path, self.identity, self.strategy)
        if snap.key_bytes != self.key_bytes or snap.state_bytes != self.state_bytes \
                or snap.via.typecode != search.via.typecode:
            raise ckpt.CheckpointError("it was saved for a model of another size")
        search.parent, search.via = snap.parent, snap.via
        seen.clear()
        seen.update(snap.seen)
        search.findings = {f["property"]: Finding(f["index"], f["state"], f["action"], f["code"], f["message"])
                           for f in snap.findings}
        search.deadlock_info = [frozenset(x) for x in snap.deadlock_info]
        search.deadlock_states = snap.counters.get("deadlock_states", 0)
        search.max_depth = snap.counters.get("max_depth", 0)
        rec.deadlocks = set(snap.deadlocks)
        left = set(snap.unchecked)
        rec.invs = [c for c in rec.invs if c.name in left]
        rec.wits = [c for c in rec.wits if c.name in left]
        return snap


def _counter(snap: ckpt.Snapshot, name: str) -> int:
    if name not in snap.counters:
        raise ckpt.CheckpointError(f"corrupt header (no {name!r})")
    return snap.counters[name]


def bfs(model: Model, opts: Options, stop: StopRequest | None = None, identity: str = "",
        reducer: Reducer | None = None) -> Search:
    t0 = time.perf_counter()
    search, rec, keyf, seen, inits = _start(model, opts)
    select, canon = _reduction(reducer)
    saver = _Checkpoints(opts, "bfs", identity, model)
    queue: deque[int] = deque(inits)
    cur, depth, level_end, transitions, cut = -1, 0, len(search.parent), 0, 0
    if opts.resume:
        snap = saver.load(opts.resume, search, rec, seen)
        cur, depth, level_end = _counter(snap, "cur"), _counter(snap, "depth"), _counter(snap, "level_end")
        transitions, cut = _counter(snap, "transitions"), _counter(snap, "cut")
        queue = deque(snap.pending)
        if len(queue) != len(search.parent) - cur - 1:
            raise ckpt.CheckpointError("corrupt queue")
    parent, via = search.parent, search.via
    saver.take = lambda: saver.snapshot(search, rec, seen, list(queue), {
        "cur": cur, "depth": depth, "level_end": level_end, "transitions": transitions, "cut": cut})
    limits = Limits(opts, t0, stop, saver.maybe_save)
    succ = model.successors
    seen_add, q_pop, q_app, p_app, v_app = seen.add, queue.popleft, queue.append, parent.append, via.append
    special = bool(rec.state_checks)
    check_new = bool(rec.invs or rec.wits)
    max_states = opts.max_states or (1 << 62)
    max_depth = opts.max_depth if opts.max_depth is not None else (1 << 62)
    prog = _Progress(opts)
    limit = limits.poll()
    try:
        while queue and not limit:
            if len(parent) >= max_states:
                limit = "max-states"
                break
            s = q_pop()
            cur += 1
            if cur == level_end:
                depth += 1
                level_end = len(parent)
            out = succ(s)
            if special or not out:
                rec.expanded(cur, s, out)
            if select is not None:  # the checks above saw every enabled step; expand the ample set
                out = select(s, out)
            transitions += len(out)
            if depth >= max_depth:
                if rec.beyond(cur, s, out, lambda n: _key(n, canon, keyf) in seen):
                    cut = 1
            else:
                for a, n in out:
                    if n < 0:
                        rec.violation(cur, s, a, -1 - n)
                        continue
                    if canon is not None:
                        n = canon(n)
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
            if cur & (POLL_EVERY - 1) == 0:
                limit = limits.poll()
                prog.maybe(len(parent), transitions, depth, len(queue))
    except MemoryError:  # out of memory: stop cleanly, keep what was found
        limit = "memory"
    search.transitions = transitions
    search.max_depth = max(search.max_depth, depth)
    if limit and limit != "memory":
        saver.save()
    return _finish(search, t0, limit or ("max-depth" if cut else ""), len(queue))


def dfs(model: Model, opts: Options, stop: StopRequest | None = None, identity: str = "",
        reducer: Reducer | None = None) -> Search:
    """Depth-first with an explicit stack; traces are valid but not shortest."""
    t0 = time.perf_counter()
    search, rec, keyf, seen, inits = _start(model, opts)
    select, canon = _reduction(reducer)
    saver = _Checkpoints(opts, "dfs", identity, model)
    stack: list[tuple[int, int, int]] = [(s, i, 0) for i, s in enumerate(inits)]  # (state, index, depth)
    steps, cut = 0, 0
    if opts.resume:
        snap = saver.load(opts.resume, search, rec, seen)
        steps, cut, search.transitions = _counter(snap, "steps"), _counter(snap, "cut"), _counter(snap, "transitions")
        if len(snap.pending_index) != len(snap.pending) or len(snap.pending_depth) != len(snap.pending) \
                or any(not 0 <= i < len(search.parent) for i in snap.pending_index):
            raise ckpt.CheckpointError("corrupt stack")
        stack = list(zip(snap.pending, snap.pending_index, snap.pending_depth))
    parent, via = search.parent, search.via
    saver.take = lambda: saver.snapshot(search, rec, seen, [x[0] for x in stack],
                                        {"steps": steps, "cut": cut, "transitions": search.transitions},
                                        [x[1] for x in stack], [x[2] for x in stack])
    limits = Limits(opts, t0, stop, saver.maybe_save)
    max_states = opts.max_states or (1 << 62)
    max_depth = opts.max_depth if opts.max_depth is not None else (1 << 62)
    prog = _Progress(opts)
    limit = limits.poll()
    try:
        while stack and not limit:
            if len(parent) >= max_states:
                limit = "max-states"
                break
            s, idx, d = stack.pop()
            search.max_depth = max(search.max_depth, d)
            out = model.successors(s)
            if rec.state_checks or not out:
                rec.expanded(idx, s, out)
            if select is not None:
                out = select(s, out)
            search.transitions += len(out)
            if d >= max_depth:
                if rec.beyond(idx, s, out, lambda n: _key(n, canon, keyf) in seen):
                    cut = 1
            else:
                for a, n in reversed(out):
                    if n < 0:
                        rec.violation(idx, s, a, -1 - n)
                        continue
                    if canon is not None:
                        n = canon(n)
                    k = n if keyf is None else keyf(n)
                    if k in seen:
                        continue
                    seen.add(k)
                    parent.append(idx)
                    via.append(a)
                    stack.append((n, len(parent) - 1, d + 1))
                    rec.new_state(len(parent) - 1, n)
            steps += 1
            if steps & (POLL_EVERY - 1) == 0:
                limit = limits.poll()
                prog.maybe(len(parent), search.transitions, d, len(stack))
    except MemoryError:  # out of memory: stop cleanly, keep what was found
        limit = "memory"
    if limit and limit != "memory":
        saver.save()
    return _finish(search, t0, limit or ("max-depth" if cut else ""), len(stack))


def random_walks(model: Model, opts: Options, stop: StopRequest | None = None, identity: str = "") -> Search:
    """Seeded random simulation: ``walks`` walks of up to ``walk_depth`` steps. Never exhaustive."""
    t0 = time.perf_counter()
    rng = random.Random(opts.seed)
    search = Search(*_arrays(model), store="exact")
    rec = _Recorder(model, search)
    parent, via = search.parent, search.via
    distinct: set[int] = set()
    limits = Limits(opts, t0, stop)
    inits = list(model.init_states())
    depth_cap = opts.max_depth if opts.max_depth is not None else opts.walk_depth
    limit, steps = "", 0
    try:
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
                steps += 1
                if steps & (POLL_EVERY - 1) == 0:
                    limit = limits.poll()
                    if limit:
                        break
            else:  # the walk reached its depth cap: what fires one step further still counts
                rec.beyond(idx, s, model.successors(s), distinct.__contains__)
            limit = limit or limits.poll()
            if limit:
                break
    except MemoryError:
        limit = "memory"
    _finish(search, t0, "random simulation" + (f", {limit}" if limit else ""), 0)
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


def _key(n: int, canon: Callable[[int], int] | None, keyf: Callable[[int], int] | None) -> int:
    """What ``seen`` holds for state ``n``: its symmetry representative, then its store key."""
    if canon is not None:
        n = canon(n)
    return n if keyf is None else keyf(n)


def _reduction(reducer: Reducer | None) -> tuple[Callable[[int, list[tuple[int, int]]], list[tuple[int, int]]] | None,
                                                 Callable[[int], int] | None]:
    """The reducer's select and canonical functions, None for each that is the identity (the hot loop skips it)."""
    if reducer is None:
        return None, None
    por = getattr(reducer, "por", True) is not None
    sym = getattr(reducer, "symmetry", True) is not None
    return (reducer.select if por else None), (reducer.canonical if sym else None)


def explore(model: Model, opts: Options, stop: StopRequest | None = None, identity: str = "",
            reducer: Reducer | None = None) -> Search:
    """``stop``: polled, ends the search early (signals); ``identity``: what a checkpoint must match;
    ``reducer`` (checker.search.reduce) selects ample sets and canonical states."""
    if opts.core != "python":  # the C core (checker.search.native): a native BFS, or C successors
        from checker.search.native.driver import explore_native

        native = explore_native(model, opts, lambda m, o: bfs(m, o, stop, identity, reducer),
                                reducer=reducer, stop=stop)
        if native is not None:
            return native
    if opts.strategy == "dfs":
        return dfs(model, opts, stop, identity, reducer)
    if opts.strategy == "random":
        return random_walks(model, opts, stop, identity)
    return bfs(model, opts, stop, identity, reducer)
