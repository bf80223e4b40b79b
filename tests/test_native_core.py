"""The native core (C compiled at run time) gives exactly the Python core's results.

Every spec in specs/ and every lock program in examples/ runs with ``core=python`` and
``core=native``: counts, verdicts, trace lengths (and the traces' actions), deadlock
info and the lock-order edge set must be identical; limits (max-states, max-depth) stop
at the same place. Skipped only when no C compiler is installed (CI has gcc).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import pytest

from checker.cli.golden import ROOT, run_spec
from checker.report.results import CheckResult
from checker.search.native import build as native_build

pytestmark = pytest.mark.skipif(native_build.compiler() is None, reason="no C compiler")

SPECS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
EXAMPLES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "examples", "*.yaml")))
# a minute or more on the Python core: benchmarks/run.py compares phil_N14; the masks spec (4.1 M states, 100 s
# per comparison) is compared on the specs it extends (parametric-mainline, final-ownership) and golden-checked
BIG = {"examples/phil_N14.yaml", "specs/parametric-mainline-masks.yaml"}
# Quick subset (one compile each, ~1 s): races, invariants, witnesses, deadlocks, cycles, 1-3 words.
QUICK = {"examples/lockcycle3.yaml", "examples/phil_N5.yaml", "specs/final-mixed.yaml", "specs/v15-lockdep.yaml",
         "specs/final-hooks.yaml", "specs/v17.yaml", "specs/final-two-vms-apqns.yaml"}


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    old = os.environ.get("APCHECK_CACHE_DIR")
    os.environ["APCHECK_CACHE_DIR"] = str(tmp_path_factory.mktemp("native-cache"))
    yield
    if old is None:
        del os.environ["APCHECK_CACHE_DIR"]
    else:
        os.environ["APCHECK_CACHE_DIR"] = old


def digest(r: CheckResult) -> dict[str, Any]:
    st = r.stats
    return {
        "counts": (st.states, st.transitions, st.deadlock_states, st.max_depth, st.complete, st.limit),
        "result": r.result,
        "properties": [(p.name, p.status, p.detail, None if p.trace is None else p.trace.actions)
                       for p in r.properties],
        "edges": sorted((e.src, e.dst, e.src_mode, e.dst_mode, e.thread, e.function) for e in r.lock_edges),
        "cycles": [(c.locks, c.reachable) for c in r.cycles],
    }


@pytest.mark.parametrize("spec", [s if s in QUICK else pytest.param(s, marks=pytest.mark.slow)
                                  for s in SPECS + EXAMPLES if s not in BIG])
def test_native_core_matches_python_core(spec: str) -> None:
    path = os.path.join(ROOT, spec)
    py = run_spec(path, core="python", reduction="none")
    nat = run_spec(path, core="native", reduction="none")
    assert nat.stats.store == "exact"
    assert digest(nat) == digest(py)


@pytest.mark.parametrize("spec", [s if s in QUICK else pytest.param(s, marks=pytest.mark.slow)
                                  for s in SPECS + EXAMPLES if s not in BIG])
def test_native_partial_order_loop_matches_python_loop(spec: str) -> None:
    """The default reductions: partial-order reduction in the C loop expands the same ample sets
    as the Python loop's ``PartialOrder.select`` (symmetric specs run the Python loop on both)."""
    path = os.path.join(ROOT, spec)
    py = run_spec(path, core="python")
    nat = run_spec(path, core="native")
    assert digest(nat) == digest(py)
    assert nat.stats.reductions == py.stats.reductions
    if "partial-order" in nat.stats.reductions["ran"]:
        assert nat.stats.reductions["ample_states"] > 0


# A timeout already passed, or a memory cap below any process, stops both loops at their first
# check: after expanding the initial state (cur & 0xFFF == 0), so even these compare exactly.
@pytest.mark.parametrize("limit", [{"max_states": 1000}, {"max_depth": 7}, {"max_states": 1},
                                   {"timeout": 1e-9}, {"max_memory_mb": 1}])
def test_limits_stop_at_the_same_place(limit: dict[str, Any]) -> None:
    path = os.path.join(ROOT, "specs", "final-mixed.yaml")
    py = run_spec(path, core="python", reduction="none", **limit)
    nat = run_spec(path, core="native", reduction="none", **limit)
    assert py.stats.limit in ("max-states", "max-depth", "timeout", "memory") and not py.stats.complete
    assert digest(nat) == digest(py)


