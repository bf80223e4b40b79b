"""``apcheck prove --engine spacer``: inductive invariants found by Z3's CHC engine.

The same encoding the induction engine uses (``symbolic.Encoding``) becomes a
set of constrained Horn clauses over one relation ``Inv(state)``:

    Inv(s)  <-  init(s)
    Inv(t)  <-  Inv(s) /\\ A(s) /\\ action_trans(a, s, t)      (one clause per action)
    false   <-  Inv(s) /\\ not goal(s)

where ``A`` are the invariants already PROVED in this run (``auto:lock-ownership``:
sound to assume). Spacer answers *unsat* with an interpretation of ``Inv``: an
inductive invariant that implies the goal. It counts only after the existing
initiation and consecution code has re-checked it (``Prover.prove`` with the
invariant as a lemma, every CTI concretely replayed as usual); *sat* means a
violation is reachable, and BMC is run for the trace; a timeout keeps the hand
lemmas (the induction engine with the spec's ``prove:`` lemmas).

Found invariants are written to a spec's ``prove: found:`` list as SMT-LIB
text over the field names, one entry per goal, headed ``; GOAL``; the
induction engine re-proves each with its goal on every later run (a saved
invariant is never trusted).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import z3

from checker.lang.layout import Field
from checker.lang.program_types import Program
from checker.prove.goals import Goal, ProveError, goals_of
from checker.prove.prove_results import PROVED, UNKNOWN, VIOLATED, PropertyProof
from checker.prove.symbolic import Encoding, StateVars
from checker.prove.z3expr import field_var

SPACER_BMC = 20  # BMC depth tried for a trace when Spacer says a violation is reachable


class FoundLemmaError(ValueError):
    """A saved invariant that does not parse against this program's fields."""


@dataclass
class SpacerOutcome:
    status: str  # proved | reachable | unknown
    # proved: candidate invariants over the field constants (``field_var(f)``), cheapest first; the
    # first one the re-check accepts counts
    candidates: list[z3.BoolRef]
    seconds: float
    reason: str = ""


def _field_consts(fields: Sequence[Field]) -> list[z3.ExprRef]:
    return [field_var(f) for f in fields]


def spacer_invariant(enc: Encoding, goal: Goal, assumed: Sequence[Goal], timeout_s: float) -> SpacerOutcome:
    """Ask Spacer for an inductive invariant implying ``goal``."""
    fields = enc.fields
    s, t = enc.state("chc"), enc.state("chc'")
    pre, post = [s[f] for f in fields], [t[f] for f in fields]
    fp = z3.Fixedpoint()
    fp.set(engine="spacer")
    # Without these, the answer after Z3's inlining transformations is not always inductive
    # (measured: the two-thread mutex gets a non-inductive "invariant"; the re-check caught it).
    for opt in ("fp.xform.slice", "fp.xform.inline_linear", "fp.xform.inline_eager"):
        fp.set(opt, False)
    fp.set("timeout", max(1, int(timeout_s * 1000)))
    inv = z3.Function("Inv", *[v.sort() for v in pre], z3.BoolSort())
    fp.register_relation(inv)
    fp.declare_var(*pre, *post)
    fp.rule(inv(*pre), [enc.init(s)])
    known = [g.z3_holds(enc, s) for g in assumed]
    for a in enc.program.actions:
        fp.rule(inv(*post), [inv(*pre), enc.ranges(s), *known, enc.action_trans(a, s, t)])
    t0 = time.monotonic()
    try:
        r = fp.query(z3.And(inv(*pre), z3.Not(goal.z3_holds(enc, s))))
    except z3.Z3Exception as e:  # a query canceled by the timeout raises
        return SpacerOutcome("unknown", [], time.monotonic() - t0, _reason(str(e)))
    secs = time.monotonic() - t0
    if r == z3.sat:
        return SpacerOutcome("reachable", [], secs)
    if r == z3.unknown:
        return SpacerOutcome("unknown", [], secs, _reason(str(fp.reason_unknown())))
    consts = _field_consts(fields)
    answer = _answer_formula(fp.get_answer(), inv, consts)
    # When Spacer closes the query without building frames (a scenario whose runs are all finite),
    # its answer is the reachable set with existentials; the lemmas "at infinity", or plain
    # true (the goal is inductive under the proved invariants), are the cheap candidates then.
    candidates: list[z3.BoolRef] = []
    if answer is not None and not _has_quantifier(answer):
        candidates.append(answer)
    else:
        candidates += [z3.substitute_vars(fp.get_cover_delta(-1, inv), *consts), z3.BoolVal(True)]
        if answer is not None:
            candidates.append(answer)
    return SpacerOutcome("proved", candidates, secs)


def _has_quantifier(e: z3.ExprRef) -> bool:
    if z3.is_quantifier(e):
        return True
    return any(_has_quantifier(c) for c in e.children())


def _reason(why: str) -> str:
    why = why[2:-1] if why.startswith(("b'", 'b"')) else why  # z3 gives repr(bytes) for some reasons
    return "timeout" if why == "canceled" else why


