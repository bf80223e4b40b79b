"""Z3 backend: the same expression trees the explicit search compiles, as Z3 terms.

Sorts map one to one: ``BOOL`` -> Z3 Bool, ``INT`` -> Z3 Int (the field's
*value*, i.e. stored + lo, unbounded like a Python int), ``Mask(k)`` ->
``BitVec(k)``. The mask operations follow the Python semantics of
``pycompile`` exactly:

- ``m.has(i)`` is false when ``i < 0`` or ``i >= k``;
- ``m.with_bit(i)`` / ``m.without_bit(i)`` leave ``m`` unchanged for such ``i``;
- ``~m`` stays within k bits.

A state-dependent bit index is expanded over the values it can take (bounded
by the ranges of the fields it reads), so no Int/BitVec conversion reaches the
solver.
"""

from __future__ import annotations

from collections.abc import Mapping

import z3

from checker.lang.expr import BOOL, INT, Bin, Const, Expr, ExprError, Ite, Nary, Sort, Un, Var, children, variables
from checker.lang.layout import Field

Env = Mapping[Field, z3.ExprRef]


def z3_sort(sort: Sort) -> z3.SortRef:
    if sort == BOOL:
        return z3.BoolSort()
    if sort == INT:
        return z3.IntSort()
    if sort.kind == "mask":
        return z3.BitVecSort(sort.width)
    raise ExprError(f"no Z3 sort for {sort}")


def field_var(f: Field, suffix: str | int = "") -> z3.ExprRef:
    """The Z3 constant holding ``f``'s value (step ``suffix`` of a path)."""
    name = f"{f.name}@{suffix}" if suffix != "" else f.name
    return z3.Const(name, z3_sort(f.sort))


def range_constraint(f: Field, v: z3.ExprRef) -> z3.BoolRef:
    """``lo <= v <= hi`` for int-valued fields; true for bools and masks (typed by width)."""
    if f.sort == INT:
        return z3.And(v >= f.lo, v <= f.hi)
    return z3.BoolVal(True)


def value_term(f: Field, value: int) -> z3.ExprRef:
    """Z3 literal for a concrete field value (bools as 0/1)."""
    return literal(f.sort, value)


def literal(sort: Sort, value: int | bool) -> z3.ExprRef:
    if sort == BOOL:
        return z3.BoolVal(bool(value))
    if sort == INT:
        return z3.IntVal(int(value))
    return z3.BitVecVal(int(value), sort.width)


def model_value(model: z3.ModelRef, term: z3.ExprRef) -> int:
    """A concrete int for ``term`` in ``model`` (bools as 0/1, masks unsigned)."""
    v = model.eval(term, model_completion=True)
    return from_z3_value(v)


def from_z3_value(v: z3.ExprRef) -> int:
    if z3.is_true(v):
        return 1
    if z3.is_false(v):
        return 0
    if z3.is_int_value(v):
        return int(v.as_long())
    if z3.is_bv_value(v):
        return int(v.as_long())
    raise ExprError(f"Z3 returned a non-literal value {v}")


def int_bounds(e: Expr) -> tuple[int, int] | None:
    """Static interval of an INT expression, or None when unbounded/unknown."""
    if isinstance(e, Const):
        return int(e.value), int(e.value)
    if isinstance(e, Var):
        f = e.field
        if isinstance(f, Field) and f.sort == INT:
            return f.lo, f.hi
        return None
    if isinstance(e, Ite):
        a, b = int_bounds(e.a), int_bounds(e.b)
        if a is None or b is None:
            return None
        return min(a[0], b[0]), max(a[1], b[1])
    if isinstance(e, Bin) and e.op in ("+", "-"):
        a, b = int_bounds(e.a), int_bounds(e.b)
        if a is None or b is None:
            return None
        if e.op == "+":
            return a[0] + b[0], a[1] + b[1]
        return a[0] - b[1], a[1] - b[0]
    return None


