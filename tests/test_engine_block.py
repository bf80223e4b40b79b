"""Block.through (checker.lang.block): statements on the object a pointer names, one case per member, equal to
running them for each member in turn under ``pointer == k``."""

from __future__ import annotations

import itertools

from checker.lang.block import Block
from checker.lang.expr import And, Expr
from checker.lang.layout import Field, bool_field, int_field, ref_field
from checker.search.pycompile import evaluate

N = 3
PTR = ref_field("ptr", [f"obj{k}" for k in range(N)])
FLAG = [bool_field(f"obj{k}.flag") for k in range(N)]
COUNT = int_field("count", 0, 7)  # written by every member's statements: a fold through its value before
FIELDS: list[Field] = [PTR, COUNT, *FLAG]


def statements(b: Block, k: int, when: Expr | None) -> Expr:
    """obj k: if flagged, count++ and clear the flag; a check that reads the shared count."""
    go = And(b[FLAG[k]], *([when] if when is not None else []))
    b.set(COUNT, b[COUNT] + 1, when=go)
    b.set(FLAG[k], False, when=go)
    b.check(And(go, b[COUNT] > 6), "range", "count overflows")
    return go


def folded() -> Block:
    b = Block()
    for k in range(N):
        statements(b, k, PTR.var == k)
    return b


def test_through_is_the_fold_over_the_members_on_every_state() -> None:
    b = Block()
    got = b.through(PTR.var, range(N), lambda bk, k: statements(bk, k, None))
    want = folded()
    assert set(b.upd) == set(want.upd) == {COUNT, *FLAG}
    for ptr, count, *flags in itertools.product(range(-1, N), range(8), *[[False, True]] * N):
        env = dict(zip(FIELDS, [ptr, count, *flags]))
        assert {f.name: evaluate(b.upd[f], env) for f in b.upd} == {f.name: evaluate(want.upd[f], env) for f in b.upd}
        assert [evaluate(c.bad, env) for c in b.checks] == [any(evaluate(c.bad, env) for c in want.checks)]
        assert evaluate(got, env) == (ptr >= 0 and flags[ptr])


def test_one_check_per_message_whatever_the_member() -> None:
    b = Block()
    b.through(PTR.var, range(N), lambda bk, k: statements(bk, k, None))
    assert [(c.prop, c.message) for c in b.checks] == [("range", "count overflows")]


def test_two_checks_of_one_message_in_one_case_both_count() -> None:
    b = Block()

    def body(bk: Block, k: int) -> None:
        bk.check(FLAG[k].var, "memory-safety", "bad")
        bk.check(COUNT.var == k, "memory-safety", "bad")

    b.through(PTR.var, range(N), body)
    (check,) = b.checks
    for ptr, count, *flags in itertools.product(range(-1, N), range(8), *[[False, True]] * N):
        env = dict(zip(FIELDS, [ptr, count, *flags]))
        assert evaluate(check.bad, env) == (ptr >= 0 and (flags[ptr] or count == ptr))
