"""User properties in a spec: a small expression language over the design's named state.

    properties:
      always:
        - name: guest-only-when-open
          expr: "kvm0.crycb.apm != {} => mdev0.vfio_device.open_count > 0"
      sometimes:
        - name: kvm-freed
          expr: kvm0.state == freed

The text is tokenized and parsed here (never handed to Python's ``eval``), then
resolved against the built program's state fields into the same
``checker.lang.expr`` trees the design's own properties use, so the explicit
search and the prover check a user property exactly like a built-in one.

Grammar, loosest binding first::

    expr    := implies
    implies := or ("=>" implies)?                      right-associative
    or      := and (("||" | "or") and)*
    and     := not (("&&" | "and") not)*
    not     := ("!" | "not") not | compare
    compare := bitor (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") bitor)?
    bitor   := bitxor ("|" bitxor)*                   masks
    bitxor  := bitand ("^" bitand)*
    bitand  := sum ("&" sum)*
    sum     := unary (("+" | "-") unary)*              ints
    unary   := ("-" | "~") unary | primary
    primary := NUMBER | NAME | `any name` | "{" [NUMBER ("," NUMBER)*] "}" | "(" expr ")"
               | true | false | NULL

A NAME is a state field as traces show it (``mdev0.matrix.apm``,
``ap_queue[04.0005].data``, ``kvm0->arch.crypto.pqap_hook``), or, compared with
an enum or pointer field, one of that field's values (``freed``, ``kvm0``,
``NULL``). A mask literal lists the elements as traces show them. Errors carry
the column in the expression text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checker.lang.expr import BOOL, INT, And, Const, Expr, ExprError, Implies, MaskConst, Not, Or
from checker.lang.layout import MASK_LABELS, Field
from checker.report.results import BUILTIN_PROPERTIES
from checker.spec.errors import SpecError, SpecErrors, did_you_mean

if TYPE_CHECKING:
    from checker.lang.program_types import Program
    from checker.spec.spec import LoadedSpec

KEYWORDS = {"and": "&&", "or": "||", "not": "!", "in": "in", "true": "true", "false": "false", "NULL": "NULL"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>0x[0-9a-fA-F]+|[0-9]+)(?![\w.\[])
  | (?P<quoted>`[^`]*`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|->)[A-Za-z0-9_]+|\[[^\]\s]*\])*)
  | (?P<op>=>|==|!=|<=|>=|&&|\|\||[<>!~&|^+\-(){},])
""", re.X)


@dataclass(frozen=True)
class UserProperty:
    name: str
    kind: str  # always | sometimes
    text: str  # the expression as written
    description: str
    line: int  # where the expression's first character is (1-based), for errors inside it
    col: int
    path: str  # properties.always[0]


