"""The Z3 backend agrees with the explicit one, sort by sort and value by value.

- every construct of checker/expr.py translates with the sort it declares;
- the ``bool(a == b)`` trap cannot reach the solver;
- on random expressions and random concrete values, Z3 (simplify under
  substitution), our reference evaluator, the lead's ``pycompile.evaluate``
  and the compiled predicate over a packed state all agree (hypothesis);
- a deliberately broken encoding is caught by the prover's cross-checks;
- every guard, update, check and invariant of every spec in the repository
  translates with the right sort.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import z3
from hypothesis import HealthCheck, given, settings
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
    Not,
    Or,
    Select,
)
from checker.lang.layout import Field, Layout, bool_field, enum_field, int_field, mask_field, ref_field
from checker.lang.program import Program, ProgramBuilder
from checker.prove import z3expr
from checker.prove.prove import DisagreementError, prove_program
from checker.prove.z3expr import check_sorts, field_var, literal, range_constraint, sort_matches, to_z3
from checker.search.pycompile import compile_predicate, evaluate

# --------------------------------------------------------------------------- fields

LAYOUT = Layout()
B = LAYOUT.add(bool_field("b"))
N = LAYOUT.add(int_field("i", -2, 5))
E = LAYOUT.add(enum_field("e", ("idle", "busy", "gone")))
R = LAYOUT.add(ref_field("r", ("s0", "s1")))
M = LAYOUT.add(mask_field("m", 5))
W = LAYOUT.add(mask_field("w", 256))
LAYOUT.freeze()
FIELDS = [B, N, E, R, M, W]
INTS = [N, E, R]


def all_constructs() -> list[tuple[str, Expr]]:
    b, i, e, r, m, w = (f.var for f in FIELDS)
    return [
        ("const bool", Const(True, BOOL)), ("const int", Const(-3, INT)), ("const mask", Const(7, Mask(5))),
        ("var bool", b), ("var int", i), ("var enum", e), ("var ref", r), ("var mask", m),
        ("~", ~m), ("~ wide", ~w), ("not", Not(b)),
        ("== bool", b == Const(True, BOOL)), ("== int", i == e), ("== mask", m == 3), ("!= mask", w != 0),
        ("<", i < e), ("<=", i <= 2), (">", r > -1), (">=", i >= e),
        ("+", i + e), ("-", i - 1), ("radd", 1 + i), ("rsub", 4 - i),
        ("&", m & 6), ("|", m | m), ("^", m ^ 31), ("& wide", w & ~w),
        ("has const", m.has(2)), ("has out of range", m.has(7)), ("has negative", m.has(-1)),
        ("has state", m.has(i)), ("has wide", w.has(i + 250)),
        ("with_bit const", m.with_bit(4)), ("with_bit state", m.with_bit(i)), ("without_bit state", m.without_bit(e)),
        ("with_bit out of range", m.with_bit(9)), ("is_empty", m.is_empty()), ("nonempty", w.nonempty()),
        ("and", And(b, i < 2)), ("or", Or(b, m.has(0))), ("implies", Implies(b, e == 1)),
        ("if bool", If(b, i < 0, m.has(1))), ("if int", If(b, i, e)), ("if mask", If(b, m, ~m)),
        ("select", Select([i, e, Const(4, INT)], r, -1)), ("maskconst", MaskConst(5, [0, 3])),
        ("bitof", BitOf(5, i)), ("bitof wide", BitOf(256, e + 100)),
    ]


@pytest.mark.parametrize("name,e", all_constructs(), ids=[n for n, _ in all_constructs()])
def test_every_construct_translates_with_its_sort(name: str, e: Expr) -> None:
    term = check_sorts(e)
    assert sort_matches(term, e.sort)


def test_field_vars_and_ranges() -> None:
    assert z3.is_bool(field_var(B, 0))
    assert z3.is_int(field_var(E, 0)) and z3.is_int(field_var(R, "x"))
    assert z3.is_bv(field_var(W, 1)) and field_var(W, 1).size() == 256
    s = z3.Solver()
    v = field_var(R, "t")
    s.add(range_constraint(R, v), v < -1)
    assert s.check() == z3.unsat
    assert z3.is_true(range_constraint(M, field_var(M)))


def test_bool_trap_is_caught() -> None:
    # an expression in Python control flow raises at definition time...
    with pytest.raises(ExprError):
        bool(N.var == 1)
    with pytest.raises(ExprError):
        _ = B.var and N.var == 1
    # ...and a node that would translate to the wrong sort is named by check_sorts
    with pytest.raises(ExprError, match="expected bool"):
        check_sorts(Bin("+", N.var, N.var, BOOL))
    with pytest.raises(ExprError, match="expected mask4"):
        check_sorts(Bin("&", M.var, M.var, Mask(4)))


def test_check_sorts_rejects_a_python_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trap itself: a translation returning Python's bool of a Z3 equality."""
    real = z3expr._bin

    def trapped(e: Bin, env: z3expr.Env, cache: dict[int, z3.ExprRef]) -> z3.ExprRef:
        out = real(e, env, cache)
        return bool(out) if e.op == "==" else out

    monkeypatch.setattr(z3expr, "_bin", trapped)
    with pytest.raises(ExprError, match="expected bool"):
        check_sorts(N.var == E.var)


