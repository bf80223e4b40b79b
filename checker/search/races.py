"""Data races and lock discipline, checked in every explored state.

Two checks, reported as two properties:

- ``data-race`` (conflicting accesses): two threads are poised on steps that
  touch the same field, at least one writing it. Every field two threads
  access, one of them writing, is checked — declared ``protected_by`` locks or
  not (kvm refcount-free fields, queue data, the vfio open flag ...). Not
  checked: the engine's own bookkeeping (program counters, lock owners, rwsem
  reader and queue bits, object lifecycles and refcounts, which are atomic
  kref/refcount_t operations checked by memory-safety), ghost fields (named
  ``ghost.*``: model bookkeeping the kernel does not have) and fields declared
  ``unsynchronized=`` with the reason (atomics, READ_ONCE/WRITE_ONCE).
- ``lock-discipline`` (Eraser's lockset rule, per access): a thread about to
  write a field declared ``protected_by`` locks does not hold all of them, or
  about to read it holds none of them (the kernel's "written under both, read
  under either"). Reported, as Eraser does, once the field is shared and
  modified — another thread's access conflicts with this one — with both call
  sites: the unprotected access and that other access.

A step writing one instance of an array chosen by state (``set_at``) reads
every instance only to keep it: such "keep" reads of a field that does not
change are not counted as accesses.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass

from checker.lang.expr import And, Expr, Or, variables
from checker.lang.heldsets import Held, slot, static_held
from checker.lang.layout import Field
from checker.lang.program_types import Action, AnyLock, Program, RwSem
from checker.search.pycompile import compile_predicate

Site = tuple[int, Field, tuple[AnyLock, ...]]  # (action, field, declared locks)
CHECK_BITS = {"data-race": 1, "lock-discipline": 2}  # the native core's race_bits mask
ALL_CHECKS = 3


def race_mask(checks: Iterable[tuple[str, object]], found: Container[str]) -> int:
    """The mask of the state checks still to run: selected and not yet found."""
    return sum(CHECK_BITS[name] for name, _ in checks if name not in found)


@dataclass(frozen=True)
class SiteRule:
    """One lock-discipline site of an action, in the form a compiled core checks it exactly: the
    field, "its thread holds every declared lock" (a write's rule) and "holds one" (a read's), and
    whether another thread's access conflicts with a write / a read here (Eraser's shared-modified)."""

    field: Field
    holds_all: Expr
    holds_any: Expr
    other_if_write: bool
    other_if_read: bool


def engine_fields(program: Program) -> set[Field]:
    """Fields that are the engine's bookkeeping, not kernel memory a thread reads or writes."""
    out = {f for f in program.layout.fields if f.kind in ("pc", "owner")}
    for p in program.pools:
        out.update(p.state)
        out.update(p.refs or [])
    for lk in program.locks:
        if isinstance(lk, RwSem):
            out.update(lk.readers.values())
            out.update(lk.queued.values())
    return out


