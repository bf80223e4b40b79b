"""One partition of the partitioned breadth-first search (``checker.search.parallel``).

A partition owns the states whose owner (``key_owner``) is its id: it keeps
their keys (the visited store's key: the state itself up to 128 bits, else
xxh3_64; of the canonical state under symmetry), their parent references and
the action that reached them. States themselves stay concrete. Per BFS
level it expands its frontier into one box of successors per owner
(``expand``), and takes in the boxes addressed to it (``absorb``).

Determinism: the single-process BFS reports, per property, the first finding
in its discovery order, and a state's parent is the first state that reached
it. Order keys reproduce that order without a global index: a state of level
d+1 reached from a level-d state with key K by the j-th entry of its
successor list gets K * A + j (A: number of actions, an upper bound on the
successor list). A state keeps the smallest key offered to it, and every
check is recorded with the event (level, K, j) at which the single-process
BFS makes it (j = -1: checks of the expanded state itself); the smallest
event wins. So findings, parents, traces and counts are those of one worker.

A partition in ``solo`` mode owns everything and runs the levels in
discovery order, as the single-process BFS does (and with its per-state
``max-states`` check): the in-process prefix before the search fans out.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import xxhash

from checker.lang.model import Model, StateCheck
from checker.search.explore import key_function
from checker.search.limits import current_mb
from checker.spec.options import Options

REF_BITS = 40  # a state reference: partition id << REF_BITS | index in that partition's store
PREFIX_PID = 1 << 20  # the in-process prefix's partition id (workers are 0..W-1)
Event = tuple[int, int, int]  # (level of the expanded state, its order key, successor position or -1)
# (key, order key, parent reference, action[, state]): exact stores' key is the state itself
Box = list[tuple[int, ...]]


class Reducer(Protocol):
    """The reductions' interface (checker/search/reduce/): both are functions of the state alone, so
    a partitioned search reduces exactly as one process does."""

    def select(self, state: int, succs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The successors to explore (partial-order reduction: an ample subset of ``succs``)."""
        ...

    def canonical(self, state: int) -> int:
        """The representative of the state's symmetry class (the identity when symmetry is off)."""
        ...


@dataclass
class Candidate:
    """A finding as the single-process BFS would record it, ranked by ``event``."""

    event: Event
    state: int
    ref: int  # where the state that shows it sits
    action: int = -1
    code: int = -1
    message: str = ""


@dataclass
class LevelReport:
    """What one partition tells the coordinator after a level."""

    new_states: int = 0
    transitions: int = 0
    deadlocks: int = 0
    limit: str = ""
    unseen: bool = False  # max-depth probe: some successor beyond the bound is new
    pending: int = 0  # frontier states left unexpanded (a limit stopped the level)
    candidates: dict[str, Candidate] = field(default_factory=dict)
    deadlock_info: list[tuple[Event, object]] = field(default_factory=list)
    key_bits: int = 0
    mb: float = 0.0


@dataclass
class Seed:
    """A partition's share of the in-process prefix: its visited keys and frontier."""

    seen: set[int]
    frontier: list[int]
    fkeys: list[int]
    frefs: list[int]


