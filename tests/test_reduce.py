"""State-space reductions (checker.search.reduce): same verdicts, fewer states.

Every spec and lock program is checked with ``--reduction none`` and with the
default reductions: verdicts, lock-order edges (with provenance), cycles and
deadlock states must be identical, and every reduced trace replays. The
reduced counts themselves are pinned in specs/golden.json (test_golden). The
unit tests show that each soundness condition matters: without the cycle
proviso, or without visibility, a reduced search misses a real finding.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import pytest

from checker.cli.golden import ROOT, run_spec
from checker.lang.expr import BOOL, And, Const, Not
from checker.lang.layout import bool_field, int_field
from checker.lang.program import Check, Member, Program, ProgramBuilder
from checker.report.results import HOLDS, NOT_WITNESSED, VIOLATED, WITNESSED, CheckResult
from checker.search import reduce as reduce_pkg
from checker.search.explore import explore
from checker.search.progmodel import ProgramModel
from checker.search.reduce.combined import CombinedReducer, build_reducer
from checker.search.reduce.footprint import ThreadGraph, thread_graph
from checker.search.reduce.por import PartialOrder
from checker.search.reduce.symmetry import symmetry_for
from checker.search.run import replay_trace
from checker.spec.options import Options
from tests.helpers_models import check, prop

SPECS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "specs", "*.yaml"))) + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "examples", "*.yaml")))
_MANIFEST = json.load(open(os.path.join(ROOT, "specs", "golden.json"), encoding="utf-8"))["specs"]
# big state spaces run in .ci/run only; test_golden pins their reduced verdicts and counts meanwhile
SLOW = {s for s in SPECS if _MANIFEST.get(s, {}).get("states", 10**9) > 20000}


def _verdicts(r: CheckResult) -> list[tuple[str, str]]:
    return [(p.name, p.status) for p in r.properties]


def _class_edges(r: CheckResult) -> list[tuple[str, str, str, str]]:
    return [(e.src, e.dst, e.src_mode, e.dst_mode) for e in r.lock_edges]


def _cycles(r: CheckResult) -> list[tuple[tuple[str, ...], bool]]:
    return [(tuple(c.locks), c.reachable) for c in r.cycles]


def _agree(path: str) -> tuple[CheckResult, CheckResult]:
    """Check ``path`` unreduced and with the default reductions; the verdicts must agree."""
    full = run_spec(path, reduction="none")
    red = run_spec(path)
    assert red.stats.reductions["requested"] == "all"
    assert _verdicts(red) == _verdicts(full)
    assert _cycles(red) == _cycles(full)
    assert red.stats.states <= full.stats.states
    if "symmetry" in red.stats.reductions["ran"]:  # counts are of orbits; edge provenance may name a twin
        assert _class_edges(red) == _class_edges(full)
        assert (red.stats.deadlock_states > 0) == (full.stats.deadlock_states > 0)
    else:
        assert red.lock_edges == full.lock_edges
        assert red.stats.deadlock_states == full.stats.deadlock_states
    for p in red.properties:  # every reduced counterexample or witness is a real run
        if p.trace is not None:
            replay_trace(build_program_of(path), p.trace.actions)
    return full, red


def build_program_of(path: str) -> Program:
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(path, default_registry())
    return loaded.design.build(loaded.scenario)


@pytest.mark.parametrize("spec", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SPECS])
def test_reduced_search_agrees_with_unreduced(spec: str) -> None:
    _agree(os.path.join(ROOT, spec))


@pytest.mark.slow
def test_five_thread_scale_scenario_agrees() -> None:
    """Issue 7's goal: the five-thread scenario gives identical verdicts reduced and unreduced."""
    full, red = _agree(os.path.join(ROOT, "benchmarks", "scale", "final-5threads.yaml"))
    assert full.stats.states == 594768


