"""Symmetry reduction: interchangeable instances put in canonical form.

The design declares which instances may be permuted (``ProgramBuilder.permutable``:
members, each a list of threads, fields and locks that move together). The
scenario decides which members really are interchangeable: two members are
swapped here only when the program is unchanged by the swap, checked
structurally on the built program:

- every step of every thread, with fields renamed by the swap (a member's
  fields, its locks' fields, its threads' pcs, rw-semaphore per-thread bits)
  and the values that name a member renamed (thread ids in owner fields, the
  member's pool ``slots`` in ref and enum fields: ``matrix_mdev->kvm``, hook
  targets; ``checker.search.reduce.renaming``), is a step of the swapped thread
  at the same label (so identical scripts and arguments, up to the swap);
- every selected ``always``/``sometimes`` property is unchanged (``and``/``or``
  compared as sets), shared fields, leak-checked pools and lock classes map
  onto themselves, and the initial state is its own image (initial
  assignments, attachments and constants agree).

A design whose code differs per instance in its control flow (one label per
kvm, as the older eras' ``kvm_arch_crypto_clear_masks``) is refused: pc values
are not renamed.

Swaps that pass generate a group (union of valid transpositions); the
canonical form of a state is the least packed int over its images under every
product of one permutation per class (classes of two declarations may share
fields: a VM's vCPU class moves with the VM class, and the products are
composed as maps), a function of the state alone. Since the program
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

from checker.lang.program_types import Member, Program
from checker.search.reduce.renaming import Refused, Renaming, identity

MAX_PERMUTATIONS = 5040  # 7!: beyond, canonicalisation would cost more than it saves

Move = tuple[int, int, int, list[int] | None]  # source offset, bit mask, destination offset, value table


def _invariant(program: Program, ren: Renaming, props: list[str], ident: Renaming) -> bool:
    """The program (and the selected properties) unchanged by ``ren``."""
    if not ren.ok:
        return False
    try:
        return _unchanged(program, ren, props, ident)
    except Refused:
        return False


def _unchanged(program: Program, ren: Renaming, props: list[str], ident: Renaming) -> bool:
    for th in program.threads:
        dst = ren.tmap[th.index]
        mine, theirs = program.by_label[th.index], program.by_label[dst]
        if len(mine) != len(theirs) or th.cyclic != program.threads[dst].cyclic:
            return False
        for acts, others in zip(mine, theirs):  # a label's steps as a multiset: a family's order may permute
            if sorted(map(repr, map(ren.action, acts))) != sorted(map(repr, map(ident.action, others))):
                return False
    for p in program.properties:
        if p.name in props and ren.render(p.expr) != ident.render(p.expr):
            return False
    if {ren.field(f) for f in program.shared} != set(program.shared):
        return False
    if any({id(ren.lock(x)) for x in locks} != {id(x) for x in program.shared[ren.field(f)]}
           for f, locks in program.shared.items()):
        return False
    if {ren.field(f) for f in program.unsynchronized} != set(program.unsynchronized):
        return False
    for pool in program.pools:
        if pool.leak_check and {ren.field(f) for f in pool.state} != set(pool.state):
            return False
    return all(ren.lock(lk).cls == lk.cls for lk in program.locks)


def _moves(program: Program, ren: Renaming) -> tuple[int, list[Move]]:
    keep = (1 << program.layout.total_bits) - 1
    moves: list[Move] = []
    for f in program.layout.fields:
        g = ren.field(f)
        table = ren.table(f)
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
        self.renamings: list[Renaming] = []
        choices = [list(permutations(range(len(ms)))) for _, ms in classes]
        for combo in product(*choices):
            if all(list(img) == sorted(img) for img in combo):
                continue  # the identity
            ren = _compose(program, classes, combo)
            self.renamings.append(ren)
            keep, moves = _moves(program, ren)
            self.perms.append((keep, _merged(moves)))
        self._images, self.canonical = _compiled(self.perms)  # type: ignore[method-assign,assignment]

    def canonical(self, state: int) -> int:
        """The least of ``state`` and its images (replaced by the generated function)."""
        return min(state, *self._images(state))

    def images(self, state: int) -> tuple[int, ...]:
        """``state`` under each permutation other than the identity (tests check them reachable)."""
        return self._images(state)

    def closed_names(self, sets: list[frozenset[str]]) -> list[frozenset[str]]:
        """``sets`` of lock/flag names (what a deadlock state waits on) and their images: the search
        saw one state of each orbit, a report names what every state of it waits on."""
        out = list(dict.fromkeys(sets))
        for ren in self.renamings:
            out += [frozenset(ren.name(n) for n in s) for s in sets]
        return list(dict.fromkeys(out))

    def describe(self) -> dict[str, list[list[str]]]:
        """Declaration name -> the threads of each member (classes of one declaration merged)."""
        out: dict[str, list[list[str]]] = {}
        for name, ms in self.classes:
            out.setdefault(name, []).extend(m.threads for m in ms)
        return out

    def describe_classes(self) -> list[dict[str, object]]:
        """Each class that ran: its declaration, members (threads, slots) and the group's order."""
        out: list[dict[str, object]] = []
        for name, ms in self.classes:
            order = 1
            for k in range(2, len(ms) + 1):
                order *= k
            out.append({"declaration": name, "members": [{"threads": list(m.threads), "slots": list(m.slots)}
                                                          for m in ms], "permutations": order})
        return out


