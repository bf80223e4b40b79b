"""Partial-order reduction: persistent (ample) sets of one thread's enabled steps.

In a state ``s`` where thread ``t`` is at pc ``p``, the ample set is every
enabled action of ``t`` (all its actions are at ``p``), chosen only when

- C1 (persistence): every action at ``t``'s pc ``p`` (enabled or not) is
  independent (``footprint``) of every action any other thread ``u`` can still
  take from its pc in ``s`` before ``t`` moves: its control-flow graph from
  there on, cut at any unconditional wait for a lock ``t`` holds in ``s`` in a
  mode that blocks it (mutex_lock; down_read behind a writer; down_write, of
  which only the queueing step still fires): only ``t`` can release it, and
  ``t`` does not move first;
- C2 (visibility): no action at ``p`` writes a field read by a selected
  ``always`` or ``sometimes`` property;
- C3 (static cycle proviso): no action at ``p`` takes a back edge of ``t``'s
  control-flow graph.

Otherwise, or when one of ``t``'s enabled steps fires a violation (it has no
successor state, so expanding it alone would end every path there), ``s`` is
fully expanded. Every condition reads only the pcs in ``s``
and the enabled list, so the selection is a function of the state: BFS, DFS
and partitioned searches reduce identically.

Why the verdicts are preserved. Let ``w`` be a path of the full graph from a
state ``r`` of the reduced graph to a state ``s``. If ``r`` is fully expanded,
the first step of ``w`` is kept. Otherwise let ``T`` be its ample set (thread
``t`` at pc ``p``). (a) If ``w`` contains a step ``c`` of ``T``, by C1 ``c``
commutes with every step before it: ``c`` then the rest of ``w`` reaches the
same ``s`` with one step less to go. (b) Otherwise no step of ``w`` is ``t``'s
(its disabled actions at ``p`` stay disabled, by C1), every step of ``w`` is
independent of any ``c`` in ``T``, so ``c`` is still enabled at ``s`` and
``w`` leads from ``c(r)`` to ``c(s)``, which differs from ``s`` only in
fields ``c`` writes. Repeating, (b) cannot go on forever without a fully
expanded state (a reduced-graph cycle takes a back edge, hence, by C3, has a
fully expanded state), so ``w`` is eventually used up. Therefore:

- deadlock states and terminal states (leak checks): nothing is enabled at
  ``s``, so (b) never applies and ``s`` itself is reached. Every deadlock
  state of the full graph is in the reduced one (``deadlock_states`` equal).
- ``always`` / ``sometimes``: in (b) ``c`` is invisible (C2), so ``c(s)``
  satisfies the same properties as ``s``.
- action checks (memory-safety, range, bad unlocks, the fired check of any
  step): the firing action ``b`` at ``s`` reads the same fields at ``c(s)``
  (``c`` independent of ``b``); if ``b`` is ``t``'s, it is in ``T`` already at
  ``r`` with the same check result.
- lock-order graph: an edge is (acquiring action, its thread's held set,
  which acquisitions fire), recorded for every enabled action of every
  explored state. Held sets change only by the thread's own steps (another
  thread's unlock of a lock it does not hold is a violation, not a state; an
  owner field written by any other kind of step is counted in the acquiring
  step's footprint, ``footprint._held_set_reads``), so
  the acquiring action is enabled at ``c(s)`` (or at ``r``, if ``t``'s) with the
  same held set and conditions: every edge of the full graph is recorded.
- data-race: a race is two enabled, conflicting actions of different threads,
  and conflicting implies dependent. In (b) both stay enabled and
  conflicting at ``c(s)``; neither can be ``t``'s, since an action of ``t``
  enabled at ``s`` is in ``T`` and dependent on a future step of another
  thread, against C1. So some race state is reached (possibly another race
  than the unreduced search reports first). The check sees the full list of
  enabled actions, not the ample set.

Counterexamples are real paths of the full graph (each step is an enabled
action), but the shortest reduced path may be longer than the shortest
unreduced one: results say so.
"""

from __future__ import annotations

from collections.abc import Callable

from checker.lang.expr import variables
from checker.lang.layout import Field
from checker.lang.program_types import AnyLock, Lock, Program
from checker.search.reduce.footprint import ThreadGraph, owned_lock_fields, thread_graph

LockRow = tuple[int, int, int, list[int]]  # owner field offset, mask, stored value "t holds it", row
Constraint = tuple[int, int, int, int, list[tuple[int, int, int, int]]]
PorTables = tuple[list[tuple[int, int, int]], list[list[list[Constraint] | None]]]


def _holds(program: Program) -> list[tuple[AnyLock, str, Callable[[int], tuple[Field, int] | None]]]:
    """(lock, mode, thread -> (field, value) meaning "the thread holds it in that mode")."""
    out: list[tuple[AnyLock, str, Callable[[int], tuple[Field, int] | None]]] = []
    for lk in program.locks:
        if isinstance(lk, Lock):
            out.append((lk, "w", _owner_is(lk.owner)))
        else:
            out.append((lk, "w", _owner_is(lk.writer)))
            out.append((lk, "r", _reader_is(lk.readers)))
    return out


def _owner_is(f: Field) -> Callable[[int], tuple[Field, int] | None]:
    def test(t: int) -> tuple[Field, int] | None:
        return f, t + 1

    return test


def _reader_is(bits: dict[int, Field]) -> Callable[[int], tuple[Field, int] | None]:
    def test(t: int) -> tuple[Field, int] | None:
        return (bits[t], 1) if t in bits else None

    return test


