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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from checker.lang.expr import Expr
from checker.lang.layout import Field
from checker.lang.program import Program
from checker.prove.goals import AUTO_OWNERSHIP, ownership_expr
from checker.prove.parametric.lift import LiftError, Lifting, PState
from checker.prove.prove_results import CTI, PROVED, UNKNOWN, VIOLATED, PropertyProof

# How a consecution check is tried (see ParametricProver.inductive): on the checked group's own instance, on the near
# groups or on the full hypothesis, each for at most so many units of Z3's resource limit (None: the rest of the
# timeout). Every attempt states the broken group at fresh elements and the same group of the pre-state at those
# elements (``instance``): most steps keep a group for the reason it held before, which that one instance shows;
# searching the quantified groups for it took Z3 30-70 times longer. Where the near groups cannot refute a step
# Z3 searches their quantifiers until the limit (unknown) and the full hypothesis often refutes it at once, so the
# first attempts are short. A resource limit, not a timeout: which attempt refutes a check does not depend on the
# machine's load. A solver whose check was cancelled is not checked again (a fresh one for the next check: Z3 5.4
# crashed in Z3_solver_check_assumptions in 4 of 9 runs that did). docs/prove.md, "The cost of a check".
INSTANCE, NEAR, FULL = "instance", "near", "full"
ATTEMPTS: tuple[tuple[str, int | None], ...] = ((NEAR, 1_000_000), (INSTANCE, 300_000), (FULL, 5_000_000),
                                                (NEAR, 15_000_000), (FULL, None))
# A proof's budget grows with its work: at least the caller's (a multiple of --timeout), and this much for each
# consecution check it may make. A fixed budget failed the larger designs however quick their checks were (the mask
# stores over the guests: 19,555 checks, 766 s). Most checks take 10-20 ms; the allowance covers the few that take
# seconds.
PER_CHECK_S = 0.1
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


