"""Symmetry reduction: interchangeable instances put in canonical form.

The design declares which instances may be permuted (``ProgramBuilder.permutable``:
members, each a list of threads, fields and locks that move together). The
scenario decides which members really are interchangeable: two members are
swapped here only when the program is unchanged by the swap, checked
structurally on the built program:

- every step of every thread, with fields renamed by the swap (a member's
  fields, its locks' fields, its threads' pcs, rw-semaphore per-thread bits)
  and thread ids renamed inside owner values, is the corresponding step of the
  swapped thread (so identical scripts and arguments, up to the swap);
- every selected ``always``/``sometimes`` property is unchanged (``and``/``or``
  compared as sets), shared fields, leak-checked pools and lock classes map
  onto themselves, and the initial state is its own image (initial
  assignments, attachments and constants agree).

Swaps that pass generate a group (union of valid transpositions); the
canonical form of a state is the least packed int over its orbit (every
permutation of every class), a function of the state alone. Since the program
and the properties are invariant, a state and its image are both reachable or
both not, with the same properties, deadlock status, enabled checks and
lock-class edges, so each verdict is that of the unreduced search; counts are
of orbits. Traces are concrete: ``concretize`` replays from concrete states and
picks the first step whose successor has the recorded canonical form.

With partial-order reduction on top, ample sets are chosen on the
representative itself (persistent there), and the cycle proviso still holds
in the quotient graph: swapped threads have identical control-flow graphs, so
the sum over threads of a topological rank of their pc (back edges removed) is
the same for a state and its image, and only a back-edge step can lower it; a
cycle of canonical states therefore takes a back edge, whose state is fully
expanded.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations, product
from typing import Any

from checker.lang.expr import Bin, Const, Expr, Ite, Nary, Un, Var
from checker.lang.layout import Field
from checker.lang.program import Action, AnyLock, Lock, Member, Program

MAX_PERMUTATIONS = 5040  # 7!: beyond, canonicalisation would cost more than it saves

Move = tuple[int, int, int, list[int] | None]  # source offset, bit mask, destination offset, value table


def _lock_fields(lk: AnyLock) -> list[Field]:
    return [lk.owner] if isinstance(lk, Lock) else [lk.writer]


class _Renaming:
    """A permutation of members as maps on threads and fields."""

    def __init__(self, program: Program, members: list[Member], image: list[int]) -> None:
        tindex = {th.name: th.index for th in program.threads}
        self.tmap = list(range(len(program.threads)))
        fmap: dict[Field, Field] = {}
        lmap: dict[int, AnyLock] = {}
        for i, m in enumerate(members):
            dst = members[image[i]]
            for a, b in zip(m.threads, dst.threads):
                self.tmap[tindex[a]] = tindex[b]
            for fa, fb in zip(m.fields, dst.fields):
                fmap[fa] = fb
            for la, lb in zip(m.locks, dst.locks):
                lmap[id(la)] = lb
                for fa, fb in zip(_lock_fields(la), _lock_fields(lb)):
                    fmap[fa] = fb
        for th in program.threads:
            fmap[th.pc] = program.threads[self.tmap[th.index]].pc
        self.ok = True
        for lk in program.locks:  # rw-semaphore per-thread bits follow their thread (and their lock)
            if isinstance(lk, Lock):
                continue
            dst_lk = lmap.get(id(lk), lk)
            if isinstance(dst_lk, Lock):
                self.ok = False
                continue
            for bits, dst_bits in ((lk.readers, dst_lk.readers), (lk.queued, dst_lk.queued)):
                for t, f in bits.items():
                    g = dst_bits.get(self.tmap[t])
                    if g is None:
                        self.ok = False
                    else:
                        fmap[f] = g
        self.fmap = fmap
        self.lmap = lmap
        targets = list(fmap.values())
        if len(set(targets)) != len(targets) or any((f.lo, f.hi, f.bits, f.kind) != (g.lo, g.hi, g.bits, g.kind)
                                                     for f, g in fmap.items()):
            self.ok = False

    def field(self, f: Field) -> Field:
        return self.fmap.get(f, f)

    def lock(self, lk: AnyLock) -> AnyLock:
        return self.lmap.get(id(lk), lk)

    def owner_value(self, v: int) -> int:
        return self.tmap[v - 1] + 1 if 0 < v <= len(self.tmap) else v

    # ---- structural rendering (identity renaming renders the original)
    def render(self, e: Expr, owner: bool = False) -> str:
        if isinstance(e, Const):
            v = int(e.value)
            return str(self.owner_value(v) if owner else v)
        if isinstance(e, Var):
            return "$" + self.field(e.field).name  # type: ignore[arg-type]
        if isinstance(e, Un):
            return f"({e.op} {self.render(e.a, owner)})"
        if isinstance(e, Bin):
            side = owner or _owner_valued(e.a) or _owner_valued(e.b)
            if e.op in ("==", "!=", "<", "<=", ">", ">="):
                return f"({self.render(e.a, side)} {e.op} {self.render(e.b, side)})"
            return f"({self.render(e.a, owner)} {e.op} {self.render(e.b, owner)})"
        if isinstance(e, Nary):
            return f"({e.op} " + " ".join(sorted(self.render(x, owner) for x in e.args)) + ")"
        if isinstance(e, Ite):
            return f"(if {self.render(e.c)} {self.render(e.a, owner)} {self.render(e.b, owner)})"
        return f"<{type(e).__name__}>"

    def action(self, a: Action) -> tuple[object, ...]:
        upd = sorted((self.field(f).name, self.render(e, f.kind == "owner")) for f, e in a.updates.items())
        return (a.label, self.render(a.guard), tuple(upd),
                tuple(sorted((c.prop, self.render(c.bad)) for c in a.checks)),
                tuple((self.lock(x.lock).name, x.lock.cls, x.mode, self.render(x.cond), x.trylock)
                      for x in a.acquires),
                tuple((self.lock(lk).name, self.render(c)) for lk, c in a.releases),
                self.render(a.target))


def _owner_valued(e: Expr) -> bool:
    if isinstance(e, Var):
        return getattr(e.field, "kind", "") == "owner"
    if isinstance(e, Ite):
        return _owner_valued(e.a) or _owner_valued(e.b)
    return False


def _invariant(program: Program, ren: _Renaming, props: list[str], ident: _Renaming) -> bool:
    """The program (and the selected properties) unchanged by ``ren``."""
    if not ren.ok:
        return False
    for th in program.threads:
        dst = ren.tmap[th.index]
        mine, theirs = program.by_label[th.index], program.by_label[dst]
        if len(mine) != len(theirs):
            return False
        for acts, others in zip(mine, theirs):
            if len(acts) != len(others):
                return False
            for a, b in zip(acts, others):
                if ren.action(a) != ident.action(b):
                    return False
    for p in program.properties:
        if p.name in props and ren.render(p.expr) != ident.render(p.expr):
            return False
    if {ren.field(f) for f in program.shared} != set(program.shared):
        return False
    if any({id(ren.lock(x)) for x in locks} != {id(x) for x in program.shared[ren.field(f)]}
           for f, locks in program.shared.items()):
        return False
    for pool in program.pools:
        if pool.leak_check and {ren.field(f) for f in pool.state} != set(pool.state):
            return False
    return all(ren.lock(lk).cls == lk.cls for lk in program.locks)


def _moves(program: Program, ren: _Renaming) -> tuple[int, list[Move]]:
    keep = (1 << program.layout.total_bits) - 1
    moves: list[Move] = []
    for f in program.layout.fields:
        g = ren.field(f)
        table = [ren.owner_value(v) for v in range(1 << f.bits)] if f.kind == "owner" else None
        if table is not None and table == list(range(1 << f.bits)):
            table = None
        if g is f and table is None:
            continue
        keep &= ~f.mask
        moves.append((f.offset, (1 << f.bits) - 1, g.offset, table))
    return keep, moves


class Symmetry:
    """Canonical forms under the verified permutation group."""

    def __init__(self, program: Program, classes: list[tuple[str, list[Member]]]) -> None:
        self.program = program
        self.classes = classes
        self.perms: list[tuple[int, list[Move]]] = []
        choices = [list(permutations(range(len(ms)))) for _, ms in classes]
        for combo in product(*choices):
            if all(list(img) == sorted(img) for img in combo):
                continue  # the identity
            ren = _compose(program, classes, combo)
            self.perms.append(_moves(program, ren))

    def canonical(self, state: int) -> int:
        best = state
        for keep, moves in self.perms:
            img = _apply(state, keep, moves)
            if img < best:
                best = img
        return best

    def describe(self) -> dict[str, list[list[str]]]:
        return {name: [m.threads for m in ms] for name, ms in self.classes}


def _compose(program: Program, classes: list[tuple[str, list[Member]]],
             combo: tuple[tuple[int, ...], ...]) -> _Renaming:
    members = [m for _, ms in classes for m in ms]
    image: list[int] = []
    base = 0
    for (_, ms), img in zip(classes, combo):
        image.extend(base + k for k in img)
        base += len(ms)
    return _Renaming(program, members, image)


def symmetry_for(program: Program, props: list[str] | None = None) -> tuple[Symmetry | None, str]:
    """The verified symmetry of ``program``'s scenario, or None and why there is none."""
    if not program.permutables:
        return None, "the design declares no permutable instances"
    props = [p.name for p in program.properties] if props is None else props
    init = program.layout.initial()
    classes: list[tuple[str, list[Member]]] = []
    for decl in program.permutables:
        ms = decl.members
        ident = _Renaming(program, ms, list(range(len(ms))))
        parent = list(range(len(ms)))

        for i in range(len(ms)):
            for j in range(i + 1, len(ms)):
                if _root(parent, i) == _root(parent, j):
                    continue
                swap = list(range(len(ms)))
                swap[i], swap[j] = j, i
                ren = _Renaming(program, ms, swap)
                keep, moves = _moves(program, ren)
                if _invariant(program, ren, props, ident) and _apply(init, keep, moves) == init:
                    parent[_root(parent, j)] = _root(parent, i)
        groups: dict[int, list[Member]] = {}
        for i, m in enumerate(ms):
            groups.setdefault(_root(parent, i), []).append(m)
        classes += [(decl.name, g) for g in groups.values() if len(g) > 1]
    if not classes:
        return None, "no two declared instances are interchangeable in this scenario"
    size = 1
    for _, g in classes:
        for k in range(2, len(g) + 1):
            size *= k
    if size > MAX_PERMUTATIONS:
        return None, f"{size} permutations: too many to canonicalise per state"
    return Symmetry(program, classes), ""


