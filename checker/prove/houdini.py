"""``auto:held-locks``: which locks a thread holds at each step, where that is not static.

``auto:lock-ownership`` covers the program points whose held set ``heldsets``
knows statically. Elsewhere (a lock taken only on one branch, an instance
chosen by state) the induction engine knows nothing, and a goal as plain as
``check:lock-order`` ("no bad unlock") gets a CTI in which a thread is about
to release a lock it does not hold.

The candidates are "thread t at pc p holds slot h" and "... does not hold
slot h", for every such point and every lock slot t ever acquires ("does
not hold" for the other slots), the condition of each conditional lock
operation at p and its negation, and "held exactly when the condition of
one of t's conditional operations on that lock holds". Those
false in a visited reachable state (the compiled successor function, as the
cross-check walks it) are dropped at once; Houdini then drops every candidate
whose consecution fails under the conjunction of the others, until what is
left is inductive. What is left is the largest inductive subset: it holds
initially and is preserved, so it holds in every reachable state however the
candidates were chosen. The conjunction is then proved once more by the
ordinary prover (CTIs replayed) before it is assumed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import z3

from checker.lang.expr import And, Const, Expr, Implies, Not, variables
from checker.lang.heldsets import slot, static_held
from checker.lang.layout import Field
from checker.lang.program_types import Program
from checker.prove.crosscheck import reachable_sample
from checker.prove.derived import held_expr
from checker.prove.goals import Goal
from checker.prove.symbolic import Encoding
from checker.prove.z3expr import expr_text

AUTO_HELD = "auto:held-locks"
SAMPLE_STATES = 2_000


def held_candidates(program: Program) -> list[Expr]:
    held = static_held(program)
    out: list[Expr] = []
    for th in program.threads:
        slots = sorted({slot(acq.lock.index, acq.mode) for a in program.actions if a.thread == th.index
                        for acq in a.acquires})
        # "held exactly when the condition of its conditional lock operation holds"
        tied: list[Expr] = []
        for a in program.actions:
            if a.thread != th.index:
                continue
            ops = [(acq.lock, acq.mode, acq.cond) for acq in a.acquires] + [(lk, "w", c) for lk, c in a.releases]
            for lk, mode, c in ops:
                e = held_expr(lk, mode, th.index)
                if e is not None and not (isinstance(c, Const) and c.value is True):
                    tied.append(e == c)
        for pc, h in enumerate(held[th.index]):
            if h is not None:
                continue
            at = th.pc.var == pc
            out += [Implies(at, x) for x in tied]
            for sl in range(2 * len(program.locks)):
                e = held_expr(program.locks[sl // 2], "r" if sl % 2 else "w", th.index)
                if e is not None:  # a lock t never takes: only "not held" is worth a candidate
                    out += [Implies(at, e), Implies(at, Not(e))] if sl in slots else [Implies(at, Not(e))]
            # the conditions of conditional lock operations here ("unlock if the hook was set")
            for a in program.by_label[th.index][pc]:
                conds = [c for _, c in a.releases] + [acq.cond for acq in a.acquires]
                for c in conds:
                    if not (isinstance(c, Const) and c.value is True):
                        out += [Implies(at, c), Implies(at, Not(c))]
    unique: dict[str, Expr] = {}
    for e in out:  # the same condition on an acquire and its release gives the same candidate
        unique.setdefault(expr_text(e, limit=100_000), e)
    return list(unique.values())


def houdini(program: Program, enc: Encoding, assumed: Sequence[Goal], deadline: float) -> Expr | None:
    """The largest inductive subset of ``held_candidates`` (None when empty or out of time)."""
    from checker.search.codegen import compile_program
    from checker.search.pycompile import compile_predicate

    cands = held_candidates(program)
    if not cands:
        return None
    succ = compile_program(program).succ
    states, _, _ = reachable_sample(succ, program.layout.initial(), SAMPLE_STATES, 0)
    preds = [compile_predicate(c) for c in cands]
    alive = [i for i, p in enumerate(preds) if all(p(s) for s in states)]
    s, t = enc.state("hp"), enc.state("hq")
    pre = {i: enc.holds(cands[i], s) for i in alive}
    post = {i: enc.holds(cands[i], t) for i in alive}
    reads = {i: {f for f in variables(cands[i]) if isinstance(f, Field)} for i in alive}
    # one solver for the whole fixpoint: candidate i is assumed through its indicator literal
    ind = {i: z3.Bool(f"@houdini@{i}") for i in alive}
    solver = z3.Solver()
    solver.add(enc.ranges(s), *[g.z3_holds(enc, s) for g in assumed], *[z3.Implies(ind[i], pre[i]) for i in alive])
    changed = True
    while changed and alive:
        changed = False  # a pass with no drop: what is left is inductive
        for a in program.actions:
            watch = [i for i in alive if reads[i] & set(a.updates)]
            if not watch:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            solver.set("timeout", max(1, int(left * 1000)))
            solver.push()
            solver.add(enc.action_trans(a, s, t))
            while watch:
                solver.push()
                solver.add(z3.Or(*[z3.Not(post[i]) for i in watch]))
                r = solver.check(*[ind[i] for i in alive])
                if r == z3.unknown:
                    return None
                if r == z3.unsat:
                    solver.pop()
                    break
                m = solver.model()
                dropped = {i for i in watch if z3.is_false(m.eval(post[i], model_completion=True))}
                alive = [i for i in alive if i not in dropped]
                watch = [i for i in watch if i not in dropped]
                changed = True
                solver.pop()
            solver.pop()
    return And(*[cands[i] for i in alive]) if alive else None




def held_locks_goal(program: Program, enc: Encoding, assumed: Sequence[Goal], seconds: float) -> Goal | None:
    e = houdini(program, enc, assumed, time.monotonic() + seconds)
    if e is None:
        return None
    return Goal(AUTO_HELD, "derived", e,
                description="which locks each thread holds where heldsets cannot tell (Houdini, derived)")


__all__ = ["AUTO_HELD", "held_candidates", "held_locks_goal", "houdini"]
