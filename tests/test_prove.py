"""apcheck prove: induction, lemmas, k-induction, BMC, cross-checks, CLI and JSON.

Models are tiny hand-built Programs whose answers are known by hand; BMC
depths are compared with the explicit BFS (``checker.run.check_program``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from checker.lang.design import OperationSig, Param, Scenario
from checker.lang.expr import And, If, Implies, Not, Or
from checker.lang.layout import bool_field, int_field
from checker.lang.program import Lock, Program, ProgramBuilder, Property
from checker.prove.prove import (
    AUTO_OWNERSHIP,
    BOUNDED,
    CTI,
    PROVED,
    UNKNOWN,
    VIOLATED,
    PropertyProof,
    ProveError,
    Prover,
    concrete_step,
    ownership_expr,
    prove_program,
)
from checker.report.results import VIOLATED as EXPLICIT_VIOLATED
from checker.spec.options import Options
from checker.spec.registry import Registry

# --------------------------------------------------------------------------- models


def mutex_program(with_lock: bool = True, threads: int = 2) -> Program:
    """Each thread (cyclic): lock m; cs = 1; cs = 0; unlock m. ``mutex``: no two in cs.

    ``held<t>`` (pc in the locked region => t holds m) and ``csat<t>`` (cs<t> => pc at
    the "leave" step) are inductive on their own and make ``mutex`` inductive.
    """
    pb = ProgramBuilder("mutex" if with_lock else "nolock")
    m = pb.mutex("m")
    cs = [pb.var(bool_field(f"cs{t}")) for t in range(threads)]
    for t in range(threads):
        th = pb.thread(f"T{t}", cyclic=True)
        with th.op("critical"):
            if with_lock:
                th.lock(m, "enter_critical")
            th.step("enter", f"cs{t} = 1", updates={pb.field(f"cs{t}"): True})
            th.step("leave", f"cs{t} = 0", updates={pb.field(f"cs{t}"): False})
            if with_lock:
                th.unlock(m, "leave_critical")
    pairs = [Not(And(cs[i], cs[j])) for i in range(threads) for j in range(i + 1, threads)]
    pb.always("mutex", And(*pairs), "at most one thread in the critical section")
    prog = pb.build()
    lock = prog.locks[0]
    assert isinstance(lock, Lock)
    owner = lock.owner.var
    enter = 1 if with_lock else 0
    for t, thread in enumerate(prog.threads):
        pc = thread.pc.var
        if with_lock:
            region = Or(pc == 1, pc == 2, pc == 3)
            prog.properties.append(Property(f"held{t}", "always", Implies(region, owner == t + 1),
                                            f"{thread.name} holds m in its critical region", ""))
        prog.properties.append(Property(f"csat{t}", "always", Implies(cs[t], pc == enter + 1),
                                        f"cs{t} is set exactly at leave", ""))
    return prog


def twin_counter() -> Program:
    """x and y (0..3) count 0,1,2,0,... together; reachable: x == y in 0..2."""
    pb = ProgramBuilder("twins")
    x = pb.var(int_field("x", 0, 3))
    y = pb.var(int_field("y", 0, 3))
    th = pb.thread("tick", cyclic=True)
    th.step("tick", "x++, y++ (mod 3)", updates={pb.field("x"): If(x == 2, 0, x + 1),
                                                    pb.field("y"): If(y == 2, 0, y + 1)})
    pb.always("x_not_3", x != 3, "x stays in 0..2 (inductive)")
    pb.always("not_1_2", Or(x != 1, y != 2), "never x=1, y=2 (true; 3-inductive, not 1- or 2-inductive)")
    pb.always("same", x == y, "x == y (inductive)")
    pb.always("x_not_2", x != 2, "false: x reaches 2 after two ticks")
    return pb.build()


def double_free() -> Program:
    """Two threads each free the same object: the second free is a double free (depth 2)."""
    pb = ProgramBuilder("dfree")
    pool = pb.pool("obj", ["obj0"], init_alive=[0])
    for t in range(2):
        th = pb.thread(f"T{t}")
        th.step("kfree", "kfree(obj)", objects=[pb.free(pool, 0)])
    return pb.build()


def bfs_trace_length(program: Program, name: str) -> int:
    from checker.search.run import check_program

    res = check_program(program, Options(reduction="none"))  # BFS over the full graph: shortest traces
    by = {p.name: p for p in res.properties}
    trace = by[name].trace
    assert by[name].status == EXPLICIT_VIOLATED and trace is not None
    return trace.length


def one(program: Program, name: str, lemmas: Sequence[str] = (), k: int = 1, bmc_depth: int = 0,
        timeout_s: float = 30.0, auto_lemmas: bool = True) -> PropertyProof:
    res = prove_program(program, [name], lemmas, k=k, bmc_depth=bmc_depth, timeout_s=timeout_s,
                        auto_lemmas=auto_lemmas)
    assert len(res.properties) == 1
    return res.properties[0]


# --------------------------------------------------------------------------- verdicts


def test_inductive_invariant_is_proved() -> None:
    prog = mutex_program()
    for name in ("held0", "held1", "csat0", "csat1"):
        p = one(prog, name)
        assert p.status == PROVED, (name, p.detail)
        assert p.k == 1 and p.cti is None and p.trace is None


def test_true_but_not_inductive_gives_cti_then_proved_with_lemmas() -> None:
    prog = mutex_program()
    p = one(prog, "mutex", bmc_depth=6)
    assert p.status == CTI
    cti = p.cti
    assert cti is not None and cti.invariant == "mutex" and cti.k == 1
    # the CTI is a real pre/post pair: pre satisfies mutex, the step is enabled, post violates it
    assert not (cti.pre["cs0"] and cti.pre["cs1"])
    assert cti.post["cs0"] and cti.post["cs1"]
    assert cti.action.function == "enter"
    assert "no violation up to depth 6" in p.detail
    lemmas = ["held0", "held1", "csat0", "csat1"]
    q = one(prog, "mutex", lemmas=lemmas)
    assert q.status == PROVED and q.lemmas == lemmas and "lemmas" in q.detail


def test_cti_names_the_failing_conjunct() -> None:
    prog = mutex_program(threads=3)
    p = one(prog, "mutex")
    assert p.status == CTI and p.cti is not None
    i = p.cti.failing_conjunct
    assert i is not None and 0 <= i < 3
    assert p.cti.conjunct_text.startswith("not (cs")
    names = [f"held{t}" for t in range(3)] + [f"csat{t}" for t in range(3)]
    assert one(prog, "mutex", lemmas=names).status == PROVED


def test_report_which_lemma_breaks_induction() -> None:
    prog = twin_counter()
    p = one(prog, "x_not_3", lemmas=["not_1_2"])
    assert p.status == CTI and p.cti is not None
    assert p.cti.invariant == "not_1_2"
    assert "lemma not_1_2 is not inductive" in p.detail
    assert (p.cti.post["x"], p.cti.post["y"]) == (1, 2)
    # adding the lemma that makes it inductive fixes it
    assert one(prog, "x_not_3", lemmas=["not_1_2", "same"]).status == PROVED


def test_k_induction() -> None:
    prog = twin_counter()
    for k in (1, 2):
        p = one(prog, "not_1_2", k=k)
        assert p.status == CTI, k
        assert p.cti is not None and p.cti.k == k and len(p.cti.path) == k - 1
    p = one(prog, "not_1_2", k=3)
    assert p.status == PROVED and p.k == 3 and "3-inductive" in p.detail


def test_false_invariant_violated_at_bfs_depth() -> None:
    prog = twin_counter()
    p = one(prog, "x_not_2", bmc_depth=5)
    assert p.status == VIOLATED and p.trace is not None
    assert len(p.trace) == p.bmc_depth == 2 == bfs_trace_length(prog, "x_not_2")
    # replays concretely
    values = {f: f.init for f in prog.layout.fields}
    for aid in p.trace:
        out = concrete_step(prog, values, prog.actions[aid])
        assert out.post is not None
        values = out.post
    assert values[prog.layout["x"]] == 2


def test_mutex_without_lock_violated_at_bfs_depth() -> None:
    prog = mutex_program(with_lock=False)
    p = one(prog, "mutex", bmc_depth=4)
    assert p.status == VIOLATED and p.trace is not None
    assert len(p.trace) == 2 == bfs_trace_length(prog, "mutex")
    assert {prog.actions[a].thread for a in p.trace} == {0, 1}


def test_check_group_violated_at_bfs_depth() -> None:
    prog = double_free()
    p = one(prog, "check:memory-safety", bmc_depth=3)
    assert p.status == VIOLATED and p.trace is not None and p.kind == "check"
    assert len(p.trace) == 2 == bfs_trace_length(prog, "memory-safety")


def test_check_group_proved_with_lemmas() -> None:
    prog = mutex_program()
    # unlock balance needs the pc/lock relation: a CTI without it...
    p = one(prog, "check:lock-order", auto_lemmas=False)
    assert p.status == CTI and p.cti is not None
    assert "bad unlock balance" in p.cti.post_failure and p.cti.post_failure_action >= 0
    # ...proved with user lemmas...
    assert one(prog, "check:lock-order", lemmas=["held0", "held1"], auto_lemmas=False).status == PROVED
    # ...or with the derived ownership invariant, proved first and then assumed
    q = one(prog, "check:lock-order")
    assert q.status == PROVED and q.assumed == [AUTO_OWNERSHIP] and AUTO_OWNERSHIP in q.detail


def test_derived_ownership_invariant() -> None:
    prog = mutex_program()
    p = one(prog, AUTO_OWNERSHIP)
    assert p.status == PROVED and p.assumed == []
    assert ownership_expr(twin_counter()) is None  # no locks: no such invariant


def test_derived_ownership_is_never_trusted() -> None:
    """A step that clears the owner field behind the lock layer's back makes the derived
    invariant false: it is then neither PROVED nor assumed."""
    pb = ProgramBuilder("sneaky")
    m = pb.mutex("m")
    th = pb.thread("T0")
    th.lock(m, "f")
    th.step("sneak", "m.owner = 0", updates={m.owner: 0})
    th.step("g", "nop")
    prog = pb.build()
    p = one(prog, AUTO_OWNERSHIP, bmc_depth=3)
    assert p.status == VIOLATED
    res = prove_program(prog, ["check:lock-order"], bmc_depth=3)
    assert res.properties[0].assumed == []


def test_bounded_when_induction_is_off() -> None:
    prog = mutex_program()
    p = one(prog, "mutex", k=0, bmc_depth=5)
    assert p.status == BOUNDED and p.bmc_depth == 5 and p.cti is None


def test_false_in_initial_state() -> None:
    pb = ProgramBuilder("init")
    x = pb.var(int_field("x", 0, 3, 1))
    th = pb.thread("t")
    th.step("f", "nop")
    pb.always("x_zero", x == 0, "false initially")
    p = one(pb.build(), "x_zero")
    assert p.status == VIOLATED and p.trace == [] and p.bmc_depth == 0


def test_timeout_is_unknown_never_proved() -> None:
    prog = mutex_program()
    p = one(prog, "held0", timeout_s=1e-9)
    assert p.status == UNKNOWN


def test_default_goals_and_unknown_names() -> None:
    prog = twin_counter()
    res = prove_program(prog)
    # the always properties, then the built-in verdicts stated as invariants
    assert [p.property for p in res.properties] == ["x_not_3", "not_1_2", "same", "x_not_2", "check:range",
                                                    "auto:deadlock-free"]
    assert res.exit_code() == 3  # CTIs, no violation found without BMC
    with pytest.raises(ProveError, match="did you mean 'same'"):
        prove_program(prog, ["sme"])
    with pytest.raises(ProveError, match="unknown lemma"):
        prove_program(prog, ["same"], lemmas=["nope"])


def test_exit_codes() -> None:
    prog = twin_counter()
    assert prove_program(prog, ["same"]).exit_code() == 0
    assert prove_program(prog, ["same", "x_not_2"], bmc_depth=3).exit_code() == 1


def test_typing_invariant_preserved_by_every_action() -> None:
    from checker.prove.symbolic import Encoding

    for prog in (mutex_program(), twin_counter(), double_free()):
        enc = Encoding(prog)
        assert all(enc.typing_cti(a) is None for a in prog.actions)


# --------------------------------------------------------------------------- CLI and JSON


class MutexDesign:
    """Spec-level wrapper of mutex_program (threads of the spec are ignored but counted)."""

    name = "mutex-toy"
    summary = "two threads and one mutex (prove tests)"
    constants: ClassVar[dict[str, Param]] = {"locked": Param("bool", "use the mutex", default=True)}
    operations: ClassVar[dict[str, OperationSig]] = {"critical": OperationSig("critical", "lock; cs=1; cs=0; unlock")}

    def build(self, scenario: Scenario) -> Program:
        return mutex_program(bool(scenario.constants["locked"]), threads=len(scenario.threads))


SPEC = """\
name: toy
design: mutex-toy
constants: {{locked: {locked}}}
threads:
  - {{name: A, run: [critical], cyclic: true}}
  - {{name: B, run: [critical], cyclic: true}}
