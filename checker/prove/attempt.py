"""One goal's proof attempt: initiation, consecution per action, k-induction, BMC, and the verdict.

``Prover.prove`` (``checker.prove.prove``) runs one ``ProofAttempt`` per goal under a ``Budget``
of solver time; every model Z3 returns goes back to the prover to be decoded and re-checked
concretely (CTIs, lemma violations, BMC traces), so no verdict rests on Z3 alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import z3

from checker.lang.layout import Field
from checker.lang.program_types import Action
from checker.prove.goals import Goal, disagree
from checker.prove.prove_results import BOUNDED, CTI, PROVED, UNKNOWN, VIOLATED, CtiInfo, PropertyProof
from checker.prove.z3expr import model_value

if TYPE_CHECKING:
    from checker.prove.prove import Prover

# --------------------------------------------------------------------------- solver plumbing


class Budget:
    """The solver time left for one goal; counts the answers that came back unknown."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.unknown = 0

    def check(self, solver: z3.Solver, *assumptions: z3.BoolRef) -> z3.CheckSatResult:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.unknown += 1
            return z3.unknown
        solver.set("timeout", max(1, int(left * 1000)))
        r = interruptible_check(solver, assumptions)
        if r == z3.unknown:
            self.unknown += 1
        return r


def interruptible_check(solver: z3.Solver, assumptions: tuple[z3.BoolRef, ...]) -> z3.CheckSatResult:
    """``solver.check`` in a worker thread, so Ctrl-C reaches Python at once: Z3's C code holds
    the main thread for minutes otherwise. On KeyboardInterrupt, Z3 is told to stop, then it re-raises."""
    out: list[z3.CheckSatResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(solver.check(*assumptions))
        except BaseException as e:  # handed to the caller's thread
            errors.append(e)

    worker = threading.Thread(target=run, name="z3-check", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except KeyboardInterrupt:
        solver.ctx.interrupt()
        worker.join()
        raise
    if errors:
        raise errors[0]
    return out[0]


# --------------------------------------------------------------------------- one goal


def _vars_updated(a: Action) -> set[Field]:
    return set(a.updates)


class ProofAttempt:
    """One goal (with its lemmas ``q[1:]``) through initiation, consecution, k-induction and BMC."""

    def __init__(self, prover: Prover, goal: Goal, q: list[Goal], budget: Budget, k: int, bmc: int) -> None:
        self.p, self.goal, self.q, self.budget, self.k, self.bmc = prover, goal, q, budget, k, bmc
        self.enc = prover.enc
        self.notes: list[str] = []
        self.cti: CtiInfo | None = None
        self.false_lemmas: list[str] = []
        self.unknown_where: list[str] = []
        names = {g.name for g in q}
        self.assumed = [g for g in prover.assumed if g.name not in names]

    def _sat(self, solver: z3.Solver, where: str) -> bool | None:
        r = self.budget.check(solver)
        if r == z3.sat:
            return True
        if r == z3.unknown:
            self.unknown_where.append(where)
            return None
        return False

    def result(self, status: str, detail: str, k: int, depth: int, trace: list[int] | None = None) -> PropertyProof:
        return PropertyProof(self.goal.name, self.goal.kind, status, detail, k, depth, cti=self.cti, trace=trace)

    def go(self) -> PropertyProof:
        enc, goal = self.enc, self.goal
        # 1. initiation
        s0 = enc.state(0)
        solver = z3.Solver()
        solver.add(enc.init(s0))
        for f in self.q:
            solver.push()
            solver.add(z3.Not(f.z3_holds(enc, s0)))
            r = self._sat(solver, f"initiation of {f.name}")
            if r:
                values = s0.decode(solver.model())
                if f is goal:
                    return self.violated([values], 0)
                self.false_lemma(f, [values])
            solver.pop()
        if self.k <= 0:
            return self.bmc_phase(step_ok=False)
        # 2. consecution per action (1-induction)
        one = self.consecution()
        if one and not self.false_lemmas and not self.unknown_where:
            return self.result(PROVED, self.proved_detail(1), 1, 0)
        step_ok = False
        if self.k > 1 and not self.false_lemmas:
            step_ok = self.k_induction()
        return self.bmc_phase(step_ok)

    def proved_detail(self, k: int) -> str:
        how = "inductive" if k == 1 else f"{k}-inductive"
        lem = [g.name for g in self.q[1:]]
        out = how + (f" with lemmas {', '.join(lem)}" if lem else "")
        if self.assumed:
            out += f" (assuming the proved {', '.join(g.name for g in self.assumed)})"
        return out + "; holds in every reachable state"

    def false_lemma(self, f: Goal, states: list[dict[Field, int]], chosen: Sequence[int] = ()) -> None:
        self.p.replay(states, f"the violation of lemma {f.name}", chosen)
        if f.holds(self.p.program, states[-1]):
            raise disagree(f"the violation of lemma {f.name}: it holds in the final state")
        self.false_lemmas.append(f.name)
        self.notes.append(f"lemma {f.name} is false (violated at depth {len(states) - 1})")

    def consecution(self) -> bool:
        enc, prog = self.enc, self.p.program
        s, t = enc.state("pre"), enc.state("post")
        solver = z3.Solver()
        solver.add(enc.ranges(s))
        for g in self.q + self.assumed:
            solver.add(g.z3_holds(enc, s))
        ok = True
        for f in self.q:
            reads = self.p.reads(f)
            for a in prog.actions:
                if not (_vars_updated(a) & reads):
                    continue  # frame: f reads nothing a writes
                solver.push()
                solver.add(enc.action_trans(a, s, t), z3.Not(f.z3_holds(enc, t)))
                r = self._sat(solver, f"consecution of {f.name}")
                if r:
                    m = solver.model()
                    self.keep(self.p.make_cti(f, self.q + self.assumed, [s.decode(m), t.decode(m)], 1))
                    ok = False
                    solver.pop()
                    break
                if r is None:
                    ok = False
                solver.pop()
        return ok

    def keep(self, cti: CtiInfo) -> None:
        """Remember a CTI; the goal's own beats a lemma's, a deeper one beats a shallower one."""
        self.notes.append(self.cti_note(cti))

        def rank(c: CtiInfo) -> tuple[bool, int]:
            return c.invariant == self.goal.name, c.k

        if self.cti is None or rank(cti) > rank(self.cti):
            self.cti = cti

    def cti_note(self, cti: CtiInfo) -> str:
        who = "" if cti.invariant == self.goal.name else "lemma "
        s = f"{who}{cti.invariant} is not {'inductive' if cti.k == 1 else f'{cti.k}-inductive'}: " \
            f"fails after [{cti.action.thread}] {cti.action.function}: {cti.action.text}"
        if cti.failing_conjunct is not None:
            s += f" (conjunct {cti.failing_conjunct}: {cti.conjunct_text})"
        if cti.post_failure:
            s += f" (then {cti.post_failure})"
        return s

    def k_induction(self) -> bool:
        enc, k = self.enc, self.k
        st = [enc.state(f"k{i}") for i in range(k + 1)]
        solver = z3.Solver()
        for i in range(k + 1):
            solver.add(enc.ranges(st[i]))
        for i in range(k):
            solver.add(enc.step_relation(st[i], st[i + 1], enc.selector(f"k{i}")))
            for g in self.q:
                solver.add(g.z3_holds(enc, st[i]))
        for i in range(k + 1):
            for g in self.assumed:
                solver.add(g.z3_holds(enc, st[i]))
        for i in range(k + 1):
            for j in range(i + 1, k + 1):
                solver.add(z3.Not(enc.equal(st[i], st[j])))
        ok = True
        for f in self.q:
            solver.push()
            solver.add(z3.Not(f.z3_holds(enc, st[k])))
            r = self._sat(solver, f"{k}-induction of {f.name}")
            if r:
                m = solver.model()
                self.keep(self.p.make_cti(f, self.q + self.assumed, [x.decode(m) for x in st], k))
                ok = False
            elif r is None:
                ok = False
            solver.pop()
        return ok

    def bmc_phase(self, step_ok: bool) -> PropertyProof:
        enc, goal = self.enc, self.goal
        base = self.k - 1 if step_ok else 0
        depth = max(self.bmc, base)
        states = [enc.state(0)]
        solver = z3.Solver()
        solver.add(enc.init(states[0]))
        reached = 0
        complete = True
        for d in range(1, depth + 1):
            states.append(enc.state(d))
            solver.add(enc.step_relation(states[d - 1], states[d], enc.selector(d)))
            if self.budget.check(solver) == z3.unsat:
                # no run has d steps: BMC has covered every reachable state of this scenario
                return self.exhaustive(d - 1)
            todo = list(self.q)  # the lemmas too, at every depth: a false lemma is named, not assumed
            for f in todo:
                if f.name in self.false_lemmas:
                    continue
                solver.push()
                solver.add(z3.Not(f.z3_holds(enc, states[d])))
                r = self._sat(solver, f"BMC depth {d} ({f.name})")
                if r:
                    m = solver.model()
                    path = [x.decode(m) for x in states]
                    chosen = [model_value(m, enc.selector(i)) for i in range(1, d + 1)]
                    if f is goal:
                        return self.violated(path, d, chosen)
                    self.false_lemma(f, path, chosen)
                elif r is None:
                    complete = False
                solver.pop()
            if not complete:
                break
            reached = d
        return self.verdict(step_ok, reached, complete, depth)

    def exhaustive(self, longest: int) -> PropertyProof:
        self.cti = None
        detail = (f"holds in every reachable state: BMC is exhaustive (every run of this scenario ends "
                  f"within {longest} step{'s' if longest != 1 else ''})")
        return self.result(PROVED, detail, self.k, longest)

    def verdict(self, step_ok: bool, reached: int, complete: bool, depth: int) -> PropertyProof:
        bmc_note = ""
        if depth > 0:
            bmc_note = f"no violation up to depth {reached}" if complete else \
                f"no violation up to depth {reached} (solver unknown beyond)"
        if step_ok and complete and not self.false_lemmas and not self.unknown_where:
            return self.result(PROVED, self.proved_detail(self.k), self.k, reached)
        parts = list(dict.fromkeys(self.notes))
        if bmc_note:
            parts.append(bmc_note)
        if self.cti is not None:
            return self.result(CTI, "; ".join(parts), self.k, reached)
        if self.unknown_where:
            parts.insert(0, f"solver unknown or timeout ({self.unknown_where[0]})")
            return self.result(UNKNOWN, "; ".join(parts), self.k, reached)
        if self.false_lemmas:
            return self.result(CTI, "; ".join(parts), self.k, reached)
        if self.k <= 0:
            return self.result(BOUNDED, "; ".join(parts) or "no violation at depth 0", 0, reached)
        return self.result(BOUNDED, "; ".join(parts), self.k, reached)

    def violated(self, path: list[dict[Field, int]], depth: int, chosen: Sequence[int] = ()) -> PropertyProof:
        goal = self.goal
        what = f"the BMC counterexample of {goal.name}"
        actions = self.p.replay(path, what, chosen)
        for i, st in enumerate(path[:-1]):
            if not goal.holds(self.p.program, st):
                raise disagree(f"{what}: {goal.name} already fails at depth {i} < {depth}")
        if goal.holds(self.p.program, path[-1]):
            raise disagree(f"{what}: {goal.name} holds in the final state")
        if goal.kind == "check":
            actions.append(self.p.firing_action(goal, path[-1], what))
        detail = "false in the initial state" if depth == 0 and goal.kind != "check" else \
            f"violated: a trace of {len(actions)} step{'s' if len(actions) != 1 else ''} (BMC, shortest)"
        self.cti = None
        return self.result(VIOLATED, detail, self.k, depth, trace=actions)