def _root(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def _apply(state: int, keep: int, moves: list[Move]) -> int:
    img = state & keep
    for so, m, do, table in moves:
        v = (state >> so) & m
        img |= (table[v] if table is not None else v) << do
    return img


def concretize(successors: Callable[[int], list[tuple[int, int]]], canonical: Callable[[int], int],
               init: int, actions: list[int], last_action: int = -1,
               violation_prop: Callable[[int], Any] | None = None) -> list[int]:
    """Actions of a concrete run from ``init`` following a path of canonical states.

    ``actions`` were taken from canonical states; at each step the concrete run
    takes the first enabled action whose successor has the same canonical form as
    the recorded one. ``last_action`` (a step firing into a violation) is matched
    by the violated property."""
    canon_state, concrete, out = init, init, []
    for a in actions:
        target = canonical(next(n for b, n in successors(canon_state) if b == a))
        b, n = next((b, n) for b, n in successors(concrete) if n >= 0 and canonical(n) == target)
        out.append(b)
        canon_state, concrete = target, n
    if last_action >= 0:
        assert violation_prop is not None
        want = violation_prop(next(n for b, n in successors(canon_state) if b == last_action))
        out.append(next(b for b, n in successors(concrete) if n < 0 and violation_prop(n) == want))
    return out


__all__ = ["Symmetry", "concretize", "symmetry_for"]