def _bit_candidates(index: Expr, width: int) -> range:
    """The in-range bit numbers a (state-dependent) index may take."""
    b = int_bounds(index)
    if b is None:
        return range(width)
    return range(max(0, b[0]), min(width - 1, b[1]) + 1)


def _has(m: z3.BitVecRef, index: Expr, i: z3.ArithRef, width: int) -> z3.BoolRef:
    if isinstance(index, Const):
        j = int(index.value)
        if not 0 <= j < width:
            return z3.BoolVal(False)
        return z3.Extract(j, j, m) == 1
    terms = [z3.And(i == j, z3.Extract(j, j, m) == 1) for j in _bit_candidates(index, width)]
    return z3.Or(*terms) if terms else z3.BoolVal(False)


def _onehot(index: Expr, i: z3.ArithRef, width: int) -> z3.BitVecRef:
    """The mask with bit ``i`` set; 0 when ``i`` is outside 0..width-1."""
    if isinstance(index, Const):
        j = int(index.value)
        return z3.BitVecVal((1 << j) if 0 <= j < width else 0, width)
    out: z3.BitVecRef = z3.BitVecVal(0, width)
    for j in reversed(_bit_candidates(index, width)):
        out = z3.If(i == j, z3.BitVecVal(1 << j, width), out)
    return out


def to_z3(e: Expr, env: Env) -> z3.ExprRef:
    """Translate ``e`` with ``env`` giving each field's Z3 term."""
    cache: dict[int, z3.ExprRef] = {}
    return _tr(e, env, cache)


def _tr(e: Expr, env: Env, cache: dict[int, z3.ExprRef]) -> z3.ExprRef:
    key = id(e)
    hit = cache.get(key)
    if hit is not None:
        return hit
    out = _tr1(e, env, cache)
    cache[key] = out
    return out


def _tr1(e: Expr, env: Env, cache: dict[int, z3.ExprRef]) -> z3.ExprRef:
    if isinstance(e, Const):
        return literal(e.sort, e.value)
    if isinstance(e, Var):
        f = e.field
        if not isinstance(f, Field) or f not in env:
            raise ExprError(f"no Z3 term for field {getattr(f, 'name', f)!r}")
        return env[f]
    if isinstance(e, Un):
        a = _tr(e.a, env, cache)
        if e.op == "not":
            return z3.Not(a)
        if e.op == "~":
            return ~a
        raise ExprError(f"unknown unary operator {e.op!r}")
    if isinstance(e, Bin):
        return _bin(e, env, cache)
    if isinstance(e, Nary):
        args = [_tr(x, env, cache) for x in e.args]
        if e.op == "and":
            return z3.And(*args)
        if e.op == "or":
            return z3.Or(*args)
        raise ExprError(f"unknown n-ary operator {e.op!r}")
    if isinstance(e, Ite):
        return z3.If(_tr(e.c, env, cache), _tr(e.a, env, cache), _tr(e.b, env, cache))
    raise ExprError(f"cannot translate {type(e).__name__} to Z3 (unresolved placeholder?)")


def _bin(e: Bin, env: Env, cache: dict[int, z3.ExprRef]) -> z3.ExprRef:
    a = _tr(e.a, env, cache)
    b = _tr(e.b, env, cache)
    op = e.op
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op in ("has", "setbit", "clrbit"):
        width = e.a.sort.width
        if op == "has":
            return _has(a, e.b, b, width)
        hot = _onehot(e.b, b, width)
        return (a | hot) if op == "setbit" else (a & ~hot)
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "&":
        return a & b
    if op == "|":
        return a | b
    if op == "^":
        return a ^ b
    raise ExprError(f"unknown binary operator {op!r}")


