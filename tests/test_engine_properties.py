"""Each built-in property (deadlock, lock-order, memory-safety, data-race) and the user
properties (always, sometimes) on a small model that violates it and one that does not.

State and transition counts are cross-checked against ``ref_explore`` (an
independent explorer in helpers_models) and were worked out by hand in the
comments.
"""

from __future__ import annotations

from helpers_models import (
    AB,
    BA,
    bad_unlock,
    check,
    counters,
    double_free,
    fn_name,
    held_at_exit,
    lanes,
    leak,
    prop,
    race,
    ref_counts,
    refcount_underflow,
    script_program,
    scripted,
    statuses,
    use_after_free,
)

from checker.lang.expr import And, Not
from checker.lang.layout import bool_field, int_field, ref_field
from checker.lang.program import ProgramBuilder
from checker.report.results import (
    BOUNDED,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_VIOLATION,
    HOLDS,
    NOT_APPLICABLE,
    NOT_WITNESSED,
    VIOLATED,
    WITNESSED,
)

CYCLE_ONLY = "possible (cycle only; no explored run deadlocked)"
ALL_HOLD = {"deadlock": HOLDS, "lock-order": HOLDS, "memory-safety": HOLDS, "data-race": HOLDS,
            "lock-discipline": HOLDS}


def holds(result) -> bool:  # type: ignore[no-untyped-def]
    """Every built-in holds, except those with nothing to check in this model: N/A, saying why."""
    st = statuses(result)
    return set(st) == set(ALL_HOLD) and all(
        v == HOLDS or v == NOT_APPLICABLE and prop(result, k).detail.endswith("nothing to check")
        for k, v in st.items())


def counts(result) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    s = result.stats
    return s.states, s.transitions, s.deadlock_states


