"""Run a check end to end: Program -> search -> verdicts, traces, lock-order graph."""

from __future__ import annotations

from collections.abc import Callable

from checker.lang.design import Design, Scenario
from checker.lang.layout import Field
from checker.lang.program_types import Program, RwSem
from checker.report.objects import freed_by
from checker.report.results import (
    BOUNDED,
    BUILTIN_PROPERTIES,
    HOLDS,
    NOT_APPLICABLE,
    NOT_WITNESSED,
    VIOLATED,
    WITNESSED,
    CheckResult,
    LockCycle,
    LockEdge,
    PropertyResult,
    Stats,
    Trace,
    TraceStep,
)
from checker.search.checkpoint import identity
from checker.search.explore import Finding, Search, path_to
from checker.search.limits import StopRequest
from checker.search.lockorder import collect_edges, cycles_report, scenario
from checker.search.parallel import run_search
from checker.search.progmodel import ProgramModel
from checker.search.pycompile import evaluate, state_values
from checker.search.reduce.combined import build_reducer
from checker.search.reduce.symmetry import concretize
from checker.spec.options import Options

BUILTIN_TEXT = {
    "deadlock": "no reachable state where some thread is unfinished and none can move",
    "lock-order": "lockdep: no cycle in the acquired-while-holding graph; balanced unlocks; no lock held at exit",
    "memory-safety": "no use after free, NULL dereference, double free, refcount underflow or leak",
    "data-race": "no two threads poised on conflicting accesses to a field (one of them writing)",
    "lock-discipline": "every access to a field declared protected_by holds one of its locks (Eraser's lockset rule)",
}


class ReplayError(Exception):
    """A saved trace does not replay on this program (not enabled, or nondeterministic)."""


def build_program(design: Design, scenario: Scenario) -> Program:
    return design.build(scenario)


def replay_trace(program: Program, actions: list[int], model: ProgramModel | None = None,
                 expect_state: int | None = None) -> Trace:
    """Re-execute ``actions`` from the initial state and render the swimlane steps."""
    model = model or ProgramModel(program)
    s = model.init_states()[0]
    steps: list[TraceStep] = []
    final = ""
    for k, aid in enumerate(actions):
        if not 0 <= aid < len(program.actions):
            raise ReplayError(f"step {k + 1}: no action {aid} in this model")
        act = program.actions[aid]
        th = program.threads[act.thread].name
        nxt = [n for a, n in model.successors(s) if a == aid]
        if not nxt:
            raise ReplayError(f"step {k + 1}: {th}: {act.function}: {act.text} is not enabled")
        if len(nxt) > 1:
            raise ReplayError(f"step {k + 1}: action {aid} has several successors (nondeterministic)")
        n = nxt[0]
        if n < 0:
            prop, msg = model.violation(-1 - n)
            if k != len(actions) - 1:
                raise ReplayError(f"step {k + 1}: violation before the end of the trace")
            steps.append(_step(program, k + 1, aid, s, s, note=f"{prop}: {msg}"))
            final = f"{th} fires {act.function}: {msg}"
            break
        steps.append(_step(program, k + 1, aid, s, n))
        s = n
    if expect_state is not None and s != expect_state:
        raise ReplayError("replay reached a different state than the search (nondeterministic model; please report)")
    trace = Trace([t.name for t in program.threads], steps, list(actions), final)
    s0 = model.init_states()[0]
    trace.initial = [(f.name, f.show(f.get(s0))) for f in program.layout.fields if _shown(f)]
    return trace


def _held(program: Program, t: int, state: int) -> list[str]:
    values = state_values(program.layout.fields, state)
    out = []
    for lk in program.locks:
        if isinstance(lk, RwSem):
            if evaluate(lk.held_by(t, "w"), values):
                out.append(lk.name)
            elif t in lk.readers and evaluate(lk.held_by(t, "r"), values):
                out.append(f"{lk.name}(r)")
        elif evaluate(lk.held_by(t), values):
            out.append(lk.name)
    return out


