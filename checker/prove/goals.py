"""Goals of ``apcheck prove`` and the concrete semantics every Z3 answer is re-checked with.

A goal is an ``always`` property, a built-in check group ("no enabled step fails
a check of kind X") or a derived invariant (``auto:lock-ownership``).
``concrete_step`` is the explicit transition on concrete values: the semantics
the Z3 encoding must match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import z3

from checker.lang.expr import And, Const, Expr, Implies, Nary, Not, Or, true
from checker.lang.layout import Field
from checker.lang.program_types import Action, Program, RwSem
from checker.prove.symbolic import Encoding, StateVars
from checker.prove.z3expr import expr_text, field_var, literal
from checker.search.pycompile import evaluate

CHECK_PREFIX = "check:"


class ProveError(ValueError):
    """A usage problem: unknown property or lemma name (exit 2)."""


class DisagreementError(RuntimeError):
    """Z3 and the explicit evaluator disagree: an apcheck bug (exit 4)."""


def disagree(what: str) -> DisagreementError:
    return DisagreementError(f"Z3 and the explicit evaluator disagree on {what} (please report)")


# --------------------------------------------------------------------------- concrete evaluation

Values = Mapping[Field, int]


def concrete_evaluator() -> Callable[[Expr, Values], int | bool]:
    """The reference evaluator every Z3 answer is re-checked with (one for the whole engine)."""
    return evaluate


def truth(e: Expr, values: Values) -> bool:
    return bool(concrete_evaluator()(e, values))


@dataclass
class StepOutcome:
    enabled: bool
    bad: list[str]  # props of the checks that fire
    post: dict[Field, int] | None  # None when disabled or a check fires


def concrete_step(program: Program, values: Values, a: Action) -> StepOutcome:
    """One explicit transition on concrete values (the semantics the encoding must match)."""
    ev = concrete_evaluator()
    pc = program.threads[a.thread].pc
    if values[pc] != a.label or not bool(ev(a.guard, values)):
        return StepOutcome(False, [], None)
    bad = [c.prop for c in a.checks if bool(ev(c.bad, values))]
    if bad:
        return StepOutcome(True, bad, None)
    post = dict(values)
    for f, e in a.updates.items():
        post[f] = int(ev(e, values))
    return StepOutcome(True, [], post)


# --------------------------------------------------------------------------- goals


@dataclass
class Goal:
    """A state predicate to prove: an ``always`` property or "no check of kind X fails"."""

    name: str
    kind: str  # always | check | derived
    expr: Expr | None  # always, derived: the invariant
    check_prop: str = ""  # check: the Check.prop group
    description: str = ""
    # found: a Z3 formula over one state's variables (a Spacer invariant), evaluated concretely by substitution
    formula: Callable[[StateVars], z3.BoolRef] | None = None

    def z3_holds(self, enc: Encoding, vs: StateVars) -> z3.BoolRef:
        if self.formula is not None:
            return self.formula(vs)
        if self.expr is not None:
            return enc.holds(self.expr, vs)
        return z3.Not(enc.bad_transition(vs, [self.check_prop]))

    def holds(self, program: Program, values: Values) -> bool:
        if self.formula is not None:
            vs = StateVars("concrete", {f: field_var(f, "concrete") for f in values})
            pairs = [(vs[f], literal(f.sort, v)) for f, v in values.items()]
            ground = z3.simplify(z3.substitute(self.formula(vs), *pairs))
            if z3.is_true(ground) or z3.is_false(ground):
                return bool(z3.is_true(ground))
            solver = z3.Solver()  # quantifiers left (Spacer's invariants may have them): decide the closed formula
            solver.add(z3.Not(ground))
            return bool(solver.check() == z3.unsat)
        if self.expr is not None:
            return truth(self.expr, values)
        return not any(self.check_prop in concrete_step(program, values, a).bad for a in program.actions)

    def conjuncts(self) -> tuple[Expr, ...]:
        if isinstance(self.expr, Nary) and self.expr.op == "and":
            return self.expr.args
        return ()

    def text(self) -> str:
        if self.formula is not None:
            return "a found invariant"
        if self.expr is not None:
            return expr_text(self.expr)
        return f"no step fails a {self.check_prop} check"


AUTO_OWNERSHIP = "auto:lock-ownership"


def ownership_expr(program: Program, conditional: bool = True) -> Expr | None:
    """"Each thread holds exactly the locks its pc implies": where the held set is static, and (``conditional``)
    where a lock is taken under a state-chosen condition (``heldsets.held_when``), "held exactly when that
    condition holds". The check groups need the conditional facts (which kvm->lock a store holds); the
    always properties proved so far do not, and on the lifted relation the facts cost about 1.7x the CPU.

    Derived from the program (``heldsets``), never trusted: it is proved by
    induction before the prover assumes it.
    """
    from checker.lang.heldsets import held_when, static_held

    when = held_when(program)
    if not conditional:  # the static held sets only (a pc that is not static says nothing)
        static = static_held(program)
        when = [[{k: true() for k in h} if h is not None else {k: None for k in range(2 * len(program.locks))}
                 for h in row] for row in static]
    terms: list[Expr] = []
    for th in program.threads:
        for pc, h in enumerate(when[th.index]):
            conds: list[Expr] = []
            for lk in program.locks:
                # heldsets slots: 2i = held for writing (or a mutex), 2i + 1 = held for reading
                holds = [(2 * lk.index, lk.writer.var == th.index + 1 if isinstance(lk, RwSem)
                          else lk.owner.var == th.index + 1)]
                rd = lk.readers.get(th.index) if isinstance(lk, RwSem) else None
                if rd is not None:
                    holds.append((2 * lk.index + 1, rd.var == 1))
                for k, hb in holds:
                    if k not in h:
                        conds.append(Not(hb))
                    elif (c := h[k]) is not None:
                        conds.append(hb if isinstance(c, Const) and c.value is True else hb == c)
            if conds:
                terms.append(Implies(th.pc.var == pc, And(*conds)))
    return And(*terms) if terms else None


def check_invariant(program: Program, prop: str) -> Expr:
    """"No enabled step fails a ``prop`` check" as a state predicate: per step with such a check, "its thread
    is there and its guard holds" implies "none of those checks fails" (one conjunct per step: the parametric
    lifting quantifies each over the copies of its thread)."""
    terms = [Implies(And(program.threads[a.thread].pc.var == a.label, a.guard), Not(Or(*bad)))
             for a in program.actions if (bad := [c.bad for c in a.checks if c.prop == prop])]
    return And(*terms)


def goals_of(program: Program) -> dict[str, Goal]:
    out: dict[str, Goal] = {}
    for p in program.properties:
        if p.kind == "always":
            out[p.name] = Goal(p.name, "always", p.expr, description=p.description)
    props = sorted({c.prop for a in program.actions for c in a.checks})
    for prop in props:
        name = CHECK_PREFIX + prop
        out[name] = Goal(name, "check", None, prop, f"no enabled step fails a {prop} check")
    own = ownership_expr(program)
    if own is not None:
        out[AUTO_OWNERSHIP] = Goal(AUTO_OWNERSHIP, "derived", own,
                                   description="each thread holds exactly the locks its pc implies (derived)")
    from checker.prove.derived import (
        AUTO_DEADLOCK,
        AUTO_LEAK,
        AUTO_LOCK_GRAPH,
        deadlock_free_expr,
        no_leak_expr,
    )

    if program.actions:
        out[AUTO_DEADLOCK] = Goal(AUTO_DEADLOCK, "derived", deadlock_free_expr(program),
                                  description="deadlock: no state where a thread is unfinished and no step can move")
    leak = no_leak_expr(program)
    if leak is not None:
        out[AUTO_LEAK] = Goal(AUTO_LEAK, "derived", leak,
                              description="memory-safety: no object alive when every thread has finished (leak)")
    if program.locks:
        out[AUTO_LOCK_GRAPH] = Goal(AUTO_LOCK_GRAPH, "graph", None,
                                    description="lock-order: no cycle in lockdep's acquired-while-holding graph")
    return out


DEFAULT_KINDS = ("always", "check", "derived", "graph")


def default_goals(goals: dict[str, Goal]) -> list[Goal]:
    """What ``prove`` proves when no goal is named: the always properties, then the built-in
    verdicts stated as invariants (check groups, deadlock, leaks, lock-order cycles);
    ``auto:lock-ownership`` is a helper lemma, not a verdict."""
    return [g for g in goals.values() if g.kind in DEFAULT_KINDS and g.name != AUTO_OWNERSHIP]


def _resolve(program: Program, names: Sequence[str], goals: dict[str, Goal], what: str) -> list[Goal]:
    from checker.lang.build import did_you_mean

    out = []
    for n in names:
        if n not in goals:
            kinds = {p.name: p.kind for p in program.properties}
            if n in kinds:
                raise ProveError(f"{what} {n!r} is a {kinds[n]} property; prove handles always properties and checks")
            raise ProveError(f"unknown {what} {n!r}" + did_you_mean(n, sorted(goals)))
        if what == "lemma" and goals[n].kind == "graph":
            raise ProveError(f"{n!r} is a property of the lock graph, not a state invariant: it cannot be a lemma")
        out.append(goals[n])
    return out