# --------------------------------------------------------------------------- random agreement


def _ints(depth: int) -> st.SearchStrategy[Expr]:
    leaf = st.one_of(st.integers(-4, 8).map(lambda v: Const(v, INT)), st.sampled_from([f.var for f in INTS]))
    if depth <= 0:
        return leaf
    sub = _ints(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, sub).map(lambda t: t[0] + t[1]),
        st.tuples(sub, sub).map(lambda t: t[0] - t[1]),
        st.tuples(st.deferred(lambda: _bools(depth - 1)), sub, sub).map(lambda t: If(t[0], t[1], t[2])),
    )


def _masks(f: Field, depth: int) -> st.SearchStrategy[Expr]:
    k = f.width_bits
    leaf = st.one_of(st.integers(0, (1 << k) - 1).map(lambda v: Const(v, Mask(k))), st.just(f.var))
    if depth <= 0:
        return leaf
    sub = _masks(f, depth - 1)
    ints = _ints(depth - 1)
    return st.one_of(
        leaf,
        sub.map(lambda a: ~a),
        st.tuples(sub, sub).map(lambda t: t[0] & t[1]),
        st.tuples(sub, sub).map(lambda t: t[0] | t[1]),
        st.tuples(sub, sub).map(lambda t: t[0] ^ t[1]),
        st.tuples(sub, ints).map(lambda t: t[0].with_bit(t[1])),
        st.tuples(sub, ints).map(lambda t: t[0].without_bit(t[1])),
        st.tuples(st.deferred(lambda: _bools(depth - 1)), sub, sub).map(lambda t: If(t[0], t[1], t[2])),
    )


def _bools(depth: int) -> st.SearchStrategy[Expr]:
    leaf = st.one_of(st.booleans().map(lambda v: Const(v, BOOL)), st.just(B.var))
    if depth <= 0:
        return leaf
    sub = _bools(depth - 1)
    ints = _ints(depth - 1)
    masks = st.one_of(_masks(M, depth - 1), _masks(W, 1))
    cmp_ops = ["==", "!=", "<", "<=", ">", ">="]
    return st.one_of(
        leaf,
        sub.map(Not),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: And(*xs)),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: Or(*xs)),
        st.tuples(st.sampled_from(cmp_ops), ints, ints).map(lambda t: Bin(t[0], t[1], t[2], BOOL)),
        st.tuples(sub, sub).map(lambda t: t[0] == t[1]),
        masks.flatmap(lambda a: _masks(M if a.sort.width == 5 else W, 1).map(lambda c: a == c)),
        st.tuples(masks, ints).map(lambda t: t[0].has(t[1])),
        st.tuples(sub, sub, sub).map(lambda t: If(t[0], t[1], t[2])),
    )


def any_expr() -> st.SearchStrategy[Expr]:
    return st.one_of(_bools(3), _ints(3), _masks(M, 3), _masks(W, 2))


def values_strategy() -> st.SearchStrategy[dict[Field, int]]:
    return st.fixed_dictionaries({f: st.integers(f.lo, f.hi) for f in FIELDS})


def z3_value(e: Expr, values: dict[Field, int]) -> int:
    env = {f: literal(f.sort, v) for f, v in values.items()}
    return z3expr.from_z3_value(z3.simplify(to_z3(e, env)))


def norm(x: int | bool) -> int:
    return int(x)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_expr(), values_strategy())
def test_python_and_z3_agree_on_random_expressions(e: Expr, values: dict[Field, int]) -> None:
    check_sorts(e)
    ours = norm(evaluate(e, values))
    assert z3_value(e, values) == ours
    if e.sort == BOOL:
        assert int(compile_predicate(e)(LAYOUT.encode({f.name: v for f, v in values.items()}))) == ours