HIDDEN_KINDS = ("pc", "owner")


def _shown(f: Field) -> bool:
    """Fields a trace shows: not pcs, lock owners or rwsem reader bits (the held column shows those)."""
    return not (f.kind in HIDDEN_KINDS or f.name.endswith("]") and ".reader[" in f.name)


def _step(program: Program, index: int, aid: int, before: int, after: int, note: str = "") -> TraceStep:
    act = program.actions[aid]
    changes = []
    for f, old, new in program.layout.diff(before, after):
        if not _shown(f):
            continue
        changes.append((f.name, f.show(old), f.show(new)))
    values = state_values(program.layout.fields, before)
    text = act.shown_text(lambda cond: bool(evaluate(cond, values)))  # the branch that ran
    th = program.threads[act.thread]
    return TraceStep(index, th.name, act.function, act.operation, text,
                     _held(program, act.thread, after), changes, note, th.labels[act.label])


def _trace(program: Program, model: ProgramModel, search: Search, f: Finding,
           canon: Callable[[int], int] | None = None) -> Trace:
    acts = path_to(search, f.index)
    if canon is not None:  # symmetry: the search stored canonical states; replay a concrete run
        prop_of = lambda n: model.violation(-1 - n)[0]  # noqa: E731
        concrete = concretize(model.successors, canon, model.init_states()[0], acts, f.action, prop_of)
        tr = replay_trace(program, concrete, model)
        last = model.init_states()[0]
        for aid in concrete[:len(acts)]:
            last = next(n for a, n in model.successors(last) if a == aid)
        if canon(last) != f.state:
            raise ReplayError("concrete replay left the recorded symmetry class (please report)")
        return tr
    tr = replay_trace(program, acts, model, expect_state=f.state)
    if f.action >= 0:
        tr = replay_trace(program, acts + [f.action], model)
    return tr


def program_identity(program: Program, options: Options) -> str:
    """What a checkpoint must match: the program's fields, steps and properties, and the search's shape."""
    parts = [program.name, repr(program.layout.initial())]
    parts += [f"{f.name}:{f.lo}:{f.hi}" for f in program.layout.fields]
    parts += [f"{a.thread}|{a.label}|{a.function}|{a.operation}|{a.text}" for a in program.actions]
    parts += [f"{p.kind}:{p.name}" for p in program.properties]
    return identity("\n".join(parts), strategy=options.strategy, exact=options.exact, max_depth=options.max_depth,
                    only=options.properties, skip=options.skip, reduction=options.reduction)


def check_program(program: Program, options: Options, spec_name: str = "", design_name: str = "",
                  stop: StopRequest | None = None, spec_path: str = "") -> CheckResult:
    """``stop``: set asynchronously (a signal) to end the search early with BOUNDED verdicts;
    ``spec_path``: recorded in every trace, so ``replay`` can refuse a trace of another spec."""
    model = ProgramModel(program, options.properties, options.skip)
    reducer = build_reducer(model, options)
    search, workers, backend = run_search(model, options, reducer if reducer.active() else None, stop,
                                          program_identity(program, options) if (
                                              options.checkpoint or options.resume) else "")
    bits = model.state_bits
    n = search.states
    stats = Stats(states=n, transitions=search.transitions, deadlock_states=search.deadlock_states,
                  max_depth=search.max_depth, seconds=search.seconds, complete=search.complete,
                  limit=search.limit, strategy=options.strategy, store=search.store, state_bits=bits,
                  collision_probability=(n * n / 2.0**65) if search.store == "fingerprint" else 0.0,
                  peak_memory_mb=search.peak_mb, reductions=reducer.describe(), workers=workers, backend=backend)
    edges = collect_edges(program, model.comp)
    dl_sets = [x for x in search.deadlock_info if isinstance(x, frozenset) and x]
    if reducer.symmetry is not None:  # deadlock states of one orbit wait on renamed instances
        dl_sets = reducer.symmetry.closed_names(dl_sets)
    class_order = list(dict.fromkeys(lk.cls for lk in program.locks))
    cycles = cycles_report(edges, dl_sets, class_order) + _recursive(program, model, search, dl_sets, edges)
    if "deadlock" in search.findings:
        first = _first_locked_classes(program, path_to(search, search.findings["deadlock"].index))
        cycles = [_rotate(c, first) if c.reachable else c for c in cycles]
    canon = reducer.canonical if reducer.symmetry is not None else None
    props = _verdicts(program, model, search, cycles, options, canon, reducer.por is None)
    classes = class_order
    result = _overall(props, search.complete)
    for pr in props:
        if pr.trace is not None:
            pr.trace.spec, pr.trace.design = spec_path or spec_name or program.name, design_name or program.name
    return CheckResult(spec_name or program.name, design_name or program.name, result, stats, props,
                       edges, cycles, classes)