def test_reduction_shrinks_the_specs_it_should() -> None:
    """Exact counts: v17-lockdep 144 -> 82 states, v15-hooks 101500 -> 80813 (specs/golden.json)."""
    man = _MANIFEST
    assert (man["specs/v17-lockdep.yaml"]["states"], man["specs/v17-lockdep.yaml"]["reduced"]["states"]) == (144, 82)
    assert (man["specs/v15-hooks.yaml"]["states"], man["specs/v15-hooks.yaml"]["reduced"]["states"]) == (101500, 80813)
    smaller = [k for k, v in man.items() if v["reduced"]["states"] < v["states"]]
    assert len(smaller) == 56  # incl. the parametric specs (1,294 -> 791, 84 -> 42, masks 4,141,522 -> 3,691,461),
    # c1-two-openers (2,337 -> 1,839), allsizes-mainline (2,956 -> 2,134) and its -close (52,968 -> 35,197)
    r = run_spec(os.path.join(ROOT, "specs", "v17-lockdep.yaml"))
    assert r.stats.states == 82
    assert r.stats.reductions["ran"] == ["partial-order"]
    assert r.stats.reductions["shortest_traces"] is False


# ---------------------------------------------------------------- soundness conditions, one by one


def spinner_program() -> Program:
    """A thread flipping a private bit forever, and one step that sets ``y``.

    The spinner's step is independent of the setter and invisible, so a reduction
    without a cycle proviso expands only the spinner, closes its cycle, and never
    lets the setter run: the ``y-set`` witness would be lost."""
    pb = ProgramBuilder("spinner")
    fx, fy = bool_field("x"), bool_field("y")
    x, y = pb.var(fx), pb.var(fy)
    a = pb.thread("spinner", cyclic=True)
    a.step("spin", "x = !x", updates={fx: Not(x)})
    b = pb.thread("setter")
    b.step("set", "y = 1", updates={fy: True})
    pb.sometimes("y-set", y, "the setter ran")
    return pb.build()


def test_cycle_proviso_forces_full_expansion_on_back_edges() -> None:
    program = spinner_program()
    g = thread_graph(program, 0)
    assert g.back == [True]  # the cyclic thread's only step returns to pc 0
    assert PartialOrder(program, ["y-set"]).useful is False  # the setter is visible, the spinner cycles
    r = check(program, reduction="all")
    assert prop(r, "y-set").status == WITNESSED
    assert r.stats.reductions["skipped"]["partial-order"].startswith("no step is independent")


def test_without_the_proviso_a_transition_would_be_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_back_edges(program: Program, t: int, owned: Any = None) -> ThreadGraph:
        g = thread_graph(program, t, owned)
        g.back = [False] * len(g.back)
        return g

    monkeypatch.setattr("checker.search.reduce.por.thread_graph", no_back_edges)
    r = check(spinner_program(), reduction="por")
    assert prop(r, "y-set").status == NOT_WITNESSED  # what the proviso prevents
    assert r.stats.states == 2


def two_step_and_setter() -> Program:
    """``a`` sets then clears ``x``; ``b`` sets ``y``; invariant: never both."""
    pb = ProgramBuilder("visible")
    fx, fy = bool_field("x"), bool_field("y")
    x, y = pb.var(fx), pb.var(fy)
    a = pb.thread("a")
    a.step("set_x", "x = 1", updates={fx: True})
    a.step("clear_x", "x = 0", updates={fx: False})
    pb.thread("b").step("set_y", "y = 1", updates={fy: True})
    pb.always("not-both", Not(And(x, y)), "x and y are never set together")
    return pb.build()


def _search_with(program: Program, visible: list[str]) -> Any:
    model = ProgramModel(program)
    reducer = CombinedReducer("por", PartialOrder(program, visible), None, {}, {})
    return explore(model, Options(quiet=True), reducer=reducer)


def test_visibility_keeps_invariant_violations() -> None:
    program = two_step_and_setter()
    assert prop(check(program), "not-both").status == VIOLATED
    assert prop(check(program, reduction="all"), "not-both").status == VIOLATED
    assert "not-both" in _search_with(program, ["not-both"]).findings
    # the same ample sets without the visibility condition would miss it
    assert "not-both" not in _search_with(program, []).findings


