"""All of a spec's errors at once, including those only the design sees while building (issue 10, point 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.lang.design import ScenarioError, ScenarioErrorCollector, ScenarioErrors

BAD = """\
design: v15
constants:
  adapters: [3, 4]
  domains: [5]
threads:
  - name: a
    run:
      - assign_adapter: {apid: 7}
      - kvm_run: {vm: 2}
  - name: b
    run: [assign_domain: {apqi: 9}, kvm_run: {vcpu: 1}]
"""


def test_every_build_error_reported_with_its_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD, encoding="utf-8")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{spec}:8:32: error: threads[0].run[0].apid: adapter 7 is not modelled (constants: [3, 4])",
        f"{spec}:9:23: error: threads[0].run[1].vm: VM 2 outside 0..0 (constants.vms)",
        f"{spec}:11:33: error: threads[1].run[0].apqi: domain 9 is not modelled (constants: [5])",
        f"{spec}:11:53: error: threads[1].run[1].vcpu: vCPU 1 outside 0..0 (constants.vcpus)",
    ]


def test_constant_and_call_errors_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("""\
design: v15
constants:
  adapters: [3, 4]
  domains: [5]
  matrix: ["mdev0: 7 x 5", "mdev0: 3 x 9"]
  attached: ["mdev0 -> kvm3"]
  apmask: [3, 8]
threads:
  - name: a
    run: [{assign_adapter: {apid: 7}}]
""", encoding="utf-8")
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:5:12: error: constants.matrix[0]: adapter 7 is not modelled (constants list [3, 4])",
        f"{spec}:5:28: error: constants.matrix[1]: domain 9 is not modelled (constants list [5])",
        f"{spec}:6:14: error: constants.attached[0]: expected 'mdevN -> kvmV': unknown VM 'kvm3' (kvm0..kvm0)",
        f"{spec}:7:15: error: constants.apmask[1]: adapter 8 is not modelled (constants list [3, 4])",
        f"{spec}:10:35: error: threads[0].run[0].apid: adapter 7 is not modelled (constants: [3, 4])",
    ]


def test_collector_raises_all_in_order_and_nothing_when_clean() -> None:
    errors = ScenarioErrorCollector()
    for k in range(3):
        with errors.collect():
            if k != 1:
                raise ScenarioError(f"threads.{k}", f"bad {k}")
    with pytest.raises(ScenarioErrors) as info:
        errors.raise_if_any()
    assert [(e.key, e.message) for e in info.value.errors] == [("threads.0", "bad 0"), ("threads.2", "bad 2")]
    assert (info.value.key, info.value.message) == ("threads.0", "bad 0")
    ScenarioErrorCollector().raise_if_any()  # no error, no exception
