"""benchmarks/prove_run.py, the prover's benchmark runner: its usage errors and what it reads from a report
(the runs themselves are minutes long and measured, never asserted, in benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prove_run", "benchmarks/prove_run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_an_unknown_run_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _runner().main(["--runs", "allsizes-mainline,nope"])
    assert e.value.code == 2
    assert "unknown run(s): nope (known: allsizes-mainline, allsizes-unbind-fds, parametric-mainline, " \
           "parametric-mainline-masks)" in capsys.readouterr().err


def test_checks_are_read_from_a_row_detail() -> None:
    checks_in = _runner().checks_in
    assert checks_in("inductive for every number of guests and threads (2992 consecution checks, 896 of them "
                     "refuted in an earlier attempt), jointly with every goal and lemma") == (2992, 896)
    assert checks_in("inductive for every number of guests and threads (1230 consecution checks) [...]") == (1230, 0)
    assert checks_in("solver unknown on auto:lock-ownership after ...") == (0, 0)
