"""Induction and BMC on the lifted relation: invariants for any number of copies of each thread.

For goal P with lemmas L (Q = P and L, each lifted: ``Lifting.invariant``):

- initiation: the initial state (every thread of every kind at its first step, whatever
  their number) satisfies Q;
- consecution, per action template and per formula F of Q: Q, the typing invariant and one
  step of any thread ``me`` of the action's kind imply F in the post-state (Z3, quantifiers
  over thread ids: unknown is UNKNOWN, never PROVED);
- ``auto:lock-ownership`` (derived from the program, checker.prove.goals) is proved first
  and assumed when PROVED, as in the one-scenario prover.

BMC unrolls the lifted relation from the initial state with a fresh thread id per step: a
violation comes with its size (how many threads of each kind took a step).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import z3

from checker.lang.expr import Expr, variables
from checker.lang.layout import Field
from checker.lang.program import Program
from checker.prove.goals import AUTO_OWNERSHIP, ownership_expr
from checker.prove.parametric.lift import LiftError, Lifting
from checker.prove.prove_results import CTI, PROVED, UNKNOWN, VIOLATED, PropertyProof

SCOPE = "all thread counts: any number of threads running each thread's operations (instances as in the spec)"


@dataclass
class Invariant:
    name: str
    expr: Expr


@dataclass
class LiftedTrace:
    """A lifted BMC counterexample: (action id, thread id) per step, and each thread id's kind."""

    steps: list[tuple[int, int]]
    kinds: dict[int, int]

    def copies(self, kinds: int) -> list[int]:
        """How many threads of each kind the trace uses (at least one each: the spec's own)."""
        out = [1] * kinds
        for k in range(kinds):
            out[k] = max(1, sum(1 for n, kk in self.kinds.items() if kk == k))
        return out


class ParametricProver:
    def __init__(self, program: Program, timeout_s: float = 30.0) -> None:
        self.program = program
        self.lift = Lifting(program)
        self.timeout_ms = int(timeout_s * 1000)
        self.s, self.t = self.lift.state("s"), self.lift.state("t")
        self.me = z3.Int("@me")
        self._trans: dict[int, z3.BoolRef] = {}
        self.assumed: list[Invariant] = []

    def trans(self, aid: int) -> z3.BoolRef:
        if aid not in self._trans:
            self._trans[aid] = self.lift.action_trans(self.program.actions[aid], self.s, self.t, self.me)
        return self._trans[aid]

    def _solver(self) -> z3.Solver:
        sv = z3.Solver()
        sv.set("timeout", self.timeout_ms)
        return sv

    # ------------------------------------------------------------ induction
    def inductive(self, goal: Invariant, lemmas: Sequence[Invariant], deadline: float) -> tuple[str, str]:
        """(status, detail) of proving goal jointly with lemmas."""
        lf, s, t = self.lift, self.s, self.t
        formulas = [goal, *[x for x in lemmas if x.name != goal.name]]
        sv = self._solver()
        sv.add(lf.init(s))
        for f in formulas:
            sv.push()
            sv.add(z3.Not(lf.invariant(f.expr, s)))
            r = sv.check()
            sv.pop()
            if r == z3.sat:
                return CTI if f is not goal else VIOLATED, f"initial state violates {f.name}"
            if r != z3.unsat:
                return UNKNOWN, f"initiation of {f.name}: solver {r}"
        hyp = [lf.ranges(s), *[lf.invariant(f.expr, s) for f in formulas + self.assumed]]
        reads = {f.name: {v for v in variables(f.expr) if isinstance(v, Field)} for f in formulas}
        checked = 0
        for a in self.program.actions:
            sv = self._solver()
            sv.add(*hyp, self.trans(a.aid))
            for f in formulas:
                if not reads[f.name] & set(a.updates):
                    continue  # frame: the step writes nothing the formula reads
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return UNKNOWN, f"timeout after {checked} consecution checks"
                sv.set("timeout", int(min(self.timeout_ms, remaining * 1000)))
                sv.push()
                sv.add(z3.Not(lf.invariant(f.expr, t)))
                r = sv.check()
                sv.pop()
                checked += 1
                where = f"{self.program.threads[a.thread].name}: {a.function}: {a.text}"
                if r == z3.sat:
                    which = "" if f is goal else f" (lemma {f.name})"
                    return CTI, f"not inductive{which}: a step of any copy of {where} breaks it"
                if r != z3.unsat:
                    return UNKNOWN, f"solver {r} on {f.name} after {where}"
        return PROVED, f"inductive for every number of threads ({checked} consecution checks)"

    def prove(self, goals: Sequence[Invariant], lemmas: Sequence[Invariant], auto_lemmas: bool = True,
              budget_s: float = 30.0) -> list[PropertyProof]:
        out: list[PropertyProof] = []
        if auto_lemmas:
            own = ownership_expr(self.program)
            if own is not None:
                inv = Invariant(AUTO_OWNERSHIP, own)
                t0 = time.monotonic()
                status, detail = self.inductive(inv, [], t0 + budget_s)
                if status == PROVED:
                    self.assumed.append(inv)
        for g in goals:
            t0 = time.monotonic()
            try:
                status, detail = self.inductive(g, lemmas, t0 + budget_s)
            except LiftError as e:
                status, detail = UNKNOWN, f"not liftable: {e}"
            p = PropertyProof(g.name, "always", status, detail, 1, 0, [x.name for x in lemmas if x.name != g.name],
                              [x.name for x in self.assumed], seconds=time.monotonic() - t0)
            if status == PROVED:
                p.scope = SCOPE
            out.append(p)
        return out

    # ------------------------------------------------------------ BMC
    def bmc(self, goal: Invariant, depth: int) -> LiftedTrace | None:
        """The shortest lifted path (up to ``depth`` steps) to a state violating ``goal``, or None."""
        lf = self.lift
        states = [lf.state("b0")]
        sv = self._solver()
        sv.add(lf.init(states[0]))
        ids: list[z3.ArithRef] = []
        sels: list[z3.ArithRef] = []
        for d in range(depth + 1):
            sv.push()
            sv.add(z3.Not(lf.invariant(goal.expr, states[d])))
            r = sv.check()
            if r == z3.sat:
                m = sv.model()
                steps = [(m.eval(sels[i]).as_long(), m.eval(ids[i]).as_long()) for i in range(d)]
                kinds = {n: m.eval(lf.kind[n]).as_long() for _, n in steps}
                return LiftedTrace(steps, kinds)
            sv.pop()
            if d == depth:
                break
            nxt = lf.state(f"b{d + 1}")
            me, sel = z3.Int(f"@me{d}"), z3.Int(f"@sel{d}")
            sv.add(z3.Or(*[z3.And(sel == a.aid, lf.action_trans(a, states[d], nxt, me))
                           for a in self.program.actions]))
            states.append(nxt)
            ids.append(me)
            sels.append(sel)
        return None


__all__ = ["Invariant", "LiftedTrace", "ParametricProver", "SCOPE"]