def _recursive(program: Program, model: ProgramModel, search: Search, dl_sets: list[frozenset[str]],
               edges: list[LockEdge]) -> list[LockCycle]:
    """lockdep's "possible recursive locking": a thread waiting for a lock it holds.

    Such an acquisition never fires, so it leaves no edge; the deadlock states show it."""
    out = []
    have = {e.src for e in edges if e.src == e.dst}
    for cls in sorted({next(iter(s)) for s in dl_sets if len(s) == 1} - have):
        edge = LockEdge(cls, cls, "w", "w", "", "", "")
        f = search.findings.get("deadlock")
        if f is not None:
            graph, _ = model.waits_for(f.state)
            for t in sorted(graph):
                if t in graph[t]:
                    th = program.threads[t]
                    a = program.by_label[t][th.pc.get(f.state)][0]
                    edge = LockEdge(cls, cls, "w", "w", th.name, a.function, a.operation)
        out.append(LockCycle([cls], [edge], True, scenario([cls])))
    return out


def _first_locked_classes(program: Program, actions: list[int]) -> list[str]:
    """Lock classes in the order the trace first acquires them."""
    out: list[str] = []
    for aid in actions:
        for acq in program.actions[aid].acquires:
            if acq.lock.cls not in out:
                out.append(acq.lock.cls)
    return out


def _rotate(c: LockCycle, order: list[str]) -> LockCycle:
    """Start a reachable cycle at the lock its deadlock trace takes first (how a reader tells it)."""
    starts = [order.index(x) if x in order else len(order) for x in c.locks]
    k = starts.index(min(starts))
    if k == 0:
        return c
    locks = c.locks[k:] + c.locks[:k]
    return LockCycle(locks, c.edges[k:] + c.edges[:k], c.reachable, scenario(locks))


def _selected(name: str, options: Options) -> bool:
    return (not options.properties or name in options.properties) and name not in options.skip