def test_cli_core_flag_and_spec_option(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    import json

    from checker.cli.cli import main

    path = os.path.join(ROOT, "examples", "lockcycle3.yaml")
    outs = []
    for core in ("python", "native"):
        assert main(["check", path, "--core", core, "--format", "json"]) == 1
        data = json.loads(capsys.readouterr().out)
        outs.append((data["properties"], {k: data["stats"][k] for k in ("states", "transitions", "max_depth")}))
    assert outs[0] == outs[1]
    spec = tmp_path / "bad.yaml"
    with open(path) as fh:
        text = fh.read().replace("program: models/", f"program: {os.path.join(ROOT, 'examples', 'models')}/")
    spec.write_text(text + "check:\n  core: natve\n")
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.endswith("bad.yaml:7:9: error: check.core: expected one of auto|python|native, got 'natve' "
                        "(did you mean 'native'?)\n")


def test_drop_in_successors_are_identical() -> None:
    """The C ``succ`` returns the Python ``succ``'s list on every reachable state, and records
    the same fired flags and dynamic lock-order edges."""
    from checker.search.native.driver import native_core
    from checker.search.progmodel import ProgramModel
    from checker.search.run import build_program
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(os.path.join(ROOT, "specs", "v17.yaml"), default_registry())
    program = build_program(loaded.design, loaded.scenario)
    py, nat = ProgramModel(program), ProgramModel(program)
    nc = native_core(nat)
    assert nc is not None and nc.words == 3  # 159 bits: three words
    seen = {program.layout.initial()}
    todo = list(seen)
    while todo:
        s = todo.pop()
        out = py.successors(s)
        assert nc.succ(s) == out
        for _, n in out:
            if n >= 0 and n not in seen:
                seen.add(n)
                todo.append(n)
    assert len(seen) > 1000
    assert nat.comp.fired == py.comp.fired
    assert nat.comp.dynamic_edges == py.comp.dynamic_edges


@pytest.mark.parametrize("reduction", ["symmetry", "all"])
def test_native_symmetry_loop_matches_python_loop(reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Symmetry in the C loop (``canon``): the same representatives, counts, verdicts and concrete
    traces as the Python loop's ``Symmetry.canonical`` (two interchangeable vCPU threads)."""
    from checker.search.native import driver

    loops: list[object] = []
    real = driver.native_bfs
    monkeypatch.setattr(driver, "native_bfs", lambda *a, **k: loops.append(a[0]) or real(*a, **k))
    path = os.path.join(os.path.dirname(__file__), "data", "two-vcpus.yaml")
    py = run_spec(path, core="python", reduction=reduction)
    nat = run_spec(path, core="native", reduction=reduction)
    assert "symmetry" in nat.stats.reductions["ran"] and len(loops) == 1  # the C loop ran it
    assert digest(nat) == digest(py)
    assert nat.stats.reductions == py.stats.reductions


# Specs whose races or lock-discipline breaches sit in different places: found (v16-ownership both,
# v17-ownership races only, hook-rwsem-5.12 both) and absent (final-mixed).
RACE_SPECS = ["specs/v16-ownership.yaml", "specs/v17-ownership.yaml", "specs/history/hook-rwsem-5.12.yaml",
              "specs/final-mixed.yaml"]


@pytest.mark.parametrize("spec", RACE_SPECS)
def test_native_race_checks_decide_every_state_as_python(spec: str) -> None:
    """``race_bits`` (data races and lock discipline in C) finds something in exactly the
    reachable states where the Python checks do, each check separately."""
    from checker.search.native.driver import native_core
    from checker.search.progmodel import ProgramModel
    from checker.search.run import build_program
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(os.path.join(ROOT, spec), default_registry())
    program = build_program(loaded.design, loaded.scenario)
    model = ProgramModel(program)
    nc = native_core(model)
    assert nc is not None
    nc.bind()
    seen = {program.layout.initial()}
    todo, hits = list(seen), [0, 0]
    while todo:
        s = todo.pop()
        out = model.successors(s)
        want = (model.races.race(s, out) is not None) | (model.races.discipline(s, out) is not None) << 1
        assert nc.module.race_bits(s, 3) == want, hex(s)
        assert nc.module.race_bits(s, 1) == want & 1 and nc.module.race_bits(s, 2) == want & 2
        hits[0] += want & 1
        hits[1] += want >> 1
        for _, n in out:
            if n >= 0 and n not in seen:
                seen.add(n)
                todo.append(n)
    if spec == "specs/final-mixed.yaml":
        assert hits == [0, 0]
    else:
        assert hits[0] > 0 and (hits[1] > 0) == (spec != "specs/v17-ownership.yaml")


def test_no_compiler_falls_back_with_one_note(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              tmp_path: Any) -> None:
    from checker.search.native import driver

    monkeypatch.setenv("APCHECK_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(driver, "_warned", set())
    path = os.path.join(ROOT, "examples", "phil_N5.yaml")
    nat = run_spec(path, core="native", reduction="none")
    again = run_spec(path, core="native", reduction="none")
    py = run_spec(path, core="python", reduction="none")
    assert digest(nat) == digest(py) == digest(again)
    assert nat.stats.store == "exact"  # 25 bits: the Python store is exact too
    err = capsys.readouterr().err
    assert err.count("apcheck: note: native core unavailable") == 1
    assert "no C compiler found" in err


def test_wide_model_native_and_unsupported_field_falls_back(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A 134-bit model (130 constant pad bits) runs natively, exact store, same counts as the Python
    core's fingerprints; a field wider than 62 bits is not compiled: Python core, one note."""
    from helpers_models import wide_model

    from checker.lang.layout import mask_field
    from checker.lang.program import ProgramBuilder
    from checker.search.native import driver
    from checker.search.run import check_program
    from checker.spec.options import Options

    py = check_program(wide_model(), Options(quiet=True, core="python", reduction="none"))
    nat = check_program(wide_model(), Options(quiet=True, core="native", reduction="none"))
    assert (py.stats.store, nat.stats.store) == ("fingerprint", "exact")
    assert digest(nat) == digest(py)
    monkeypatch.setattr(driver, "_warned", set())
    pb = ProgramBuilder("wide-mask")
    pb.var(mask_field("m", 64))
    a = pb.mutex("A")
    tb = pb.thread("T")
    tb.lock(a, "T_lock")
    tb.unlock(a, "T_unlock")
    r = check_program(pb.build(), Options(quiet=True, core="native", reduction="none"))
    assert (r.stats.states, r.stats.store) == (3, "exact")
    assert capsys.readouterr().err == ("apcheck: note: native core unavailable for this model "
                                       "(field m is 64 bits wide); using the Python core\n")


def test_auto_core_restarts_large_searches_natively_then_uses_the_cache(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Any) -> None:
    """``auto``: nothing cached, a search still running after the Python core's allowance restarts on
    the compiled core (exact store: 159-bit v17 states); the next run finds the core in the cache at
    once; a search that ends within the allowance never compiles."""
    from checker.search.native import driver

    monkeypatch.setenv("APCHECK_CACHE_DIR", str(tmp_path))
    path = os.path.join(ROOT, "specs", "v17.yaml")
    py = run_spec(path, core="python", reduction="none")
    assert py.stats.store == "fingerprint"
    monkeypatch.setattr(driver, "AUTO_PYTHON_SECONDS", 1e9)
    small = run_spec(path, reduction="none")  # ends within the allowance: Python core, no compile
    assert small.stats.store == "fingerprint" and not list(tmp_path.iterdir())
    monkeypatch.setattr(driver, "AUTO_PYTHON_SECONDS", 1e-9)
    restarted = run_spec(path, reduction="none")
    assert restarted.stats.store == "exact" and digest(restarted) == digest(py)
    monkeypatch.setattr(driver, "AUTO_PYTHON_SECONDS", 1e9)
    cached = run_spec(path, reduction="none")
    assert cached.stats.store == "exact" and digest(cached) == digest(py)


# The C loop under a depth bound: states on the bound have their steps checked (a failing check, a broken
# invariant or a witness one step past it is found) but their successors not stored, as explore.bfs does.
# final-hooks: hook-safe breaks in a state at depth 27, a step from depth 27 fails memory-safety (shortest
# traces 27 and 28); two-vcpus: guest-apcb-changed is first witnessed at depth 4.
@pytest.mark.parametrize(("spec", "depth", "reduction"), [
    pytest.param("specs/final-hooks.yaml", 26, "none", marks=pytest.mark.slow),  # hook-safe one step past
    pytest.param("specs/final-hooks.yaml", 27, "none", marks=pytest.mark.slow),  # the failing step past it
    ("specs/final-hooks.yaml", 21, "all"), ("specs/v15-lockdep.yaml", 6, "all"), ("specs/final-mixed.yaml", 12, "por"),
    ("examples/lockcycle3.yaml", 3, "none"), ("tests/data/two-vcpus.yaml", 3, "all"),  # the witness one step past
    ("tests/data/two-vcpus.yaml", 9, "symmetry")])
def test_native_loop_under_a_depth_bound_matches_python(spec: str, depth: int, reduction: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from checker.search.native import driver

    loops: list[object] = []
    real = driver.native_bfs
    monkeypatch.setattr(driver, "native_bfs", lambda *a, **k: loops.append(a[0]) or real(*a, **k))
    path = os.path.join(ROOT, spec)
    py = run_spec(path, core="python", reduction=reduction, max_depth=depth)
    nat = run_spec(path, core="native", reduction=reduction, max_depth=depth)
    assert len(loops) == 1  # the C loop ran it
    assert digest(nat) == digest(py)
    assert nat.stats.reductions == py.stats.reductions