"""


@pytest.fixture
def prove_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    from checker.cli.cli import main

    reg = Registry()
    reg.register(MutexDesign, origin="tests")

    def run(*args: str, locked: bool = True) -> tuple[int, str, str]:
        spec = tmp_path / "toy.yaml"
        spec.write_text(SPEC.format(locked="true" if locked else "false"), encoding="utf-8")
        code = main(["prove", str(spec), *args], registry=reg)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_proved_exit_0(prove_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = prove_cli("--property", "mutex", "--lemma", "held0", "--lemma", "held1",
                             "--lemma", "csat0", "--lemma", "csat1")
    assert code == 0
    assert "PROVED" in out


def test_cli_cti_exit_3_shows_pre_post(prove_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = prove_cli("--property", "mutex")
    assert code == 3
    assert "counterexample to induction" in out
    assert "pre-state" in out and "post-state violates mutex" in out
    assert "enter" in out and "cs0" in out


def test_cli_violated_exit_1_with_trace(prove_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = prove_cli("--property", "mutex", "--bmc", "4", locked=False)
    assert code == 1
    assert "VIOLATED" in out and "enter" in out


def test_cli_unknown_property_exit_2(prove_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = prove_cli("--property", "mutx")
    assert code == 2
    assert "did you mean 'mutex'" in err


def test_cli_json_schema(prove_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = prove_cli("--property", "mutex", "--property", "held0", "--format", "json")
    assert code == 3
    data = json.loads(out)
    assert list(data) == ["version", "spec", "design", "prove", "crosscheck"]
    assert data["version"] == 1 and data["design"] == "mutex-toy"
    assert data["crosscheck"].startswith("relation checked on all ")  # held0 is PROVED
    keys = ["property", "kind", "status", "scope", "detail", "k", "bmc_depth", "lemmas", "assumed", "seconds", "cti",
            "trace"]
    for p in data["prove"]:
        assert list(p) == keys
    mutex, held = data["prove"]
    assert held["status"] == PROVED and held["cti"] is None and held["trace"] is None
    # check:lock-order was not proved in this run: the proof covers the runs up to the first failing check
    assert held["scope"] == "cyclic scenario (unbounded repetitions); runs up to the first failing check"
    assert mutex["scope"] is None
    assert mutex["status"] == CTI
    cti = mutex["cti"]
    assert list(cti) == ["invariant", "pre", "action", "post", "failing_conjunct", "post_failure", "k", "path"]
    assert list(cti["action"]) == ["id", "thread", "function", "text"]
    assert cti["pre"]["cs0"] + cti["pre"]["cs1"] == 1 and cti["post"]["cs0"] == cti["post"]["cs1"] == 1


def test_cli_json_trace(prove_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = prove_cli("--bmc", "3", "--format", "json", "--property", "mutex", locked=False)
    assert code == 1
    p = json.loads(out)["prove"][0]
    assert p["status"] == VIOLATED and p["trace"]["length"] == 2 and len(p["trace"]["actions"]) == 2


# --------------------------------------------------------------------------- BMC vs BFS on the repository's specs

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p for d in ("specs", "examples") for p in (ROOT / d).rglob("*.yaml")
               if p.name != "history.yaml")  # specs/history/history.yaml is the fix manifest, not a spec
BFS_LIMIT = 100_000  # states: "small enough" for the agreement test
BMC_HOLDS_DEPTH = 6  # for properties BFS proves, BMC must find nothing this deep
BMC_MAX_DEPTH = 10  # deeper violations take BMC tens of seconds (see docs/prove.md): not a unit test


def spec_program(path: Path) -> Program:
    from checker.search.run import build_program
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(str(path), default_registry())
    return build_program(loaded.design, loaded.scenario)


# The cross-check takes seconds to most of a minute per spec; the quick start runs it on the cheap
# specs, .ci/run (pytest -m slow) on these, each measured at 7 s or more on the 2-core machine under load.
SLOW_BMC = {"v15-ownership", "v16-ownership", "final-hooks", "final-ownership", "v17-data-before-put", "v17",
            "v17-ownership", "final-mixed", "final-lifecycle", "v16-apie", "v15-hotplug", "v16-hooks", "v17-apie",
            "final-config", "v17-lifecycle", "v16-hook-ownership", "final-apie", "final-hotplug", "v16-hotplug",
            "v17-lockdep", "final-two-vms", "final-two-vms-apqns", "v17-two-vms-lifecycle"}
BMC_CASES = [pytest.param(p, marks=[pytest.mark.slow] if p.stem in SLOW_BMC else [], id=str(p.relative_to(ROOT)))
             for p in SPECS]


@pytest.mark.skipif(not SPECS, reason="no specs in the repository yet")
@pytest.mark.parametrize("path", BMC_CASES)
def test_bmc_and_bfs_agree_on_shortest_violation(path: Path) -> None:
    from checker.search.run import check_program

    prog = spec_program(path)
    res = check_program(prog, Options(max_states=BFS_LIMIT, quiet=True, reduction="none"))  # shortest: unreduced
    if not res.stats.complete:
        pytest.skip(f"more than {BFS_LIMIT} states")
    explicit = {p.name: p for p in res.properties}
    names = [p.name for p in prog.properties if p.kind == "always"]
    if "memory-safety" in explicit and any(c.prop == "memory-safety" for a in prog.actions for c in a.checks):
        ms = explicit["memory-safety"]
        if ms.trace is None or (ms.trace.steps and ms.trace.steps[-1].note):  # leaks are not step checks
            names.append("check:memory-safety")
    prover = Prover(prog, timeout_s=60)
    holds_depth = min(BMC_HOLDS_DEPTH, res.stats.max_depth)
    for name in names:
        pr = explicit[name.removeprefix("check:")]
        goal = prover.goals[name]
        if pr.status == EXPLICIT_VIOLATED:
            assert pr.trace is not None
            depth = pr.trace.length - (1 if name.startswith("check:") else 0)
            if depth > BMC_MAX_DEPTH:
                continue
            # BMC deepens one step at a time: the first violation it finds is a shortest one
            p = prover.prove(goal, (), k=0, bmc_depth=depth)
            assert p.status == VIOLATED, (name, p.detail)
            assert p.trace is not None and len(p.trace) == pr.trace.length, name
        else:
            p = prover.prove(goal, (), k=0, bmc_depth=holds_depth)
            assert p.status in (BOUNDED, PROVED), (name, p.detail)  # PROVED: BMC was exhaustive


def test_exhaustive_bmc_proves_a_bounded_scenario() -> None:
    """Non-cyclic threads: every run ends; BMC past the longest run covers every state."""
    pb = ProgramBuilder("finite")
    x = pb.var(int_field("x", 0, 3))
    for t in range(2):
        th = pb.thread(f"T{t}")
        th.step("inc", "x++", updates={pb.field("x"): If(x < 3, x + 1, x)})
    pb.always("x_le_2", x <= 2, "true: two increments from 0 (not inductive: x=2 -> 3)")
    prog = pb.build()
    assert one(prog, "x_le_2").status == CTI
    p = one(prog, "x_le_2", bmc_depth=2)
    assert p.status == CTI and p.bmc_depth == 2
    p = one(prog, "x_le_2", bmc_depth=5)
    assert p.status == PROVED and p.bmc_depth == 2 and "exhaustive" in p.detail and p.cti is None


def test_prove_settings_cli_over_spec_over_defaults() -> None:
    from checker.cli.prove_cli import prove_settings

    assert prove_settings(None) == {"lemmas": (), "k": 1, "bmc": 0, "timeout": 30.0}
    spec = {"lemmas": ["a", "b"], "k": 2, "bmc": 10}
    got = prove_settings(spec, k=None, bmc=4, timeout=None)
    assert got == {"lemmas": ("a", "b"), "k": 2, "bmc": 4, "timeout": 30.0}
