"""ProgramModel: a compiled Program seen through the Model protocol.

Adds what the concurrent-program layer derives for free: termination vs
deadlock, leak checks at the end of a bounded script, data races and lock
discipline (``races.py``), and who waits for whom in a deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from checker.lang.layout import Field
from checker.lang.model import StateCheck
from checker.lang.program_types import ALIVE, Program, RwSem
from checker.report.lockdep import lockdep_name
from checker.search.codegen import Compiled, compile_program
from checker.search.pycompile import compile_predicate
from checker.search.races import ALL_CHECKS, CHECK_BITS, RaceChecker


class ProgramModel:
    def __init__(self, program: Program, only: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
        self.program = program
        self.comp: Compiled = compile_program(program)
        self.successors = self.comp.succ
        self._only, self._skip = tuple(only), tuple(skip)
        done_terms = [(th.pc, th.done) for th in program.threads]
        self._has_cyclic = any(th.cyclic for th in program.threads)
        self._done_mask = sum(f.mask for f, _ in done_terms)
        self._done_val = sum((d - f.lo) << f.offset for f, d in done_terms if d >= 0)
        self.races = RaceChecker(program)
        # set by the native core: race_bits(state, mask), the checks below decided in C, exactly
        self.race_filter: Callable[[int, int], int] | None = None
        self._race_memo: tuple[int, int] = (-1, 0)  # (state, race_filter's bits for it)

    def _selected(self, name: str) -> bool:
        return (not self._only or name in self._only) and name not in self._skip

    # ---- protocol
    @property
    def action_count(self) -> int:
        return len(self.program.actions)

    @property
    def state_bits(self) -> int:
        return self.program.layout.total_bits

    def init_states(self) -> list[int]:
        return [self.program.layout.initial()]

    def violation(self, code: int) -> tuple[str, str]:
        v = self.comp.violations[code]
        return v.prop, v.message

    def is_done(self, state: int) -> bool:
        return not self._has_cyclic and state & self._done_mask == self._done_val

    def invariants(self) -> list[StateCheck]:
        return [StateCheck(p.name, compile_predicate(p.expr)) for p in self.program.properties
                if p.kind == "always" and self._selected(p.name)]

    def witnesses(self) -> list[StateCheck]:
        return [StateCheck(p.name, compile_predicate(p.expr)) for p in self.program.properties
                if p.kind == "sometimes" and self._selected(p.name)]

    def terminal_checks(self) -> list[StateCheck]:
        if not self._selected("memory-safety"):
            return []
        out = []
        for pool in self.program.pools:
            if pool.leak_check:
                out.append(StateCheck("memory-safety", _none_alive(pool.state)))
        return out

    def state_checks(self) -> list[tuple[str, Callable[[int, list[tuple[int, int]]], str | None]]]:
        out: list[tuple[str, Callable[[int, list[tuple[int, int]]], str | None]]] = []
        if self.races.checked and self._selected("data-race"):
            out.append(("data-race", self._filtered(CHECK_BITS["data-race"], self.races.race)))
        if self.races.protected and self._selected("lock-discipline"):
            out.append(("lock-discipline", self._filtered(CHECK_BITS["lock-discipline"], self.races.discipline)))
        return out

    def _filtered(self, bit: int, check: Callable[[int, list[tuple[int, int]]], str | None]
                  ) -> Callable[[int, list[tuple[int, int]]], str | None]:
        """``check``, run in Python only on the states where the native core finds something."""
        flt = self.race_filter
        if flt is None:
            return check

        def run(s: int, out: list[tuple[int, int]]) -> str | None:
            if self._race_memo[0] != s:  # both checks of one state: one call into C
                self._race_memo = (s, flt(s, ALL_CHECKS))
            return check(s, out) if self._race_memo[1] & bit else None
        return run

    def on_deadlock(self, state: int) -> frozenset[str]:
        """Lock classes on the wait-for cycle of a deadlock state (empty if none)."""
        graph, names = self.waits_for(state)
        cyc = _cycle(graph)
        cls = {lk.name: lk.cls for lk in self.program.locks}
        cls.update({f"{lk.name} (queued writer)": lk.cls for lk in self.program.locks})
        return frozenset(cls.get(names[(a, b)], names[(a, b)])
                         for a, b in zip(cyc, cyc[1:] + cyc[:1])) if cyc else frozenset()

    # ---- analyses
    def leaked(self, state: int) -> list[str]:
        return [pool.slots[i] for pool in self.program.pools if pool.leak_check
                for i, f in enumerate(pool.state) if f.get(state) == ALIVE]

    def waits_for(self, state: int) -> tuple[dict[int, set[int]], dict[tuple[int, int], str]]:
        """Thread -> threads it waits for, and the lock/flag name on each wait edge."""
        from checker.search.pycompile import evaluate, state_values

        values = state_values(self.program.layout.fields, state)
        graph: dict[int, set[int]] = {}
        names: dict[tuple[int, int], str] = {}
        lock_names = {lk.name for lk in self.program.locks}

        def edge(t: int, u: int, what: str) -> None:
            graph.setdefault(t, set()).add(u)
            names.setdefault((t, u), what)

        for th in self.program.threads:
            t = th.index
            pc = th.pc.get(state)
            if pc >= len(self.program.by_label[t]):
                continue
            for a in self.program.by_label[t][pc]:
                for acq in a.acquires:
                    if acq.trylock or not evaluate(acq.cond, values):
                        continue
                    lk = acq.lock
                    if isinstance(lk, RwSem):
                        if lk.writer.get(state):
                            edge(t, lk.writer.get(state) - 1, lk.name)
                        others = lk.readers if acq.mode == "w" else lk.queued
                        for u, f in sorted(others.items()):
                            if u != t and f.get(state):
                                edge(t, u, lk.name if acq.mode == "w" else f"{lk.name} (queued writer)")
                    elif lk.owner.get(state):
                        edge(t, lk.owner.get(state) - 1, lk.name)
                for w in a.waits:
                    if w.what in lock_names or not evaluate(w.cond, values):
                        continue
                    for f in w.holder:
                        if f.get(state):
                            edge(t, f.get(state) - 1, w.what)
        return graph, names

    def wait_lines(self, state: int) -> list[str]:
        graph, names = self.waits_for(state)
        tn = [t.name for t in self.program.threads]
        lines = []
        for t in sorted(graph):
            for u in sorted(graph[t]):
                what = names[(t, u)]
                if what.endswith(" (queued writer)"):
                    lines.append(f"{tn[t]} waits for {what[:-16]}: queued behind writer {tn[u]}")
                    continue
                self_note = " (itself: recursive locking)" if t == u else ""
                lines.append(f"{tn[t]} waits for {what} held by {tn[u]}{self_note}")
        return lines

    def blocked(self, state: int) -> list[tuple[str, str, str, str]]:
        """Hung-task view of a deadlock: (thread, kernel function, blocking call, holder) per wait edge."""
        graph, names = self.waits_for(state)
        prog = self.program
        locks = {lk.name: lk for lk in prog.locks}
        out = []
        for t in sorted(graph):
            th = prog.threads[t]
            pending = prog.by_label[t][th.pc.get(state)]
            for u in sorted(graph[t]):
                what = names[(t, u)].removesuffix(" (queued writer)")
                lk = locks.get(what)
                act = next((a for a in pending if any(q.lock is lk for q in a.acquires)), pending[0])
                mode = next((q.mode for q in act.acquires if q.lock is lk), "w")
                name = lockdep_name(what)
                if lk is None:
                    call = f"wait_event(!{what})"
                elif isinstance(lk, RwSem):
                    call = f"{'down_read' if mode == 'r' else 'down_write'}({name})"
                else:
                    call = f"mutex_lock({name})"
                out.append((th.name, act.function, call, prog.threads[u].name))
        return out


def _none_alive(fields: list[Field]) -> Callable[[int], bool]:
    def pred(s: int) -> bool:
        return all(f.get(s) != ALIVE for f in fields)

    return pred


def _cycle(graph: dict[int, set[int]]) -> list[int]:
    """Some cycle in a small wait-for graph, as a node list ([] if acyclic)."""
    for start in sorted(graph):
        path, seen = [start], {start}
        node = start
        while True:
            nxt = sorted(graph.get(node, ()))
            if not nxt:
                break
            node = nxt[0]
            if node in seen:
                return path[path.index(node):]
            path.append(node)
            seen.add(node)
    return []

