"""Backend-agnostic expressions: the one definition of guards, effects and invariants.

An expression is an immutable tree. The explicit search compiles it to Python
source over a packed state (``pycompile``); the prover translates the same tree
to Z3 terms (``z3backend``). Using an expression in Python control flow
(``if e``, ``e and f``, ``bool(e)``) raises at definition time, so the
``bool(a == b)`` trap of Z3 terms cannot hide in a model.

Sorts: ``BOOL``; ``INT`` (bounded by the field that stores it); ``Mask(k)``
(a k-bit set; ``&``, ``|``, ``^``, ``~`` stay within k bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Sort:
    kind: str  # "bool" | "int" | "mask"
    width: int = 0  # bits, masks only

    def __str__(self) -> str:
        return f"mask{self.width}" if self.kind == "mask" else self.kind


BOOL = Sort("bool")
INT = Sort("int")


def Mask(width: int) -> Sort:
    if width < 1:
        raise ValueError("a mask needs at least one bit")
    return Sort("mask", width)


class ExprError(TypeError):
    """A model used an expression in a way the two backends cannot agree on."""


Operand = Union["Expr", int, bool]


class Expr:
    """Base class. Subclasses are frozen; equality operators build nodes."""

    __slots__ = ("sort",)
    sort: Sort

    def __bool__(self) -> bool:
        raise ExprError(
            "an expression was used in Python control flow (if/and/or/not/bool); "
            "state-dependent choices must use If, And, Or, Not"
        )

    __hash__ = object.__hash__

    # comparisons -------------------------------------------------------
    def __eq__(self, other: object) -> Expr:  # type: ignore[override]
        return _cmp("==", self, other)

    def __ne__(self, other: object) -> Expr:  # type: ignore[override]
        return _cmp("!=", self, other)

    def __lt__(self, other: Operand) -> Expr:
        return _cmp("<", self, other)

    def __le__(self, other: Operand) -> Expr:
        return _cmp("<=", self, other)

    def __gt__(self, other: Operand) -> Expr:
        return _cmp(">", self, other)

    def __ge__(self, other: Operand) -> Expr:
        return _cmp(">=", self, other)

    # arithmetic (int) ----------------------------------------------------
    def __add__(self, other: Operand) -> Expr:
        return _arith("+", self, other)

    def __radd__(self, other: Operand) -> Expr:
        return _arith("+", lift(other, INT), self)

    def __sub__(self, other: Operand) -> Expr:
        return _arith("-", self, other)

    def __rsub__(self, other: Operand) -> Expr:
        return _arith("-", lift(other, INT), self)

    # bitwise (mask) ------------------------------------------------------
    def __and__(self, other: Operand) -> Expr:
        return _bitwise("&", self, other)

    def __or__(self, other: Operand) -> Expr:
        return _bitwise("|", self, other)

    def __xor__(self, other: Operand) -> Expr:
        return _bitwise("^", self, other)

    def __invert__(self) -> Expr:
        if self.sort.kind != "mask":
            raise ExprError(f"~ needs a mask, got {self.sort}; use Not() for booleans")
        if isinstance(self, Const):
            return Const(self.value ^ ((1 << self.sort.width) - 1), self.sort)
        return Un("~", self, self.sort)

    # mask helpers --------------------------------------------------------
    def has(self, bit: Operand) -> Expr:
        """True iff bit number ``bit`` (0-based, model numbering) is set."""
        _need_mask(self, "has")
        return Bin("has", self, lift(bit, INT), BOOL)

    def with_bit(self, bit: Operand) -> Expr:
        _need_mask(self, "with_bit")
        return Bin("setbit", self, lift(bit, INT), self.sort)

    def without_bit(self, bit: Operand) -> Expr:
        _need_mask(self, "without_bit")
        return Bin("clrbit", self, lift(bit, INT), self.sort)

    def is_empty(self) -> Expr:
        _need_mask(self, "is_empty")
        return Bin("==", self, Const(0, self.sort), BOOL)

    def nonempty(self) -> Expr:
        _need_mask(self, "nonempty")
        return Bin("!=", self, Const(0, self.sort), BOOL)


class Const(Expr):
    __slots__ = ("value",)

    def __init__(self, value: int | bool, sort: Sort) -> None:
        if sort == BOOL:
            if value not in (0, 1):  # also rejects bool_var == 2 silently meaning == True
                raise ExprError(f"{value!r} is not a boolean")
            value = bool(value)
        elif isinstance(value, bool):
            raise ExprError(f"a bool constant where {sort} is expected")
        elif sort.kind == "mask":
            if not 0 <= int(value) < (1 << sort.width):
                raise ExprError(f"constant {value} does not fit {sort}")
            value = int(value)
        else:
            value = int(value)
        self.value = value
        self.sort = sort

    def __repr__(self) -> str:
        return f"Const({self.value!r})"


class Slot(Const):
    """An int constant naming element ``value`` of a pointer domain (``names``, as a ref field's): what a
    lookup returns when it finds an object by index (``vfio_ap_mdev_for_queue``'s mdev). Evaluated as its
    value everywhere; the domain lets a renaming of the pool's members rename it with the pointers."""

    __slots__ = ("names",)

    def __init__(self, value: int, names: tuple[str, ...]) -> None:
        super().__init__(value, INT)
        self.names = names


class Var(Expr):
    """A state field read. ``field`` is a layout.Field (kept untyped to avoid a cycle)."""

    __slots__ = ("field",)

    def __init__(self, field: object, sort: Sort) -> None:
        self.field = field
        self.sort = sort

    def __repr__(self) -> str:
        return f"Var({getattr(self.field, 'name', '?')})"


class Un(Expr):
    __slots__ = ("op", "a")

    def __init__(self, op: str, a: Expr, sort: Sort) -> None:
        self.op, self.a, self.sort = op, a, sort


class Bin(Expr):
    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: Expr, b: Expr, sort: Sort) -> None:
        self.op, self.a, self.b, self.sort = op, a, b, sort


class Nary(Expr):
    __slots__ = ("op", "args")

    def __init__(self, op: str, args: tuple[Expr, ...]) -> None:
        self.op, self.args, self.sort = op, args, BOOL


class Ite(Expr):
    __slots__ = ("c", "a", "b")

    def __init__(self, c: Expr, a: Expr, b: Expr, sort: Sort) -> None:
        self.c, self.a, self.b, self.sort = c, a, b, sort


# constructors ------------------------------------------------------------


def lift(x: Operand | Expr, sort: Sort) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool) and sort.kind == "int":
        raise ExprError("a bool constant where an int is expected")
    if isinstance(x, int):
        return Const(x, sort)
    raise ExprError(f"cannot use {type(x).__name__} {x!r} in an expression")


