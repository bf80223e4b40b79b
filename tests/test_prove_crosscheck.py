"""PROVED is cross-checked: the Z3 relation must allow every transition of the compiled
successor function (checker.prove.crosscheck). A bug that removes behaviour from the
encoding proves everything and is caught here, never reported as PROVED.

About 10 s in all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import z3

from checker.cli.cli import main
from checker.lang.program import Action, Program
from checker.prove import symbolic
from checker.prove.crosscheck import CrossCheckError, crosscheck_relation, reachable_sample
from checker.prove.prove import PROVED, DisagreementError, prove_program
from checker.prove.symbolic import Encoding, StateVars
from checker.search.codegen import compile_program
from checker.search.run import build_program
from checker.spec.registry import default_registry
from checker.spec.spec import LoadedSpec, load_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
GOALS = ["no-two-guests", "no-double-assignment", "crycb-within-bounds"]


def loaded(name: str) -> tuple[LoadedSpec, Program]:
    spec = load_spec(str(SPECS / f"{name}.yaml"), default_registry())
    return spec, build_program(spec.design, spec.scenario)


def drop_assign_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug of issue 11: the assign/unassign bodies lose their data updates in the Z3
    relation only (pc and lock owners still move, so no replayed answer notices)."""
    original = symbolic.Encoding.effect

    def effect(self: Encoding, a: Action, vs: StateVars, vs2: StateVars) -> z3.BoolRef:
        if not a.function.endswith("assign_adapter_store"):
            return original(self, a, vs, vs2)
        kept = {f: e for f, e in a.updates.items() if f.kind in ("pc", "owner")}
        return z3.And(*[vs2[f] == (self.expr(kept[f], vs) if f in kept else vs[f]) for f in self.fields])

    monkeypatch.setattr(symbolic.Encoding, "effect", effect)


def test_sound_encoding_passes_and_says_what_was_checked() -> None:
    spec, program = loaded("final-hotplug")
    res = prove_program(program, GOALS, spec.prove["lemmas"])
    assert res.statuses() == dict.fromkeys(GOALS, PROVED)
    # golden.json: 149 states, 286 transitions
    assert res.crosscheck == "relation checked on all 149 reachable states (286 transitions)"


def test_behaviour_removing_bug_would_prove_but_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, program = loaded("final-hotplug")
    drop_assign_bodies(monkeypatch)
    # without the cross-check the broken relation proves every goal: the bug the check exists for
    unchecked = prove_program(program, GOALS, spec.prove["lemmas"], crosscheck_states=0)
    assert unchecked.statuses() == dict.fromkeys(GOALS, PROVED)
    with pytest.raises(DisagreementError, match=r"disagree on the transition relation: admin\d: "
                       r"(un)?assign_adapter_store: .*action_trans\) does not allow"):
        prove_program(program, GOALS, spec.prove["lemmas"])


def test_cli_exits_4_never_proved(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    drop_assign_bodies(monkeypatch)
    code = main(["prove", str(SPECS / "final-hotplug.yaml"), "--property", "no-two-guests"])
    cap = capsys.readouterr()
    assert code == 4
    assert "PROVED" not in cap.out
    assert "apcheck: internal error: DisagreementError: Z3 and the explicit evaluator disagree on the " \
           "transition relation" in cap.err


def test_step_relation_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """k-induction and BMC use ``step_relation``: dropping an update there only is caught as well."""
    spec, program = loaded("final-lockdep")
    original = symbolic.Encoding.step_relation

    def step_relation(self: Encoding, vs: StateVars, vs2: StateVars, sel: z3.ArithRef) -> z3.BoolRef:
        return z3.And(original(self, vs, vs2, sel), sel != self.program.actions[-1].aid)

    monkeypatch.setattr(symbolic.Encoding, "step_relation", step_relation)
    c = compile_program(program)
    with pytest.raises(CrossCheckError, match=r"\(step_relation\) does not allow"):
        crosscheck_relation(program, Encoding(program), c.succ, [v.prop for v in c.violations])


def test_failing_checks_must_fail_in_z3(monkeypatch: pytest.MonkeyPatch) -> None:
    """c1-stale-hook-before (6.8) reaches a memory-safety failure (the stale hook's mdev used after
    free); an encoding whose checks never fire would prove check:memory-safety."""
    _, program = loaded("history/c1-stale-hook-before")
    c = compile_program(program)
    props = [v.prop for v in c.violations]
    ok = crosscheck_relation(program, Encoding(program), c.succ, props)
    assert (ok.states, ok.transitions, ok.complete) == (98, 166, True)

    def any_bad(self: Encoding, a: Action, vs: StateVars, props: Iterable[str] | None = None) -> z3.BoolRef:
        return z3.BoolVal(False)

    monkeypatch.setattr(symbolic.Encoding, "any_bad", any_bad)
    with pytest.raises(CrossCheckError, match="fails a memory-safety check that the Z3 relation does not"):
        crosscheck_relation(program, Encoding(program), c.succ, props)


def test_sampling_beyond_the_threshold_is_deterministic() -> None:
    _, program = loaded("final-ownership")  # 1,970 reachable states (specs/golden.json)
    succ = compile_program(program).succ
    init = program.layout.initial()
    states, complete, sampled = reachable_sample(succ, init, 100, 50, seed=0)
    assert not complete and sampled == 50 and len(states) == 150 and len(set(states)) == 150
    assert reachable_sample(succ, init, 100, 50, seed=0)[0] == states
    everything, complete, sampled = reachable_sample(succ, init, 5000, 50)
    assert complete and sampled == 0 and len(everything) == 1860
    assert set(states) <= set(everything)
    rep = crosscheck_relation(program, Encoding(program), succ, [], max_states=100, samples=50)
    assert rep.text().startswith("relation checked on 150 reachable states (") \
        and rep.text().endswith("100 breadth-first, 50 sampled beyond)")
