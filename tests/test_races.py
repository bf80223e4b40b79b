"""Issue 9, item 4: data races on every shared field, and lock discipline (Eraser) on declared ones."""

from __future__ import annotations

import pytest
from helpers_models import check, prop

from checker.lang.expr import If
from checker.lang.program import ModelError, Program, ProgramBuilder, int_field
from checker.report.results import HOLDS, NOT_APPLICABLE, VIOLATED


def two_threads(declare: str = "", writer_lock: bool = False, reader_lock: bool = True,
                name: str = "x") -> Program:
    """T1 writes ``name``; T2 reads it. ``declare``: "" (no locks declared), "M", "AB", or "unsync"."""
    pb = ProgramBuilder("fields")
    m, b = pb.mutex("M"), pb.mutex("B")
    locks = {"": [], "M": [m], "AB": [m, b], "unsync": []}[declare]
    x = pb.var(int_field(name, 0, 1), protected_by=locks,
               unsynchronized="an atomic_t in the kernel" if declare == "unsync" else "")
    pb.var(int_field("y", 0, 1))
    t1 = pb.thread("T1")
    if writer_lock:
        t1.lock(m, "t1_lock")
    t1.step("t1_write", "x = 1", updates={pb.field(name): 1})
    if writer_lock:
        t1.unlock(m, "t1_unlock")
    t2 = pb.thread("T2")
    if reader_lock:
        t2.lock(m, "t2_lock")
    t2.step("t2_read", "y = x", updates={pb.field("y"): x})
    if reader_lock:
        t2.unlock(m, "t2_unlock")
    return pb.build()


def test_field_without_declared_locks_is_race_checked() -> None:
    # before: only fields declared protected_by were looked at: HOLDS
    r = check(two_threads(declare="", reader_lock=False))
    dr = prop(r, "data-race")
    assert dr.status == VIOLATED
    assert dr.detail == "T1 (t1_write) writes x while T2 (t2_read) reads it, with no common lock"
    assert prop(r, "lock-discipline").status == NOT_APPLICABLE  # nothing declares locks


def test_field_without_declared_locks_under_a_common_lock_holds() -> None:
    r = check(two_threads(declare="", writer_lock=True))
    assert prop(r, "data-race").status == HOLDS and prop(r, "lock-discipline").status == NOT_APPLICABLE


def test_access_without_the_declared_lock_names_both_call_sites() -> None:
    r = check(two_threads(declare="M", writer_lock=False))
    ld = prop(r, "lock-discipline")
    assert ld.status == VIOLATED
    assert ld.detail == "T1 (t1_write) writes x without M (holding no lock); T2 (t2_read) also reads it"
    assert ld.trace is not None and ld.trace.length == 0  # the initial state: T1 is about to write
    # the conflicting-access race is a separate finding (T2 holds M and reads while T1 writes)
    assert prop(r, "data-race").status == VIOLATED


def test_declared_locks_held_hold() -> None:
    r = check(two_threads(declare="M", writer_lock=True))
    assert prop(r, "lock-discipline").status == HOLDS and prop(r, "data-race").status == HOLDS


def test_writers_hold_every_declared_lock_readers_one() -> None:
    # x protected by M and B: T1 writes under M only, T2 reads under M (enough for a reader)
    r = check(two_threads(declare="AB", writer_lock=True))
    ld = prop(r, "lock-discipline")
    assert ld.status == VIOLATED
    assert ld.detail == "T1 (t1_write) writes x without M and B (holding M); T2 (t2_read) also reads it"


def test_unsynchronized_and_ghost_fields_are_not_race_checked() -> None:
    r = check(two_threads(declare="unsync", reader_lock=False))
    assert prop(r, "data-race").status == NOT_APPLICABLE
    r = check(two_threads(declare="", reader_lock=False, name="ghost.x"))
    assert prop(r, "data-race").status == NOT_APPLICABLE


def test_unsynchronized_excludes_protected_by() -> None:
    pb = ProgramBuilder("bad")
    m = pb.mutex("M")
    with pytest.raises(ModelError, match="protected_by and unsynchronized exclude each other"):
        pb.var(int_field("x", 0, 1), protected_by=[m], unsynchronized="atomic")


def test_one_thread_alone_is_not_a_race() -> None:
    pb = ProgramBuilder("alone")
    m = pb.mutex("M")
    pb.var(int_field("x", 0, 1), protected_by=[m])
    pb.thread("T1").step("t1_write", "x = 1", updates={pb.field("x"): 1})
    pb.thread("T2").step("t2_other", "nothing")
    r = check(pb.build())
    assert prop(r, "lock-discipline").status == NOT_APPLICABLE and prop(r, "data-race").status == NOT_APPLICABLE


def test_write_through_a_chosen_index_does_not_read_the_other_instances() -> None:
    # T1 writes x[i] with i == 0 (chosen by state); T2 writes x[1]: T1 only keeps x[1], it does not read it
    pb = ProgramBuilder("set_at")
    m = pb.mutex("M")
    i = pb.var(int_field("i", 0, 1))
    x0, x1 = pb.var(int_field("x[0]", 0, 1), protected_by=[m]), pb.var(int_field("x[1]", 0, 1), protected_by=[m])
    pb.thread("T1").step("t1_set_at", "x[i] = 1", updates={pb.field("x[0]"): If(i == 0, 1, x0),
                                                           pb.field("x[1]"): If(i == 1, 1, x1)})
    pb.thread("T2").step("t2_write", "x[1] = 1", updates={pb.field("x[1]"): 1})
    r = check(pb.build())
    assert prop(r, "data-race").status == HOLDS  # before: "T1 (t1_set_at) reads x[1] while T2 writes it"
