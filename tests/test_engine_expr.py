"""Expressions: no Python control flow, sort discipline, constant folding, and the
compiled predicates (pycompile, codegen's guard/check patterns) agreeing with the
reference evaluator on random expressions and states."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.lang.expr import (
    BOOL,
    INT,
    And,
    Bin,
    BitOf,
    Const,
    Expr,
    ExprError,
    If,
    Implies,
    Mask,
    MaskConst,
    Nary,
    Not,
    Or,
    Select,
    Var,
    lift,
    variables,
)
from checker.lang.layout import Layout, bool_field, enum_field, int_field, mask_field, ref_field
from checker.lang.program import Check, ModelError, ProgramBuilder
from checker.search.progmodel import ProgramModel
from checker.search.pycompile import compile_fn, compile_predicate, evaluate, expr_src, state_values

# a layout of every field kind, shared by the property tests below
LAYOUT = Layout()
B0 = LAYOUT.add(bool_field("b0"))
B1 = LAYOUT.add(bool_field("b1", init=True))
I0 = LAYOUT.add(int_field("i0", 0, 5))
I1 = LAYOUT.add(int_field("i1", -2, 3))
E0 = LAYOUT.add(enum_field("e0", ["idle", "busy", "gone"]))
R0 = LAYOUT.add(ref_field("r0", ["o0", "o1", "o2"]))
M0 = LAYOUT.add(mask_field("m0", 4))
M1 = LAYOUT.add(mask_field("m1", 4, init=5))
LAYOUT.freeze()
FIELDS = [B0, B1, I0, I1, E0, R0, M0, M1]
INT_FIELDS = [I0, I1, E0, R0]


# ======================================================================= control flow


@pytest.mark.parametrize("use", [
    lambda e: bool(e),
    lambda e: 1 if e else 0,
    lambda e: e and True,
    lambda e: e or True,
    lambda e: not e,
    lambda e: [x for x in [1] if e],
], ids=["bool", "if", "and", "or", "not", "comprehension"])
def test_python_control_flow_on_an_expression_raises(use) -> None:  # type: ignore[no-untyped-def]
    e = I0.var == 3
    with pytest.raises(ExprError, match="Python control flow"):
        use(e)


def test_chained_comparison_raises_instead_of_dropping_a_half() -> None:
    # 0 < x < 3 is (0 < x) and (x < 3): the 'and' needs bool() of an expression
    with pytest.raises(ExprError):
        _ = 0 < I0.var < 3  # type: ignore[operator]


def test_membership_test_raises() -> None:
    with pytest.raises(ExprError):
        _ = I0.var in [I1.var]  # list.__contains__ calls bool(a == b)


def test_constants_are_expressions_too() -> None:
    with pytest.raises(ExprError):
        bool(Const(True, BOOL))


# ======================================================================= sorts


@pytest.mark.parametrize(("build", "message"), [
    (lambda: M0.var & I0.var, "needs two masks of one width, got mask4 and int"),
    (lambda: I0.var & M0.var, "needs two masks of one width, got int and mask4"),
    (lambda: I0.var & 3, "needs two masks of one width, got int and int"),
    (lambda: M0.var | mask_field("w5", 5).var, "needs two masks of one width, got mask4 and mask5"),
    (lambda: B0.var & B1.var, "use And/Or for booleans"),
    (lambda: M0.var + 1, r"\+ needs ints, got mask4 and int"),
    (lambda: I0.var + B0.var, r"\+ needs ints, got int and bool"),
    (lambda: I0.var + True, "a bool constant where an int is expected"),
    (lambda: M0.var < M1.var, "ordering < needs ints, got mask4"),
    (lambda: B0.var <= B1.var, "ordering <= needs ints, got bool"),
    (lambda: I0.var == M0.var, "comparing int with mask4"),
    (lambda: ~I0.var, "~ needs a mask, got int"),
    (lambda: ~B0.var, "use Not"),
    (lambda: I0.var.has(1), r"has\(\) needs a mask, got int"),
    (lambda: B0.var.with_bit(0), r"with_bit\(\) needs a mask, got bool"),
    (lambda: And(I0.var), "a boolean is needed, got int"),
    (lambda: Not(M0.var), "a boolean is needed, got mask4"),
    (lambda: If(B0.var, I0.var, M0.var), "If branches differ: int vs mask4"),
    (lambda: Const(16, Mask(4)), "constant 16 does not fit mask4"),
    (lambda: MaskConst(4, [4]), "bit 4 outside a 4-bit mask"),
    (lambda: I0.var == 1.5, "cannot use float"),
    (lambda: Select([], 0), "Select over no items"),
])
def test_sort_errors(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExprError, match=message):
        build()


def test_mask_of_zero_width_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one bit"):
        Mask(0)


def test_int_literals_adopt_the_mask_sort() -> None:
    e = M0.var & 3
    assert isinstance(e, Bin) and e.sort == Mask(4) and isinstance(e.b, Const) and e.b.sort == Mask(4)


def test_model_rejects_an_update_of_the_wrong_sort() -> None:
    pb = ProgramBuilder("sorts")
    m = pb.var(mask_field("m", 4))
    pb.var(int_field("n", 0, 3))
    with pytest.raises(ModelError, match="n is int, assigned mask4"):
        pb.thread("T1").step("f", "n = m", updates={pb.field("n"): m})


def test_constant_outside_a_field_range_is_a_model_error() -> None:
    pb = ProgramBuilder("range")
    pb.var(int_field("n", 0, 3))
    pb.thread("T1").step("f", "n = 9", updates={pb.field("n"): 9})
    with pytest.raises(ModelError, match="constant 9 assigned to n outside 0..3"):
        pb.build()


# ======================================================================= constant folding


def _c(e: Expr) -> object:
    assert isinstance(e, Const), f"{e!r} was not folded"
    return e.value


def test_constant_folding() -> None:
    two, three = lift(2, INT), lift(3, INT)
    assert _c(two + 3) == 5
    assert _c(two - 7) == -5
    assert _c(5 - two) == 3
    assert _c(two == 2) is True
    assert _c(two != 2) is False
    assert _c(two < three) is True
    assert _c(three >= 4) is False
    assert _c(MaskConst(4, [0, 1]) & MaskConst(4, [1, 2])) == 0b0010
    assert _c(MaskConst(4, [0, 1]) | MaskConst(4, [3])) == 0b1011
    assert _c(MaskConst(4, [0, 1]) ^ MaskConst(4, [1])) == 0b0001
    assert _c(~MaskConst(4, [0])) == 0b1110
    assert _c(Not(Const(True, BOOL))) is False
    assert _c(And()) is True and _c(Or()) is False
    assert _c(And(B0.var, False)) is False
    assert _c(Or(True, B0.var)) is True
    assert _c(Implies(False, B0.var)) is True
    assert _c(If(True, two, three)) == 2
    assert _c(Select([two, three], 1)) == 3
    assert _c(Select([two, three], 5, default=7)) == 7


def test_identities_keep_the_operand() -> None:
    x = B0.var == True  # noqa: E712 - builds a node
    i0, i1 = I0.var, I1.var
    assert And(True, x) is x
    assert Or(False, x) is x
    assert If(Const(False, BOOL), i0, i1) is i1
    assert Select([i0, i1], 0) is i0


def test_no_folding_over_variables() -> None:
    assert isinstance(I0.var + 0, Bin)
    assert isinstance(And(B0.var, B1.var), Nary)
    assert variables(If(B0.var, I0.var + 1, I1.var)) == {B0, I0, I1}


# ======================================================================= compiled == evaluated


def _leaf(sort_kind: str) -> st.SearchStrategy[Expr]:
    if sort_kind == "bool":
        return st.one_of(st.sampled_from([B0.var, B1.var]), st.booleans().map(lambda b: Const(b, BOOL)))
    if sort_kind == "int":
        return st.one_of(st.sampled_from([f.var for f in INT_FIELDS]),
                         st.integers(-3, 6).map(lambda v: Const(v, INT)))
    return st.one_of(st.sampled_from([M0.var, M1.var]), st.integers(0, 15).map(lambda v: Const(v, Mask(4))))


@functools.cache
def _expr(kind: str, depth: int) -> st.SearchStrategy[Expr]:
    if depth == 0:
        return _leaf(kind)
    sub = {k: _expr(k, depth - 1) for k in ("bool", "int", "mask")}
    b, i, m = sub["bool"], sub["int"], sub["mask"]
    if kind == "bool":
        options = [
            st.tuples(st.sampled_from(["==", "!="]), st.sampled_from(["bool", "int", "mask"])).flatmap(
                lambda t: st.tuples(sub[t[1]], sub[t[1]]).map(
                    lambda p, op=t[0]: (p[0] == p[1]) if op == "==" else (p[0] != p[1]))),
            st.tuples(st.sampled_from(["<", "<=", ">", ">="]), i, i).map(
                lambda t: {"<": t[1] < t[2], "<=": t[1] <= t[2], ">": t[1] > t[2], ">=": t[1] >= t[2]}[t[0]]),
            st.lists(b, min_size=0, max_size=3).map(lambda xs: And(*xs)),
            st.lists(b, min_size=0, max_size=3).map(lambda xs: Or(*xs)),
            b.map(Not),
            st.tuples(b, b).map(lambda t: Implies(*t)),
            st.tuples(b, b, b).map(lambda t: If(*t)),
            st.tuples(m, i).map(lambda t: t[0].has(t[1])),
            m.map(lambda x: x.is_empty()),
            m.map(lambda x: x.nonempty()),
        ]
    elif kind == "int":
        options = [
            st.tuples(i, i).map(lambda t: t[0] + t[1]),
            st.tuples(i, i).map(lambda t: t[0] - t[1]),
            st.tuples(b, i, i).map(lambda t: If(*t)),
            st.tuples(st.lists(i, min_size=1, max_size=3), i, i).map(lambda t: Select(t[0], t[1], t[2])),
        ]
    else:
        options = [
            st.tuples(m, m).map(lambda t: t[0] & t[1]),
            st.tuples(m, m).map(lambda t: t[0] | t[1]),
            st.tuples(m, m).map(lambda t: t[0] ^ t[1]),
            m.map(lambda x: ~x),
            st.tuples(m, i).map(lambda t: t[0].with_bit(t[1])),
            st.tuples(m, i).map(lambda t: t[0].without_bit(t[1])),
            st.tuples(b, m, m).map(lambda t: If(*t)),
            i.map(lambda x: BitOf(4, x)),
        ]
    return st.one_of(_leaf(kind), *options)


def _values(draw_ints: list[int]) -> dict[object, int]:
    return {f: f.lo + v % (f.hi - f.lo + 1) for f, v in zip(FIELDS, draw_ints)}


STATE = st.lists(st.integers(0, 255), min_size=len(FIELDS), max_size=len(FIELDS)).map(_values)


def _norm(x: object) -> object:
    return bool(x) if isinstance(x, bool) else x


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["bool", "int", "mask"]), data=st.data(), values=STATE)
def test_compiled_expression_matches_evaluate(kind: str, data: st.DataObject, values: dict) -> None:  # type: ignore[type-arg]
    e = data.draw(_expr(kind, 3))
    state = LAYOUT.encode({f.name: v for f, v in values.items()})  # type: ignore[attr-defined]
    assert state_values(LAYOUT.fields, state) == values
    want = evaluate(e, values)  # type: ignore[arg-type]
    got = compile_fn("s", [f"return {expr_src(e)}"], "_probe")(state)
    if kind == "bool":
        assert bool(got) == bool(want)
        assert compile_predicate(e)(state) is bool(want)
    else:
        assert not isinstance(got, bool) and got == want
        if kind == "mask":
            assert 0 <= got < 16


@settings(max_examples=150, deadline=None)
@given(guard=_expr("bool", 2), bad=_expr("bool", 2), values=STATE)
def test_codegen_guards_and_checks_match_evaluate(guard: Expr, bad: Expr, values: dict) -> None:  # type: ignore[type-arg]
    """A step guarded by ``guard`` with a check ``bad`` fires iff the guard holds, into the
    violation iff ``bad`` holds: exercises codegen's ``s & M == V`` fast paths."""
    pb = ProgramBuilder("probe")
    mirror = {}
    for f in FIELDS:
        g = type(f)(f.name, f.kind, f.lo, f.hi, f.init, names=f.names, width_bits=f.width_bits)
        pb.var(g)
        mirror[f] = g
    from checker.lang.build import substitute

    def remap(e: Expr) -> Expr:
        return substitute(e, lambda n: Var(mirror[n.field], n.sort) if isinstance(n, Var) else None)

    pb.thread("T1").step("probe", "probe", guard=remap(guard), checks=[Check(remap(bad), "memory-safety", "bad")])
    program = pb.build()
    model = ProgramModel(program)
    state = program.layout.encode({f.name: v for f, v in values.items()})  # type: ignore[attr-defined]
    out = model.successors(state)
    if not evaluate(guard, values):  # type: ignore[arg-type]
        assert out == []
        return
    assert len(out) == 1
    _, nxt = out[0]
    if evaluate(bad, values):  # type: ignore[arg-type]
        assert nxt < 0 and model.violation(-1 - nxt) == ("memory-safety", "bad")
    else:
        assert nxt >= 0
        assert program.layout.decode(nxt) == {**program.layout.decode(state), "T1.pc": 1}


def test_layout_encode_decode_roundtrip_and_diff() -> None:
    s = LAYOUT.encode({"i1": -2, "r0": -1, "m1": 9})
    d = LAYOUT.decode(s)
    assert (d["i1"], d["r0"], d["m1"], d["b1"]) == (-2, -1, 9, 1)
    t = LAYOUT.encode({"i1": 3, "r0": -1, "m1": 9})
    assert [(f.name, a, b) for f, a, b in LAYOUT.diff(s, t)] == [("i1", -2, 3)]
    assert (R0.show(-1), R0.show(2), E0.show(1), M0.show(0b1010), B0.show(1)) == ("NULL", "o2", "busy", "{1,3}", "true")
    with pytest.raises(ValueError, match=r"i0=6 outside 0..5"):
        LAYOUT.encode({"i0": 6})