def test_independent_invisible_threads_are_reduced_to_one_order() -> None:
    """Two threads each writing a private bit twice: 9 states unreduced, 5 on one interleaving."""
    pb = ProgramBuilder("private")
    for name in ("p", "q"):
        f = bool_field(f"{name}.bit")
        pb.var(f)
        tb = pb.thread(name)
        tb.step("on", "bit = 1", updates={f: True})
        tb.step("off", "bit = 0", updates={f: False})
    program = pb.build()
    full, red = check(program), check(program, reduction="all")
    assert (full.stats.states, full.stats.transitions) == (9, 12)
    assert (red.stats.states, red.stats.transitions) == (5, 4)
    assert _verdicts(red) == _verdicts(full) and prop(red, "deadlock").status == HOLDS


def test_selection_is_a_function_of_the_state() -> None:
    """The parallel search relies on it: same state, same ample set, whatever was visited before."""
    program = build_program_of(os.path.join(ROOT, "specs", "v17-lockdep.yaml"))
    model = ProgramModel(program)
    red = reduce_pkg.reducer_for(model, Options(quiet=True))
    s = model.init_states()[0]
    frontier, seen = [s], {s}
    while frontier:
        nxt = []
        for st in frontier:
            out = model.successors(st)
            a = red.select(st, out)
            assert a == red.select(st, list(out)) and a == [x for x in out if x in a]
            for _, n in a:
                if n >= 0 and n not in seen:
                    seen.add(n)
                    nxt.append(n)
        frontier = nxt
    assert len(seen) == 82


def test_max_depth_keeps_full_graph_distances() -> None:
    program = two_step_and_setter()
    r = check(program, reduction="all", max_depth=1)
    assert r.stats.reductions["ran"] == [] and "--max-depth" in r.stats.reductions["skipped"]["partial-order"]
    assert (r.stats.states, r.stats.states) == (check(program, max_depth=1).stats.states, 3)


def test_none_and_random_run_no_reduction() -> None:
    program = two_step_and_setter()
    model = ProgramModel(program)
    assert build_reducer(model, Options(reduction="none")).describe()["ran"] == []
    rnd = build_reducer(model, Options(strategy="random")).describe()
    why = "random simulation explores single walks"
    assert rnd["ran"] == [] and rnd["skipped"] == {"partial-order": why, "symmetry": why}


# ---------------------------------------------------------------- symmetry


def workers(n: int = 3, odd: bool = False, named: bool = False) -> Program:
    """``n`` identical workers: take their own mutex, add one to a shared total under ``big``,
    mark themselves done. ``odd``: the last worker has one more step (not interchangeable).
    ``named``: a property names worker 0 (no longer symmetric)."""
    pb = ProgramBuilder("workers")
    big = pb.mutex("big")
    tf = int_field("total", 0, n)
    total = pb.var(tf, protected_by=[big])
    members, done = [], []
    for i in range(n):
        own = pb.mutex(f"w{i}.lock", cls="w.lock")
        f = bool_field(f"w{i}.done")
        done.append(pb.var(f))
        tb = pb.thread(f"w{i}")
        tb.lock(own, "worker_lock_own")
        tb.lock(big, "worker_lock_big")
        tb.step("worker_add", "total += 1", updates={tf: total + 1})
        tb.unlock(big, "worker_unlock_big")
        if odd and i == n - 1:
            tb.step("worker_extra", "nothing")
        tb.step("worker_mark", "done = 1", updates={f: True})
        tb.unlock(own, "worker_unlock_own")
        members.append(Member([f"w{i}"], [f], [own]))
    pb.permutable("workers", members)
    pb.always("not-all-done", Not(And(*done)), "some worker is unfinished")
    pb.sometimes("total-full", total == n, "every worker added")
    if named:
        pb.sometimes("w0-done", done[0], "worker 0 finished")
    return pb.build()