@settings(max_examples=100, deadline=None)
@given(_bools(3), values_strategy())
def test_solver_agrees_on_truth(e: Expr, values: dict[Field, int]) -> None:
    """Asserting the state and the negated value is unsat (the solver, not just simplify)."""
    env = {f: field_var(f, "h") for f in FIELDS}
    s = z3.Solver()
    s.add(*[env[f] == literal(f.sort, v) for f, v in values.items()])
    term = to_z3(e, env)
    s.add(z3.Not(term) if evaluate(e, values) else term)
    assert s.check() == z3.unsat


# --------------------------------------------------------------------------- broken encodings are caught


def bit_program() -> Program:
    """A thread sets bit 1 of a 4-bit mask; ``no_bit0`` (bit 0 never set) is true and inductive."""
    pb = ProgramBuilder("bits")
    m = pb.var(mask_field("m", 4))
    th = pb.thread("setter")
    th.step("set_bit", "m |= BIT(1)", updates={pb.field("m"): m.with_bit(1)})
    pb.always("no_bit0", Not(m.has(0)), "bit 0 is never set")
    pb.always("no_bit1", Not(m.has(1)), "false: the setter sets bit 1")
    return pb.build()


def test_honest_encoding_baseline() -> None:
    prog = bit_program()
    res = prove_program(prog, bmc_depth=2).by_name()
    assert res["no_bit0"].status == "PROVED"
    assert res["no_bit1"].status == "VIOLATED" and res["no_bit1"].trace == [0]


def off_by_one_has(monkeypatch: pytest.MonkeyPatch) -> None:
    real = z3expr._has

    def broken(m: z3.BitVecRef, index: Expr, i: z3.ArithRef, width: int) -> z3.BoolRef:
        if isinstance(index, Const):
            index = Const(int(index.value) + 1, INT)
        return real(m, index, i + 1, width)

    monkeypatch.setattr(z3expr, "_has", broken)


def test_broken_has_caught_in_cti(monkeypatch: pytest.MonkeyPatch) -> None:
    off_by_one_has(monkeypatch)
    with pytest.raises(DisagreementError, match="disagree.*please report"):
        prove_program(bit_program(), ["no_bit0"])


def test_broken_has_caught_in_bmc(monkeypatch: pytest.MonkeyPatch) -> None:
    off_by_one_has(monkeypatch)
    with pytest.raises(DisagreementError, match="disagree.*please report"):
        prove_program(bit_program(), ["no_bit0"], k=0, bmc_depth=2)


def test_broken_setbit_caught_in_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """An update encoded wrongly: Z3's path is not a path of the explicit engine."""
    real = z3expr._onehot

    def broken(index: Expr, i: z3.ArithRef, width: int) -> z3.BitVecRef:
        return real(index, i, width) | 1  # also sets bit 0

    monkeypatch.setattr(z3expr, "_onehot", broken)
    with pytest.raises(DisagreementError, match="please report"):
        prove_program(bit_program(), ["no_bit0"], k=0, bmc_depth=2)


# --------------------------------------------------------------------------- every spec's program

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p for d in ("specs", "examples") for p in (ROOT / d).rglob("*.yaml")
               if p.name != "history.yaml")  # specs/history/history.yaml is the fix manifest, not a spec


def spec_program(path: Path) -> Program:
    from checker.search.run import build_program
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(str(path), default_registry())
    return build_program(loaded.design, loaded.scenario)


def program_exprs(prog: Program) -> list[tuple[str, Expr, object]]:
    out: list[tuple[str, Expr, object]] = []
    for a in prog.actions:
        where = f"{prog.threads[a.thread].name}:{a.function}#{a.aid}"
        out.append((f"{where} guard", a.guard, BOOL))
        for f, e in a.updates.items():
            out.append((f"{where} {f.name} :=", e, f.sort))
        for c in a.checks:
            out.append((f"{where} check {c.prop}", c.bad, BOOL))
    for p in prog.properties:
        out.append((f"property {p.name}", p.expr, BOOL))
    return out


@pytest.mark.skipif(not SPECS, reason="no specs in the repository yet")
@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT)) for p in SPECS])
def test_every_spec_translates_with_the_right_sorts(path: Path) -> None:
    prog = spec_program(path)
    for what, e, sort in program_exprs(prog):
        assert e.sort == sort, what
        try:
            check_sorts(e)
        except ExprError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{path.name}: {what}: {exc}")


def test_expr_text_names_constants() -> None:
    from checker.prove.z3expr import expr_text

    assert expr_text(And(E.var == 1, Not(M.var.has(N.var)))) == "e == busy and not m.has(i)"
    assert expr_text(R.var == -1) == "r == NULL"
    assert expr_text(Or(B.var, N.var + 1 < 3)) == "b or i + 1 < 3"
