"""Static held sets (checker.lang.heldsets): what a step's own jump conditions tell about its locks."""

from __future__ import annotations

import json

import pytest

from checker.cli.cli import main
from checker.lang.expr import If, Not
from checker.lang.heldsets import held_when, same_expr, slot, static_held
from checker.lang.layout import bool_field, int_field
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


def _state_chosen_kvm_lock(rewrite_index: bool) -> tuple[Program, list[int], list[object]]:
    """T: ``kvm = matrix_mdev->kvm; if (kvm) mutex_lock(&kvm->lock)`` (the instance chosen by state, as
    get_update_locks_for_queue does); a body; the unlock under the same test. ``rewrite_index``: the body
    writes the field the test reads."""
    pb = ProgramBuilder("state-chosen")
    kl = [pb.mutex(f"kvm{i}->lock", cls="kvm->lock") for i in range(2)]
    mk = pb.var(int_field("mdev.kvm", -1, 1, init=0))
    t = pb.thread("T")
    t.lock(kl[0], "f", when=mk != -1, alts=kl, index=mk)
    t.step("f", "body", updates={mk.field: -1} if rewrite_index else {})  # type: ignore[attr-defined]
    t.unlock(kl[0], "f", when=mk != -1, alts=kl, index=mk)
    t.step("f", "done")
    program = pb.build()
    conds = [next(x.cond for a in program.actions for x in a.acquires if x.lock is k) for k in kl]
    return program, [slot(k.index, "w") for k in kl], conds


def test_a_lock_instance_chosen_by_state_is_held_exactly_when_its_condition_holds() -> None:
    # the static held set cannot say which kvm->lock get_update_locks_for_queue holds; held_when can
    program, (k0, k1), (c0, c1) = _state_chosen_kvm_lock(rewrite_index=False)
    assert static_held(program)[0] == [frozenset(), None, None, None]  # not even after the unlock
    when = held_when(program)[0]
    assert when[0] == {} and when[3] == {}
    for pc in (1, 2):
        assert when[pc].keys() == {k0, k1}
        assert same_expr(when[pc][k0], c0) and same_expr(when[pc][k1], c1)  # type: ignore[arg-type]
    assert not same_expr(c0, c1)


def test_a_step_that_rewrites_the_condition_makes_the_hold_unknown() -> None:
    program, (k0, k1), _ = _state_chosen_kvm_lock(rewrite_index=True)
    assert held_when(program)[0][2] == {k0: None, k1: None}


def test_a_lock_on_one_path_and_not_on_the_other_is_unknown_where_they_meet() -> None:
    program, m = _lock_or_skip(False)  # the jump's test is another object: the fall-through keeps the condition
    when = held_when(program)[0]
    assert when[0] == {} and when[1].keys() == {m} and when[1][m] is not None
    assert when[2] == {m: None}


def test_lock_order_proves_through_the_state_chosen_kvm_lock(capsys: pytest.CaptureFixture[str]) -> None:
    """final-ownership: vfio_ap_mdev_remove_queue unlocks the kvm->lock of the queue's mdev's kvm; with the
    held set there unknown, check:lock-order had a CTI ("bad unlock balance") unless --houdini found the
    held-lock facts; auto:lock-ownership now states them (held exactly when attached to that kvm)."""
    rc = main(["prove", "specs/final-ownership.yaml", "--property", "check:lock-order", "--property",
               "check:memory-safety", "--crosscheck-states", "0", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["prove"]
    assert rc == 0
    assert [(r["property"], r["status"], "auto:lock-ownership" in r["assumed"]) for r in rows] == [
        ("check:lock-order", "PROVED", True), ("check:memory-safety", "PROVED", True)]