def _need_mask(e: Expr, what: str) -> None:
    if e.sort.kind != "mask":
        raise ExprError(f"{what}() needs a mask, got {e.sort}")


_FOLD = {
    "==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
    "+": lambda x, y: x + y, "-": lambda x, y: x - y, "&": lambda x, y: x & y,
    "|": lambda x, y: x | y, "^": lambda x, y: x ^ y,
}


def _node(op: str, a: Expr, b: Expr, sort: Sort) -> Expr:
    """A binary node, folded when both sides are constants."""
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(_FOLD[op](a.value, b.value), sort)
    return Bin(op, a, b, sort)


def _cmp(op: str, a: Expr, other: object) -> Expr:
    b = lift(other, a.sort)  # type: ignore[arg-type]
    if a.sort != b.sort:
        raise ExprError(f"comparing {a.sort} with {b.sort}")
    if op not in ("==", "!=") and a.sort != INT:
        raise ExprError(f"ordering {op} needs ints, got {a.sort}")
    return _node(op, a, b, BOOL)


def _arith(op: str, a: Expr, other: Operand) -> Expr:
    b = lift(other, INT)
    if a.sort != INT or b.sort != INT:
        raise ExprError(f"{op} needs ints, got {a.sort} and {b.sort}")
    return _node(op, a, b, INT)


