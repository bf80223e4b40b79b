"""Issue 9: long runs keep their work — limits that hold, interrupts, checkpoint and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checker.lang.lockprog import load_lock_program
from checker.lang.program import Program
from checker.report.results import BOUNDED, EXIT_INCONCLUSIVE, EXIT_USAGE, CheckResult
from checker.search import checkpoint as ckpt
from checker.search.limits import StopRequest
from checker.search.run import build_program, check_program
from checker.spec.options import Options
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


class StopAfterPolls(StopRequest):
    """Asks the search to stop at its n-th poll: an interrupt at a reproducible point."""

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.left = polls

    @property  # type: ignore[override]
    def reason(self) -> str:
        self.left -= 1
        return "interrupted" if self.left < 0 else ""

    @reason.setter
    def reason(self, value: str) -> None:
        pass


def phil(n: int) -> Program:
    return load_lock_program(str(ROOT / f"examples/models/phil_N{n}.json"))


def spec_program(name: str) -> Program:
    loaded = load_spec(str(ROOT / "specs" / name), default_registry())
    return build_program(loaded.design, loaded.scenario)


def summary(r: CheckResult) -> tuple[object, ...]:
    s = r.stats
    props = [(p.name, p.status, p.detail, p.trace.actions if p.trace else None) for p in r.properties]
    return s.states, s.transitions, s.deadlock_states, s.max_depth, s.complete, s.limit, r.result, props


# ------------------------------------------------------------------ checkpoint and resume (in process)


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
@pytest.mark.parametrize("make", [lambda: phil(8), lambda: spec_program("final-mixed.yaml")], ids=["phil8", "mixed"])
def test_resume_gives_the_uninterrupted_counts_and_verdicts(tmp_path: Path, strategy: str, make) -> None:  # type: ignore[no-untyped-def]
    program = make()
    whole = check_program(program, Options(strategy=strategy, quiet=True))
    path = str(tmp_path / "run.ckpt")
    # interrupted twice, resumed twice
    first = check_program(program, Options(strategy=strategy, quiet=True, checkpoint=path), stop=StopAfterPolls(15))
    assert first.stats.limit == "interrupted" and not first.stats.complete
    assert first.stats.states < whole.stats.states
    assert all(p.status != "HOLDS" for p in first.properties)  # nothing claims a pass
    second = check_program(program, Options(strategy=strategy, quiet=True, checkpoint=path, resume=path),
                           stop=StopAfterPolls(20))
    assert first.stats.states < second.stats.states < whole.stats.states
    last = check_program(program, Options(strategy=strategy, quiet=True, resume=path))
    assert summary(last) == summary(whole)


def test_periodic_checkpoint_is_written(tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    check_program(phil(6), Options(quiet=True, checkpoint=str(path), checkpoint_seconds=1e-9))
    assert path.read_bytes().startswith(b"APCHECK-CHECKPOINT 1\n")


def test_resume_refuses_another_program_or_strategy(tmp_path: Path) -> None:
    path = str(tmp_path / "run.ckpt")
    check_program(phil(6), Options(quiet=True, checkpoint=path), stop=StopAfterPolls(1))
    with pytest.raises(ckpt.CheckpointError, match="saved by another spec, design or option set"):
        check_program(phil(7), Options(quiet=True, resume=path))
    with pytest.raises(ckpt.CheckpointError, match="another spec, design or option set"):
        check_program(phil(6), Options(quiet=True, resume=path, strategy="dfs"))


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b[:40], lambda b: b"junk" + b,
                                    lambda b: b.replace(b'"cur"', b'"cux"'), lambda b: b + b"x"])
def test_damaged_checkpoint_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage) -> None:  # type: ignore[no-untyped-def]
    from checker.cli.cli import main

    spec, path = str(ROOT / "examples/phil_N6.yaml"), tmp_path / "run.ckpt"
    check_program(phil(6), Options(quiet=True, checkpoint=str(path)), stop=StopAfterPolls(2))
    # the spec's program is named after the file, as in the check above
    path.write_bytes(damage(path.read_bytes()))
    assert main(["check", spec, "--resume", str(path)]) == EXIT_USAGE
    err = capsys.readouterr()[1]
    assert err.startswith(f"{path}: error: --resume: cannot resume: ") and err.count("\n") == 1


def test_checkpoint_with_random_walks_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from checker.cli.cli import main

    code = main(["check", str(ROOT / "examples/phil_N3.yaml"), "--strategy", "random",
                 "--checkpoint", str(tmp_path / "c")])
    assert code == EXIT_USAGE and "--checkpoint and --resume work with --strategy bfs or dfs" in capsys.readouterr()[1]


# ------------------------------------------------------------------ limits that hold in every strategy


@pytest.mark.parametrize("strategy", ["bfs", "dfs", "random"])
def test_memory_limit_holds_in_every_strategy(strategy: str) -> None:
    # 1 MB is below any Python process: the first memory poll must stop the search
    r = check_program(phil(10), Options(strategy=strategy, quiet=True, max_memory_mb=1, walks=100000))
    assert "memory" in r.stats.limit and not r.stats.complete
    assert r.stats.states < 59048 and all(p.status != "HOLDS" for p in r.properties)


@pytest.mark.parametrize("strategy", ["bfs", "dfs", "random"])
def test_timeout_is_polled_promptly(strategy: str) -> None:
    # before: checked every 4,096 expansions (phil_N3 has 26 states, so it always finished)
    r = check_program(phil(3), Options(strategy=strategy, quiet=True, timeout=1e-9, walks=100000))
    assert "timeout" in r.stats.limit and not r.stats.complete


def test_interrupt_before_the_search_keeps_a_report() -> None:
    stop = StopRequest()
    stop.request()
    r = check_program(phil(5), Options(quiet=True), stop=stop)
    assert r.stats.limit == "interrupted" and r.result == BOUNDED and r.exit_code() == EXIT_INCONCLUSIVE


# ------------------------------------------------------------------ signals on the real CLI


def _independent_locks(tmp_path: Path, n: int) -> Path:
    """n threads, each taking and releasing its own lock forever: 2**n states, nothing violated."""
    model = {"name": "independent", "locks": [f"L{i}" for i in range(n)],
             "threads": [{"name": f"T{i}", "program": [["acq", f"L{i}"], ["rel", f"L{i}"]]} for i in range(n)]}
    (tmp_path / "indep.json").write_text(json.dumps(model), encoding="utf-8")
    spec = tmp_path / "indep.yaml"
    spec.write_text("design: lock-program\nprogram: indep.json\n", encoding="utf-8")
    return spec


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "checker", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until the search has saved its first checkpoint (so it is running, handlers installed)."""
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_check_cleanly_with_a_report(tmp_path: Path, sig: signal.Signals) -> None:
    spec, ck, out = _independent_locks(tmp_path, 22), tmp_path / "c.ckpt", tmp_path / "report.json"
    proc = _start(["check", str(spec), "--format", "json", "-o", str(out), "--checkpoint", str(ck),
                   "--checkpoint-every", "0.05", "--reduction", "none"])  # 2**22 states: long enough to stop
    _wait_for(ck, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INCONCLUSIVE, err
    assert f"apcheck: interrupted ({sig.name})" in err
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["stats"]["limit"] == "interrupted" and rep["stats"]["complete"] is False
    assert 0 < rep["stats"]["states"] < 2**22
    assert {p["name"]: p["status"] for p in rep["properties"]} == {
        "deadlock": BOUNDED, "lock-order": BOUNDED, "memory-safety": "N/A", "data-race": "N/A",
        "lock-discipline": "N/A"}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_counts(tmp_path: Path) -> None:
    spec, ck, out = ROOT / "examples/phil_N12.yaml", tmp_path / "c.ckpt", tmp_path / "report.json"
    proc = _start(["check", str(spec), "--checkpoint", str(ck), "--checkpoint-every", "0.05", "--quiet",
                   "--reduction", "none", "-o", str(tmp_path / "partial.txt")])  # the ground truth is unreduced
    _wait_for(ck, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 1  # the deadlock is found early; the search itself was cut
    partial = (tmp_path / "partial.txt").read_text(encoding="utf-8")
    assert "search BOUNDED by interrupted" in partial
    proc = _start(["check", str(spec), "--resume", str(ck), "--format", "json", "-o", str(out), "--quiet",
                   "--reduction", "none"])
    proc.communicate(timeout=300)
    rep = json.loads(out.read_text(encoding="utf-8"))
    # shared/benchmarks ground truth for phil_N12 (SPIN, Rumur): 531,440 states, 1 deadlock state
    assert (rep["stats"]["states"], rep["stats"]["transitions"], rep["stats"]["deadlock_states"]) == \
        (531440, 4251516, 1)
    assert rep["stats"]["complete"] is True and rep["result"] == "VIOLATED"
    dl = next(p for p in rep["properties"] if p["name"] == "deadlock")
    assert dl["status"] == "VIOLATED" and dl["trace"]["length"] == 12