def test_symmetry_counts_orbits_with_identical_verdicts() -> None:
    """3 workers: 275 states unreduced, 65 orbits; 31 with partial-order reduction on top."""
    program = workers()
    full = check(program)
    sym = check(program, reduction="symmetry")
    both = check(program, reduction="all")
    assert (full.stats.states, sym.stats.states, both.stats.states) == (275, 65, 31)
    assert _verdicts(full) == _verdicts(sym) == _verdicts(both)
    assert prop(full, "not-all-done").status == VIOLATED
    assert sym.stats.reductions["symmetry_groups"] == {"workers": [["w0"], ["w1"], ["w2"]]}
    assert sym.stats.reductions["shortest_traces"] is True  # BFS distances survive symmetry
    assert prop(sym, "not-all-done").trace.length == prop(full, "not-all-done").trace.length == 15  # type: ignore[union-attr]
    assert _class_edges(sym) == _class_edges(full)


def test_symmetry_canonical_form_is_the_least_image() -> None:
    program = workers(2)
    sym, why = symmetry_for(program)
    assert sym is not None and why == ""
    lay = program.layout
    a = lay.encode({"w0.done": 1, "w0.pc": 5})
    b = lay.encode({"w1.done": 1, "w1.pc": 5})
    assert sym.canonical(a) == sym.canonical(b) == min(a, b)
    # owner values follow their thread: w0 holding big and its own lock is w1 holding big and its own lock
    owner0 = lay.encode({"big.owner": 1, "w0.lock.owner": 1, "w0.pc": 2})
    owner1 = lay.encode({"big.owner": 2, "w1.lock.owner": 2, "w1.pc": 2})
    assert sym.canonical(owner0) == sym.canonical(owner1)
    assert sym.canonical(lay.initial()) == lay.initial()


def test_scenario_decides_which_members_are_interchangeable() -> None:
    sym, _ = symmetry_for(workers(3, odd=True))
    assert sym is not None and sym.describe() == {"workers": [["w0"], ["w1"]]}
    assert check(workers(3, odd=True), reduction="symmetry").stats.states == 180
    none, why = symmetry_for(workers(2, named=True))
    assert none is None and why == "no two declared instances are interchangeable in this scenario"
    # without the property naming worker 0, the workers are interchangeable again
    only, _ = symmetry_for(workers(2, named=True), ["not-all-done", "total-full"])
    assert only is not None


def test_symmetric_traces_are_concrete_runs() -> None:
    """The witness goes through canonical states; the reported trace is a concrete run that replays."""
    program = workers()
    r = check(program, reduction="symmetry")
    tr = prop(r, "not-all-done").trace
    assert tr is not None
    again = replay_trace(program, tr.actions)
    assert [s.thread for s in again.steps] == [s.thread for s in tr.steps]
    model = ProgramModel(program)
    s = model.init_states()[0]
    for aid in tr.actions:
        s = next(n for a, n in model.successors(s) if a == aid)
    assert all(program.layout[f"w{i}.done"].get(s) == 1 for i in range(3))


VCPUS = open(os.path.join(os.path.dirname(__file__), "data", "two-vcpus.yaml"), encoding="utf-8").read()


