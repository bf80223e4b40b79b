"""``apcheck prove``: invariants by induction, k-induction and bounded model checking.

For every ``always`` property P (optionally strengthened by user lemmas L):

1. initiation: ``init => P`` (and each lemma);
2. consecution, one query per action a and per formula F of ``P /\\ L``:
   ``P /\\ L /\\ ranges /\\ T_a => F'``; a model is a counterexample to
   induction (CTI): a pre-state, the action, a post-state, and, when F is a
   top-level conjunction, the failing conjunct;
3. k-induction of ``P /\\ L`` for the k given (simple paths);
4. bounded model checking to the depth given: the shortest violation.

Statuses: PROVED, CTI, VIOLATED, BOUNDED, UNKNOWN (a solver timeout or
``unknown`` is never a pass). Check groups (``check:memory-safety``, ...) are
provable too: "no enabled step fails a check of that kind".

Every CTI and every BMC trace is re-checked concretely (the mypyvy
discipline): replayed with the reference evaluator and with the explicit
engine's compiled successor function. A disagreement raises
``DisagreementError`` -- a bug in apcheck, never a verdict. This module holds
the ``Prover`` (encodings, the re-checks) and ``prove_program``; the phases of
one goal's attempt are ``checker.prove.attempt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from checker.lang.layout import Field
from checker.lang.program_types import Action, Program
from checker.prove.attempt import Budget, ProofAttempt
from checker.prove.crosscheck import DEFAULT_MAX_STATES, CrossCheckError, CrossCheckReport, crosscheck_relation
from checker.prove.goals import (  # re-exported: goals and concrete semantics
    AUTO_OWNERSHIP as AUTO_OWNERSHIP,
)
from checker.prove.goals import (
    CHECK_PREFIX as CHECK_PREFIX,
)
from checker.prove.goals import (
    DisagreementError as DisagreementError,
)
from checker.prove.goals import (
    Goal as Goal,
)
from checker.prove.goals import (
    ProveError as ProveError,
)
from checker.prove.goals import (
    StepOutcome as StepOutcome,
)
from checker.prove.goals import (
    Values,
    _resolve,
    concrete_evaluator,
    disagree,
    truth,
)
from checker.prove.goals import concrete_step as concrete_step
from checker.prove.goals import default_goals as default_goals
from checker.prove.goals import goals_of as goals_of
from checker.prove.goals import ownership_expr as ownership_expr
from checker.prove.houdini import held_locks_goal
from checker.prove.lockgraph import prove_lock_graph
from checker.prove.prove_results import (  # re-exported: the prover's public result types
    BOUNDED as BOUNDED,
)
from checker.prove.prove_results import (
    CTI as CTI,
)
from checker.prove.prove_results import (
    PROVED as PROVED,
)
from checker.prove.prove_results import (
    UNKNOWN as UNKNOWN,
)
from checker.prove.prove_results import (
    VIOLATED as VIOLATED,
)
from checker.prove.prove_results import (
    ActionRef as ActionRef,
)
from checker.prove.prove_results import (
    CtiInfo as CtiInfo,
)
from checker.prove.prove_results import (
    PropertyProof as PropertyProof,
)
from checker.prove.prove_results import (
    ProveResult as ProveResult,
)
from checker.prove.spacer import found_lemmas, prove_with_spacer
from checker.prove.symbolic import Encoding
from checker.prove.z3expr import expr_text

# --------------------------------------------------------------------------- decoding Z3 states


def _action_ref(program: Program, a: Action) -> ActionRef:
    return ActionRef(a.aid, program.threads[a.thread].name, a.function, a.operation, a.text)


def _named(values: Values) -> dict[str, int]:
    return {f.name: int(v) for f, v in values.items()}


# --------------------------------------------------------------------------- the prover


class Prover:
    """Proves goals of one Program; Z3 encodings and the compiled successor are built once."""

    def __init__(self, program: Program, timeout_s: float = 30.0, explicit_replay: bool = True) -> None:
        self.program = program
        self.enc = Encoding(program)
        self.timeout_s = timeout_s
        self.goals = goals_of(program)
        self._explicit_replay = explicit_replay
        self._succ: Callable[[int], list[tuple[int, int]]] | None = None
        self._violation_props: list[str] = []
        self._reads: dict[str, set[Field]] = {}
        self.assumed: list[Goal] = []  # invariants already PROVED: sound extra assumptions

    # ---- syntactic frame: which fields a goal reads
    def reads(self, g: Goal) -> set[Field]:
        hit = self._reads.get(g.name)
        if hit is None:
            from checker.lang.expr import variables

            if g.formula is not None:
                hit = set(self.program.layout.fields)  # a Z3 formula: no syntactic frame
            elif g.expr is not None:
                hit = {f for f in variables(g.expr) if isinstance(f, Field)}
            else:
                hit = set()
                for a in self.program.actions:
                    if any(c.prop == g.check_prop for c in a.checks):
                        hit.add(self.program.threads[a.thread].pc)
                        hit |= {f for f in variables(a.guard) if isinstance(f, Field)}
                        for c in a.checks:
                            hit |= {f for f in variables(c.bad) if isinstance(f, Field)}
            self._reads[g.name] = hit
        return hit

    def explicit_succ(self) -> Callable[[int], list[tuple[int, int]]] | None:
        if not self._explicit_replay:
            return None
        if self._succ is None:
            try:
                from checker.search.codegen import compile_program
            except ImportError:  # pragma: no cover - before the explicit engine exists
                self._explicit_replay = False
                return None
            compiled = compile_program(self.program)
            self._succ = compiled.succ
            self._violation_props = [v.prop for v in compiled.violations]
        return self._succ

    def crosscheck(self, max_states: int) -> CrossCheckReport | None:
        """The Z3 relation allows every transition of the compiled successor function
        (``checker.prove.crosscheck``); None when explicit replay is off."""
        succ = self.explicit_succ()
        if succ is None:
            return None
        try:
            return crosscheck_relation(self.program, self.enc, succ, self._violation_props, max_states)
        except CrossCheckError as e:
            raise disagree(f"the transition relation: {e}") from None

    # ---- public
    def prove(self, goal: Goal, lemmas: Sequence[Goal] = (), k: int = 1, bmc_depth: int = 0) -> PropertyProof:
        t0 = time.monotonic()
        budget = Budget(self.timeout_s)
        q = [goal] + [lm for lm in lemmas if lm.name != goal.name]
        run = ProofAttempt(self, goal, q, budget, k, bmc_depth)
        out = run.go()
        out.seconds = time.monotonic() - t0
        out.lemmas = [lm.name for lm in q[1:]]
        out.assumed = [g.name for g in run.assumed]
        out.description = goal.description
        return out

    # ---- cross-checks
    def replay(self, states: list[dict[Field, int]], what: str, chosen: Sequence[int] = ()) -> list[int]:
        """Action ids linking consecutive states, re-derived concretely and by the explicit engine.

        ``chosen``: the actions Z3's model selected, step by step; each must be the one that
        concretely leads to the next state.
        """
        actions: list[int] = []
        for i in range(len(states) - 1):
            pre, post = states[i], states[i + 1]
            aid = None
            if i < len(chosen):
                if not 0 <= chosen[i] < len(self.program.actions):
                    raise disagree(f"{what}: Z3 chose action {chosen[i]} at step {i + 1}, which does not exist")
                out = concrete_step(self.program, pre, self.program.actions[chosen[i]])
                if out.post != post:
                    a = self.program.actions[chosen[i]]
                    raise disagree(f"{what}: step {i + 1}, {a.function}: {a.text} does not lead to Z3's next state")
                aid = chosen[i]
            for a in self.program.actions if aid is None else ():
                out = concrete_step(self.program, pre, a)
                if out.post is not None and out.post == post:
                    aid = a.aid
                    break
            if aid is None:
                raise disagree(f"{what}: no step leads from state {i} to state {i + 1} of the Z3 path")
            self.explicit_edge(pre, aid, post, f"{what}, step {i + 1}")
            actions.append(aid)
        return actions

    def explicit_edge(self, pre: Values, aid: int, post: Values, what: str) -> None:
        layout = self.program.layout
        try:
            ps, qs = layout.encode(_named(pre)), layout.encode(_named(post))
        except ValueError as exc:
            raise disagree(f"{what}: a Z3 state is outside the declared ranges ({exc})") from exc
        succ = self.explicit_succ()
        if succ is not None and (aid, qs) not in succ(ps):
            raise disagree(f"{what}: the explicit engine has no transition {aid} between the decoded states")

    def firing_action(self, goal: Goal, values: Values, what: str) -> int:
        """Check goals: the step whose check fires in the final state of a violation."""
        for a in self.program.actions:
            if goal.check_prop in concrete_step(self.program, values, a).bad:
                succ = self.explicit_succ()
                if succ is not None:
                    layout = self.program.layout
                    codes = [ns for aid, ns in succ(layout.encode(_named(values))) if aid == a.aid]
                    if not codes or codes[0] >= 0:
                        raise disagree(f"{what}: the explicit engine does not fail {a.function} ({a.text})")
                return a.aid
        raise disagree(f"{what}: no step fails a {goal.check_prop} check in the final state")

    def make_cti(self, f: Goal, q: Sequence[Goal], path_states: list[dict[Field, int]], k: int) -> CtiInfo:
        """Decode and re-check a CTI whose last transition leads out of ``f``."""
        what = f"the counterexample to induction of {f.name}"
        for i, st in enumerate(path_states[:-1]):
            for g in q:
                if not g.holds(self.program, st):
                    raise disagree(f"{what}: {g.name} is false in pre-state {i} although Z3 assumed it")
        post = path_states[-1]
        if f.holds(self.program, post):
            raise disagree(f"{what}: {f.name} holds in the post-state Z3 says violates it")
        actions = self.replay(path_states, what)
        pre = path_states[-2]
        a = self.program.actions[actions[-1]]
        idx: int | None = None
        ctext = ""
        for i, c in enumerate(f.conjuncts()):
            if not truth(c, post):
                idx, ctext = i, expr_text(c)
                break
        failure, fail_aid = "", -1
        if f.kind == "check":
            fail_aid = self.firing_action(f, post, what)
            fa = self.program.actions[fail_aid]
            ev = concrete_evaluator()
            msgs = [c.message for c in fa.checks if c.prop == f.check_prop and bool(ev(c.bad, post))]
            failure = f"{self.program.threads[fa.thread].name}: {fa.function}: {fa.text} would fail: {msgs[0]}"
        layout = self.program.layout
        return CtiInfo(f.name, _named(pre), _action_ref(self.program, a), _named(post), idx, ctext, k,
                       actions[:-1], layout.encode(_named(pre)), layout.encode(_named(post)), failure, fail_aid)


SCOPE_SCENARIO = "this scenario"
SCOPE_CYCLIC = "cyclic scenario (unbounded repetitions)"
SCOPE_ALL_SIZES = "all sizes"
UP_TO_FAILING_CHECK = "runs up to the first failing check"


def every_check_proved(program: Program, proofs: Sequence[PropertyProof]) -> bool:
    """Every check group of the program is PROVED among ``proofs`` (then a PROVED covers whole runs)."""
    proved = {p.property for p in proofs if p.status == PROVED}
    return all(CHECK_PREFIX + c.prop in proved for a in program.actions for c in a.checks)


def set_scopes(program: Program, proofs: Sequence[PropertyProof]) -> None:
    """Say what each PROVED covers. The relation has no successor after a failing check, so
    unless every check group is PROVED too, a PROVED invariant covers the runs up to the
    first failing check."""
    base = SCOPE_CYCLIC if any(th.cyclic for th in program.threads) else SCOPE_SCENARIO
    caveat = not every_check_proved(program, proofs)
    for p in proofs:
        if p.status == PROVED:
            p.scope = f"{base}; {UP_TO_FAILING_CHECK}" if caveat else base


def prove_program(program: Program, property_names: Sequence[str] | None = None, lemmas: Sequence[str] = (),
                  k: int = 1, bmc_depth: int = 0, timeout_s: float = 30.0,
                  explicit_replay: bool = True, auto_lemmas: bool = True,
                  crosscheck_states: int = DEFAULT_MAX_STATES, engine: str = "induction",
                  found: Sequence[str] = (), houdini: bool = False) -> ProveResult:
    """Prove the named goals (default: every ``always`` property) of ``program``.

    ``lemmas`` name further ``always`` properties (or ``check:...`` goals)
    assumed and proved jointly with each goal. ``timeout_s`` bounds the solver
    time per goal; running out gives UNKNOWN, never PROVED. With
    ``auto_lemmas``, the derived ``auto:lock-ownership`` invariant is proved
    first and, when PROVED, assumed in every other proof (sound: it holds in
    every reachable state). With ``houdini``, ``auto:held-locks`` (``checker.prove.houdini``)
    is derived, proved and assumed the same way. Before any PROVED is returned, the Z3 relation is
    cross-checked against the compiled successor function on the reachable
    states (every one up to ``crosscheck_states``, then a sample; 0 turns the
    check off); a disagreement raises ``DisagreementError``.
    """
    t0 = time.monotonic()
    prover = Prover(program, timeout_s, explicit_replay)
    if property_names:
        goals = _resolve(program, property_names, prover.goals, "property")
    else:
        goals = default_goals(prover.goals)
    lem = _resolve(program, lemmas, prover.goals, "lemma")
    own = prover.goals.get(AUTO_OWNERSHIP)
    if auto_lemmas and own is not None:
        pre = prover.prove(own, (), 1, 0)
        if pre.status == PROVED:
            prover.assumed.append(own)
    if houdini:
        held = held_locks_goal(program, prover.enc, prover.assumed, timeout_s)
        if held is not None and prover.prove(held, (), 1, 0).status == PROVED:
            prover.assumed.append(held)
    if engine == "spacer" and lem:
        # the hand lemmas, once proved jointly by induction, are assumptions of the Horn clauses (sound:
        # together they are inductive, so each holds in every reachable state); one unproved: none
        if all(prover.prove(lm, lem, k, 0).status == PROVED for lm in lem):
            prover.assumed += [lm for lm in lem if lm not in prover.assumed]
    saved_lemmas = found_lemmas(program, found)
    out: list[PropertyProof] = []
    new_found: list[str] = []
    for g in goals:
        if g.kind == "graph":
            out.append(prove_lock_graph(prover, g, lem, k, bmc_depth))
        elif engine == "spacer":
            proof, text = prove_with_spacer(prover, g, lem, k, bmc_depth)
            out.append(proof)
            if text is not None:
                new_found.append(text)
        else:
            out.append(prover.prove(g, [*lem, *saved_lemmas.get(g.name, [])], k, bmc_depth))
    set_scopes(program, out)
    checked = None
    if crosscheck_states > 0 and any(p.status == PROVED for p in out):
        checked = prover.crosscheck(crosscheck_states)
    res = ProveResult(program.name, out, time.monotonic() - t0)
    res.found = new_found
    if checked is not None:
        res.crosscheck = checked.text()
    return res