class BmcInconclusive(Exception):
    """The solver answered unknown (timeout) at ``depth``: no shorter violation is excluded."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"BMC inconclusive at depth {depth} (solver timeout)")
        self.depth = depth


def instance(pre: z3.BoolRef, post: z3.BoolRef) -> list[z3.BoolRef]:
    """A consecution check's "the group broken" at fresh elements, and the same group of the pre-state there.

    ``pre`` and ``post`` are one group at the pre- and the post-state (the same term up to the state's symbols).
    Their universal quantifiers and implications are opened in step: each bound variable becomes one fresh
    constant in both, each premise is kept. The post part (premises, not the body) is satisfiable exactly where
    ``Not(post)`` is (its quantifiers skolemized); the pre part is an instance of ``pre``, which the hypothesis
    assumes. So the two replace ``Not(post)`` in a check without changing its answer."""
    prem_pre: list[z3.BoolRef] = []
    prem_post: list[z3.BoolRef] = []
    while True:
        if (z3.is_quantifier(pre) and z3.is_quantifier(post) and pre.is_forall() and post.is_forall()
                and pre.num_vars() == post.num_vars()
                and all(pre.var_sort(i) == post.var_sort(i) for i in range(pre.num_vars()))):
            fresh = [z3.FreshConst(pre.var_sort(i), "@sk") for i in range(pre.num_vars())]
            at = list(reversed(fresh))  # de Bruijn: variable 0 is the last bound
            pre, post = z3.substitute_vars(pre.body(), *at), z3.substitute_vars(post.body(), *at)
        elif z3.is_implies(pre) and z3.is_implies(post):
            prem_pre.append(pre.arg(0))
            prem_post.append(post.arg(0))
            pre, post = pre.arg(1), post.arg(1)
        else:
            return [z3.And(*prem_post, z3.Not(post)), z3.Implies(z3.And(*prem_pre), pre)]


# a formula's conjunct group: (formula, its index, the kinds and members it names, its conjuncts, the fields they read)
Part = tuple[Invariant, int, tuple[int, ...], list[Expr], set[Field]]


def _formulas(goal: Invariant, lemmas: Sequence[Invariant]) -> list[Invariant]:
    """What an induction proves: the goal and the lemmas other than it."""
    return [goal, *[x for x in lemmas if x.name != goal.name]]


class PostState:
    """Terms over a generic post-state, instantiated at one step's post-state by substitution (in C).

    A consecution check needs each invariant group at the step's post-state; translating the group afresh
    for every step (in Python) was most of a proof's time: ``auto:lock-ownership`` at 44 operation
    instances makes about 7,700 checks. The substituted term is the one the translation at the post-state
    builds (up to the order of the two sides of an equality of constants): every shared field's constant
    becomes the step's value, every per-thread function the step's view of it."""

    def __init__(self, lift: Lifting, pre: PState) -> None:
        self.lift, self.pre = lift, pre
        self.state = lift.state("@post")
        arg = z3.Var(0, lift.tsort)
        # what a step leaves alone: the pre-state's constant and function (built once)
        self.consts = {f: (v.decl(), pre.shared[f]) for f, v in self.state.shared.items()}
        self.funs = {f: (at(arg).decl(), pre.thread[f](arg)) for f, at in self.state.thread.items()}
        garg = z3.Var(0, getattr(lift, "gsort", lift.tsort))
        self.members = {f: (at(garg).decl(), pre.member[f](garg)) for f, at in self.state.member.items()}
        self.members2 = {f: (at(garg, z3.Var(1, lift.tsort)).decl(), pre.member2[f](garg, z3.Var(1, lift.tsort)))
                         for f, at in self.state.member2.items()}
        self._groups: dict[int, tuple[list[Expr], z3.BoolRef]] = {}

    def group(self, named: tuple[int, ...], ps: list[Expr]) -> z3.BoolRef:
        """The group ``Lifting.group`` of ``ps`` over the generic post-state (translated once)."""
        hit = self._groups.get(id(ps))
        if hit is None:
            hit = self._groups[id(ps)] = (ps, self.lift.group(named, ps, self.state))
        return hit[1]

    def at(self, t: PState) -> Callable[[z3.ExprRef], z3.ExprRef]:
        """Term over the generic post-state -> the same term at ``t``, a post-state of ``pre``."""
        arg = z3.Var(0, self.lift.tsort)
        pairs = [(d, v if t.shared[f] is self.pre.shared[f] else t.shared[f]) for f, (d, v) in self.consts.items()]
        pairs += [(d, v if t.thread[f] is self.pre.thread[f] else t.thread[f](arg)) for f, (d, v) in self.funs.items()]
        garg = z3.Var(0, getattr(self.lift, "gsort", self.lift.tsort))
        pairs += [(d, v if t.member[f] is self.pre.member[f] else t.member[f](garg))
                  for f, (d, v) in self.members.items()]
        pairs += [(d, v if t.member2[f] is self.pre.member2[f] else t.member2[f](garg, z3.Var(1, self.lift.tsort)))
                  for f, (d, v) in self.members2.items()]
        n = len(pairs)
        src, dst = (z3.FuncDecl * max(1, n))(), (z3.Ast * max(1, n))()
        for i, (d, v) in enumerate(pairs):
            src[i], dst[i] = d.as_func_decl(), v.as_ast()

        # z3.substitute_funs, with its argument arrays built once per step rather than once per group (and
        # without its per-call debug checks): a step's post-state is substituted into every group it may break
        def sub(term: z3.ExprRef, keep: object = pairs) -> z3.ExprRef:  # keep: the array's terms alive
            return z3.z3._to_expr_ref(z3.Z3_substitute_funs(term.ctx.ref(), term.as_ast(), n, src, dst), term.ctx)
        return sub


class _StepSolvers:
    """One step's solvers, the near groups' and every group's, each made on first use and replaced after a
    cancelled check; ``decide`` runs a consecution check through ``ATTEMPTS``."""

    def __init__(self, prover: ParametricProver, hypotheses: dict[str, list[z3.BoolRef]]) -> None:
        self.prover, self.hypotheses = prover, hypotheses
        self.solvers: dict[str, z3.Solver] = {}

    def _check(self, on: str, deadline: float, terms: list[z3.BoolRef],
               rlimit: int | None) -> z3.CheckSatResult | None:
        sv = self.solvers.get(on)
        if sv is None:
            sv = self.solvers[on] = self.prover._solver()
            sv.add(*self.hypotheses[on])
        r = self.prover._check(sv, deadline, *terms, rlimit=rlimit)
        if r == z3.unknown:
            del self.solvers[on]  # cancelled: never checked again
        return r

    def decide(self, deadline: float, broken: list[z3.BoolRef], near_extra: list[z3.BoolRef],
               instance_first: bool = False) -> tuple[z3.CheckSatResult | None, str]:
        """(the answer, the attempt that gave it): unsat (refuted), sat (by every group: a CTI), unknown, or None
        (no time left). ``broken``: the checked group broken and its pre-state instance (``instance``);
        ``near_extra``: the groups naming the checked group's kinds, which the near attempts add;
        ``instance_first``: the instance alone is tried first (it refuted this group's previous check)."""
        r: z3.CheckSatResult | None = None
        near_allows = False  # the near groups allow the broken state: only every group may refute it
        attempts = sorted(ATTEMPTS, key=lambda a: a[0] != INSTANCE) if instance_first else ATTEMPTS
        on = FULL
        for on, units in attempts:
            if on == NEAR and near_allows:
                continue
            r = self._check(on, deadline, [*broken, *near_extra] if on == NEAR else broken, units)
            if r is None or r == z3.unsat or (on == FULL and r == z3.sat):
                return r, on
            near_allows = near_allows or (on == NEAR and r == z3.sat)
        return r, on


class ParametricProver:
    def __init__(self, program: Program, timeout_s: float = 30.0, scope: str = SCOPE,
                 singletons: Sequence[int] = (), lift: Lifting | None = None) -> None:
        self.program = program
        self.scope = scope
        self.lift = lift or Lifting(program, singletons=singletons)
        self.timeout_ms = int(timeout_s * 1000)
        self.s = self.lift.state("s")
        self.me = self.lift.var("@me")
        self.post = PostState(self.lift, self.s)
        self.assumed: list[Invariant] = []
        # (action, formula, group) -> the hypotheses (formula names) it was refuted under: a check refuted
        # under fewer hypotheses stays refuted under more, so a later attempt (the joint proof after
        # auto:lock-ownership alone) does not solve it again
        self._refuted: dict[tuple[int, str, int], list[frozenset[str]]] = {}
        # (formula, group) whose last check the pre-state instance alone refuted: its next check tries that first
        # (where the near groups are large, they fail at their first limit on most steps)
        self._by_instance: set[tuple[str, int]] = set()

    def _solver(self) -> z3.Solver:
        sv = z3.Solver()
        sv.set("timeout", self.timeout_ms)
        return sv

    def _check(self, sv: z3.Solver, deadline: float, *terms: z3.BoolRef,
               rlimit: int | None = None) -> z3.CheckSatResult | None:
        """``sv`` with ``terms`` (then without them again), within the time left (and ``rlimit`` units of Z3's
        resource limit); None: no time left."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sv.set("timeout", max(1, int(min(self.timeout_ms, remaining * 1000))))
        sv.set("rlimit", rlimit or 0)
        sv.push()
        sv.add(*terms)
        r = sv.check()
        sv.pop()
        return r

    # ------------------------------------------------------------ induction
    def inductive(self, goal: Invariant, lemmas: Sequence[Invariant], deadline: float) -> tuple[str, str]:
        """(status, detail) of proving goal jointly with lemmas."""
        lf, s = self.lift, self.s
        formulas = _formulas(goal, lemmas)
        sv = self._solver()
        sv.add(lf.init(s))
        for f in formulas:
            sv.push()
            sv.add(z3.Not(lf.invariant(f.expr, s)))
            init = sv.check()
            sv.pop()
            if init == z3.sat:
                return CTI if f is not goal else VIOLATED, f"initial state violates {f.name}"
            if init != z3.unsat:
                return UNKNOWN, f"initiation of {f.name}: solver {init}"
        # the hypothesis by groups: a check first assumes the groups naming no kind but the step's and the
        # checked group's (most of the checks need no more, and Z3 instantiates far fewer quantifiers); where
        # that does not refute the broken group, every group (so the verdict is the one of the whole hypothesis).
        # A group's key is the kinds it names: over a pool the members it names (keys below 0) do not count, so a
        # conjunct about the step's own kind and its member is near
        parts = self._parts(formulas)
        grouped = [(f, gi, named, ps) for f, gi, named, ps, _ in parts]
        grouped += [(f, gi, named, ps) for f in self.assumed for gi, (named, ps) in enumerate(lf.groups(f.expr))]
        pre = {(f.name, gi): lf.group(named, ps, s) for f, gi, named, ps in grouped}
        hyp = [(frozenset(k for k in named if k >= 0), pre[f.name, gi]) for f, gi, named, _ in grouped]
        ranges, typing = lf.ranges(s), lf.ranges(s, every=False)
        names = frozenset(x.name for x in formulas + self.assumed)
        checked = reused = 0
        for ai, a in enumerate(self.program.actions):
            ok, t = lf.step(a, s, self.me)
            at_t = self.post.at(t)
            mine = frozenset([a.thread])
            # the instance alone: the typing of every thread and member (two quantifiers) cost 5 times the rest
            solvers = _StepSolvers(self, {INSTANCE: [typing, ok],
                                          NEAR: [ranges, ok, *[h for ks, h in hyp if ks <= mine]],
                                          FULL: [ranges, ok, *[h for _, h in hyp]]})
            for f, gi, named, ps, reads in parts:
                if not reads & lf.writes(a):
                    continue  # frame: the step writes nothing the group reads
                if any(h <= names for h in self._refuted.get((ai, f.name, gi), ())):
                    checked += 1
                    reused += 1
                    continue
                broken = instance(pre[f.name, gi], at_t(self.post.group(named, ps)))
                kinds = mine | {k for k in named if k >= 0}
                r, on = solvers.decide(deadline, broken, [h for ks, h in hyp if ks <= kinds and not ks <= mine],
                                       (f.name, gi) in self._by_instance)
                if r == z3.unsat:
                    (self._by_instance.add if on == INSTANCE else self._by_instance.discard)((f.name, gi))
                if r is None:
                    return UNKNOWN, f"budget spent after {checked} consecution checks"
                checked += 1
                where = f"{self.program.threads[a.thread].name}: {a.function}: {a.text}"
                if r == z3.sat:
                    which = "" if f is goal else f" (lemma {f.name})"
                    return CTI, f"not inductive{which}: a step of any copy of {where} breaks it"
                if r != z3.unsat:
                    return UNKNOWN, f"solver {r} on {f.name} after {where}"
                self._refuted.setdefault((ai, f.name, gi), []).append(names)
        again = f", {reused} of them refuted in an earlier attempt" if reused else ""
        return PROVED, f"inductive for every number of threads ({checked} consecution checks{again})"

    def _parts(self, formulas: Sequence[Invariant]) -> list[Part]:
        """Each formula's conjunct groups (formula, index, the kinds and members they name, the conjuncts) with
        the fields they read: a step is checked against the groups that read a field it writes."""
        lf = self.lift
        return [(f, gi, named, ps, {v for p in ps for v in lf.reads(p)})
                for f in formulas for gi, (named, ps) in enumerate(lf.groups(f.expr))]

    def budget(self, formulas: Sequence[Invariant], floor_s: float) -> float:
        """Seconds for proving ``formulas`` jointly: ``floor_s``, or ``PER_CHECK_S`` for each consecution check
        the proof may make (a step and a group it may break) where that is more."""
        reads = [r for *_, r in self._parts(formulas)]
        checks = 0
        for a in self.program.actions:
            writes = self.lift.writes(a)
            checks += sum(1 for r in reads if r & writes)
        return max(floor_s, PER_CHECK_S * checks)

    def prove(self, goals: Sequence[Invariant], lemmas: Sequence[Invariant], auto_lemmas: bool = True,
              budget_s: float = 30.0, conditional_holds: bool = False) -> list[PropertyProof]:
        """Each goal proved with ``lemmas``; first ``auto:lock-ownership`` (a row of kind "derived",
        assumed in the others when PROVED; with ``conditional_holds``, which state-chosen locks are held too:
        ``goals.ownership_expr``)."""
        out: list[PropertyProof] = []
        own = ownership_expr(self.program, conditional_holds) if auto_lemmas else None
        if own is not None:
            row = self._row(Invariant(AUTO_OWNERSHIP, own), [], budget_s, "derived")
            if row.status == PROVED:
                self.assumed.append(Invariant(AUTO_OWNERSHIP, own))
            out.append(row)
        joint: dict[str, PropertyProof] = {}
        if own is not None and out[0].status != PROVED:
            # not inductive alone: a fact about a lock a lookup chose (over a pool, any member it may find) may
            # need the goals (one member holds an APQN), and the goals it: all proved at once, or none
            joint = self._joint([*goals, Invariant(AUTO_OWNERSHIP, own)], lemmas, budget_s)
            if joint:
                out[0] = joint.pop(AUTO_OWNERSHIP)
                out[0].kind = "derived"
        if not joint:
            joint = self._joint(goals, lemmas, budget_s)
        out += [joint.get(g.name) or self._row(g, lemmas, budget_s, "always") for g in goals]
        return out

    def _joint(self, goals: Sequence[Invariant], lemmas: Sequence[Invariant],
               budget_s: float) -> dict[str, PropertyProof]:
        """Every goal and lemma proved at once (one inductive conjunction proves each of them);
        empty when that fails (then each goal is proved on its own, with the lemmas)."""
        if len(goals) < 2:
            return {}
        everything = list({x.name: x for x in [*goals, *lemmas]}.values())
        t0 = time.monotonic()
        status, detail = self.inductive(everything[0], everything[1:], t0 + self.budget(everything, budget_s))
        if status != PROVED:
            return {}
        spent = time.monotonic() - t0
        out = {}
        for g in goals:
            others = [x.name for x in everything if x.name != g.name]
            out[g.name] = PropertyProof(g.name, "always", PROVED, f"{detail}, jointly with every goal and lemma", 1, 0,
                                        others, [x.name for x in self.assumed], seconds=spent, scope=self.scope)
        return out

    def _row(self, goal: Invariant, lemmas: Sequence[Invariant], budget_s: float, kind: str) -> PropertyProof:
        t0 = time.monotonic()
        try:
            status, detail = self.inductive(goal, lemmas, t0 + self.budget(_formulas(goal, lemmas), budget_s))
        except LiftError as e:
            status, detail = UNKNOWN, f"not liftable: {e}"
        p = PropertyProof(goal.name, kind, status, detail, 1, 0, [x.name for x in lemmas if x.name != goal.name],
                          [x.name for x in self.assumed if x.name != goal.name], seconds=time.monotonic() - t0)
        if status == PROVED:
            p.scope = self.scope
        return p

    # ------------------------------------------------------------ BMC
    def bmc(self, goal: Invariant, depth: int) -> LiftedTrace | None:
        """The shortest lifted path (up to ``depth`` steps) to a state violating ``goal``, or None;
        ``BmcInconclusive`` where the solver gives up at some depth (a later path might not be shortest)."""
        lf = self.lift
        states = [lf.state("b0")]
        sv = self._solver()
        sv.add(lf.init(states[0]))
        ids: list[z3.ExprRef] = []
        sels: list[z3.ArithRef] = []
        for d in range(depth + 1):
            sv.push()
            sv.add(z3.Not(lf.invariant(goal.expr, states[d])))
            r = sv.check()
            if r == z3.sat:
                m = sv.model()
                elems: dict[str, int] = {}  # the model's thread elements, numbered in order of first step
                steps = []
                for i in range(d):
                    key = str(m.eval(ids[i], model_completion=True))
                    steps.append((m.eval(sels[i]).as_long(), elems.setdefault(key, len(elems) + 1)))
                kinds = {elems[str(m.eval(ids[i], model_completion=True))]:
                         m.eval(lf.kind(ids[i]), model_completion=True).as_long() for i in range(d)}
                return LiftedTrace(steps, kinds)
            if r == z3.unknown:
                raise BmcInconclusive(d)
            sv.pop()
            if d == depth:
                break
            me, sel = lf.var(f"@me{d}"), z3.Int(f"@sel{d}")
            took, nxt = lf.successor(states[d], f"b{d + 1}", me, sel, self.program.actions)
            sv.add(took)
            states.append(nxt)
            ids.append(me)
            sels.append(sel)
        return None


__all__ = ["Invariant", "LiftedTrace", "ParametricProver", "SCOPE"]