def test_vfio_ap_vcpus_of_one_vm_are_interchangeable(tmp_path: Any) -> None:
    """ap_model declares vCPU threads permutable; two vCPUs of kvm0 with the same script are."""
    p = tmp_path / "vcpus.yaml"
    p.write_text(VCPUS, encoding="utf-8")
    full = run_spec(str(p), reduction="none")
    sym = run_spec(str(p), reduction="symmetry")
    full2, red = _agree(str(p))
    assert (full.stats.states, sym.stats.states, red.stats.states) == (781, 418, 72)
    assert red.stats.reductions["ran"] == ["partial-order", "symmetry"]
    assert _verdicts(sym) == _verdicts(full)
    # different scripts: not interchangeable
    p.write_text(VCPUS.replace("{kvm_run: {vm: 0, vcpu: 1}}]}", "{pv_switch: {vm: 0}}]}"), encoding="utf-8")
    assert run_spec(str(p)).stats.reductions["skipped"] == {"symmetry": "the design declares no permutable instances"}
    # both declared (KVM_RUN only), but one runs twice and the other once: the engine's check refuses
    p.write_text(VCPUS.replace("[{kvm_run: {vm: 0, vcpu: 1}}, {kvm_run: {vm: 0, vcpu: 1}}]",
                               "[{kvm_run: {vm: 0, vcpu: 1}}]"), encoding="utf-8")
    assert run_spec(str(p)).stats.reductions["skipped"] == {
        "symmetry": "no two declared instances are interchangeable in this scenario"}


# ---------------------------------------------------------------- CLI and spec


def test_cli_reduction_flag_and_json_stats(capsys: pytest.CaptureFixture[str]) -> None:
    from checker.cli.cli import main

    spec = os.path.join(ROOT, "specs", "v17-lockdep.yaml")
    assert main(["check", "--quiet", "--format", "json", "--reduction", "none", spec]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["stats"]["states"], d["stats"]["reductions"]["ran"]) == (144, [])
    assert main(["check", "--quiet", "--format", "json", spec]) == 0
    red = json.loads(capsys.readouterr().out)["stats"]["reductions"]
    assert (red["requested"], red["ran"], red["unreduced"], red["shortest_traces"]) == (
        "all", ["partial-order"], {}, False)
    assert red["skipped"] == {"symmetry": "the design declares no permutable instances"}
    assert main(["check", "--quiet", spec]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("reductions")]
    assert lines == ["reductions       partial-order; no symmetry: the design declares no permutable instances; "
                     "traces are real runs, not necessarily the shortest"]


def test_spec_check_reduction_is_validated(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from checker.cli.cli import main

    src = open(os.path.join(ROOT, "specs", "v17-lockdep.yaml"), encoding="utf-8").read()
    p = tmp_path / "s.yaml"
    p.write_text(src + "check: {reduction: none}\n", encoding="utf-8")
    assert main(["check", "--quiet", "--format", "json", str(p)]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["states"] == 144
    p.write_text(src + "check: {reduction: fast}\n", encoding="utf-8")
    assert main(["check", "--quiet", str(p)]) == 2
    assert capsys.readouterr().err == (
        f"{p}:21:20: error: check.reduction: expected one of none|por|symmetry|all, got 'fast'\n")


def test_an_ample_set_firing_a_violation_does_not_hide_other_findings() -> None:
    """A step that fires a check has no successor; choosing it alone would end the search there
    and lose what the other threads reach (here an invariant violation)."""
    pb = ProgramBuilder("boom")
    fx, fy = bool_field("x"), bool_field("y")
    pb.var(fx)
    y = pb.var(fy)
    pb.thread("a").step("boom", "x = 1, then a NULL dereference", updates={fx: True},
                        checks=[Check(Const(True, BOOL), "memory-safety", "boom")])
    pb.thread("b").step("set_y", "y = 1", updates={fy: True})
    pb.always("y-clear", Not(y), "y is never set")
    program = pb.build()
    full, red = check(program), check(program, reduction="all")
    assert prop(full, "y-clear").status == prop(red, "y-clear").status == VIOLATED
    assert prop(red, "memory-safety").status == VIOLATED


def test_depth_first_search_reaches_the_same_reduced_graph() -> None:
    """The ample sets do not depend on the search order: BFS and DFS count the same states."""
    path = os.path.join(ROOT, "specs", "v17-hotplug.yaml")
    bfs, dfs = run_spec(path), run_spec(path, strategy="dfs")
    assert bfs.stats.states == dfs.stats.states == 76
    assert _verdicts(bfs) == _verdicts(dfs) == _verdicts(run_spec(path, reduction="none"))
