"""Shared fixtures: a tiny fake design (no ap_model) and a registry holding it."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from checker.lang.design import OperationSig, Param, Scenario, ScenarioError
from checker.lang.expr import BOOL, Const
from checker.lang.program import Program, ProgramBuilder
from checker.spec.registry import Registry


class FakeDesign:
    """Each operation locks and unlocks one mutex; enough for validate and the spec loader."""

    name = "fake"
    summary = "a fake design for tests"
    constants: ClassVar[dict[str, Param]] = {
        "adapters": Param("ints", "usable adapter ids", default=[3]),
        "domains": Param("int", "number of domains", required=True),
        "mode": Param("one of: fast|slow", default="fast"),
        "names": Param("strs", default=[]),
        "program": Param("path", "an input file"),
        "strict": Param("bool", default=False),
    }
    operations: ClassVar[dict[str, OperationSig]] = {
        "handle_pqap": OperationSig("handle_pqap", "the PQAP hook"),
        "assign_adapter_store": OperationSig(
            "assign_adapter_store", "sysfs assign_adapter",
            {"mdev": Param("int", default=0), "apid": Param("int", required=True)},
        ),
    }

    def build(self, scenario: Scenario) -> Program:
        for i, t in enumerate(scenario.threads):
            for j, call in enumerate(t.run):
                apid = call.args.get("apid")
                if apid is not None and apid not in scenario.constants["adapters"]:
                    raise ScenarioError(f"threads.{i}.run.{j}.apid", f"adapter {apid} is not in constants.adapters")
        pb = ProgramBuilder(scenario.name)
        m = pb.mutex("matrix_dev->lock")
        for t in scenario.threads:
            tb = pb.thread(t.name, t.cyclic)
            for call in t.run:
                with tb.op(call.name):
                    tb.lock(m, call.name)
                    tb.unlock(m, call.name)
        pb.always("trivial", Const(True, BOOL), "always true")
        return pb.build()


class BrokenDesign(FakeDesign):
    """A design with a bug: build() crashes (the CLI must report an internal error)."""

    name = "broken"
    summary = "crashes in build"

    def build(self, scenario: Scenario) -> Program:
        raise RuntimeError("boom")


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register(FakeDesign, origin="tests")
    reg.register(BrokenDesign, origin="tests")
    return reg


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """write_spec(text, name="spec.yaml") -> path of a spec file in a temp dir."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return write


@pytest.fixture
def engine_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use checker.search.run if it exists; else a stub whose build_program is design.build (CLI tests
    of validate/designs must not wait for the search engine)."""
    if importlib.util.find_spec("checker.search.run") is not None:
        return
    stub = types.ModuleType("checker.search.run")
    stub.build_program = lambda design, scenario: design.build(scenario)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "checker.search.run", stub)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (a minute or more) first, the others in their usual order: with
    ``--dist worksteal`` (.ci/run's slow set) the first worker starts the longest at once while the
    other takes the rest, instead of a worker beginning a long proof near the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
