"""Which core runs a search, and the Python side of the native breadth-first loop.

``--core python`` runs the generated Python successor function; ``--core
native`` compiles the Program to C (``cgen`` + ``build``) and, for a BFS with
no reduction, runs the whole loop in C (``native_bfs``); for other strategies
or with a reduction the explorer keeps its Python loop and calls the C
``succ`` (a drop-in: same action ids, violation codes, fired flags and
dynamic lock-order records). Results are identical either way; the C store
keeps whole states, so it never has fingerprint collisions (``store`` reads
``exact``).

``--core auto`` (the default), decided by measurement (benchmarks/README.md,
"Choosing the core"): compiling a core with ``cc -O1`` takes 0.2-1.2 s of CPU
(phil_N14 0.22 s, final-lockdep 0.25 s, v16-ownership 0.67 s, the six-thread
scale spec 1.15 s; ``-O2`` doubles that and explores no faster), once per machine:
the module is cached on disk, keyed by a hash of its source, and a cached core
loads in about a millisecond. The native loop explores 2.7-3.6 M states per CPU
second on the vfio_ap scale specs and phil_N12, the Python core 30-300 k. So:

- a cached core is used at once. It is found by ``model_key``, a hash of what the
  Python core already built (0.1-0.7 ms; generating the C to hash it would cost
  4-13 ms, as much as a small spec's whole search), so no small spec gets slower;
- otherwise the Python core runs first, for at most ``AUTO_PYTHON_SECONDS`` (1 s):
  most specs finish within it and never invoke the compiler; a search still
  running then is large, so it restarts on the compiled core. A search that
  needs between 1 s and 1 s + compile time on the Python core ends up to one
  compile time later than it would have; every longer one ends much sooner.
  Counts, traces and findings do not depend on which core answered.
- with no compiler, or a failed compile, the Python core runs, with one note on
  stderr where the native core would have run (``auto``: a search past the
  allowance; ``--core native``: always); never an error.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

from checker.lang.model import Model
from checker.lang.program_types import Property
from checker.search.explore import Search, _arrays, _finish, _Progress, _Recorder
from checker.search.limits import current_mb
from checker.search.native.build import BuildError, build, compiler, load_indexed, toolchain, write_index
from checker.search.native.cgen import CSource, Unsupported, generate
from checker.search.native.porgen import por_c
from checker.search.native.symgen import sym_c
from checker.search.progmodel import ProgramModel
from checker.search.pycompile import expr_src
from checker.search.races import SiteRule, race_mask
from checker.search.reduce.por import PorTables
from checker.search.reduce.symmetry import Move
from checker.spec.options import Options

Perms = list[tuple[int, list[Move]]]  # Symmetry.perms: (bits kept, fields moved) per permutation

AUTO_PYTHON_SECONDS = 1.0
LIMITS = {0: "", 1: "timeout", 2: "memory", 3: "max-depth", 4: "max-states"}
INTERRUPTED = 5  # tick's answer when a signal asked the search to stop (the reason is the stop request's)
EV_EXPANDED, EV_RACE, EV_VIOLATION, EV_NEW_STATE, EV_BEYOND = 0, 1, 2, 3, 4

_warned: set[str] = set()


def note(msg: str) -> None:
    """One line on stderr, once per process and message."""
    if msg not in _warned:
        _warned.add(msg)
        print(f"apcheck: note: {msg}", file=sys.stderr, flush=True)


class NativeCore:
    """A Program's compiled core, bound to one ProgramModel's fired flags and lock-order records."""

    def __init__(self, model: ProgramModel, module: ModuleType, compile_seconds: float, cached: bool) -> None:
        self.model, self.module = model, module
        self.words: int = module.words
        self.compile_seconds, self.cached = compile_seconds, cached
        self.inv_names = [p.name for p in _properties(model, "always")]
        self.wit_names = [p.name for p in _properties(model, "sometimes")]
        self.bind()

    def bind(self) -> None:
        """Point the module at this model's ``fired``/``dynamic_edges`` (one model per module at a time)."""
        self.module.init(self.model.comp.fired, self.model.comp.dynamic_edges.add)

    @property
    def succ(self) -> Callable[[int], list[tuple[int, int]]]:
        fn: Callable[[int], list[tuple[int, int]]] = self.module.succ
        return fn


def _properties(model: ProgramModel, kind: str) -> list[Property]:
    """The selected ``always`` invariants or ``sometimes`` witnesses, in ProgramModel's order."""
    return [p for p in model.program.properties if p.kind == kind and model._selected(p.name)]


