"""Explicit backend: expressions -> Python source over a packed state ``s``.

The generated code contains only numeric constants, operators and local names
made here; nothing from a spec ever reaches ``compile``. One successor
function is generated per model, with every action's guard, checks and
effect inlined, dispatched by a balanced if-tree on each thread's pc.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checker.lang.expr import BOOL, Bin, Const, Expr, ExprError, Ite, Nary, Un, Var
from checker.lang.layout import Field


def field_src(f: Field, state: str = "s") -> str:
    core = f"({state} >> {f.offset})" if f.offset else state
    core = f"({core} & {(1 << f.bits) - 1})"
    if f.kind == "bool":
        return core
    return f"({core} + {f.lo})" if f.lo else core


def expr_src(e: Expr, names: Mapping[int, str] | None = None, state: str = "s") -> str:
    """Python source computing ``e`` (bools as bool/int, ints, masks as ints)."""
    if names and id(e) in names:
        return names[id(e)]
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Var):
        return field_src(e.field, state)  # type: ignore[arg-type]
    if isinstance(e, Un):
        a = expr_src(e.a, names, state)
        if e.op == "not":
            return f"(not {a})"
        if e.op == "~":
            return f"({a} ^ {(1 << e.sort.width) - 1})"
        raise ExprError(f"unknown unary {e.op}")
    if isinstance(e, Bin):
        a, b = expr_src(e.a, names, state), expr_src(e.b, names, state)
        if e.op in ("==", "!=", "<", "<=", ">", ">=", "+", "-", "&", "|", "^"):
            return f"({a} {e.op} {b})"
        w = e.a.sort.width
        if e.op == "has":
            if isinstance(e.b, Const):
                return f"(({a} >> {e.b.value}) & 1 == 1)" if 0 <= e.b.value < w else "False"
            return f"(0 <= {b} < {w} and ({a} >> {b}) & 1 == 1)"
        if e.op == "setbit":
            if isinstance(e.b, Const):
                return f"({a} | {1 << e.b.value})" if 0 <= e.b.value < w else a
            return f"(({a} | (1 << {b})) if 0 <= {b} < {w} else {a})"
        if e.op == "clrbit":
            full = (1 << w) - 1
            if isinstance(e.b, Const):
                return f"({a} & {full ^ (1 << e.b.value)})" if 0 <= e.b.value < w else a
            return f"(({a} & ({full} ^ (1 << {b}))) if 0 <= {b} < {w} else {a})"
        raise ExprError(f"unknown binary {e.op}")
    if isinstance(e, Nary):
        joiner = " and " if e.op == "and" else " or "
        return "(" + joiner.join(expr_src(x, names, state) for x in e.args) + ")"
    if isinstance(e, Ite):
        return f"({expr_src(e.a, names, state)} if {expr_src(e.c, names, state)} else {expr_src(e.b, names, state)})"
    raise ExprError(f"cannot compile {type(e).__name__} (unresolved placeholder?)")


def compile_fn(args: str, body: list[str], name: str = "_fn", env: dict[str, Any] | None = None) -> Callable[..., Any]:
    """Compile generated source into a function (our own code: numeric constants only)."""
    src = f"def {name}({args}):\n" + "\n".join("    " + line for line in body) + "\n"
    scope: dict[str, Any] = dict(env or {})
    exec(compile(src, f"<apcheck:{name}>", "exec"), scope)
    fn: Callable[..., Any] = scope[name]
    fn.__apcheck_source__ = src  # type: ignore[attr-defined]
    return fn


def compile_predicate(e: Expr) -> Callable[[int], bool]:
    if e.sort != BOOL:
        raise ExprError("a predicate must be boolean")
    return compile_fn("s", [f"return bool({expr_src(e)})"], "_pred")


def evaluate(e: Expr, values: Mapping[Field, int]) -> int | bool:
    """Evaluate ``e`` on concrete field values (the reference evaluator).

    Independent of packing: used by unit tests and to re-check Z3 answers.
    """
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Var):
        v = values[e.field]  # type: ignore[index]
        return bool(v) if e.sort == BOOL else v
    if isinstance(e, Un):
        a = evaluate(e.a, values)
        return (not a) if e.op == "not" else (a ^ ((1 << e.sort.width) - 1))
    if isinstance(e, Bin):
        a, b = evaluate(e.a, values), evaluate(e.b, values)
        op = e.op
        if op in ("has", "setbit", "clrbit"):
            w = e.a.sort.width
            if not 0 <= b < w:
                return False if op == "has" else a
            return bool(a >> b & 1) if op == "has" else (a | 1 << b) if op == "setbit" else (a & ~(1 << b))
        table: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
            "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
            "+": lambda x, y: x + y, "-": lambda x, y: x - y, "&": lambda x, y: x & y,
            "|": lambda x, y: x | y, "^": lambda x, y: x ^ y,
        }
        return table[op](a, b)  # type: ignore[no-any-return]
    if isinstance(e, Nary):
        vals = [bool(evaluate(x, values)) for x in e.args]
        return all(vals) if e.op == "and" else any(vals)
    if isinstance(e, Ite):
        return evaluate(e.a, values) if evaluate(e.c, values) else evaluate(e.b, values)
    raise ExprError(f"cannot evaluate {type(e).__name__}")


def state_values(fields: list[Field], state: int) -> dict[Field, int]:
    return {f: f.get(state) for f in fields}