def edges(result) -> set[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    return {(e.src, e.dst, e.src_mode, e.dst_mode) for e in result.lock_edges}


# ======================================================================= deadlock


def test_ab_ba_deadlock_counts_trace_and_waits() -> None:
    # 25 pc pairs; 5 break mutual exclusion, (3,3) is unreachable -> 19 states.
    r = check(scripted("ab_ba"))
    assert counts(r) == (19, 22, 1)
    assert (19, 22, 1, 2) == ref_counts("ab_ba")
    assert r.stats.complete and r.stats.limit == ""
    assert r.result == VIOLATED and r.exit_code() == EXIT_VIOLATION
    dl = prop(r, "deadlock")
    assert dl.status == VIOLATED
    assert dl.detail == "reachable deadlock (1 deadlock state(s); shortest trace shown)"
    assert dl.trace is not None and dl.trace.length == 2
    assert lanes(r, "deadlock") == [("T1", "T1_lock_A"), ("T2", "T2_lock_B")]
    assert [s.action for s in dl.trace.steps] == ["mutex_lock(A)", "mutex_lock(B)"]
    assert [s.locks_held for s in dl.trace.steps] == [["A"], ["B"]]
    assert dl.trace.waits == ["T1 waits for B held by T2", "T2 waits for A held by T1"]
    assert dl.trace.final == "deadlock: no thread can move"
    assert dl.trace.threads == ["T1", "T2"]


def test_consistent_order_holds_and_finishing_is_not_deadlock() -> None:
    # Both take A then B: the 9 pairs with both inside A's section are excluded -> 16 states;
    # the final state (both finished) has no successor and is not a deadlock.
    r = check(scripted("ab_ab"))
    assert counts(r) == (16, 16, 0)
    assert (16, 16, 0, -1) == ref_counts("ab_ab")
    assert r.stats.max_depth == 8  # the terminal state, 4 + 4 steps away, was reached
    assert holds(r)
    assert r.result == HOLDS and r.exit_code() == EXIT_OK
    assert edges(r) == {("A", "B", "w", "w")}
    assert r.cycles == []
    assert all(p.trace is None for p in r.properties)


def test_single_finished_thread_is_not_a_deadlock() -> None:
    r = check(held_at_exit(correct=True))
    assert counts(r) == (3, 2, 0)
    assert holds(r)


def _flag_model(clear: bool) -> object:
    pb = ProgramBuilder("flag")
    busy = pb.flag("busy")
    pb.thread("T1").wait_clear(busy, "t1_wait")
    t2 = pb.thread("T2")
    t2.set_flag(busy, "t2_set")
    if clear:
        t2.clear_flag(busy, "t2_clear")
    return pb.build()


def test_waiting_on_a_flag_of_a_finished_thread_is_a_deadlock() -> None:
    # T2 sets busy and returns without clearing it; T1 then waits forever.
    r = check(_flag_model(clear=False))  # type: ignore[arg-type]
    assert counts(r) == (4, 3, 1)
    dl = prop(r, "deadlock")
    assert dl.status == VIOLATED
    assert lanes(r, "deadlock") == [("T2", "t2_set")]
    assert dl.trace is not None and dl.trace.waits == ["T1 waits for busy held by T2"]
    # a wait flag is invisible to lockdep
    assert prop(r, "lock-order").status == HOLDS and r.lock_edges == []


def test_flag_cleared_holds() -> None:
    r = check(_flag_model(clear=True))  # type: ignore[arg-type]
    # all 2x3 pc pairs are reachable (T1 passes before T2 sets, or after it clears); T1 is
    # blocked only while busy is set (pc pair (0,1)), so 2+1+1+1+1+0 = 6 transitions.
    assert counts(r) == (6, 6, 0)
    assert holds(r)


# ======================================================================= lock-order


def test_gated_cycle_is_reported_as_cycle_only() -> None:
    # A->B in T1 and B->A in T2, both inside C: 7x7 pc pairs minus 25 with both inside C.
    r = check(scripted("gated"))
    assert counts(r) == (24, 24, 0)
    assert (24, 24, 0, -1) == ref_counts("gated")
    assert prop(r, "deadlock").status == HOLDS
    lo = prop(r, "lock-order")
    assert lo.status == VIOLATED
    assert lo.detail == f"cycle A -> B -> A [{CYCLE_ONLY}]"
    assert lo.trace is None  # no run deadlocks, so nothing to show
    assert edges(r) == {("A", "B", "w", "w"), ("B", "A", "w", "w"), ("C", "A", "w", "w"), ("C", "B", "w", "w")}
    by_pair = {(e.src, e.dst): e for e in r.lock_edges}
    assert (by_pair["A", "B"].thread, by_pair["A", "B"].function, by_pair["A", "B"].src_function) == \
        ("T1", "T1_lock_B", "T1_lock_A")
    assert (by_pair["B", "A"].thread, by_pair["B", "A"].function, by_pair["B", "A"].src_function) == \
        ("T2", "T2_lock_A", "T2_lock_B")
    assert [(c.locks, c.reachable) for c in r.cycles] == [(["A", "B"], False)]
    assert r.result == VIOLATED and r.exit_code() == EXIT_VIOLATION


def test_ab_ba_cycle_is_a_reachable_deadlock_with_scenario() -> None:
    r = check(scripted("ab_ba"))
    lo = prop(r, "lock-order")
    assert lo.detail == "cycle A -> B -> A [reachable deadlock]"
    assert [(c.locks, c.reachable) for c in r.cycles] == [(["A", "B"], True)]
    assert lo.trace is not None
    assert lanes(r, "lock-order") == [("T1", "T1_lock_A"), ("T2", "T2_lock_B")]
    assert lo.trace.waits == ["T1 waits for B held by T2", "T2 waits for A held by T1"]
    sc = r.cycles[0].scenario
    assert sc[-1] == " *** DEADLOCK ***"
    assert sc[0].split() == ["CPU0", "CPU1"]
    assert [line.strip() for line in sc[2:6]] == ["lock(A);", "lock(B);", "lock(B);", "lock(A);"]


def test_two_cycles_are_counted() -> None:
    bc = [("lock", "B"), ("lock", "C"), ("unlock", "C"), ("unlock", "B")]
    cb = [("lock", "C"), ("lock", "B"), ("unlock", "B"), ("unlock", "C")]
    r = check(script_program("two", {"T1": AB, "T2": BA, "T3": bc, "T4": cb}))
    assert [(c.locks, c.reachable) for c in r.cycles] == [(["A", "B"], True), (["B", "C"], True)]
    assert prop(r, "lock-order").detail == "cycle A -> B -> A [reachable deadlock]; 1 more cycle(s)"


def test_lock_order_trace_keeps_waits_when_deadlock_is_not_selected() -> None:
    r = check(scripted("ab_ba"), properties=("lock-order",))
    lo = prop(r, "lock-order")
    assert lo.trace is not None
    assert lo.trace.waits == ["T1 waits for B held by T2", "T2 waits for A held by T1"]


def test_trylock_creates_no_edge_into_the_tried_lock() -> None:
    # T1: lock A; trylock B (on failure: unlock A); T2: lock B; lock A.
    r = check(scripted("trylock"))
    assert counts(r) == (20, 26, 0)
    assert (20, 26, 0, -1) == ref_counts("trylock")
    assert holds(r)
    assert edges(r) == {("B", "A", "w", "w")}  # only T2's; no A -> B from the trylock
    assert r.cycles == []


def test_same_model_with_plain_lock_has_the_cycle() -> None:
    r = check(script_program("plain", {"T1": AB, "T2": [("lock", "B"), ("lock", "A"),
                                                          ("unlock", "A"), ("unlock", "B")]}))
    assert edges(r) == {("A", "B", "w", "w"), ("B", "A", "w", "w")}
    assert prop(r, "lock-order").detail == "cycle A -> B -> A [reachable deadlock]"


def test_lock_taken_while_holding_a_trylocked_lock_gets_an_edge() -> None:
    # lockdep: a trylock adds no edge into its lock, but the lock is held afterwards.
    pb = ProgramBuilder("tryedge")
    a, b = pb.mutex("A"), pb.mutex("B")
    t = pb.thread("T1")
    t.trylock(b, "t1_trylock_b", fail="out")
    t.lock(a, "t1_lock_a")
    t.unlock(a, "t1_unlock_a")
    t.unlock(b, "t1_unlock_b")
    t.label("out")
    t.step("t1_ret", "return")
    r = check(pb.build())
    assert counts(r) == (6, 5, 0)
    assert [(e.src, e.dst, e.function, e.src_function) for e in r.lock_edges] == \
        [("B", "A", "t1_lock_a", "t1_trylock_b")]
    assert holds(r)


def test_trylock_next_to_an_rwsem_does_not_crash() -> None:
    pb = ProgramBuilder("crash")
    r, a = pb.rwsem("R"), pb.mutex("A")
    t1 = pb.thread("T1")
    t1.down_write(r, "t1_down_write")
    t1.up_write(r, "t1_up_write")
    t2 = pb.thread("T2")
    t2.trylock(a, "t2_trylock", fail="out")
    t2.unlock(a, "t2_unlock")
    t2.label("out")
    t2.step("t2_ret", "return")
    res = check(pb.build())
    # independent threads: 3 x 4 pc pairs; T1 moves in 2 x 4 of them, T2 in 3 x 3
    assert (res.stats.states, res.stats.transitions) == (12, 17)
    assert holds(res)


def test_rwsem_inversion_edges_and_deadlock() -> None:
    # T1: down_read(R); lock(M).  T2: lock(M); down_write(R). AB/BA's 19 states plus three where
    # T2 has queued as a waiting writer (rwsem_down_write_slowpath) behind T1's read hold.
    r = check(scripted("rw_inversion"))
    assert counts(r) == (22, 26, 1)
    assert (22, 26, 1, 3) == ref_counts("rw_inversion")
    assert edges(r) == {("R", "M", "r", "w"), ("M", "R", "w", "w")}
    assert [c.locks for c in r.cycles] == [["R", "M"]]
    assert prop(r, "lock-order").status == VIOLATED
    dl = prop(r, "deadlock")
    assert dl.status == VIOLATED
    assert lanes(r, "deadlock") == [("T1", "T1_read_R"), ("T2", "T2_lock_M"), ("T2", "T2_write_R")]
    assert dl.trace is not None
    assert [s.locks_held for s in dl.trace.steps] == [["R(r)"], ["M"], ["M"]]
    assert dl.trace.steps[2].action == "down_write(R): contended, queue as waiting writer"
    assert "T1 waits for M held by T2" in dl.trace.waits


def test_rwsem_inversion_deadlock_report_names_the_reader() -> None:
    r = check(scripted("rw_inversion"))
    dl = prop(r, "deadlock")
    assert dl.trace is not None
    assert dl.trace.waits == ["T1 waits for M held by T2", "T2 waits for R held by T1"]
    assert [(c.locks, c.reachable) for c in r.cycles] == [(["R", "M"], True)]
    assert prop(r, "lock-order").detail == "cycle R -> M -> R [reachable deadlock]"


def test_two_readers_cycle_reported_but_no_deadlock() -> None:
    # T2 takes R for reading: readers share, nothing blocks for good. lockdep still reports
    # R(read) -> M -> R(read): down_read is a non-recursive read.
    r = check(scripted("rw_two_readers"))
    # pc pairs 25 minus (2,1),(2,2),(2,3) where both would hold M
    assert counts(r) == (22, 30, 0)
    assert (22, 30, 0, -1) == ref_counts("rw_two_readers")
    assert prop(r, "deadlock").status == HOLDS
    assert edges(r) == {("R", "M", "r", "w"), ("M", "R", "w", "r")}
    assert prop(r, "lock-order").detail == f"cycle R -> M -> R [{CYCLE_ONLY}]"


def test_reader_queued_behind_waiting_writer_deadlocks() -> None:
    # T3: down_write(R). After T1 down_read(R) and T2 lock(M): T3's down_write waits for T1's
    # read lock, T2's down_read queues behind the waiting writer T3, T1 waits for M held by T2.
    r = check(scripted("rw_readers_writer"))
    assert counts(r) == (72, 120, 1)
    assert (72, 120, 1, 3) == ref_counts("rw_readers_writer")
    dl = prop(r, "deadlock")
    assert dl.status == VIOLATED
    assert lanes(r, "deadlock") == [("T1", "T1_read_R"), ("T2", "T2_lock_M"), ("T3", "T3_write_R")]
    assert dl.trace is not None and "T1 waits for M held by T2" in dl.trace.waits
    assert prop(r, "lock-order").status == VIOLATED


def test_reader_behind_writer_deadlock_names_every_blocked_thread() -> None:
    r = check(scripted("rw_readers_writer"))
    dl = prop(r, "deadlock")
    assert dl.trace is not None
    assert {line.split()[0] for line in dl.trace.waits} == {"T1", "T2", "T3"}
    assert dl.trace.waits == ["T1 waits for M held by T2", "T2 waits for R: queued behind writer T3",
                              "T3 waits for R held by T1"]


def _readers_then_writer(with_probe: bool = True) -> object:
    pb = ProgramBuilder("rw_arrival")
    r = pb.rwsem("R")
    m = pb.mutex("M")
    wrote = pb.var(int_field("wrote", 0, 1))
    t1 = pb.thread("T1")
    t1.down_read(r, "t1_down_read")
    t1.lock(m, "t1_lock_m")
    t1.unlock(m, "t1_unlock_m")
    t1.up_read(r, "t1_up_read")
    t2 = pb.thread("T2")
    t2.lock(m, "t2_lock_m")
    t2.down_read(r, "t2_down_read")
    t2.up_read(r, "t2_up_read")
    t2.unlock(m, "t2_unlock_m")
    t3 = pb.thread("T3")
    t3.down_write(r, "t3_down_write")
    t3.step("t3_write", "wrote = 1", updates={pb.field("wrote"): 1})
    t3.up_write(r, "t3_up_write")
    if with_probe:
        pb.sometimes("two_readers_before_writer", And(r.held_by(0, "r"), r.held_by(1, "r"), wrote == 0),
                     "T1 and T2 both read-hold R before T3 has called down_write")
    return pb.build()


def test_readers_can_share_before_a_writer_arrives() -> None:
    # Real interleaving: T1 down_read; T2 lock M; T2 down_read (T3 has not called down_write yet).
    r = check(_readers_then_writer())  # type: ignore[arg-type]
    assert prop(r, "two_readers_before_writer").status == WITNESSED


def _cond_lock_model(take_a: bool) -> object:
    """T1: if (c) lock A; lock B. T2: lock B; lock A. The cycle exists only when c is set."""
    pb = ProgramBuilder("cond")
    a, b = pb.mutex("A"), pb.mutex("B")
    c = pb.var(bool_field("c", take_a))
    t1 = pb.thread("T1")
    t1.lock(a, "t1_lock_a", when=c)
    t1.lock(b, "t1_lock_b")
    t1.unlock(b, "t1_unlock_b")
    t1.unlock(a, "t1_unlock_a", when=c)
    t2 = pb.thread("T2")
    for op, lk in (("lock", b), ("lock", a), ("unlock", a), ("unlock", b)):
        getattr(t2, op)(lk, f"t2_{op}_{lk.name.lower()}")
    return pb.build()


def test_conditional_lock_edges_depend_on_the_condition() -> None:
    off = check(_cond_lock_model(False))  # type: ignore[arg-type]
    assert holds(off)
    assert edges(off) == {("B", "A", "w", "w")}
    assert (off.stats.states, off.stats.transitions) == (22, 30)  # as two readers: only B is contended
    on = check(_cond_lock_model(True))  # type: ignore[arg-type]
    assert (on.stats.states, on.stats.transitions, on.stats.deadlock_states) == (19, 22, 1)  # AB/BA
    assert edges(on) == {("A", "B", "w", "w"), ("B", "A", "w", "w")}
    assert prop(on, "lock-order").detail == "cycle A -> B -> A [reachable deadlock]"


def _instance_lock_model(k0: int) -> object:
    """T1: lock A; lock alts[k] (A or B, chosen by state k)."""
    pb = ProgramBuilder("instance")
    a, b = pb.mutex("A"), pb.mutex("B")
    k = pb.var(int_field("k", 0, 1, k0))
    t = pb.thread("T1")
    t.lock(a, "t1_lock_a")
    t.lock(a, "t1_lock_inst", alts=[a, b], index=k)
    t.unlock(a, "t1_unlock_inst", alts=[a, b], index=k)
    t.unlock(a, "t1_unlock_a")
    return pb.build()


def test_lock_instance_chosen_by_state() -> None:
    r = check(_instance_lock_model(1))  # type: ignore[arg-type]
    assert (r.stats.states, r.stats.transitions) == (5, 4)
    assert [(e.src, e.dst, e.function, e.src_function) for e in r.lock_edges] == \
        [("A", "B", "t1_lock_inst", "t1_lock_a")]
    assert holds(r)


def test_recursive_locking_deadlocks() -> None:
    r = check(_instance_lock_model(0))  # type: ignore[arg-type]
    assert (r.stats.states, r.stats.transitions, r.stats.deadlock_states) == (2, 1, 1)
    dl = prop(r, "deadlock")
    assert lanes(r, "deadlock") == [("T1", "t1_lock_a")]
    assert dl.trace is not None and dl.trace.waits == ["T1 waits for A held by T1 (itself: recursive locking)"]


def test_recursive_locking_is_a_lock_order_violation() -> None:
    pb = ProgramBuilder("aa")
    a = pb.mutex("A")
    t = pb.thread("T1")
    t.lock(a, "t1_lock")
    t.lock(a, "t1_lock_again")
    t.unlock(a, "t1_unlock")
    t.unlock(a, "t1_unlock_again")
    r = check(pb.build())
    assert prop(r, "deadlock").status == VIOLATED
    assert prop(r, "lock-order").status == VIOLATED
    assert prop(r, "lock-order").detail == "cycle A -> A [reachable deadlock]"
    dl = prop(r, "deadlock").trace
    assert dl is not None and dl.waits == ["T1 waits for A held by T1 (itself: recursive locking)"]
    assert [(e.src, e.dst, e.thread, e.function) for e in r.cycles[0].edges] == [("A", "A", "T1", "t1_lock_again")]


def test_bad_unlock_balance() -> None:
    r = check(bad_unlock())
    assert counts(r) == (1, 1, 0)
    lo = prop(r, "lock-order")
    msg = "bad unlock balance: mutex_unlock(M) by a thread not holding it"
    assert lo.status == VIOLATED and lo.detail == msg
    assert lanes(r, "lock-order") == [("T1", "t1_unlock")]
    assert lo.trace is not None and lo.trace.steps[0].note == f"lock-order: {msg}"
    assert lo.trace.final == f"T1 fires t1_unlock: {msg}"
    ok = check(bad_unlock(correct=True))
    assert counts(ok) == (3, 2, 0) and holds(ok)


def test_up_read_without_holding() -> None:
    pb = ProgramBuilder("rw_unbalanced")
    r = pb.rwsem("R")
    pb.thread("T1").up_read(r, "t1_up_read")
    res = check(pb.build())
    lo = prop(res, "lock-order")
    assert (lo.status, lo.detail) == (VIOLATED, "bad unlock balance: up_read(R)")
    assert lanes(res, "lock-order") == [("T1", "t1_up_read")]


def test_up_write_while_holding_for_read() -> None:
    pb = ProgramBuilder("rw_unbalanced")
    r = pb.rwsem("R")
    t = pb.thread("T1")
    t.down_read(r, "t1_down_read")
    t.up_write(r, "t1_up_write")
    res = check(pb.build())
    lo = prop(res, "lock-order")
    assert (lo.status, lo.detail) == (VIOLATED, "bad unlock balance: up_write(R)")
    assert lanes(res, "lock-order") == [("T1", "t1_down_read"), ("T1", "t1_up_write")]


def test_lock_held_when_a_script_thread_finishes() -> None:
    r = check(held_at_exit())
    lo = prop(r, "lock-order")
    assert lo.status == VIOLATED
    assert lo.detail == "T1 finished while holding M (lockdep: lock held when returning to user space)"
    assert lanes(r, "lock-order") == [("T1", "t1_lock")]
    assert prop(r, "deadlock").status == HOLDS
    ok = check(held_at_exit(correct=True))
    assert prop(ok, "lock-order").status == HOLDS


def test_edge_mode_follows_the_mode_actually_held() -> None:
    pb = ProgramBuilder("mixed")
    r, m = pb.rwsem("R"), pb.mutex("M")
    t = pb.thread("T1")
    t.down_write(r, "t1_down_write")
    t.lock(m, "t1_lock_m")
    t.unlock(m, "t1_unlock_m")
    t.up_write(r, "t1_up_write")
    t.down_read(r, "t1_down_read")
    t.up_read(r, "t1_up_read")
    assert edges(check(pb.build())) == {("R", "M", "w", "w")}


# ======================================================================= memory-safety


def test_use_after_free() -> None:
    # init; T1 freed; T2 used; both -> 4 states. T2's use after T1's free is the violation.
    r = check(use_after_free())
    assert counts(r) == (4, 4, 0)
    ms = prop(r, "memory-safety")
    assert ms.status == VIOLATED and ms.detail == "use after free of obj"
    assert lanes(r, "memory-safety") == [("T1", "t1_free"), ("T2", "t2_use")]
    assert ms.trace is not None
    assert ms.trace.steps[0].changes == [("obj0.state", "alive", "freed")]
    assert ms.trace.steps[1].note == "memory-safety: use after free of obj"
    assert ms.trace.final == "T2 fires t2_use: use after free of obj"
    assert r.exit_code() == EXIT_VIOLATION


def test_reference_held_across_use_is_safe() -> None:
    r = check(use_after_free(correct=True))
    assert counts(r) == (6, 7, 0)
    assert holds(r)


def test_double_free() -> None:
    r = check(double_free())
    assert counts(r) == (3, 4, 0)
    ms = prop(r, "memory-safety")
    assert ms.status == VIOLATED and ms.detail == "double free of obj"
    assert lanes(r, "memory-safety") == [("T1", "t1_free"), ("T2", "t2_free")]


def test_free_once_under_lock_is_safe() -> None:
    r = check(double_free(correct=True))
    assert counts(r) == (14, 14, 0)
    assert holds(r)


def test_refcount_underflow() -> None:
    r = check(refcount_underflow(refs=1, release=False))
    assert counts(r) == (3, 4, 0)
    ms = prop(r, "memory-safety")
    assert ms.status == VIOLATED and ms.detail == "obj refcount underflow"
    assert lanes(r, "memory-safety") == [("T1", "t1_put"), ("T2", "t2_put")]
    assert ms.trace is not None and ms.trace.steps[0].changes == [("obj0.refs", "1", "0")]


def test_put_after_last_put_is_use_after_free() -> None:
    # with release, the first put frees the object: the second put touches freed memory
    r = check(refcount_underflow(refs=1, release=True))
    ms = prop(r, "memory-safety")
    assert ms.detail == "use after free of obj"
    assert ms.trace is not None
    assert ms.trace.steps[0].changes == [("obj0.state", "alive", "freed"), ("obj0.refs", "1", "0")]


def test_balanced_puts_hold() -> None:
    r = check(refcount_underflow(refs=2, release=True))
    assert counts(r) == (4, 4, 0)
    assert holds(r)


def test_leak_at_end_of_script() -> None:
    r = check(leak())
    assert counts(r) == (2, 1, 0)
    ms = prop(r, "memory-safety")
    assert ms.status == VIOLATED
    assert ms.detail == "leak: obj0 still alive when every thread finished"
    assert lanes(r, "memory-safety") == [("T1", "t1_alloc")]
    ok = check(leak(correct=True))
    assert counts(ok) == (3, 2, 0) and holds(ok)


def _publish_model(wait_for_pointer: bool) -> object:
    """T1 allocates obj0 and publishes ptr; T2 dereferences ptr (after waiting for it, if asked)."""
    pb = ProgramBuilder("publish")
    pool = pb.pool("obj", ["obj0"])
    ptr = pb.var(ref_field("ptr", ["obj0"]))
    t1 = pb.thread("T1")
    t1.step("t1_alloc", "obj = kzalloc()", objects=[pb.alloc(pool, 0)])
    t1.step("t1_publish", "ptr = obj", updates={pb.field("ptr"): 0})
    t2 = pb.thread("T2")
    guard = (ptr != -1) if wait_for_pointer else None
    t2.step("t2_deref", "ptr->x", guard=guard, checks=pb.use(pool, ptr, "ptr"))
    return pb.build()


def test_null_dereference() -> None:
    r = check(_publish_model(False))  # type: ignore[arg-type]
    ms = prop(r, "memory-safety")
    assert (ms.status, ms.detail) == (VIOLATED, "NULL dereference of ptr")
    assert ms.trace is not None and ms.trace.length == 1 and lanes(r, "memory-safety") == [("T2", "t2_deref")]


def test_dereference_after_publication_is_safe() -> None:
    r = check(_publish_model(True))  # type: ignore[arg-type]
    assert (r.stats.states, r.stats.transitions, r.stats.deadlock_states) == (4, 3, 0)
    assert holds(r)


def test_double_alloc() -> None:
    pb = ProgramBuilder("alloc2")
    pool = pb.pool("obj", ["obj0"])
    t = pb.thread("T1")
    t.step("a1", "alloc", objects=[pb.alloc(pool, 0)])
    t.step("a2", "alloc", objects=[pb.alloc(pool, 0)])
    ms = prop(check(pb.build()), "memory-safety")
    assert ms.status == VIOLATED and ms.detail == "obj0 allocated twice"


# ======================================================================= data-race


def test_unprotected_write_races_a_locked_read() -> None:
    r = check(race())
    dr = prop(r, "data-race")
    assert dr.status == VIOLATED
    assert dr.detail == "T1 (t1_write) writes x while T2 (t2_read) reads it, with no common lock"
    # after T2 takes M both threads are poised on x
    assert lanes(r, "data-race") == [("T2", "t2_lock")]
    assert counts(r) == (10, 11, 0)


def test_both_under_the_lock_hold() -> None:
    r = check(race(writer_locks=True))
    assert counts(r) == (13, 12, 0)
    assert holds(r)
    assert prop(r, "data-race").detail == ""


def test_write_write_race_in_the_initial_state() -> None:
    pb = ProgramBuilder("ww")
    m = pb.mutex("M")
    pb.var(int_field("x", 0, 2), protected_by=[m])
    pb.thread("T1").step("t1_set", "x = 1", updates={pb.field("x"): 1})
    pb.thread("T2").step("t2_set", "x = 2", updates={pb.field("x"): 2})
    r = check(pb.build())
    dr = prop(r, "data-race")
    assert dr.detail == "T1 (t1_set) writes x while T2 (t2_set) writes it, with no common lock"
    assert dr.trace is not None and dr.trace.length == 0


def test_no_shared_fields_note() -> None:
    r = check(scripted("ab_ab"))
    assert prop(r, "data-race").status == NOT_APPLICABLE and r.exit_code() == EXIT_OK
    assert prop(r, "data-race").detail == "no field is accessed by two threads: nothing to check"
    assert prop(r, "memory-safety").status == NOT_APPLICABLE
    assert prop(r, "memory-safety").detail == "the model has no objects (no pool, no freed lock): nothing to check"


# ======================================================================= range (modelling errors)


def test_field_leaving_its_range_is_a_model_error() -> None:
    pb = ProgramBuilder("range")
    x = pb.var(int_field("x", 0, 1))
    t = pb.thread("T1")
    t.step("inc1", "x++", updates={pb.field("x"): x + 1})
    t.step("inc2", "x++", updates={pb.field("x"): x + 1})
    r = check(pb.build())
    rg = prop(r, "range")
    assert (rg.kind, rg.status) == ("model", VIOLATED)
    assert rg.detail == "x leaves its declared range 0..1 (a modelling error)"
    assert lanes(r, "range") == [("T1", "inc1"), ("T1", "inc2")]


# ======================================================================= always / sometimes


def test_invariant_violation_has_shortest_trace() -> None:
    # a, b count 0..3 independently: 16 states, 24 transitions. (2,2) is 4 steps deep.
    pb, a, b = counters(3, 3)
    pb.always("not_both_two", Not(And(a == 2, b == 2)), "a and b are never both 2")  # type: ignore[operator]
    pb.always("sum_below_5", a + b < 5, "a + b stays below 5")  # type: ignore[operator]
    pb.always("trivial", a >= 0, "a is never negative")  # type: ignore[operator]
    r = check(pb.build())
    assert counts(r) == (16, 24, 0) and r.stats.max_depth == 6
    inv = prop(r, "not_both_two")
    assert (inv.kind, inv.status, inv.detail) == ("always", VIOLATED, "invariant violated")
    assert lanes(r, "not_both_two") == [("T1", "inc_a0"), ("T1", "inc_a1"), ("T2", "inc_b0"), ("T2", "inc_b1")]
    assert inv.trace is not None and inv.trace.steps[-1].changes == [("b", "1", "2")]
    assert prop(r, "sum_below_5").trace.length == 5  # type: ignore[union-attr]
    assert lanes(r, "sum_below_5") == [("T1", "inc_a0"), ("T1", "inc_a1"), ("T1", "inc_a2"),
                                       ("T2", "inc_b0"), ("T2", "inc_b1")]
    assert prop(r, "trivial").status == HOLDS and prop(r, "trivial").trace is None


def test_sometimes_witnessed() -> None:
    pb, a, b = counters(3, 3)
    pb.sometimes("a_done_b_idle", And(a == 3, b == 0), "T1 finishes before T2 starts")  # type: ignore[operator]
    r = check(pb.build())
    w = prop(r, "a_done_b_idle")
    assert (w.kind, w.status, w.detail) == ("sometimes", WITNESSED, "witness found")
    assert lanes(r, "a_done_b_idle") == [("T1", "inc_a0"), ("T1", "inc_a1"), ("T1", "inc_a2")]
    assert r.result == HOLDS and r.exit_code() == EXIT_OK


def test_initial_state_violation_and_witness_have_empty_traces() -> None:
    pb, a, b = counters(1, 1)
    pb.always("a_positive", a > 0, "a is positive")  # type: ignore[operator]
    pb.sometimes("start", And(a == 0, b == 0), "the initial state")  # type: ignore[operator]
    r = check(pb.build())
    assert prop(r, "a_positive").status == VIOLATED and prop(r, "a_positive").trace.length == 0  # type: ignore[union-attr]
    assert prop(r, "start").status == WITNESSED and prop(r, "start").trace.length == 0  # type: ignore[union-attr]


def test_unreachable_sometimes_is_not_witnessed_and_inconclusive() -> None:
    pb = ProgramBuilder("mutex")
    m = pb.mutex("M")
    for t in ("T1", "T2"):
        tb = pb.thread(t)
        tb.lock(m, f"{t}_lock")
        tb.unlock(m, f"{t}_unlock")
    pb.sometimes("both_inside", And(m.held_by(0), m.held_by(1)), "both threads in the critical section")
    program = pb.build()
    r = check(program)
    assert counts(r) == (8, 8, 0)  # 3x3 pc pairs minus (1,1)
    w = prop(r, "both_inside")
    assert w.status == NOT_WITNESSED and w.trace is None
    assert w.detail == ("no reachable state satisfies it: the scenario may be vacuous "
                        "(a design witness this spec does not select: not in the exit code)")
    # a witness nobody selected is reported but does not decide the exit code
    assert not w.decides and r.result == HOLDS and r.exit_code() == EXIT_OK
    r = check(program, properties=("both_inside",))  # selected: the vacuous scenario is inconclusive
    assert prop(r, "both_inside").status == NOT_WITNESSED
    assert r.result == NOT_WITNESSED
    assert r.exit_code() == EXIT_INCONCLUSIVE == 3


def test_unwitnessed_under_a_bound_is_bounded() -> None:
    pb, a, b = counters(3, 3)
    pb.sometimes("far", And(a == 3, b == 3), "both finished")  # type: ignore[operator]
    r = check(pb.build(), max_depth=4)  # the witness is 6 steps deep: 2 past the bound
    assert prop(r, "far").status == BOUNDED
    assert prop(r, "far").detail == "no violation within the bound (max-depth)"
    assert r.result == BOUNDED and r.exit_code() == EXIT_INCONCLUSIVE


def test_property_selection() -> None:
    r = check(scripted("ab_ba"), properties=("deadlock",))
    assert [p.name for p in r.properties] == ["deadlock"]
    r = check(scripted("ab_ba"), skip=("deadlock", "lock-order"))
    assert statuses(r) == {"memory-safety": NOT_APPLICABLE, "data-race": NOT_APPLICABLE,
                           "lock-discipline": NOT_APPLICABLE}
    assert r.exit_code() == EXIT_OK


def test_fn_name_helper_matches_trace_functions() -> None:
    # guards the helpers themselves: a wrong fn_name would make the lane tests vacuous
    assert fn_name("T1", ("lock", "A")) == "T1_lock_A"
    assert {a.function for a in scripted("trylock").actions} == {
        "T1_lock_A", "T1_trylock_B", "T1_unlock_B", "T1_unlock_A",
        "T2_lock_B", "T2_lock_A", "T2_unlock_A", "T2_unlock_B"}