class RaceChecker:
    def __init__(self, program: Program) -> None:
        self.program = program
        skip = engine_fields(program) | set(program.unsynchronized)
        skip |= {f for f in program.layout.fields if f.name.startswith("ghost.")}
        reads_all, writes_all, keep_all = [], [], []
        for a in program.actions:
            guard_reads = {f for f in variables(a.guard) if isinstance(f, Field)}
            upd_reads: dict[Field, set[Field]] = {
                g: {f for f in variables(e) if isinstance(f, Field)} for g, e in a.updates.items()}
            r = guard_reads.union(*upd_reads.values())
            # read only to keep its own value (If(i == k, v, f)): not an access when f does not change
            keep = {g for g, rs in upd_reads.items() if g in rs and g not in guard_reads
                    and not any(g in rs2 for h, rs2 in upd_reads.items() if h is not g)}
            reads_all.append(r - skip)
            writes_all.append(set(a.updates) - skip)
            keep_all.append(keep - skip)
        threads_of: dict[Field, set[int]] = {}
        written: set[Field] = set()
        for a, r, w in zip(program.actions, reads_all, writes_all):
            written |= w
            for f in r | w:
                threads_of.setdefault(f, set()).add(a.thread)
        # shared: two threads access it and someone writes it
        self.checked = frozenset(f for f, ts in threads_of.items() if len(ts) > 1 and f in written)
        self.reads = [frozenset(r & self.checked) for r in reads_all]
        self.writes = [frozenset(w & self.checked) for w in writes_all]
        self.keep = [frozenset(k & self.checked) for k in keep_all]
        self.protected = {f: locks for f, locks in program.shared.items() if f in self.checked}
        self._holds = self._held_predicates()
        self._others: dict[tuple[int, Field, bool], Action | None] = {}
        static = static_held(program)  # where the held set is known from the pc, settle the site now
        self.sites: list[list[Site]] = [
            [(a.aid, f, self.protected[f]) for f in sorted(self.reads[a.aid] | self.writes[a.aid], key=_name)
             if f in self.protected and not _always_held(self.protected[f], static[a.thread][a.label])]
            for a in program.actions]

    def site_rules(self) -> list[list[SiteRule]]:
        """Per action, its sites as ``SiteRule``s: what ``discipline`` decides, for a compiled core."""
        out = []
        for a, sites in zip(self.program.actions, self.sites):
            held = {lk.index: lk.held_by(a.thread) for _, _, locks in sites for lk in locks}
            out.append([SiteRule(f, And(*[held[lk.index] for lk in locks]), Or(*[held[lk.index] for lk in locks]),
                                 self._other_site(a, f, True) is not None, self._other_site(a, f, False) is not None)
                        for _, f, locks in sites])
        return out

    def _held_predicates(self) -> dict[tuple[int, int], Callable[[int], bool]]:
        """(lock index, thread) -> "the thread holds the lock, in any mode" on a state."""
        out = {}
        for lk in {lk.index: lk for locks in self.protected.values() for lk in locks}.values():
            for th in self.program.threads:
                out[(lk.index, th.index)] = compile_predicate(lk.held_by(th.index))
        return out

    # ---- per state
    def accesses(self, a: int, state: int, nxt: int) -> tuple[frozenset[Field], frozenset[Field]]:
        """(reads, writes) of action ``a`` firing from ``state`` into ``nxt`` (< 0: a violation)."""
        w, r = self.writes[a], self.reads[a]
        if nxt < 0 or not (w or r):
            return r, w
        unchanged = frozenset(f for f in w if f.get(state) == f.get(nxt))
        return r - (self.keep[a] & unchanged), w - unchanged

    def race(self, state: int, out: list[tuple[int, int]]) -> str | None:
        acts = self.program.actions
        touching = [(a, n) for a, n in out if self.reads[a] or self.writes[a]]
        if len({acts[a].thread for a, _ in touching}) < 2:
            return None
        poised = [(a, *self.accesses(a, state, n)) for a, n in touching]
        for i, (a, ra, wa) in enumerate(poised):
            for b, rb, wb in poised[i + 1:]:
                if acts[a].thread == acts[b].thread:
                    continue
                clash = (wa & (rb | wb)) | (wb & ra)
                if clash:
                    f = sorted(clash, key=_name)[0]
                    return _race_message(self.program, acts[a], acts[b], f, f in wa, f in wb)
        return None

    def discipline(self, state: int, out: list[tuple[int, int]]) -> str | None:
        for a, n in out:
            sites = self.sites[a]
            if not sites:
                continue
            reads, writes = self.accesses(a, state, n)
            t = self.program.actions[a].thread
            for _, f, locks in sites:
                if f not in reads and f not in writes:
                    continue
                held = [self._holds[(lk.index, t)](state) for lk in locks]
                if all(held) if f in writes else any(held):  # writers hold every declared lock, readers one
                    continue
                # Eraser's shared-modified state: only an access another thread's access conflicts with
                other = self._other_site(self.program.actions[a], f, f in writes)
                if other is not None:
                    return self._discipline_message(a, other, f, locks, f in writes, state)
        return None

    def _discipline_message(self, a: int, other: Action, f: Field, locks: tuple[AnyLock, ...], writes: bool,
                            state: int) -> str:
        tn = [t.name for t in self.program.threads]
        me = self.program.actions[a]
        names = (" and " if writes else " or ").join(lk.name for lk in locks)
        held = [lk.name for lk in self.program.locks if compile_predicate(lk.held_by(me.thread))(state)]
        holding = f" (holding {', '.join(held)})" if held else " (holding no lock)"
        kind = "writes" if f in self.writes[other.aid] else "reads"
        return (f"{tn[me.thread]} ({me.function}) {'writes' if writes else 'reads'} {f.name} without {names}"
                f"{holding}; {tn[other.thread]} ({other.function}) also {kind} it")

    def _other_site(self, me: Action, f: Field, i_write: bool) -> Action | None:
        """Another thread's access of ``f`` that conflicts with this one (a write on one side)."""
        key = (me.thread, f, i_write)
        if key not in self._others:
            self._others[key] = next((b for b in self.program.actions if b.thread != me.thread and (
                f in self.writes[b.aid] or i_write and f in self.reads[b.aid])), None)
        return self._others[key]


def _always_held(locks: tuple[AnyLock, ...], held: Held | None) -> bool:
    """Every declared lock is held at this label whatever the state (static_held knows it)."""
    return held is not None and all(slot(lk.index, "w") in held or slot(lk.index, "r") in held for lk in locks)


def _name(f: Field) -> str:
    return f.name


def _race_message(program: Program, a: Action, b: Action, f: Field, wa: bool, wb: bool) -> str:
    tn = [t.name for t in program.threads]
    return (f"{tn[a.thread]} ({a.function}) {'writes' if wa else 'reads'} {f.name} while {tn[b.thread]} "
            f"({b.function}) {'writes' if wb else 'reads'} it, with no common lock")
