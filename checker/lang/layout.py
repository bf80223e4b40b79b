"""Typed state fields packed into one Python int.

A state is a single non-negative int: every field owns a fixed run of bits.
Packing makes states cheap to store, hash and compare, and makes "set field f
to a constant" a mask-and-or on the whole state.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

from checker.lang.expr import BOOL, INT, Expr, Mask, Sort, Var

# Field.meta key: a mask's element names, bit i shown as labels[i] (real APIDs instead of bit indices);
# traces, the HTML explorer and user properties' mask literals all use them.
MASK_LABELS = "labels"
# Field.meta key: show the mask as an MSB-first bitmap of this many bits in hex, element i at bit
# position int(labels[i]) from the left (the s390 AP bus's sysfs apmask/aqmask: "0x" then 64 digits)
MASK_BITMAP = "bitmap"
# Field.meta key: what a mask's bits are, bit i = elements[i] ("adapter 3"): a symmetry whose members
# name elements (Member.slots) permutes the bits of every mask over them (checker.search.reduce.renaming)
MASK_ELEMENTS = "elements"
# Field.meta key: the field is a C local (or per-thread ghost) of the thread named by the value; the
# parametric prover (checker.prove.parametric) gives every copy of that thread its own
THREAD_LOCAL = "thread_local"


@dataclass(eq=False)
class Field:
    """One typed state component; ``value = stored + lo``."""

    name: str
    kind: str  # bool | int | enum | mask | ref | pc | owner
    lo: int
    hi: int
    init: int
    names: tuple[str, ...] = ()  # enum labels / ref pool slot names
    width_bits: int = 0  # mask width
    group: str = ""  # display group (object, lock, thread)
    offset: int = -1
    bits: int = 0
    meta: dict[str, object] = dc_field(default_factory=dict)

    @property
    def sort(self) -> Sort:
        if self.kind == "bool":
            return BOOL
        if self.kind == "mask":
            return Mask(self.width_bits)
        return INT

    @property
    def var(self) -> Expr:
        return Var(self, self.sort)

    @property
    def mask(self) -> int:
        return ((1 << self.bits) - 1) << self.offset

    def get(self, state: int) -> int:
        return ((state >> self.offset) & ((1 << self.bits) - 1)) + self.lo

    def show(self, value: int) -> str:
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "enum":
            return self.names[value]
        if self.kind == "ref":
            return "NULL" if value < 0 else self.names[value]
        if self.kind == "owner":
            return "-" if value == 0 else self.names[value - 1]
        if self.kind == "mask":
            labels = self.meta.get(MASK_LABELS)
            if not (isinstance(labels, tuple) and len(labels) == self.width_bits):
                labels = tuple(str(i) for i in range(self.width_bits))
            bitmap = self.meta.get(MASK_BITMAP)
            if isinstance(bitmap, int):
                return _msb_first_hex(bitmap, [int(labels[i]) for i in range(self.width_bits) if value >> i & 1])
            return "{" + ",".join(str(labels[i]) for i in range(self.width_bits) if value >> i & 1) + "}"
        return str(value)

    def __repr__(self) -> str:
        return f"Field({self.name})"


def _msb_first_hex(nbits: int, positions: list[int]) -> str:
    """A bitmap of ``nbits`` bits with bit 0 leftmost, in hex (``hex2bitmap``'s order: "0x8..." is bit 0)."""
    n = sum(1 << (nbits - 1 - p) for p in positions)
    return "0x" + format(n, f"0{(nbits + 3) // 4}x")


def _bits_for(span: int) -> int:
    return max(1, (span - 1).bit_length()) if span > 1 else 1


class Layout:
    """The ordered fields of a model's state."""

    def __init__(self) -> None:
        self.fields: list[Field] = []
        self._by_name: dict[str, Field] = {}
        self.total_bits = 0
        self.frozen = False

    def add(self, f: Field) -> Field:
        if self.frozen:
            raise RuntimeError("layout is frozen")
        if f.name in self._by_name:
            raise ValueError(f"duplicate state field {f.name!r}")
        if not f.lo <= f.init <= f.hi:
            raise ValueError(f"field {f.name}: initial value {f.init} outside {f.lo}..{f.hi}")
        f.bits = f.width_bits if f.kind == "mask" else _bits_for(f.hi - f.lo + 1)
        f.offset = self.total_bits
        self.total_bits += f.bits
        self.fields.append(f)
        self._by_name[f.name] = f
        return f

    def __getitem__(self, name: str) -> Field:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def initial(self) -> int:
        s = 0
        for f in self.fields:
            s |= (f.init - f.lo) << f.offset
        return s

    def encode(self, values: dict[str, int]) -> int:
        s = 0
        for f in self.fields:
            v = values.get(f.name, f.init)
            if not f.lo <= v <= f.hi:
                raise ValueError(f"{f.name}={v} outside {f.lo}..{f.hi}")
            s |= (v - f.lo) << f.offset
        return s

    def decode(self, state: int) -> dict[str, int]:
        return {f.name: f.get(state) for f in self.fields}

    def diff(self, before: int, after: int) -> list[tuple[Field, int, int]]:
        changed = before ^ after
        out = []
        for f in self.fields:
            if changed & f.mask:
                out.append((f, f.get(before), f.get(after)))
        return out

    def freeze(self) -> None:
        self.frozen = True


# field factories -----------------------------------------------------------


def bool_field(name: str, init: bool = False, **kw: object) -> Field:
    return Field(name, "bool", 0, 1, int(init), **kw)  # type: ignore[arg-type]


def int_field(name: str, lo: int, hi: int, init: int | None = None, **kw: object) -> Field:
    if lo > hi:
        raise ValueError(f"field {name}: empty range {lo}..{hi}")
    return Field(name, "int", lo, hi, lo if init is None else init, **kw)  # type: ignore[arg-type]


def enum_field(name: str, names: tuple[str, ...] | list[str], init: str | None = None, **kw: object) -> Field:
    names = tuple(names)
    start = 0 if init is None else names.index(init)
    return Field(name, "enum", 0, len(names) - 1, start, names=names, **kw)  # type: ignore[arg-type]


def mask_field(name: str, width: int, init: int = 0, **kw: object) -> Field:
    return Field(name, "mask", 0, (1 << width) - 1, init, width_bits=width, **kw)  # type: ignore[arg-type]


def ref_field(name: str, slots: tuple[str, ...] | list[str], init: int = -1, **kw: object) -> Field:
    """A pointer into a pool of ``len(slots)`` objects; -1 is NULL."""
    return Field(name, "ref", -1, len(slots) - 1, init, names=tuple(slots), **kw)  # type: ignore[arg-type]


NULL = -1
