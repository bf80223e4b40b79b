"""What each action touches, and each thread's control-flow graph, as static facts.

A footprint is a bitmask over the packed state: the bits of every field an
action reads (guard, update expressions, checks, lock-acquire conditions, its
next-pc expression) or writes (every field it assigns other than to itself).
Two actions of different threads are independent when neither writes what
the other reads or writes; then neither can enable, disable or change the
effect or the checks of the other, and the two orders reach the same state.

A test ``owner == t + 1`` of a lock's owner field, inside a step of thread
``t``, is not a read another thread can disturb: only ``t``'s own lock and
unlock steps make it true or false (another thread takes the lock only when it
is free, and releasing a lock one does not hold is a violation, not a state).
Such tests (``lockdep``'s "held at exit" checks, ``held_by``) are left out of
the footprint when every step writing that owner field is a lock step of the
builder (``owned_lock_fields``).

The control-flow graph of a thread has its pcs as nodes and, for each action
at pc ``p``, an edge to every pc its next-pc expression can produce (the
constant leaves of its ``If`` tree; any pc when it is not a tree of
constants). A back edge (depth-first from pc 0, then from any unvisited pc;
self loops included) closes every cycle of that graph, so every cycle of the
state graph takes a back edge of some thread (a transition that moves no pc
is a self loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from checker.lang.expr import Bin, Const, Expr, Var, children
from checker.lang.heldsets import paths
from checker.lang.layout import Field
from checker.lang.program_types import Action, Lock, Program


def _mask(fields: set[object]) -> int:
    m = 0
    for f in fields:
        if isinstance(f, Field):
            m |= f.mask
    return m


def owned_lock_fields(program: Program) -> set[Field]:
    """Lock owner fields (mutex owner, rwsem writer) written only by lock steps naming that lock."""
    owner_of: dict[Field, object] = {}
    for lk in program.locks:
        owner_of[lk.owner if isinstance(lk, Lock) else lk.writer] = lk
    owned = set(owner_of)
    for a in program.actions:
        for f in a.updates:
            owner = owner_of.get(f)
            if owner is not None and not (any(x.lock is owner for x in a.acquires)
                                          or any(r is owner for r, _ in a.releases)):
                owned.discard(f)
    return owned


def _reads(e: Expr, own: int, owned: set[Field], out: set[object]) -> None:
    stack = [e]
    while stack:
        x = stack.pop()
        if (isinstance(x, Bin) and x.op in ("==", "!=") and isinstance(x.a, Var) and x.a.field in owned
                and isinstance(x.b, Const) and int(x.b.value) == own):
            continue  # "this thread holds it": only this thread's steps change that
        if isinstance(x, Var):
            out.add(x.field)
        stack.extend(children(x))


def action_reads(a: Action, owned: set[Field] = frozenset()) -> set[object]:  # type: ignore[assignment]
    """The fields an action's enabledness, effect, next pc or checks depend on."""
    r: set[object] = set()
    exprs = [a.guard, *a.updates.values(), *(c.bad for c in a.checks), *(x.cond for x in a.acquires),
             *(cond for _, cond in a.releases)]
    for e in exprs:
        _reads(e, a.thread + 1, owned, r)
    return r


def action_writes(a: Action) -> set[Field]:
    return {f for f, e in a.updates.items() if not (isinstance(e, Var) and e.field is f)}


def _targets(e: Expr, npcs: int) -> set[int]:
    """The pcs a step's target can produce (one walker: ``heldsets.paths``); any pc where it is not a tree of
    constants and If."""
    try:
        return {t for t, _ in paths(e)}
    except ValueError:
        return set(range(npcs))


Block = tuple[int, str, int, int]  # lock index, holder mode that blocks ("w" or "any"), residual reads, writes