def _source(model: ProgramModel, por: PorTables | None, perms: Perms | None) -> CSource:
    src = generate(model.program, [p.expr for p in _properties(model, "always")],
                   [p.expr for p in _properties(model, "sometimes")], model.races.reads, model.races.writes,
                   model.races.keep, _site_rules(model), [*por_c(por), *sym_c(perms, model_words(model))])
    if [(v.aid, v.prop, v.message) for v in src.violations] != \
            [(v.aid, v.prop, v.message) for v in model.comp.violations]:
        raise Unsupported("violation codes differ from the Python core (please report)")
    return src


def _site_rules(model: ProgramModel) -> list[list[SiteRule]]:
    """The lock-discipline sites to compile: none when the property is not selected."""
    if not model._selected("lock-discipline"):
        return [[] for _ in model.program.actions]
    return model.races.site_rules()


_GENERATOR = ""


def _generator_version() -> str:
    """A hash of the code that turns a model into C: a change to it invalidates every model key."""
    global _GENERATOR
    if not _GENERATOR:
        from checker.search import codegen, pycompile
        from checker.search.native import cgen, porgen, runtime, symgen

        h = hashlib.sha256()
        for mod in (cgen, porgen, symgen, runtime, codegen, pycompile):
            with open(mod.__file__ or "", "rb") as fh:
                h.update(fh.read())
        _GENERATOR = h.hexdigest()
    return _GENERATOR