def _bitwise(op: str, a: Expr, other: Operand) -> Expr:
    b = lift(other, a.sort)
    if a.sort.kind != "mask" or a.sort != b.sort:
        raise ExprError(f"{op} needs two masks of one width, got {a.sort} and {b.sort}; use And/Or for booleans")
    return _node(op, a, b, a.sort)


def true() -> Expr:
    return Const(True, BOOL)


def false() -> Expr:
    return Const(False, BOOL)


def _bool(x: Operand | Expr) -> Expr:
    if isinstance(x, Expr):
        if x.sort != BOOL:
            raise ExprError(f"a boolean is needed, got {x.sort}")
        return x
    if isinstance(x, bool):
        return Const(x, BOOL)
    raise ExprError(f"a boolean is needed, got {x!r}")


def And(*args: Operand | Expr) -> Expr:
    items = tuple(_bool(a) for a in args)
    items = tuple(a for a in items if not (isinstance(a, Const) and a.value is True))
    if any(isinstance(a, Const) and a.value is False for a in items):
        return false()
    if not items:
        return true()
    return items[0] if len(items) == 1 else Nary("and", items)


def Or(*args: Operand | Expr) -> Expr:
    items = tuple(_bool(a) for a in args)
    items = tuple(a for a in items if not (isinstance(a, Const) and a.value is False))
    if any(isinstance(a, Const) and a.value is True for a in items):
        return true()
    if not items:
        return false()
    return items[0] if len(items) == 1 else Nary("or", items)


def Not(a: Operand | Expr) -> Expr:
    e = _bool(a)
    if isinstance(e, Const):
        return Const(not e.value, BOOL)
    return Un("not", e, BOOL)


def Implies(a: Operand | Expr, b: Operand | Expr) -> Expr:
    return Or(Not(a), b)


def If(c: Operand | Expr, a: Operand | Expr, b: Operand | Expr) -> Expr:
    cond = _bool(c)
    if isinstance(a, Expr):
        ea = a
        eb = lift(b, ea.sort)
    elif isinstance(b, Expr):
        eb = b
        ea = lift(a, eb.sort)
    else:
        sort = BOOL if isinstance(a, bool) else INT
        ea, eb = lift(a, sort), lift(b, sort)
    if ea.sort != eb.sort:
        raise ExprError(f"If branches differ: {ea.sort} vs {eb.sort}")
    if isinstance(cond, Const):
        return ea if cond.value else eb
    return Ite(cond, ea, eb, ea.sort)


def Select(items: list[Expr] | tuple[Expr, ...], index: Operand | Expr, default: Operand | Expr = 0) -> Expr:
    """items[index] for a state-dependent index (an If chain; ``default`` when out of range)."""
    if not items:
        raise ExprError("Select over no items")
    sort = items[0].sort
    idx = lift(index, INT)
    if isinstance(idx, Const):
        return items[idx.value] if 0 <= idx.value < len(items) else lift(default, sort)
    out = lift(default, sort)
    for i in reversed(range(len(items))):
        out = If(idx == i, items[i], out)
    return out


def MaskConst(width: int, bits: list[int] | tuple[int, ...] | frozenset[int] | set[int] = ()) -> Expr:
    value = 0
    for b in bits:
        if not 0 <= b < width:
            raise ExprError(f"bit {b} outside a {width}-bit mask")
        value |= 1 << b
    return Const(value, Mask(width))


def BitOf(width: int, bit: Operand | Expr) -> Expr:
    """The mask with only ``bit`` set (state-dependent bit allowed)."""
    return Bin("setbit", Const(0, Mask(width)), lift(bit, INT), Mask(width))


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``e`` (every tree walk goes through here)."""
    if isinstance(e, Un):
        return (e.a,)
    if isinstance(e, Bin):
        return (e.a, e.b)
    if isinstance(e, Nary):
        return e.args
    if isinstance(e, Ite):
        return (e.c, e.a, e.b)
    return ()


def variables(e: Expr) -> set[object]:
    """The fields an expression reads."""
    out: set[object] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Var):
            out.add(x.field)
        stack.extend(children(x))
    return out