@dataclass
class ThreadGraph:
    """One thread's pcs: successors, back edges, footprints, and where it blocks on a lock."""

    succ: list[set[int]]  # pc -> next pcs (the done pc has none)
    back: list[bool]  # pc -> some action at pc takes a back edge
    reads_at: list[int]  # pc -> reads of the actions at pc
    writes_at: list[int]
    blocks: list[Block | None]  # pc -> the lock its blocking step takes unconditionally, if any

    def future(self, q: int, avoid: int = -1, held: str = "w") -> tuple[int, int]:
        """(reads, writes) of every step the thread can take from pc ``q`` on, stopping at a
        step that waits for lock ``avoid`` while another thread holds it in mode ``held``
        (only the steps that still fire there, e.g. a writer queueing, are counted)."""
        r = w = 0
        seen, todo = {q}, [q]
        while todo:
            p = todo.pop()
            b = self.blocks[p]
            if avoid >= 0 and b is not None and b[0] == avoid and (b[1] == "any" or held == "w"):
                r |= b[2]
                w |= b[3]
                continue
            r |= self.reads_at[p]
            w |= self.writes_at[p]
            for n in self.succ[p]:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return r, w


def _blocking(acts: list[Action], owned: set[Field]) -> Block | None:
    """The pc's step waits, unconditionally, for one lock: mutex_lock (blocked by any holder),
    down_read (by a writer), down_write (by any holder; its queueing step still fires)."""
    main = acts[0]
    if len(main.acquires) != 1:
        return None
    acq = main.acquires[0]
    if not (isinstance(acq.cond, Const) and acq.cond.value is True) or acq.trylock:
        return None
    if isinstance(acq.lock, Lock):
        return (acq.lock.index, "any", 0, 0) if len(acts) == 1 else None
    if acq.mode == "r":
        return (acq.lock.index, "w", 0, 0) if len(acts) == 1 else None
    reads = writes = 0
    for a in acts[1:]:  # rwsem_down_write_slowpath's queueing step
        reads |= _mask(action_reads(a, owned))
        writes |= _mask(set(action_writes(a)))
    return acq.lock.index, "any", reads, writes


def _held_set_reads(program: Program, t: int, owned: set[Field]) -> int:
    """Fields behind thread ``t``'s held set (the lock-order edge of an acquisition) that another
    thread's step could change: owner fields some non-lock step writes, and ``t``'s reader bits
    when another thread writes them. Empty for programs built from the builder's lock steps."""
    m = 0
    for lk in program.locks:
        if isinstance(lk, Lock):
            m |= 0 if lk.owner in owned else lk.owner.mask
            continue
        m |= 0 if lk.writer in owned else lk.writer.mask
        bit = lk.readers.get(t)
        if bit is not None and any(a.thread != t and bit in a.updates for a in program.actions):
            m |= bit.mask
    return m


def thread_graph(program: Program, t: int, owned: set[Field] | None = None) -> ThreadGraph:
    owned = owned_lock_fields(program) if owned is None else owned
    th = program.threads[t]
    per_pc = program.by_label[t]
    npcs = th.pc.hi - th.pc.lo + 1  # includes the done pc of a finite thread
    succ: list[set[int]] = [set() for _ in range(npcs)]
    reads_at, writes_at = [0] * npcs, [0] * npcs
    blocks: list[Block | None] = [None] * npcs
    held_reads = _held_set_reads(program, t, owned)
    for p, acts in enumerate(per_pc):
        blocks[p] = _blocking(acts, owned)
        for a in acts:
            succ[p] |= {q for q in _targets(a.target, npcs) if 0 <= q < npcs}
            reads_at[p] |= _mask(action_reads(a, owned)) | (held_reads if a.acquires else 0)
            writes_at[p] |= _mask(set(action_writes(a)))
    back = [False] * npcs
    state = [0] * npcs  # 0 unvisited, 1 on the stack, 2 done
    for root in range(npcs):
        if state[root]:
            continue
        state[root] = 1
        stack: list[tuple[int, list[int]]] = [(root, sorted(succ[root]))]
        while stack:
            p, todo = stack[-1]
            if not todo:
                state[p] = 2
                stack.pop()
                continue
            q = todo.pop(0)
            if state[q] == 1:
                back[p] = True
            elif state[q] == 0:
                state[q] = 1
                stack.append((q, sorted(succ[q])))
    return ThreadGraph(succ, back, reads_at, writes_at, blocks)


__all__ = ["ThreadGraph", "action_reads", "action_writes", "owned_lock_fields", "thread_graph"]