class Partition:
    def __init__(self, model: Model, opts: Options, pid: int, parts: int, reducer: Reducer | None = None) -> None:
        self.model, self.opts, self.pid, self.parts, self.reducer = model, opts, pid, parts, reducer
        fingerprint = key_function(model.state_bits, opts.exact)
        self.fingerprints = fingerprint is not None  # else keys are (canonical) states
        self.nbytes = (model.state_bits + 7) // 8
        # the store key of a state; None: the state itself (an exact store without symmetry)
        self.key: Callable[[int], int] | None = fingerprint
        if reducer is not None:
            canon = reducer.canonical
            self.key = canon if fingerprint is None else (lambda s: fingerprint(canon(s)))
        # symmetry: successors enter the frontier as their representatives, as explore.bfs stores and
        # expands them (the traces are made concrete from paths of representatives); ``raw_key`` keys one
        self.canon: Callable[[int], int] | None = (
            reducer.canonical if reducer is not None and getattr(reducer, "symmetry", True) is not None else None)
        self.raw_key: Callable[[int], int] | None = fingerprint if self.canon is not None else self.key
        self.width = max(1, getattr(model, "action_count", 1 << 16))  # the order key's radix A
        self.base = pid << REF_BITS
        self.seen: set[int] = set()
        self.parent = array("q")
        self.via = array("I")
        self.frontier: list[int] = []
        self.fkeys: list[int] = []
        self.frefs: list[int] = []
        self.recent: set[int] = set()
        self.expanded = 0  # states this partition expanded (when to look at the clock)
        self.found_props: set[str] = set()  # properties this partition found in its completed levels
        # (check, reports when its predicate is): invariants fail on False, witnesses show on True
        self.state_preds = [(c, False) for c in model.invariants()] + [(c, True) for c in model.witnesses()]
        self.terms = list(model.terminal_checks())
        self.state_checks = list(model.state_checks())
        self.max_states = opts.max_states
        self.max_mb = opts.max_memory_mb
        self.report = LevelReport()

    # ---- setup
    def seed_initial(self) -> None:
        """The distinct initial states, with the single-process BFS's events (-1, i, 0)."""
        checks = self._pending(frozenset())
        for s in self.model.init_states():
            k = s if self.key is None else self.key(s)
            if k in self.seen:
                continue
            self.seen.add(k)
            idx = self._store(-1, 0)
            self.frontier.append(s)
            self.fkeys.append(len(self.fkeys))
            self.frefs.append(self.base | idx)
            self._discovered(s, self.base | idx, (-1, len(self.fkeys) - 1, 0), checks)

    def seed_from(self, seed: Seed) -> None:
        self.seen, self.frontier, self.fkeys, self.frefs = seed.seen, seed.frontier, seed.fkeys, seed.frefs

    def key_owner(self, k: int, parts: int) -> int:
        """The partition owning a store key: a fingerprint mod ``parts``; a state key is hashed first
        (xxh3_64, never ``hash()``): its low bits are a program counter and would skew partitions."""
        return k % parts if self.fingerprints else xxhash.xxh3_64_intdigest(k.to_bytes(self.nbytes, "little")) % parts

    def share(self, pid: int, parts: int) -> Seed:
        """Partition ``pid``'s share (of ``parts``) of this solo partition's store and frontier."""
        key = self.raw_key  # frontier states are representatives already
        seen = {k for k in self.seen if self.key_owner(k, parts) == pid}
        pick = [i for i, s in enumerate(self.frontier) if self.key_owner(s if key is None else key(s), parts) == pid]
        return Seed(seen, [self.frontier[i] for i in pick], [self.fkeys[i] for i in pick],
                    [self.frefs[i] for i in pick])

    # ---- queries
    def lookup(self, idx: int) -> tuple[int, int]:
        """(parent reference, action) of the state stored at ``idx``; parent -1 for an initial state."""
        return self.parent[idx], self.via[idx]

    def frontier_size(self) -> int:
        return len(self.frontier)

    def store_size(self) -> int:
        return len(self.parent)

    # ---- recording
    def _store(self, parent_ref: int, action: int) -> int:
        self.parent.append(parent_ref)
        self.via.append(action)
        return len(self.parent) - 1

    def _offer(self, prop: str, cand: Candidate) -> None:
        old = self.report.candidates.get(prop)
        if old is None or cand.event < old.event:
            self.report.candidates[prop] = cand

    def _pending(self, found: frozenset[str]) -> list[tuple[StateCheck, bool]]:
        return [(c, hit) for c, hit in self.state_preds if c.name not in found]

    def _discovered(self, s: int, ref: int, event: Event, checks: list[tuple[StateCheck, bool]]) -> None:
        """``always`` invariants that fail and ``sometimes`` witnesses that hold on a new state;
        the first hit of a check in a pass is its smallest event, so it leaves ``checks``."""
        for c, hit in list(checks):
            if bool(c.pred(s)) == hit:
                self._offer(c.name, Candidate(event, s, ref))
                checks.remove((c, hit))

    def _expanded(self, event: Event, s: int, ref: int, out: list[tuple[int, int]], found: frozenset[str]) -> None:
        """Checks of the expanded state itself: state checks, terminal checks, deadlock."""
        cands = self.report.candidates
        for prop, fn in self.state_checks:
            if prop in found or prop in cands:  # an earlier event already holds it
                continue
            msg = fn(s, out)
            if msg is not None:
                self._offer(prop, Candidate(event, s, ref, message=msg))
        if out:
            return
        if self.model.is_done(s):
            for c in self.terms:
                if not c.pred(s):
                    self._offer(c.name, Candidate(event, s, ref))
        else:
            self.report.deadlocks += 1
            self.report.deadlock_info.append((event, self.model.on_deadlock(s)))
            self._offer("deadlock", Candidate(event, s, ref))

    def _violation(self, event: Event, s: int, ref: int, a: int, code: int) -> None:
        prop, msg = self.model.violation(code)
        self._offer(prop, Candidate(event, s, ref, a, code, msg))

    def _over(self, i: int, deadline: float | None) -> str:
        if deadline is not None and time.time() > deadline:
            return "timeout"
        if self.max_mb is not None and i & 0xFFFF == 0 and current_mb() > self.max_mb / max(1, self.parts):
            return "memory"
        return ""

    def take_report(self) -> LevelReport:
        rep, self.report = self.report, LevelReport()
        self.found_props.update(rep.candidates)
        rep.key_bits = max((k.bit_length() for k in self.fkeys[-1:]), default=0)
        rep.mb = current_mb()
        return rep

    def _expansions(self, level: int, found: frozenset[str], deadline: float | None,
                    cap: int | None = None) -> Iterator[tuple[int, int, int, list[tuple[int, int]]]]:
        """(state, order key, reference, successors) for each frontier state in order-key order, after
        the checks of the state itself; ends early, leaving the rest pending, at a timeout or memory limit,
        or (``cap``, as explore.bfs) when the store holds max-states before the next state is taken."""
        succ, rep, special = self.model.successors, self.report, bool(self.state_checks)
        select = self.reducer.select if self.reducer is not None else None
        for i, s in enumerate(self.frontier):
            if cap is not None and len(self.parent) >= cap:
                rep.limit, rep.pending = "max-states", len(self.frontier) - i
                return
            fk, me = self.fkeys[i], self.frefs[i]
            out = succ(s)
            if special or not out:  # the state's own checks see every enabled step (the reducer contract)
                self._expanded((level, fk, -1), s, me, out, found)
            if select is not None:
                out = select(s, out)
            rep.transitions += len(out)
            yield s, fk, me, out
            if self.expanded & 0xFFF == 0:  # every 4096 states of this partition, the first included
                rep.limit = self._over(self.expanded, deadline)
                if rep.limit:
                    rep.pending = len(self.frontier) - i - 1
                    return
            self.expanded += 1

    # ---- one level, solo: the single-process BFS order, no boxes
    def expand_solo(self, level: int, found: frozenset[str], further: bool, deadline: float | None) -> LevelReport:
        key, seen, rep, cap = self.key, self.seen, self.report, self.max_states
        canon, raw_key = self.canon, self.raw_key
        pending_checks = self._pending(found)
        nxt: list[int] = []
        nrefs: list[int] = []
        for s, fk, me, out in self._expansions(level, found, deadline, cap):
            if not further:
                if not rep.unseen and any(n >= 0 and (n if key is None else key(n)) not in seen for _, n in out):
                    rep.unseen = True
                continue
            for j, (a, n) in enumerate(out):
                if n < 0:
                    self._violation((level, fk, j), s, me, a, -1 - n)
                    continue
                if canon is not None:
                    n = canon(n)
                k = n if raw_key is None else raw_key(n)
                if k in seen:
                    continue
                seen.add(k)
                ref = self.base | self._store(me, a)
                nxt.append(n)
                nrefs.append(ref)
                if pending_checks:
                    self._discovered(n, ref, (level, fk, j), pending_checks)
        rep.new_states = len(nxt)
        self.frontier, self.fkeys, self.frefs = nxt, list(range(len(nxt))), nrefs
        return self.take_report()

    # ---- one level, partitioned: expand into boxes, then absorb what the owners received
    def expand(self, level: int, found: frozenset[str], further: bool, deadline: float | None) -> list[Box]:
        key, fps, seen, parts = self.raw_key, self.fingerprints, self.seen, self.parts
        canon = self.canon
        pid, width, nbytes, h = self.pid, self.width, self.nbytes, xxhash.xxh3_64_intdigest
        boxes: list[dict[int, tuple[int, ...]]] = [{} for _ in range(parts)]
        recent = self.recent  # sent to their owners last level: seen there now
        rep = self.report
        # frontier states come in order-key order and successors in list order, so the first
        # offer of a state within this partition is its smallest: no comparison needed here
        for s, fk, me, out in self._expansions(level, found, deadline):
            for j, (a, n) in enumerate(out):
                if n < 0:
                    if further:
                        self._violation((level, fk, j), s, me, a, -1 - n)
                    continue
                if canon is not None:
                    n = canon(n)
                if key is None:  # key_owner inlined: this loop is the hot path
                    k, dest = n, h(n.to_bytes(nbytes, "little")) % parts
                else:
                    k = key(n)
                    dest = k % parts if fps else h(k.to_bytes(nbytes, "little")) % parts
                if dest == pid:
                    if k in seen:
                        continue
                elif k in recent:
                    continue
                box = boxes[dest]
                if k not in box:  # the key leads; the state follows (last) when it is not its own key
                    box[k] = (n, fk * width + j, me, a) if key is None else (k, fk * width + j, me, a, n)
        if not rep.limit and deadline is not None and time.time() > deadline:
            rep.limit = "timeout"
        self.frontier, self.fkeys, self.frefs = [], [], []
        self.recent = set().union(*(b for d, b in enumerate(boxes) if d != pid))
        return [list(b.values()) for b in boxes]

    def absorb(self, level: int, found: frozenset[str], boxes: list[Box], probe: bool) -> LevelReport:
        """Take in the successors owners were sent; keep each new state's smallest order key."""
        key, seen, width = self.raw_key, self.seen, self.width
        rep = self.report
        if probe:  # max-depth: is any successor of the last level new?
            rep.unseen = any(t[0] not in seen for box in boxes for t in box)
            return self.take_report()
        best: dict[int, tuple[int, ...]] = {}
        for box in boxes:
            for t in box:
                k = t[0]
                if k in seen:
                    continue
                old = best.get(k)
                if old is None or t[1] < old[1]:
                    best[k] = t
        new = sorted(best.items(), key=lambda kt: kt[1][1])
        pending_checks = self._pending(found)
        for k, t in new:
            ok, pref, a = t[1], t[2], t[3]
            n = k if key is None else t[4]
            seen.add(k)
            ref = self.base | self._store(pref, a)
            self.frontier.append(n)
            self.fkeys.append(ok)
            self.frefs.append(ref)
            if pending_checks:
                self._discovered(n, ref, (level, ok // width, ok % width), pending_checks)
        rep.new_states = len(new)
        return self.take_report()
