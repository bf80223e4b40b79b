"""A Program as a Z3 transition relation (the symbolic twin of the explicit successor).

Built from the very same ``Action`` objects the explicit search compiles:

- a state vector is one Z3 constant per layout field, per step index;
- ``init(vs)``: every field at its ``init``;
- ``action_trans(a, vs, vs2)``: ``pc == label`` and guard, no check bad, every
  updated field equal to its update (evaluated on the pre-state), every other
  field unchanged, and the post-state inside the declared ranges;
- ``trans(vs, vs2)``: the disjunction over actions;
- ``action_bad(a, vs)`` / ``bad_transition(vs)``: an enabled action whose check
  fires (a violation: in the explicit engine such a step has no successor).

Range constraints of every field form an always-true typing invariant
(``ranges``); ``typing_cti`` verifies that the transition relation preserves it
without relying on the post-state range conjunct.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

import z3

from checker.lang.expr import Expr
from checker.lang.layout import Field
from checker.lang.program_types import Action, Check, Program
from checker.prove.z3expr import field_var, literal, model_value, range_constraint, to_z3


@dataclass
class StateVars:
    """One step's Z3 constants, by field."""

    step: str
    vars: dict[Field, z3.ExprRef]

    def __getitem__(self, f: Field) -> z3.ExprRef:
        return self.vars[f]

    def decode(self, model: z3.ModelRef) -> dict[Field, int]:
        return {f: model_value(model, v) for f, v in self.vars.items()}


@dataclass
class Encoding:
    """The Z3 encoding of one Program; expressions are translated on demand and cached per step."""

    program: Program
    # keyed by id(expr): the entry keeps the Expr alive, so its id cannot be reused by another one
    _cache: dict[tuple[int, str], tuple[Expr, z3.ExprRef]] = dc_field(default_factory=dict)

    @property
    def fields(self) -> list[Field]:
        return self.program.layout.fields

    # ---- states
    def state(self, step: int | str) -> StateVars:
        tag = str(step)
        return StateVars(tag, {f: field_var(f, tag) for f in self.fields})

    def expr(self, e: Expr, vs: StateVars) -> z3.ExprRef:
        key = (id(e), vs.step)
        hit = self._cache.get(key)
        if hit is None:
            hit = (e, to_z3(e, vs.vars))
            self._cache[key] = hit
        return hit[1]

    def holds(self, e: Expr, vs: StateVars) -> z3.BoolRef:
        return self.expr(e, vs)

    # ---- initial condition and typing
    def init(self, vs: StateVars) -> z3.BoolRef:
        return z3.And(*[vs[f] == literal(f.sort, f.init) for f in self.fields])

    def ranges(self, vs: StateVars) -> z3.BoolRef:
        terms = [range_constraint(f, vs[f]) for f in self.fields]
        return z3.And(*[t for t in terms if not z3.is_true(t)])

    def equal(self, a: StateVars, b: StateVars) -> z3.BoolRef:
        return z3.And(*[a[f] == b[f] for f in self.fields])

    def state_is(self, vs: StateVars, values: dict[Field, int]) -> z3.BoolRef:
        return z3.And(*[vs[f] == literal(f.sort, values[f]) for f in self.fields])

    # ---- actions
    def pc_field(self, a: Action) -> Field:
        return self.program.threads[a.thread].pc

    def enabled(self, a: Action, vs: StateVars) -> z3.BoolRef:
        pc = self.pc_field(a)
        return z3.And(vs[pc] == a.label, self.holds(a.guard, vs))

    def check_bad(self, c: Check, vs: StateVars) -> z3.BoolRef:
        return self.holds(c.bad, vs)

    def any_bad(self, a: Action, vs: StateVars, props: Iterable[str] | None = None) -> z3.BoolRef:
        wanted = None if props is None else set(props)
        terms = [self.check_bad(c, vs) for c in a.checks if wanted is None or c.prop in wanted]
        return z3.Or(*terms) if terms else z3.BoolVal(False)

    def effect(self, a: Action, vs: StateVars, vs2: StateVars) -> z3.BoolRef:
        """Updates (from pre-state values) and frame: the post-state is a function of the pre-state."""
        terms = []
        for f in self.fields:
            e = a.updates.get(f)
            terms.append(vs2[f] == (vs[f] if e is None else self.expr(e, vs)))
        return z3.And(*terms)

    def action_trans(self, a: Action, vs: StateVars, vs2: StateVars, typed: bool = True) -> z3.BoolRef:
        parts = [self.enabled(a, vs), z3.Not(self.any_bad(a, vs)), self.effect(a, vs, vs2)]
        if typed:
            parts.append(self.ranges(vs2))
        return z3.And(*parts)

    def trans(self, vs: StateVars, vs2: StateVars, actions: Sequence[Action] | None = None) -> z3.BoolRef:
        acts = self.program.actions if actions is None else actions
        return z3.Or(*[self.action_trans(a, vs, vs2) for a in acts])

    def selector(self, step: int | str) -> z3.ArithRef:
        """Which action fires in step ``step`` of a path (``step_relation``)."""
        return z3.Int(f"@action@{step}")

    def step_relation(self, vs: StateVars, vs2: StateVars, sel: z3.ArithRef) -> z3.BoolRef:
        """``trans`` in functional form: action ``sel`` is enabled with no failing check, and
        every field of ``vs2`` is its update under ``sel`` (or unchanged).

        Equisatisfiable with ``trans(vs, vs2)`` (with ``sel`` free) but linear in the
        number of updates instead of actions x fields: the form BMC and k-induction unroll.
        """
        acts = self.program.actions
        parts: list[z3.BoolRef] = [sel >= 0, sel < len(acts)]
        for a in acts:
            ok = z3.And(self.enabled(a, vs), z3.Not(self.any_bad(a, vs)))
            parts.append(z3.Implies(sel == a.aid, ok))
        writers: dict[Field, list[Action]] = {}
        for a in acts:
            for f in a.updates:
                writers.setdefault(f, []).append(a)
        for f in self.fields:
            val: z3.ExprRef = vs[f]
            for a in reversed(writers.get(f, [])):
                val = z3.If(sel == a.aid, self.expr(a.updates[f], vs), val)
            parts.append(vs2[f] == val)
        parts.append(self.ranges(vs2))
        return z3.And(*parts)

    def action_bad(self, a: Action, vs: StateVars, props: Iterable[str] | None = None) -> z3.BoolRef:
        return z3.And(self.enabled(a, vs), self.any_bad(a, vs, props))

    def bad_transition(self, vs: StateVars, props: Iterable[str] | None = None) -> z3.BoolRef:
        """Some enabled action fails a check (of ``props``, or any)."""
        wanted = None if props is None else tuple(props)
        terms = [self.action_bad(a, vs, wanted) for a in self.program.actions
                 if any(wanted is None or c.prop in wanted for c in a.checks)]
        return z3.Or(*terms) if terms else z3.BoolVal(False)

    # ---- typing invariant
    def typing_cti(self, a: Action, timeout_ms: int = 10_000) -> dict[Field, int] | None:
        """A typed pre-state from which ``a`` leaves a field's declared range, or None."""
        s, t = self.state("tp"), self.state("tq")
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        solver.add(self.ranges(s), self.action_trans(a, s, t, typed=False), z3.Not(self.ranges(t)))
        if solver.check() == z3.sat:
            return s.decode(solver.model())
        return None


def encode(program: Program) -> Encoding:
    return Encoding(program)


__all__ = ["Encoding", "StateVars", "encode"]