def sort_matches(term: object, sort: Sort) -> bool:
    """Whether a translated term has the Z3 sort of ``sort`` (and is a Z3 term at all)."""
    if not isinstance(term, z3.ExprRef):
        return False
    if sort == BOOL:
        return bool(z3.is_bool(term))
    if sort == INT:
        return bool(z3.is_int(term))
    return bool(z3.is_bv(term)) and int(term.size()) == sort.width


def check_sorts(e: Expr, suffix: str = "sortcheck") -> z3.ExprRef:
    """Translate ``e`` over fresh variables and insist the result has ``e.sort``.

    Also checks every sub-expression, so a node whose declared sort disagrees
    with what the backend builds is named precisely. Catches the
    ``bool(a == b)`` trap: a Python bool/int where a Z3 term was due.
    """
    env = {f: field_var(f, suffix) for f in variables(e) if isinstance(f, Field)}
    cache: dict[int, z3.ExprRef] = {}
    stack = [e]
    seen: set[int] = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        term = _tr(x, env, cache)
        if not sort_matches(term, x.sort):
            got = term.sort() if isinstance(term, z3.ExprRef) else type(term).__name__
            raise ExprError(f"Z3 translation of {expr_text(x)} has sort {got}, expected {x.sort}")
        stack.extend(children(x))
    return cache[id(e)]


# --------------------------------------------------------------------------- display

_PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "|": 5, "^": 6, "&": 7, "+": 8, "-": 8}


def expr_text(e: Expr, limit: int = 200) -> str:
    """A readable one-line rendering of an expression (for CTI conjuncts)."""
    s = _text(e, 0)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _shown_const(f: object, value: int) -> str | None:
    """An enum/ref/owner/pc constant by name (``driver == vfio_ap``), when the field names it."""
    if not isinstance(f, Field) or not f.names or f.kind not in ("enum", "ref", "owner", "pc"):
        return None
    if f.kind == "pc":
        return f.names[value] if 0 <= value < len(f.names) else None
    if f.kind == "enum" and not 0 <= value < len(f.names):
        return None
    if f.kind == "ref" and not -1 <= value < len(f.names):
        return None
    if f.kind == "owner" and not 0 <= value <= len(f.names):
        return None
    return f.show(value)


def _text(e: Expr, outer: int) -> str:
    if isinstance(e, Const):
        if e.sort == BOOL:
            return "true" if e.value else "false"
        if e.sort.kind == "mask":
            bits = [str(i) for i in range(e.sort.width) if int(e.value) >> i & 1]
            return "{" + ",".join(bits) + "}"
        return str(e.value)
    if isinstance(e, Var):
        return str(getattr(e.field, "name", "?"))
    if isinstance(e, Un):
        if e.op == "not":
            s = "not " + _text(e.a, _PREC["not"])
            return f"({s})" if outer > _PREC["not"] else s
        return "~" + _text(e.a, 99)
    if isinstance(e, Bin):
        if e.op in ("==", "!=") and isinstance(e.a, Var) and isinstance(e.b, Const):
            shown = _shown_const(e.a.field, int(e.b.value))
            if shown is not None:
                s = f"{_text(e.a, 99)} {e.op} {shown}"
                return f"({s})" if outer > 4 else s
        if e.op in ("has", "setbit", "clrbit"):
            name = {"has": "has", "setbit": "with_bit", "clrbit": "without_bit"}[e.op]
            return f"{_text(e.a, 99)}.{name}({_text(e.b, 0)})"
        p = _PREC.get(e.op, 4)
        s = f"{_text(e.a, p)} {e.op} {_text(e.b, p + 1)}"
        return f"({s})" if outer > p else s
    if isinstance(e, Nary):
        p = _PREC[e.op]
        s = f" {e.op} ".join(_text(x, p + 1) for x in e.args)
        return f"({s})" if outer > p else s
    if isinstance(e, Ite):
        return f"If({_text(e.c, 0)}, {_text(e.a, 0)}, {_text(e.b, 0)})"
    return f"<{type(e).__name__}>"
