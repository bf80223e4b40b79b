"""The explicit engine's built-in verdicts, stated as invariants ``apcheck prove`` can prove.

- ``auto:deadlock-free``: no state where some thread is unfinished and no step
  is enabled (a step whose check fails is enabled: that is a violation, not a
  deadlock), which is ``progmodel``'s definition of a deadlock state;
- ``auto:no-leak-at-exit``: when every thread has finished, no object of a
  leak-checked pool is alive (``progmodel.terminal_checks``);
- ``auto:lock-order-acyclic``: lockdep's "acquired B while holding A" graph has
  no cycle. A candidate edge is a step with an acquisition and a lock slot its
  thread may hold there; an edge is refuted by proving the invariant "this step
  never fires while its thread holds that lock". The graph of the edges not
  refuted is acyclic -> PROVED. Candidates where the held set is static
  (``heldsets``) are exact; elsewhere every lock slot is a candidate (sound
  over-approximation, then refuted by proof).

The memory-safety and lock-balance checks of steps are the ``check:`` goals
(``goals.Goal``).
"""

from __future__ import annotations

from dataclasses import dataclass

from checker.lang.expr import And, Const, Expr, Implies, Not, Or
from checker.lang.heldsets import static_held
from checker.lang.program_types import ALIVE, Action, AnyLock, Program, RwSem
from checker.report.results import LockEdge

AUTO_DEADLOCK = "auto:deadlock-free"
AUTO_LEAK = "auto:no-leak-at-exit"
AUTO_LOCK_GRAPH = "auto:lock-order-acyclic"


def all_done(program: Program) -> Expr | None:
    """Every thread finished; None when a thread is cyclic (it never finishes)."""
    if any(th.cyclic for th in program.threads):
        return None
    return And(*[th.pc.var == th.done for th in program.threads])


def enabled_expr(program: Program, a: Action) -> Expr:
    return And(program.threads[a.thread].pc.var == a.label, a.guard)


def deadlock_free_expr(program: Program) -> Expr:
    stuck = Not(Or(*[enabled_expr(program, a) for a in program.actions]))
    done = all_done(program)
    return Not(stuck) if done is None else Not(And(Not(done), stuck))


def no_leak_expr(program: Program) -> Expr | None:
    done = all_done(program)
    alive = [f.var == ALIVE for pool in program.pools if pool.leak_check for f in pool.state]
    if done is None or not alive:
        return None
    return Implies(done, Not(Or(*alive)))


def held_expr(lk: AnyLock, mode: str, t: int) -> Expr | None:
    """Thread ``t`` holds ``lk`` in ``mode`` (None: it can never hold it that way)."""
    if isinstance(lk, RwSem):
        if mode == "w":
            return lk.writer.var == t + 1
        rd = lk.readers.get(t)
        return None if rd is None else rd.var == 1
    return lk.owner.var == t + 1 if mode == "w" else None


@dataclass
class EdgeCandidate:
    """Step ``aid`` acquires ``a.acquires[acq]`` while its thread may hold lock slot ``slot``."""

    aid: int
    acq: int
    slot: int  # heldsets slot: 2 * lock index, + 1 for a read hold
    edge: LockEdge
    fires: Expr  # the state predicate "this edge is created by the next step"
    exact: bool  # the held set is static: the edge exists iff the step fires

    @property
    def name(self) -> str:
        e = self.edge
        return f"auto:no-edge[{e.src}({e.src_mode}) -> {e.dst}({e.dst_mode}) @ {e.thread}: {e.function} #{self.aid}]"


def edge_candidates(program: Program) -> list[EdgeCandidate]:
    """Every edge lockdep could record on some transition (over-approximated where held sets are dynamic)."""
    held = static_held(program)
    out: list[EdgeCandidate] = []
    for a in program.actions:
        th = program.threads[a.thread]
        static = held[a.thread][a.label]
        slots = sorted(static) if static is not None else range(2 * len(program.locks))
        for i, acq in enumerate(a.acquires):
            if acq.trylock:
                continue  # lockdep: a trylock cannot wait, it adds no edge into the lock it tries
            for h in slots:
                src = program.locks[h // 2]
                mode_src = "r" if h % 2 else "w"
                holds = held_expr(src, mode_src, a.thread)
                if holds is None:
                    continue
                mode_dst = acq.mode if isinstance(acq.lock, RwSem) else "w"
                edge = LockEdge(src.cls, acq.lock.cls, mode_src, mode_dst, th.name, a.function, a.operation, "")
                cond: list[Expr] = [enabled_expr(program, a)]
                if not (isinstance(acq.cond, Const) and acq.cond.value is True):
                    cond.append(acq.cond)
                if static is None:
                    cond.append(holds)
                out.append(EdgeCandidate(a.aid, i, h, edge, And(*cond), static is not None))
    return out


__all__ = ["AUTO_DEADLOCK", "AUTO_LEAK", "AUTO_LOCK_GRAPH", "EdgeCandidate", "all_done", "deadlock_free_expr",
           "edge_candidates", "held_expr", "no_leak_expr"]
