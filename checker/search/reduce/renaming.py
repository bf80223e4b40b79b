"""A permutation of permutable members as maps on threads, fields, locks and field values.

A renaming moves each member's threads, fields and locks onto the image member's, and renames the
VALUES that name them: an owner field holds a thread id, a ref field a pool slot (``mdev0.kvm`` holds
kvm0 or kvm1), an enum may name slots (a queue's data owner ``kvm1``). A field's value domain is its
``names`` (offset 1 for owner fields: 0 is "nobody"); a value is renamed when the name it stands for
is renamed (member threads, member ``slots``). A mask whose bits name elements
(``Field.meta[MASK_ELEMENTS]``: "adapter 3") has its bits moved, and a bit number given to ``has``,
``setbit`` or ``clrbit`` is renamed as an element.

``action``/``render`` give the structural form of a step or expression with the renaming applied
(the identity renaming renders the original). Two forms are equal only if the renamed step does on
the permuted state what the other does on the original:

- a constant is renamed by the value domain it is compared with or stored into (the field on the
  other side of ``==``, the updated field); a comparison of two different domains, an ordering
  (``<``) or arithmetic on a renamed domain refuses the renaming (``Refused``): a permutation of
  names preserves equality only;
- an ``if`` chain whose conditions are pairwise exclusive (each pins one expression to distinct
  constants, as ``Select`` over a family does) is compared as a set of cases: renaming permutes the
  family's order; so are lock acquisitions and releases with pairwise exclusive conditions; a reader
  that takes a chain as "some case that holds" may ask for it as a set too (``free_chains``: the
  prover's find-first over a pool; the explicit engine's symmetry never does);
- a ``Slot`` constant (an index a lookup returns) is renamed by its own pointer domain;
- ``and``/``or`` are compared as sets, a tree of ``&``, ``|`` or ``^`` as a flat set, the operands
  of ``==`` unordered; ``has``/``setbit``/``clrbit`` of two constants are folded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from checker.lang.expr import BOOL, Bin, Const, Expr, Ite, Nary, Slot, Un, Var
from checker.lang.layout import MASK_ELEMENTS, Field
from checker.lang.program_types import Action, AnyLock, Lock, Member, Program

# (offset, names): value v names names[v - offset]; offset MASK: a mask, bit i is names[i]
Domain = tuple[int, tuple[str, ...]] | None
MASK = -1


class Refused(Exception):
    """The renaming maps a value domain inconsistently: it is not a symmetry of the program."""


def domain_of(f: Field) -> Domain:
    if f.kind in ("ref", "enum"):
        return (0, f.names)
    if f.kind == "owner":
        return (1, f.names)
    elements = f.meta.get(MASK_ELEMENTS)
    if f.kind == "mask" and isinstance(elements, tuple) and len(elements) == f.width_bits:
        return (MASK, elements)
    return None


def _bit_index(d: Domain) -> Domain:
    """The domain of a bit number of a mask of domain ``d``."""
    return (0, d[1]) if d is not None and d[0] == MASK else None


def lock_fields(lk: AnyLock) -> list[Field]:
    return [lk.owner] if isinstance(lk, Lock) else [lk.writer]


class Renaming:
    """Maps of one permutation: threads (by index), fields, locks (by id) and names (threads, slots)."""

    def __init__(self, program: Program, tmap: list[int], fbase: dict[Field, Field], lbase: dict[int, AnyLock],
                 names: dict[str, str]) -> None:
        self.program = program
        self.tmap, self.fbase, self.lbase, self.names = tmap, fbase, lbase, names
        fmap = dict(fbase)
        for th in program.threads:
            fmap[th.pc] = program.threads[tmap[th.index]].pc
            names[th.name] = program.threads[tmap[th.index]].name
        self.ok = True
        for lk in program.locks:  # rw-semaphore per-thread bits follow their thread (and their lock)
            if isinstance(lk, Lock):
                continue
            dst_lk = lbase.get(id(lk), lk)
            if isinstance(dst_lk, Lock):
                self.ok = False
                continue
            for bits, dst_bits in ((lk.readers, dst_lk.readers), (lk.queued, dst_lk.queued)):
                for t, f in bits.items():
                    g = dst_bits.get(tmap[t])
                    if g is None:
                        self.ok = False
                    else:
                        fmap[f] = g
        self.fmap = fmap
        targets = list(fmap.values())
        if len(set(targets)) != len(targets) or any(_shape(f) != _shape(g) for f, g in fmap.items()):
            self.ok = False
        self._vmaps: dict[Domain, dict[int, int]] = {}
        # chains compared as sets of cases though their conditions may overlap: only for a reader that takes
        # such a chain as "some case that holds" (checker.prove.parametric: a find-first over a pool)
        self.free_chains: Callable[[Ite], bool] | None = None
        self._names = {lk.name: self.lock(lk).name for lk in program.locks}  # names as reports spell them
        self._names.update({f.name: g.name for f, g in fmap.items()})

    @staticmethod
    def of_members(program: Program, members: list[Member], image: list[int]) -> Renaming:
        tindex = {th.name: th.index for th in program.threads}
        tmap = list(range(len(program.threads)))
        fbase: dict[Field, Field] = {}
        lbase: dict[int, AnyLock] = {}
        names: dict[str, str] = {}
        for i, m in enumerate(members):
            dst = members[image[i]]
            for a, b in zip(m.threads, dst.threads):
                tmap[tindex[a]] = tindex[b]
            for fa, fb in zip(m.fields, dst.fields):
                fbase[fa] = fb
            for la, lb in zip(m.locks, dst.locks):
                lbase[id(la)] = lb
                for fa, fb in zip(lock_fields(la), lock_fields(lb)):
                    fbase[fa] = fb
            for sa, sb in zip(m.slots, dst.slots):
                names[sa] = sb
        return Renaming(program, tmap, fbase, lbase, names)

    def then(self, other: Renaming) -> Renaming:
        """This renaming followed by ``other``."""
        keys = set(self.fbase) | set(other.fbase)
        fbase = {f: other.fbase.get(self.fbase.get(f, f), self.fbase.get(f, f)) for f in keys}
        locks = {id(lk): lk for lk in self.program.locks}
        lbase = {i: other.lock(self.lock(locks[i])) for i in set(self.lbase) | set(other.lbase)}
        slots = {n: other.names.get(self.names.get(n, n), self.names.get(n, n))
                 for n in set(self.names) | set(other.names)}
        tmap = [other.tmap[t] for t in self.tmap]
        return Renaming(self.program, tmap, fbase, lbase, slots)

    def field(self, f: Field) -> Field:
        return self.fmap.get(f, f)

    def lock(self, lk: AnyLock) -> AnyLock:
        return self.lbase.get(id(lk), lk)

    def name(self, n: str) -> str:
        """A lock, flag or field name as reports spell it (``kvm0->lock (in kvm_destroy_vm)``), renamed."""
        head, sep, tail = n.partition(" (")
        return self._names.get(head, head) + sep + tail

    # ---- values
    def vmap(self, d: Domain) -> dict[int, int]:
        """The renamed values of domain ``d`` (only those that change)."""
        if d is None:
            return {}
        if d not in self._vmaps:
            off, names = d
            to = []  # element i becomes element to[i]
            for n in names:
                m = self.names.get(n, n)
                if m not in names:
                    raise Refused(f"{n} is renamed to {m}, which the domain {names} cannot hold")
                to.append(names.index(m))
            if off == MASK:  # a mask value: its bits move
                image = [sum(1 << to[i] for i in range(len(names)) if v >> i & 1) for v in range(1 << len(names))]
                self._vmaps[d] = {v: w for v, w in enumerate(image) if w != v}
            else:
                self._vmaps[d] = {i + off: j + off for i, j in enumerate(to) if i != j}
        return self._vmaps[d]

    def table(self, f: Field) -> list[int] | None:
        """The stored-value table of ``f`` (None: values unchanged)."""
        vm = self.vmap(domain_of(f))
        if not vm:
            return None
        return [vm.get(s + f.lo, s + f.lo) - f.lo for s in range(1 << f.bits)]

    def _unify(self, a: Domain, b: Domain) -> Domain:
        if a is None or a == b:
            return b
        if b is None:
            return a
        if self.vmap(a) or self.vmap(b):
            raise Refused(f"values of {a} compared with values of {b}")
        return None

    def dom(self, e: Expr) -> Domain:
        if isinstance(e, Slot):
            return (0, e.names)
        if isinstance(e, Var):
            return domain_of(e.field)  # type: ignore[arg-type]
        if isinstance(e, Ite):
            return self._unify(self.dom(e.a), self.dom(e.b))
        if isinstance(e, Un) and e.op == "~":
            return self.dom(e.a)
        if isinstance(e, Bin) and e.op in _MASK_OPS:
            return self._unify(self.dom(e.a), self.dom(e.b))
        if isinstance(e, Bin) and e.op in ("setbit", "clrbit"):
            return self.dom(e.a)
        return None

    # ---- structural rendering
    def render(self, e: Expr, ctx: Domain = None, pins: Pins | None = None) -> str:
        """``e``'s form under the renaming; ``ctx``: the value domain of the position; ``pins``: facts
        ``x == k`` that hold wherever ``e`` is evaluated (an ``if`` case they falsify is dropped)."""
        pins = pins or {}
        if isinstance(e, Const):
            v = int(e.value)
            return str(self.vmap(self._unify(ctx, self.dom(e))).get(v, v))
        if isinstance(e, Var):
            self._unify(ctx, domain_of(e.field))  # type: ignore[arg-type]
            return "$" + self.field(e.field).name  # type: ignore[arg-type]
        if isinstance(e, Un):  # "not" of a boolean, "~" of a mask (complement commutes with moving bits)
            return f"({e.op} {self.render(e.a, self._unify(ctx, self.dom(e)), pins)})"
        if isinstance(e, Bin):
            return self._bin(e, ctx, pins)
        if isinstance(e, Nary):
            if e.op != "and":
                return f"({e.op} " + " ".join(sorted(self.render(x, None, pins) for x in e.args)) + ")"
            own = [self._pins(x) for x in e.args]  # each conjunct holds where the others are evaluated
            shown = []
            for k, x in enumerate(e.args):
                ctx_pins = dict(pins)
                for q, p in enumerate(own):
                    if q != k:
                        ctx_pins.update(p)
                shown.append(self.render(x, None, ctx_pins))
            return "(and " + " ".join(sorted(shown)) + ")"
        if isinstance(e, Ite):
            return self._ite(e, ctx, pins)
        raise Refused(f"no structural form for {type(e).__name__}")

    def _bin(self, e: Bin, ctx: Domain, pins: Pins) -> str:
        if e.op in ("==", "!="):
            d = self._unify(self.dom(e.a), self.dom(e.b))
            return _commuted(e.op, self.render(e.a, d, pins), self.render(e.b, d, pins))
        if e.op in _ORDER and self._order_kept(e):
            return f"({self.render(e.a, None, pins)} {e.op} {self.render(e.b, None, pins)})"
        if e.op in _MASK_OPS:  # bitwise operations commute with moving bits; compared as a flat set
            d = self._unify(ctx, self.dom(e))
            terms = sorted(self.render(x, d, pins) for x in _flat(e, e.op))
            return f"({e.op} " + " ".join(terms) + ")"
        if e.op in ("has", "setbit", "clrbit") and isinstance(e.a, Const) and isinstance(e.b, Const):
            v, bit = int(e.a.value), 1 << int(e.b.value)  # folded: a constant mask has no domain to move bits in
            return self.render(Const(bool(v & bit), BOOL) if e.op == "has" else
                               Const(v | bit if e.op == "setbit" else v & ~bit, e.sort), ctx, pins)
        if e.op in ("has", "setbit", "clrbit"):  # the bit number names an element of the mask's domain
            d = self._unify(ctx, self.dom(e.a)) if e.op != "has" else self.dom(e.a)
            return f"({self.render(e.a, d, pins)} {e.op} {self.render(e.b, _bit_index(d), pins)})"
        if any(self.vmap(d) for d in (ctx, self.dom(e.a), self.dom(e.b))):
            raise Refused(f"{e.op} on renamed values")
        return f"({self.render(e.a, None, pins)} {e.op} {self.render(e.b, None, pins)})"

    def _order_kept(self, e: Bin) -> bool:
        """``x < k`` (any ordering) of a renamed ``x`` against a constant: kept when the renaming maps
        the values on each side of ``k`` among themselves (``kvm >= 0``: a slot, not NULL)."""
        for x, k, op in ((e.a, e.b, e.op), (e.b, e.a, _FLIP[e.op])):
            if isinstance(k, Const) and not isinstance(x, Const):
                c = int(k.value)
                return all(_ORDER[op](u, c) == _ORDER[op](v, c) for u, v in self.vmap(self.dom(x)).items())
        return False

    def _ite(self, e: Ite, ctx: Domain, pins: Pins) -> str:
        cases: list[tuple[Expr, Expr, Pins]] = []
        x: Expr = e
        while isinstance(x, Ite):
            own = self._pins(x.c)
            if not _conflict(own, pins):  # a case the context falsifies never runs
                cases.append((x.c, x.a, own))
            x = x.b
        d = self._unify(ctx, self.dom(e))
        shown = [(self.render(c, None, pins), self.render(a, d, pins | own), own) for c, a, own in cases]
        free = self.free_chains is not None and self.free_chains(e)
        shown = _normal_order(shown, lambda s: s[:2], lambda s, t: free or _conflict(s[2], t[2]))
        default = self.render(x, d, pins)
        if not shown:
            return default
        return "(if " + " ".join(f"[{c} {a}]" for c, a, _ in shown) + f" else {default})"

    def _pins(self, c: Expr) -> Pins:
        """What ``c`` pins: rendered expression -> rendered constant, for its ``x == k`` conjuncts."""
        out: Pins = {}
        for atom in _conjuncts(c):
            if isinstance(atom, Bin) and atom.op == "==" and isinstance(atom.b, Const) \
                    and not isinstance(atom.a, Const):
                d = self._unify(self.dom(atom.a), None)
                out[self.render(atom.a, d)] = self.render(atom.b, d)
        return out

    def action(self, a: Action) -> tuple[object, ...]:
        upd = sorted((self.field(f).name, self.render(e, domain_of(f))) for f, e in a.updates.items())
        acqs = [((self.lock(x.lock).name, x.lock.cls, x.mode, self.render(x.cond), x.trylock), self._pins(x.cond))
                for x in a.acquires]
        rels = [((self.lock(lk).name, self.render(c)), self._pins(c)) for lk, c in a.releases]
        waits = [((self.name(w.what), self.render(w.cond), tuple(self.field(f).name for f in w.holder)),
                  self._pins(w.cond)) for w in a.waits]  # deadlock reports name what a step waits for
        both_exclusive = lambda s, t: _conflict(s[1], t[1])  # noqa: E731 - never both taken: order is moot
        return (a.label, self.render(a.guard), tuple(upd),
                tuple(sorted((c.prop, self.render(c.bad)) for c in a.checks)),
                tuple(k for k, _ in _normal_order(acqs, lambda s: s[0], both_exclusive)),
                tuple(k for k, _ in _normal_order(rels, lambda s: s[0], both_exclusive)),
                tuple(k for k, _ in _normal_order(waits, lambda s: s[0], both_exclusive)),
                self.render(a.target))


Pins = dict[str, str]


def _flat(e: Expr, op: str) -> list[Expr]:
    """The operands of a tree of one associative, commutative operator (``a | (b | c)``)."""
    if isinstance(e, Bin) and e.op == op:
        return _flat(e.a, op) + _flat(e.b, op)
    return [e]


def _conjuncts(c: Expr) -> list[Expr]:
    if isinstance(c, Nary) and c.op == "and":
        return [x for a in c.args for x in _conjuncts(a)]
    return [c]


def _conflict(p: Pins, q: Pins) -> bool:
    """Two sets of pins that cannot hold at once (one expression pinned to two constants)."""
    return any(k in q and q[k] != v for k, v in p.items())


T = TypeVar("T")


def _normal_order(items: list[T], key: Callable[[T], Any], commute: Callable[[T, T], bool]) -> list[T]:
    """The least order (by ``key``) of ``items`` reachable by swapping neighbours that ``commute``:
    each time, the least item that commutes with every item still before it."""
    rest, out = list(items), []
    while rest:
        free = [k for k, x in enumerate(rest) if all(commute(y, x) for y in rest[:k])]
        k = min(free, key=lambda i: key(rest[i]))
        out.append(rest.pop(k))
    return out


_MASK_OPS = ("&", "|", "^")
_ORDER = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _commuted(op: str, a: str, b: str) -> str:
    """A commutative operator's form, its operands in order (``k1 == k2`` is ``k2 == k1``)."""
    a, b = sorted((a, b))
    return f"({a} {op} {b})"


def _shape(f: Field) -> tuple[object, ...]:
    return (f.lo, f.hi, f.bits, f.kind, domain_of(f))


def identity(program: Program) -> Renaming:
    return Renaming(program, list(range(len(program.threads))), {}, {}, {})


__all__ = ["Domain", "Refused", "Renaming", "domain_of", "identity", "lock_fields"]