def model_words(model: ProgramModel) -> int:
    return max(1, (model.program.layout.total_bits + 63) // 64)


def model_key(model: ProgramModel, por: PorTables | None = None, perms: Perms | None = None) -> str:
    """A cheap key for the model's core, from what is already built (the Python successor source,
    the predicates' sources, the layout, footprints and threads), so a cached core is found
    without generating C: the lookup costs a hash, not a C generation, for every small spec."""
    program = model.program
    h = hashlib.sha256()
    for part in (
        _generator_version(), toolchain(), model.comp.source, repr(por), repr(perms),
        *(f"{p.kind} {expr_src(p.expr)}" for p in (*_properties(model, "always"), *_properties(model, "sometimes"))),
        repr([(f.offset, f.bits, f.lo) for f in program.layout.fields]),
        repr([f.offset for f in program.shared]),
        repr([sorted(f.offset for f in r) for r in model.races.reads]),
        repr([sorted(f.offset for f in w) for w in model.races.writes]),
        repr([sorted(f.offset for f in k) for k in model.races.keep]),
        repr([[(r.field.offset, expr_src(r.holds_all), expr_src(r.holds_any), r.other_if_write, r.other_if_read)
               for r in rules] for rules in _site_rules(model)]),
        repr([(a.thread, a.aid) for a in program.actions]),
        repr([(th.pc.offset, th.done, th.cyclic) for th in program.threads]),
        repr(len(program.locks)),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def native_core(model: ProgramModel, compile_ok: bool = True, por: PorTables | None = None,
                perms: Perms | None = None) -> NativeCore | None:
    """The model's native core (compiled if needed and ``compile_ok``), or None with a note why not;
    with ``por``, its breadth-first loop expands ample sets (``PartialOrder.tables``), with
    ``perms``, it stores symmetry representatives (``Symmetry.perms``)."""
    key = model_key(model, por, perms)
    module = load_indexed(key)
    if module is not None:
        return NativeCore(model, module, 0.0, True)
    if not compile_ok:
        return None
    try:
        src = _source(model, por, perms)
    except Unsupported as e:
        note(f"native core unavailable for this model ({e}); using the Python core")
        return None
    try:
        built = build(src.text)
    except BuildError as e:
        note(f"native core unavailable ({e}); using the Python core")
        return None
    write_index(key, built)
    return NativeCore(model, built.module, built.compile_seconds, built.cached)


def use_native_successors(model: Model, opts: Options) -> NativeCore | None:
    """Swap ``model.successors`` for the C drop-in (reductions, DFS, random walks, workers)."""
    core = getattr(opts, "core", "auto")
    if core == "python" or not isinstance(model, ProgramModel):
        return None
    nc = native_core(model, compile_ok=core == "native")
    if nc is not None:
        model.successors = nc.succ
        model.race_filter = nc.module.race_bits
    return nc


def explore_native(model: Model, opts: Options, python_bfs: Callable[[Model, Options], Search],
                   reducer: Any = None, stop: Any = None) -> Search | None:
    """The search under ``opts.core``; None: let the caller's Python explorer run.

    The loop in C runs breadth-first searches, with the reducer's partial-order and symmetry
    reductions and a depth bound (checked one step past it, as explore.bfs does), without
    checkpoints (the Python loop saves them); the others (DFS, random walks) run the Python loop
    on the C successor function. ``stop``: a signal's stop request, polled at every tick."""
    core = getattr(opts, "core", "auto")
    if core == "python" or not isinstance(model, ProgramModel):
        return None
    por, sym = getattr(reducer, "por", None), getattr(reducer, "symmetry", None)
    if opts.strategy != "bfs" or opts.checkpoint or opts.resume:
        use_native_successors(model, opts)
        return None
    tables = None if por is None else por.tables()
    perms = None if sym is None else sym.perms
    if core == "native":
        nc = native_core(model, por=tables, perms=perms)
        return None if nc is None else native_bfs(nc, opts, stop, por)
    nc = native_core(model, compile_ok=False, por=tables, perms=perms)
    if nc is not None:
        return native_bfs(nc, opts, stop, por)
    if compiler() is None:  # say so only where the native core would have run
        res = python_bfs(model, opts)
        if res.seconds > AUTO_PYTHON_SECONDS:
            note("no C compiler found (set CC, or install cc/gcc): this search ran on the Python core; "
                 "the native core explores it many times faster")
        return res
    # auto, nothing cached: the Python core first; a search still running after the cap is large
    t0 = time.perf_counter()
    cap = AUTO_PYTHON_SECONDS if opts.timeout is None else min(AUTO_PYTHON_SECONDS, opts.timeout)
    first = python_bfs(model, replace(opts, timeout=cap))
    if first.complete or first.limit != "timeout" or (opts.timeout is not None and cap >= opts.timeout):
        return first
    nc = native_core(model, por=tables, perms=perms)
    if nc is None:  # no compiler: the Python core, from the start, without the cap
        _reset(model, por)
        return python_bfs(model, opts)
    _reset(model, por)
    left = None if opts.timeout is None else max(opts.timeout - (time.perf_counter() - t0), 1e-3)
    search = native_bfs(nc, replace(opts, timeout=left), stop, por)
    search.seconds = time.perf_counter() - t0  # the abandoned Python start and the compile count too
    return search


def _reset(model: ProgramModel, por: Any) -> None:
    """Forget the fired flags, lock-order records and ample-state count of an abandoned search."""
    if por is not None:
        por.reduced_states = 0
    fired = model.comp.fired
    fired[:] = bytes(len(fired))
    model.comp.dynamic_edges.clear()


def native_bfs(nc: NativeCore, opts: Options, stop: Any = None, por: Any = None) -> Search:
    """``explore.bfs`` with the loop in C: same counts, same order, same findings. ``por``: the
    PartialOrder the core was generated with (its ample-state count is set here)."""
    t0 = time.perf_counter()
    model = nc.model
    nc.bind()
    parent, via = _arrays(model)
    search = Search(parent, via, store="exact")
    rec = _Recorder(model, search)
    seen: set[int] = set()
    inits: list[int] = []
    for s in model.init_states():
        if s not in seen:
            seen.add(s)
            inits.append(s)
            rec.new_state(len(inits) - 1, s)
    inv_on = bytes(any(c.name == n for c in rec.invs) for n in nc.inv_names)
    wit_on = bytes(any(c.name == n for c in rec.wits) for n in nc.wit_names)
    findings = search.findings
    succ = model.comp.succ

    def ev(kind: int, idx: int, s: int, a: int, code: int) -> int:
        if kind == EV_EXPANDED:
            rec.expanded(idx, s, [])
            return int(any(c.name not in findings for c in rec.terms))
        if kind == EV_RACE:
            rec.expanded(idx, s, succ(s))
            return race_mask(rec.state_checks, findings)
        if kind == EV_VIOLATION:
            rec.violation(idx, s, a, code)
        elif kind == EV_BEYOND:  # state idx is on the depth bound; its step a reaches a new state
            rec.past(idx, s, a, next(n for b, n in succ(s) if b == a))
        else:
            rec.new_state(idx, s)
        return 0

    deadline = t0 + opts.timeout if opts.timeout else None
    max_mb = opts.max_memory_mb
    prog = _Progress(opts)

    def tick(cur: int, states: int, transitions: int, depth: int, frontier: int) -> int:
        if stop is not None and stop.reason:
            return INTERRUPTED
        if deadline is not None and time.perf_counter() > deadline:
            return 1
        if max_mb is not None and cur & 0xFFFF == 0 and current_mb() > max_mb:
            return 2
        prog.maybe(states, transitions, depth, frontier)
        return 0

    max_states = -1 if opts.max_states is None else (opts.max_states or 1 << 62)
    max_depth = opts.max_depth if opts.max_depth is not None else 1 << 62
    race_on = race_mask(rec.state_checks, findings)
    terms_on = int(bool(rec.terms))
    assert parent.itemsize == 4 and via.itemsize in (1, 2, 4)
    _, pending, transitions, depth, limit, ample_states = nc.module.bfs(
        inits, max_states, max_depth, via.itemsize, ev, tick, inv_on, wit_on, race_on, terms_on, parent, via)
    search.transitions = transitions
    search.max_depth = depth
    if por is not None:
        por.reduced_states = ample_states
    return _finish(search, t0, stop.reason if limit == INTERRUPTED else LIMITS[limit], pending)