def _answer_formula(ans: z3.ExprRef, inv: z3.FuncDeclRef, consts: list[z3.ExprRef]) -> z3.BoolRef | None:
    """The interpretation of ``Inv`` in Spacer's answer ``ForAll(xs, Inv(xs) == F)``, over ``consts``."""
    body = ans.body() if z3.is_quantifier(ans) else ans
    if z3.is_eq(body) and z3.is_app_of(body.arg(0), z3.Z3_OP_UNINTERPRETED) and body.arg(0).decl() == inv:
        head, formula = body.arg(0), body.arg(1)
    elif z3.is_app(body) and body.decl() == inv:
        head, formula = body, z3.BoolVal(True)
    else:
        return None
    if not z3.is_quantifier(ans):
        return formula if head.num_args() == 0 else None
    # de Bruijn: argument i of the head is some bound variable Var(j); map j -> the i-th field constant
    subst: list[z3.ExprRef | None] = [None] * len(consts)
    for i in range(head.num_args()):
        a = head.arg(i)
        if not z3.is_var(a):
            return None
        subst[z3.get_var_index(a)] = consts[i]
    if any(x is None for x in subst):
        return None
    return z3.substitute_vars(formula, *[x for x in subst if x is not None])


def invariant_goal(fields: Sequence[Field], formula: z3.BoolRef, name: str) -> Goal:
    """A lemma Goal from a formula over the field constants."""
    consts = _field_consts(fields)

    def at(vs: StateVars) -> z3.BoolRef:
        return z3.substitute(formula, *[(c, vs[f]) for c, f in zip(consts, fields)])

    return Goal(name, "found", None, description="an invariant found by Spacer", formula=at)


def conjunct_count(formula: z3.ExprRef) -> int:
    return len(formula.children()) if z3.is_and(formula) else 1


# --------------------------------------------------------------------------- saved text


def invariant_text(goal: str, formula: z3.BoolRef) -> str:
    """SMT-LIB text for a spec's ``prove: found:`` (field names as quoted symbols)."""
    return f"; {goal}\n{formula.sexpr()}\n"


def parse_found(fields: Sequence[Field], text: str) -> tuple[str, z3.BoolRef]:
    """(goal name, formula over the field constants) from ``invariant_text`` output."""
    first, _, body = text.partition("\n")
    if not first.startswith(";") or not first[1:].strip():
        raise FoundLemmaError("a found invariant starts with a '; GOAL' line")
    decls = {f.name: field_var(f) for f in fields}
    try:
        parsed = z3.parse_smt2_string(f"(assert {body})", decls=decls)
    except z3.Z3Exception as e:
        raise FoundLemmaError(f"not an SMT-LIB formula over this program's fields: {e}") from None
    if len(parsed) != 1:
        raise FoundLemmaError("expected one formula")
    return first[1:].strip(), parsed[0]


def found_lemmas(program: Program, texts: Sequence[str]) -> dict[str, list[Goal]]:
    """A spec's saved Spacer invariants (``prove: found:``), as lemmas of the goal each names."""
    goals = goals_of(program)
    out: dict[str, list[Goal]] = {}
    for i, text in enumerate(texts):
        try:
            name, formula = parse_found(program.layout.fields, text)
        except FoundLemmaError as e:
            raise ProveError(f"found[{i}]: {e}") from None
        if name not in goals:
            raise ProveError(f"found[{i}]: names an unknown goal {name!r}")
        out.setdefault(name, []).append(invariant_goal(program.layout.fields, formula, f"found[{name}]"))
    return out


# --------------------------------------------------------------------------- one goal


def prove_with_spacer(prover: object, goal: Goal, hand_lemmas: Sequence[Goal], k: int,
                      bmc: int) -> tuple[PropertyProof, str | None]:
    """One goal by Spacer, re-checked; returns the proof and the invariant text to save (if any)."""
    from checker.prove.prove import Prover

    assert isinstance(prover, Prover)
    t0 = time.monotonic()
    out = spacer_invariant(prover.enc, goal, prover.assumed, prover.timeout_s)
    spent = f"{out.seconds:.1f} s"
    saved: str | None = None
    if out.status == "proved":
        proof = PropertyProof(goal.name, goal.kind, UNKNOWN, "Spacer gave no candidate", k, 0)
        for formula in out.candidates:
            lemma = invariant_goal(prover.enc.fields, formula, f"spacer[{goal.name}]")
            proof = prover.prove(goal, [lemma], 1, 0)
            if proof.status == PROVED and z3.is_true(formula):
                proof.detail = f"Spacer ({spent}): no strengthening needed, the goal is inductive as stated " \
                               f"(re-checked); holds in every reachable state"
                proof.lemmas = []
                break
            if proof.status == PROVED:
                n = conjunct_count(formula)
                proof.detail = (f"Spacer invariant ({n} conjunct{'s' if n != 1 else ''}, {spent}), re-checked by "
                                f"initiation and consecution; holds in every reachable state")
                saved = invariant_text(goal.name, formula)
                break
        else:
            proof.detail = f"Spacer's invariant failed the re-check ({proof.status}: {proof.detail})"
    elif out.status == "reachable":
        proof = prover.prove(goal, (), 0, max(bmc, SPACER_BMC))
        if proof.status != VIOLATED:
            proof.status = UNKNOWN
            proof.detail = (f"Spacer: a violation is reachable ({spent}); BMC found no trace within depth "
                            f"{proof.bmc_depth}")
    elif hand_lemmas:
        proof = prover.prove(goal, hand_lemmas, k, bmc)
        proof.detail = f"Spacer timed out or gave up ({spent}{': ' + out.reason if out.reason else ''}); " \
                       f"hand lemmas: {proof.detail}"
    else:
        proof = PropertyProof(goal.name, goal.kind, UNKNOWN, f"Spacer timed out or gave up ({spent}"
                              f"{': ' + out.reason if out.reason else ''}); no hand lemmas", k, 0,
                              description=goal.description)
    proof.seconds = time.monotonic() - t0
    return proof, saved


__all__ = ["SPACER_BMC", "FoundLemmaError", "SpacerOutcome", "conjunct_count", "invariant_goal", "invariant_text",
           "found_lemmas", "parse_found", "prove_with_spacer", "spacer_invariant"]
