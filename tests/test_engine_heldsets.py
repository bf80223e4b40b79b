"""Static held sets (checker.lang.heldsets): what a step's own jump conditions tell about its locks."""

from __future__ import annotations

import json

import pytest

from checker.cli.cli import main
from checker.lang.expr import If, Not
from checker.lang.heldsets import slot, static_held
from checker.lang.layout import bool_field
from checker.lang.program import ProgramBuilder
from checker.lang.program_types import Acquire, Program


def _lock_or_skip(jump_on_the_same_test: bool, negated: bool = False) -> tuple[Program, int]:
    """T: ``if (flag) mutex_lock(M) else goto skip`` in one step; mutex_unlock(M); skip: done. ``negated``:
    the lock's condition is ``not closed`` and the jump's ``closed`` (KVM_RUN's fdget)."""
    pb = ProgramBuilder("lock-or-skip")
    m = pb.mutex("M")
    flag = pb.var(bool_field("flag", init=True))
    t = pb.thread("T")
    test = flag if jump_on_the_same_test else flag == True  # noqa: E712 (an equal test, another object)
    cond, jump = (Not(flag), flag) if negated else (flag, Not(test))
    t.step("f", "if (flag) mutex_lock(M); else goto skip", acquires=[Acquire(m, "w", cond)],
           updates={m.owner: If(cond, t.index + 1, m.owner.var)}, jumps=[(jump, "skip")])
    t.unlock(m, "f")
    t.label("skip")
    t.step("f", "done")
    return pb.build(), slot(m.index, "w")


def test_a_lock_taken_by_a_step_that_jumps_away_otherwise_is_held_on_the_fall_through_only() -> None:
    # apmask_commit's in_use path: guests_lock taken "when bits are newly reserved", else on to the commit
    program, m = _lock_or_skip(True)
    assert static_held(program)[0] == [frozenset(), frozenset({m}), frozenset()]


def test_a_lock_condition_matches_the_jump_through_not() -> None:
    program, m = _lock_or_skip(True, negated=True)
    assert static_held(program)[0] == [frozenset(), frozenset({m}), frozenset()]


def test_a_condition_it_cannot_match_leaves_the_held_set_unknown() -> None:
    # the match is by the expression object, never by evaluating: an equal but separate test says nothing
    program, _ = _lock_or_skip(False)
    assert static_held(program)[0] == [frozenset(), None, None]


def test_a_pc_no_step_reaches_holds_nothing() -> None:
    """A step no path reaches (6.x's -EPERM branch of set_kvm at one VM) claims nothing real: the empty held
    set there keeps auto:lock-ownership inductive where its release leads to a pc the analysis knows."""
    pb = ProgramBuilder("unreached")
    m = pb.mutex("M")
    t = pb.thread("T")
    t.lock(m, "f")
    t.unlock(m, "f")
    t.step("f", "return", goto="out")
    t.unlock(m, "f")  # only a jump could lead here, and none does
    t.label("out")
    t.step("f", "done")
    assert static_held(pb.build())[0] == [frozenset(), frozenset({slot(m.index, "w")}), frozenset(), frozenset(),
                                          frozenset()]


def test_lock_ownership_proves_through_the_conditional_group_lock_of_open(capsys: pytest.CaptureFixture[str]) -> None:
    """final-lifecycle: vfio_device_open takes group_lock in the step that jumps to the return where the open
    does not go on; with the held sets after it unknown, auto:lock-ownership was not inductive (CTI after
    vfio_device_put_kvm) and nothing could assume it."""
    rc = main(["prove", "specs/final-lifecycle.yaml", "--property", "lemma-frame", "--crosscheck-states", "0",
               "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["prove"]
    assert rc == 0
    assert [(r["property"], r["status"], r["assumed"]) for r in rows] == [
        ("lemma-frame", "PROVED", ["auto:lock-ownership"])]