def _verdicts(program: Program, model: ProgramModel, search: Search, cycles: list[LockCycle],
              options: Options, canon: Callable[[int], int] | None = None,
              shortest: bool = True) -> list[PropertyResult]:
    unviolated = HOLDS if search.complete else BOUNDED
    out: list[PropertyResult] = []
    found = search.findings

    def trace_of(name: str) -> Trace | None:
        return _trace(program, model, search, found[name], canon) if name in found else None

    for name in BUILTIN_PROPERTIES:
        if not _selected(name, options):
            continue
        pr = PropertyResult(name, name, unviolated, "", BUILTIN_TEXT[name], "apcheck built-in")
        if name == "deadlock" and name in found:
            pr.status, pr.trace = VIOLATED, trace_of(name)
            assert pr.trace is not None
            pr.trace.waits = model.wait_lines(found[name].state)
            pr.trace.blocked = model.blocked(found[name].state)
            pr.trace.final = "deadlock: no thread can move"
            shown = "shortest trace shown" if shortest else "a trace, maybe not the shortest"
            pr.detail = f"reachable deadlock ({search.deadlock_states} deadlock state(s); {shown})"
        elif name == "lock-order" and (cycles or name in found):
            pr.status = VIOLATED
            if cycles:
                c = cycles[0]
                chain = " -> ".join(c.locks + [c.locks[0]])
                kind = "reachable deadlock" if c.reachable else "possible (cycle only; no explored run deadlocked)"
                more = f"; {len(cycles) - 1} more cycle(s)" if len(cycles) > 1 else ""
                pr.detail = f"cycle {chain} [{kind}]{more}"
                if c.reachable and "deadlock" in found:
                    pr.trace = next((x.trace for x in out if x.name == "deadlock"), None) or trace_of("deadlock")
                    if pr.trace is not None and not pr.trace.waits:  # deadlock itself not selected
                        pr.trace.waits = model.wait_lines(found["deadlock"].state)
                        pr.trace.blocked = model.blocked(found["deadlock"].state)
                        pr.trace.final = "deadlock: no thread can move"
            else:
                pr.detail = found[name].message
                pr.trace = trace_of(name)
        elif name in found:
            f = found[name]
            pr.status, pr.trace = VIOLATED, trace_of(name)
            if name == "memory-safety" and f.action < 0:
                pr.detail = "leak: " + ", ".join(model.leaked(f.state)) + " still alive when every thread finished"
            else:
                pr.detail = f.message + (freed_by(pr.trace, f.message) if name == "memory-safety" else "")
        elif name == "data-race" and not model.races.checked:
            pr.status, pr.detail = NOT_APPLICABLE, "no field is accessed by two threads: nothing to check"
        elif name == "lock-discipline" and not model.races.protected:
            pr.status, pr.detail = NOT_APPLICABLE, ("no field with declared locks is accessed by two threads: "
                                                    "nothing to check")
        elif name == "memory-safety" and not _has_objects(program):
            pr.status, pr.detail = NOT_APPLICABLE, "the model has no objects (no pool, no freed lock): nothing to check"
        out.append(pr)
    if "range" in found:
        f = found["range"]
        out.append(PropertyResult("range", "model", VIOLATED, f.message + " (a modelling error)",
                                  "every field stays in its declared range", "apcheck built-in", trace_of("range")))
    for p in program.properties:
        if not _selected(p.name, options):
            continue
        pr = PropertyResult(p.name, p.kind, unviolated, "", p.description, p.source)
        if p.kind == "always" and p.name in found:
            pr.status, pr.trace, pr.detail = VIOLATED, trace_of(p.name), "invariant violated"
        elif p.kind == "sometimes":
            pr.decides = p.name in options.properties  # only a witness the spec asks for decides the exit code
            if p.name in found:
                pr.status, pr.trace, pr.detail = WITNESSED, trace_of(p.name), "witness found"
            elif not search.complete:
                pr.status = BOUNDED
            else:
                pr.status = NOT_WITNESSED
                pr.detail = "no reachable state satisfies it: the scenario may be vacuous"
                if not pr.decides:
                    pr.detail += " (a design witness this spec does not select: not in the exit code)"
        out.append(pr)
    if not search.complete:
        for pr in out:
            if pr.status == BOUNDED:
                pr.detail = f"no violation within the bound ({search.limit})"
    return out


def _has_objects(program: Program) -> bool:
    """Anything memory-safety can check: object pools, or steps checking a use after free."""
    return bool(program.pools) or any(c.prop == "memory-safety" for a in program.actions for c in a.checks)


def _overall(props: list[PropertyResult], complete: bool) -> str:
    if any(p.status == VIOLATED for p in props):
        return VIOLATED
    if not complete:
        return BOUNDED
    if any(p.status == NOT_WITNESSED and p.decides for p in props):
        return NOT_WITNESSED
    return HOLDS
