"""--houdini: auto:held-locks, derived by Houdini and proved, makes conditional locking provable."""

from __future__ import annotations

from checker.lang.expr import If, Not
from checker.lang.layout import bool_field
from checker.lang.program import Program, ProgramBuilder
from checker.prove.houdini import AUTO_HELD, held_candidates
from checker.prove.prove import CTI, PROVED, prove_program


def conditional_lock(balanced: bool = True) -> Program:
    """T0 sets x; T1: c = x; if (c) mutex_lock(M); work, more_work: c = c (reloads of the local); if (c)
    mutex_unlock(M) (``balanced``: the same condition, else the negated one: a real bad unlock). The reload
    writes what the lock's condition reads, so ``heldsets.held_when`` says nothing after the first (it does not
    compare values); Houdini's "held exactly when c" survives it."""
    pb = ProgramBuilder("condlock")
    m = pb.mutex("M")
    x = pb.var(bool_field("x"))
    c = pb.var(bool_field("c"))
    pb.thread("T0").step("set_x", "x = 1", updates={pb.field("x"): True})
    t = pb.thread("T1")
    t.step("read_x", "c = x", updates={pb.field("c"): x})
    t.lock(m, "maybe_lock", when=c)
    for step in ("work", "more_work"):  # two: the goal itself says "c -> held" before the unlock only
        t.step(step, "c = c ? 1 : 0", updates={pb.field("c"): If(c, True, False)})
    t.unlock(m, "maybe_unlock", when=c if balanced else Not(c))
    return pb.build()


def test_conditional_lock_needs_held_locks() -> None:
    prog = conditional_lock()
    # heldsets cannot tell whether T1 holds M at "work": plain induction finds a CTI
    assert prove_program(prog, ["check:lock-order"]).by_name()["check:lock-order"].status == CTI
    p = prove_program(prog, ["check:lock-order"], houdini=True).by_name()["check:lock-order"]
    assert p.status == PROVED and p.assumed == ["auto:lock-ownership", AUTO_HELD]


def test_held_locks_never_hides_a_real_bad_unlock() -> None:
    p = prove_program(conditional_lock(balanced=False), ["check:lock-order"], bmc_depth=4,
                      houdini=True).by_name()["check:lock-order"]
    assert p.status not in (PROVED,)
    assert p.status == "VIOLATED" and p.trace is not None


def test_candidates_cover_the_dynamic_points_only() -> None:
    cands = held_candidates(conditional_lock())
    # T1 at "work" and "more_work" (pcs 2, 3): held, not held, held == c; at "maybe_unlock" (pc 4): the same,
    # and c, not c
    assert len(cands) == 3 + 3 + 5