class PartialOrder:
    """Ample-set selection for a Program; ``visible_props``: the selected properties (C2).

    ``compat[t][p]`` is None when ``t``'s steps at ``p`` can never form an ample set
    (a back edge, a visible write, the done pc), else ``(row, lock_rows)``: ``row[u]``
    has bit ``q`` set when the steps at ``p`` are independent of everything thread
    ``u`` can still do from pc ``q`` (C1); each lock row is the same for the steps
    ``u`` can take before it must wait for a lock, usable in states where ``t`` holds
    that lock in a mode that blocks that wait (``u`` cannot pass it before ``t`` moves)."""

    def __init__(self, program: Program, visible_props: list[str]) -> None:
        self.program = program
        owned = owned_lock_fields(program)
        graphs: list[ThreadGraph] = [thread_graph(program, t, owned) for t in range(len(program.threads))]
        vis = 0
        for prop in program.properties:
            if prop.name in visible_props:
                for f in variables(prop.expr):
                    if isinstance(f, Field):
                        vis |= f.mask
        self.visible = vis
        self.thread_of = [a.thread for a in program.actions]
        self._pcs = [(th.pc.offset, (1 << th.pc.bits) - 1, th.pc.lo) for th in program.threads]
        futures = [[g.future(q) for q in range(len(g.succ))] for g in graphs]
        holds = _holds(program)
        avoiding = {(u, lk.index, mode): [g.future(q, lk.index, mode) for q in range(len(g.succ))]
                    for u, g in enumerate(graphs) for lk, mode, _ in holds
                    if any(b is not None and b[0] == lk.index for b in g.blocks)}

        def row_of(w: int, r: int, t: int, futs: dict[int, list[tuple[int, int]]]) -> list[int]:
            row = [0] * len(graphs)
            for u in range(len(graphs)):
                if u != t:
                    for q, (ru, wu) in enumerate(futs[u]):
                        if w & (ru | wu) == 0 and wu & r == 0:
                            row[u] |= 1 << q
            return row

        self.compat: list[list[tuple[list[int], list[LockRow]] | None]] = []
        for t, g in enumerate(graphs):
            rows: list[tuple[list[int], list[LockRow]] | None] = []
            for p in range(len(g.succ)):
                w, r = g.writes_at[p], g.reads_at[p]
                if p >= len(program.by_label[t]) or g.back[p] or w & vis:
                    rows.append(None)
                    continue
                plain = dict(enumerate(futures))
                row = row_of(w, r, t, plain)
                lock_rows: list[LockRow] = []
                for lk, mode, holder in holds:
                    test = holder(t)
                    if test is None:
                        continue
                    futs = {u: avoiding.get((u, lk.index, mode), futures[u]) for u in range(len(graphs))}
                    lrow = row_of(w, r, t, futs)
                    if lrow != row:
                        f, value = test
                        lock_rows.append((f.offset, (1 << f.bits) - 1, value - f.lo, lrow))
                rows.append((row, lock_rows))
            self.compat.append(rows)
        self.useful = any(c is not None and all(u == t or c[0][u] or any(lr[3][u] for lr in c[1])
                                                for u in range(len(graphs)))
                          for t, cs in enumerate(self.compat) for c in cs)
        self.reduced_states = 0  # states where the ample set was smaller than the enabled set
        # per (t, p): only the threads that constrain it, as (pc offset, mask, lo, pc bits, lock alternatives)
        self._checks: list[list[list[Constraint] | None]] = []
        for t, rows in enumerate(self.compat):
            per_pc: list[list[Constraint] | None] = []
            for c in rows:
                if c is None:
                    per_pc.append(None)
                    continue
                row, lock_rows = c
                cons: list[Constraint] = []
                for u, th in enumerate(program.threads):
                    full = (1 << (th.pc.hi - th.pc.lo + 1)) - 1
                    if u == t or row[u] == full:
                        continue
                    alts = [(off, m, held, lrow[u]) for off, m, held, lrow in lock_rows if lrow[u] != row[u]]
                    cons.append((th.pc.offset, (1 << th.pc.bits) - 1, th.pc.lo, row[u], alts))
                per_pc.append(cons)
            self._checks.append(per_pc)

    def tables(self) -> PorTables:
        """Per thread (pc offset, pc mask, pc lo), and per thread and pc its C1 constraints (None:
        never an ample set): what ``persistent`` reads, for a compiled core."""
        return self._pcs, self._checks

    def persistent(self, state: int, t: int) -> bool:
        """``t``'s steps at its pc form a persistent, invisible, proviso-safe set in ``state``."""
        off, m, lo = self._pcs[t]
        cons = self._checks[t][((state >> off) & m) + lo]
        if cons is None:
            return False
        for uoff, um, ulo, bits, alts in cons:
            q = ((state >> uoff) & um) + ulo
            if not (bits >> q & 1 or any((state >> o) & mm == held and lb >> q & 1 for o, mm, held, lb in alts)):
                return False
        return True

    def select(self, state: int, succs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if len(succs) < 2:
            return succs
        thread_of = self.thread_of
        tried = -1
        for a, _ in succs:  # threads with an enabled step, in thread order (succs is in action order)
            t = thread_of[a]
            if t == tried:
                continue
            tried = t
            if not self.persistent(state, t):
                continue
            sub = [x for x in succs if thread_of[x[0]] == t]
            if len(sub) < len(succs) and all(n >= 0 for _, n in sub):
                self.reduced_states += 1
                return sub
            return succs
        return succs


__all__ = ["PartialOrder", "PorTables"]