class ExprSyntaxError(ValueError):
    """A problem at ``offset`` (0-based) of the expression text."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


# ------------------------------------------------------------------ syntax tree


@dataclass(frozen=True)
class Node:
    kind: str  # num | name | bool | null | set | un | bin
    offset: int
    value: object = None  # num: int; name: str; bool: bool; set: tuple[int, ...]; un/bin: operator
    args: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Token:
    kind: str  # number | name | op | end
    text: str
    offset: int


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprSyntaxError(pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        word = m.group()
        if kind == "quoted":
            out.append(Token("name", word[1:-1], pos))
        elif kind == "name" and word in KEYWORDS:
            out.append(Token("op", KEYWORDS[word], pos))
        elif kind != "space":
            out.append(Token(kind, word, pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in")
_LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",))
_BIT_LEVELS: tuple[tuple[str, ...], ...] = (("|",), ("^",), ("&",), ("+", "-"))


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> Token:
        t = self.peek()
        if t.kind != "op" or t.text != text:
            raise ExprSyntaxError(t.offset, f"expected {text!r}, got {_show(t)}")
        return self.take()

    def at(self, *ops: str) -> bool:
        t = self.peek()
        return t.kind == "op" and t.text in ops

    def parse(self) -> Node:
        node = self.implies()
        if self.peek().kind != "end":
            raise ExprSyntaxError(self.peek().offset, f"unexpected {_show(self.peek())}")
        return node

    def implies(self) -> Node:
        left = self.binary(0, _LEVELS, self.negation)
        if self.at("=>"):
            op = self.take()
            return Node("bin", op.offset, "=>", (left, self.implies()))
        return left

    def binary(self, level: int, levels: tuple[tuple[str, ...], ...], inner: object) -> Node:
        def operand() -> Node:
            return self.binary(level + 1, levels, inner) if level + 1 < len(levels) else inner()  # type: ignore[operator]

        left = operand()
        while self.at(*levels[level]):
            op = self.take()
            left = Node("bin", op.offset, op.text, (left, operand()))
        return left

    def negation(self) -> Node:
        if self.at("!"):
            op = self.take()
            return Node("un", op.offset, "!", (self.negation(),))
        return self.compare()

    def compare(self) -> Node:
        left = self.binary(0, _BIT_LEVELS, self.unary)
        if self.at(*_COMPARE):
            op = self.take()
            left = Node("bin", op.offset, op.text, (left, self.binary(0, _BIT_LEVELS, self.unary)))
            if self.at(*_COMPARE):
                raise ExprSyntaxError(self.peek().offset, "comparisons do not chain; use && between them")
        return left

    def unary(self) -> Node:
        if self.at("-", "~"):
            op = self.take()
            return Node("un", op.offset, op.text, (self.unary(),))
        return self.primary()

    def primary(self) -> Node:
        t = self.take()
        if t.kind == "number":
            return Node("num", t.offset, int(t.text, 0))
        if t.kind == "name":
            return Node("name", t.offset, t.text)
        if t.kind == "op" and t.text in ("true", "false"):
            return Node("bool", t.offset, t.text == "true")
        if t.kind == "op" and t.text == "NULL":
            return Node("null", t.offset)
        if t.kind == "op" and t.text == "(":
            inner = self.implies()
            self.expect(")")
            return inner
        if t.kind == "op" and t.text == "{":
            items: list[int] = []
            while not self.at("}"):
                n = self.take()
                if n.kind != "number":
                    raise ExprSyntaxError(n.offset, f"expected a number in the set, got {_show(n)}")
                items.append(int(n.text, 0))
                if not self.at("}"):
                    self.expect(",")
            self.take()
            return Node("set", t.offset, tuple(items))
        raise ExprSyntaxError(t.offset, f"expected a value, got {_show(t)}")


def _show(t: Token) -> str:
    return "end of expression" if t.kind == "end" else repr(t.text)


def parse(text: str) -> Node:
    """Syntax only: no state names needed (so a spec's typos show before building)."""
    return _Parser(text).parse()


# ------------------------------------------------------------------ resolution


def mask_labels(f: Field) -> list[str]:
    """How a mask's elements are written: the field's labels when it has them, else bit indices."""
    labels = f.meta.get(MASK_LABELS)
    if isinstance(labels, (list, tuple)) and len(labels) == f.width_bits:
        return [str(x) for x in labels]
    return [str(i) for i in range(f.width_bits)]


class _Resolver:
    def __init__(self, fields: dict[str, Field]) -> None:
        self.fields = fields

    def field_of(self, n: Node) -> Field | None:
        """The first state field named in ``n``: it gives literals beside it their meaning."""
        if n.kind == "name":
            return self.fields.get(str(n.value))
        return next((f for a in n.args if (f := self.field_of(a)) is not None), None)

    def value(self, n: Node, context: Field | None = None) -> Expr:
        if n.kind == "num":
            return Const(int(n.value), INT)  # type: ignore[call-overload]
        if n.kind == "bool":
            return Const(bool(n.value), BOOL)
        if n.kind == "null":
            if context is None or context.kind != "ref":
                raise ExprSyntaxError(n.offset, "NULL compares only with a pointer field")
            return Const(-1, INT)
        if n.kind == "set":
            return self.mask_literal(n, context)
        if n.kind == "name":
            return self.name(n, context)
        if n.kind == "un":
            a = self.value(n.args[0], context)
            return self.guard(n, lambda: Not(a) if n.value == "!" else ~a if n.value == "~" else 0 - a)
        return self.binary(n, context)

    def name(self, n: Node, context: Field | None) -> Expr:
        text = str(n.value)
        f = self.fields.get(text)
        if f is not None:
            return f.var
        if context is not None and context.kind in ("enum", "ref") and text in context.names:
            return Const(context.names.index(text), INT)
        if context is not None and context.kind in ("enum", "ref"):
            known = list(context.names) + (["NULL"] if context.kind == "ref" else [])
            raise ExprSyntaxError(n.offset, f"{context.name} is never {text!r}{did_you_mean(text, known)}; "
                                            f"its values: {', '.join(known)}")
        raise ExprSyntaxError(n.offset, f"unknown state field {text!r}{did_you_mean(text, self.fields)}")

    def mask_literal(self, n: Node, context: Field | None) -> Expr:
        if context is None or context.kind != "mask":
            raise ExprSyntaxError(n.offset, "a set {...} needs a mask field on the other side")
        labels = mask_labels(context)
        bits = []
        for item in n.value:  # type: ignore[attr-defined]
            if str(item) not in labels:
                raise ExprSyntaxError(n.offset, f"{item} is not an element of {context.name} "
                                                f"(elements: {', '.join(labels)})")
            bits.append(labels.index(str(item)))
        return MaskConst(context.width_bits, bits)

    def binary(self, n: Node, context: Field | None) -> Expr:
        op, (lhs, rhs) = str(n.value), n.args
        if op in ("&&", "||", "=>"):
            a, b = self.boolean(lhs), self.boolean(rhs)
            return And(a, b) if op == "&&" else Or(a, b) if op == "||" else Implies(a, b)
        if op == "in":
            f = self.field_of(rhs)
            if f is None or f.kind != "mask":
                raise ExprSyntaxError(rhs.offset, "'in' needs a mask field on its right")
            if lhs.kind != "num":
                raise ExprSyntaxError(lhs.offset, "'in' needs a number on its left")
            element = self.mask_literal(Node("set", lhs.offset, (lhs.value,)), f)
            return (f.var & element) != Const(0, f.sort)
        # a field on one side gives the other side its meaning (enum label, pointer target, set)
        ctx = self.field_of(lhs) or self.field_of(rhs) or context
        a, b = self.value(lhs, ctx), self.value(rhs, ctx)
        ops = {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b, "<=": lambda: a <= b,
               ">": lambda: a > b, ">=": lambda: a >= b, "+": lambda: a + b, "-": lambda: a - b,
               "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b}
        return self.guard(n, ops[op])

    def boolean(self, n: Node) -> Expr:
        e = self.value(n)
        if e.sort != BOOL:
            raise ExprSyntaxError(n.offset, f"expected a condition, got a value of type {e.sort}")
        return e

    @staticmethod
    def guard(n: Node, build: object) -> Expr:
        try:
            result: Expr = build()  # type: ignore[operator]
        except ExprError as e:
            raise ExprSyntaxError(n.offset, f"type error: {e}") from None
        return result


def resolve(tree: Node, fields: dict[str, Field]) -> Expr:
    """The boolean ``checker.lang.expr`` tree for ``tree`` over ``fields`` (name -> Field)."""
    return _Resolver(fields).boolean(tree)


def compile_property(text: str, fields: dict[str, Field]) -> Expr:
    return resolve(parse(text), fields)


def add_user_properties(loaded: LoadedSpec, program: Program) -> None:
    """Resolve the spec's own always/sometimes properties against the built program's state
    fields and add them to it; every unknown name or type error at once, at its column."""
    from checker.spec.spec import locate  # spec.py imports this module for parse()

    fields = {f.name: f for f in program.layout.fields if f.kind != "pc"}
    taken = {p.name: f"design {loaded.design.name!r}" for p in program.properties}
    taken.update({b: "apcheck (built-in)" for b in BUILTIN_PROPERTIES})
    errors: list[SpecError] = []
    for up in loaded.user_properties:
        if up.name in taken:
            errors.append(SpecError(locate(loaded, f"{up.path}.name"), f"{up.path}.name",
                                    f"property {up.name!r} is already defined by {taken[up.name]}"))
            continue
        try:
            expr = compile_property(up.text, fields)
        except ExprSyntaxError as e:
            errors.append(SpecError(f"{loaded.path}:{up.line}:{up.col + e.offset}", f"{up.path}.expr", e.message))
            continue
        program.add_property(up.name, up.kind, expr, up.description or up.text, f"{loaded.path} (user property)")
    if errors:
        raise SpecErrors(errors)