def _compose(program: Program, classes: list[tuple[str, list[Member]]],
             combo: tuple[tuple[int, ...], ...]) -> Renaming:
    """One permutation per class, applied one after the other (classes may share fields: a VM's
    vCPUs are a class of their own and members of the VM's class)."""
    ren = identity(program)
    for (_, ms), img in zip(classes, combo):
        if list(img) != sorted(img):
            ren = ren.then(Renaming.of_members(program, ms, list(img)))
    return ren


def symmetry_for(program: Program, props: list[str] | None = None) -> tuple[Symmetry | None, str]:
    """The verified symmetry of ``program``'s scenario, or None and why there is none."""
    if not program.permutables:
        return None, "the design declares no permutable instances"
    props = [p.name for p in program.properties] if props is None else props
    init = program.layout.initial()
    ident = identity(program)
    classes: list[tuple[str, list[Member]]] = []
    for decl in program.permutables:
        ms = decl.members
        parent = list(range(len(ms)))

        for i in range(len(ms)):
            for j in range(i + 1, len(ms)):
                if _root(parent, i) == _root(parent, j):
                    continue
                swap = list(range(len(ms)))
                swap[i], swap[j] = j, i
                ren = Renaming.of_members(program, ms, swap)
                if _invariant(program, ren, props, ident) and _fixes(program, ren, init):
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


def _fixes(program: Program, ren: Renaming, state: int) -> bool:
    try:
        keep, moves = _moves(program, ren)
    except Refused:
        return False
    return _apply(state, keep, moves) == state


def _root(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def _merged(moves: list[Move]) -> list[Move]:
    """Neighbouring fields moved by one shift, without value tables, as one move (a member's fields
    are declared together, so a swap is a few wide moves)."""
    out: list[Move] = []
    for so, m, do, table in sorted(moves, key=lambda mv: mv[0]):
        if out and table is None and out[-1][3] is None:
            pso, pm, pdo, _ = out[-1]
            width = pm.bit_length()
            if so == pso + width and do == pdo + width:
                out[-1] = (pso, pm | (m << width), pdo, None)
                continue
        out.append((so, m, do, table))
    return out


def _compiled(perms: list[tuple[int, list[Move]]]) -> tuple[Callable[[int], tuple[int, ...]], Callable[[int], int]]:
    """Generated functions (as codegen does for successors): every image of a state, and its canonical
    form. The canonical form compares an image with the state from the highest moved bits down and
    stops at the first difference: most images are larger, and that shows in their first field."""
    env: dict[str, Any] = {}
    images, lines = [], ["def canonical(s):", "    best = s"]
    for k, (keep, moves) in enumerate(perms):
        terms = [f"(s & {keep:#x})"]
        part = {}  # destination offset -> the image's bits there, shifted down
        for j, (so, m, do, table) in enumerate(moves):
            if table is not None:
                env[f"t{k}_{j}"] = tuple(table)
                terms.append(f"(t{k}_{j}[(s >> {so}) & {m:#x}] << {do})")
                part[do] = (f"t{k}_{j}[(s >> {so}) & {m:#x}]", m)
            else:
                terms.append(f"((s & {m << so:#x}) << {do - so})" if do >= so else f"((s & {m << so:#x}) >> {so - do})")
                part[do] = (f"((s >> {so}) & {m:#x})", m)
        image = " | ".join(terms)
        images.append(image)
        lines.append(f"    best = p{k}(s, best)")
        body = [f"def p{k}(s, best):", "    if best != s:", f"        img = {image}",
                "        return img if img < best else best"]
        for do in sorted(part, reverse=True):  # keep bits are the state's own: only moved bits differ
            v, m = part[do]
            body += [f"    v = {v}", f"    u = (s >> {do}) & {m:#x}", "    if v != u:",
                     f"        return ({image}) if v < u else s"]
        body.append("    return s")
        exec(compile("\n".join(body) + "\n", f"<symmetry p{k}>", "exec"), env)
    lines.append("    return best")
    src = f"def images(s):\n    return ({', '.join(images)},)\n" + "\n".join(lines) + "\n"
    exec(compile(src, "<symmetry images>", "exec"), env)  # engine-generated source, never spec text
    return env["images"], env["canonical"]


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
    the recorded one. ``last_action`` (the finding's own step) is matched by the
    violated property where it fails a check, else by its target's canonical form."""
    canon_state, concrete, out = init, init, []
    for a in actions:
        target = canonical(next(n for b, n in successors(canon_state) if b == a))
        b, n = next((b, n) for b, n in successors(concrete) if n >= 0 and canonical(n) == target)
        out.append(b)
        canon_state, concrete = target, n
    if last_action >= 0:
        last = next(n for b, n in successors(canon_state) if b == last_action)
        if last < 0:  # a step failing a check: the concrete step failing the same property
            assert violation_prop is not None
            want = violation_prop(last)
            out.append(next(b for b, n in successors(concrete) if n < 0 and violation_prop(n) == want))
        else:  # a step one past a depth bound into a state breaking an invariant (or witnessing one)
            target = canonical(last)
            out.append(next(b for b, n in successors(concrete) if n >= 0 and canonical(n) == target))
    return out


__all__ = ["Symmetry", "concretize", "symmetry_for"]
