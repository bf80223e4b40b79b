"""Two AP bus scans of one adapter (ap_model/kernel/ap_bus.py, host configuration changes).

final-config's threads with a second `bus` thread taking adapter 4 out of the host configuration and back.
Before, the two scans ran concurrently and each assumed its change happened: the second adapter_standby(4)
ran the whole removal again (vfio_ap_on_cfg_changed, device_unregister) while the first thread's
adapter_online(4) was past its addition, so lemma-cfg-add-configured ("the adapter stays configured") was
VIOLATED in the explicit search: a state the kernel never reaches. The kernel runs one scan at a time
(ap_scan_bus from the work item ap_scan_work up to v6.8, under ap_scan_bus_mutex since v6.9), and a scan acts
only on what changed since the bus's previous copy of QCI (ap_get_configuration; ap_scan_adapter finds the card
device as QCI has it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.prove.parametric.instance import check_instance
from checker.search.progmodel import ProgramModel
from checker.search.run import replay_trace
from checker.spec.registry import default_registry
from tests.test_false_reports import explore, run, status
from tests.test_false_reports_reprobe import VERDICTS as REPROBE_VERDICTS

SPEC = """
name: two-scans
design: "{design}"
constants:
  vms: 1
  mdevs: 1
  domains: [5]
  matrix: ["mdev0: 3,4 x 5"]
  attached: ["mdev0 -> kvm0"]
threads:
  - name: vcpu0
    run: [{{kvm_run: {{vm: 0}}}}]
  - name: bus
    run: [{{adapter_standby: {{apid: 4}}}}, {{adapter_online: {{apid: 4}}}}]
  - name: bus2
    run: [{{adapter_standby: {{apid: 4}}}}, {{adapter_online: {{apid: 4}}}}]
  - name: admin
    run: [{{unassign_adapter: {{mdev: 0, apid: 4}}}}, {{assign_adapter: {{mdev: 0, apid: 4}}}}]
"""

# every property HOLDS (the reprobe test's verdicts, whose data race is the reprobe's), and the scenario's witnesses
VERDICTS = {k: v for k, v in REPROBE_VERDICTS.items() if k != "queue-to-zcrypt"} | {
    "data-race": "HOLDS", "config-removed-under-guest": "WITNESSED"}
# partial-order reduced; an unassign's reset between a scan's fetch of QCI (adapter 4 gone from the machine) and
# vfio_ap_on_cfg_changed is a ZAPQ with rc 01: queue 04.0005 keeps kvm0's data there (tests/test_false_reports_hwcfg.py)
COUNTS = {"mainline": (7476, 11885), "6.8": (7476, 11885)}


@pytest.mark.parametrize("design", ["mainline", "6.8"])
def test_two_scans_of_one_adapter_hold_every_lemma(design: str, tmp_path: Path) -> None:
    res, _ = run(tmp_path, SPEC.format(design=design))
    assert status(res) == VERDICTS
    assert (res.stats.states, res.stats.transitions) == COUNTS[design]


def test_every_end_has_adapter_4_configured_and_bound(tmp_path: Path) -> None:
    """Both bus threads end with adapter_online(4): whatever the order of the four scans, matrix_dev->info has
    adapter 4, its queue is bound to vfio_ap and in kvm0's CRYCB with the guest's data, and the bus's copy of QCI
    agrees with matrix_dev->info. Before, a second adapter_online(4) of a configured adapter ran
    vfio_ap_on_cfg_changed again, whose "a card entering the configuration comes up zeroized" cleared the data
    of the queue the guest was using: a second end with the data clean."""
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    lay = program.layout  # type: ignore[attr-defined]
    done = ProgramModel(program).is_done  # type: ignore[arg-type]
    names = ["matrix_dev->info.apm", "ap_queue[04.0005].driver", "ap_queue[04.0005].data", "kvm0.crycb.apm"]
    final = [s for s in explore(program) if done(s)]
    ends = {tuple(lay[n].show(lay[n].get(s)) for n in names) for s in final}
    assert ends == {("{3,4}", "vfio_ap", "kvm0", "{3,4}")}
    assert {lay["ap_qci_info.apm"].get(s) == lay["matrix_dev->info.apm"].get(s) for s in final} == {True}


def shown(program: object) -> list[tuple[str, str]]:
    """(function, what the trace shows: the branch taken) of every step of a one-thread scenario's only run."""
    model = ProgramModel(program)  # type: ignore[arg-type]
    s, aids = model.init_states()[0], []
    while not model.is_done(s):
        (aid, s), = model.successors(s)
        aids.append(aid)
    return [(st.function, st.action) for st in replay_trace(program, aids).steps]  # type: ignore[arg-type]


@pytest.mark.parametrize("design,lock,unlock", [
    ("mainline", "mutex_lock(&ap_scan_bus_mutex)", "mutex_unlock(&ap_scan_bus_mutex)"),
    ("6.8", "process_one_work(ap_scan_work): one scan at a time", "the work item returns")])
def test_a_scan_that_finds_nothing_changed_does_nothing(design: str, lock: str, unlock: str, tmp_path: Path) -> None:
    """adapter_standby(4) twice: the second scan fetches QCI, finds it as the bus last saw it, notifies no
    driver and unregisters nothing; the trace says so."""
    spec = SPEC.format(design=design).split("threads:")[0] + (
        "threads:\n  - name: bus\n    run: [{adapter_standby: {apid: 4}}, {adapter_standby: {apid: 4}}]\n")
    _, program = run(tmp_path, spec)
    steps = shown(program)
    assert steps[:3] == [("ap_scan_bus", lock),
                         ("ap_scan_bus", "ap_get_configuration: adapter 04 left QCI: config changed"),
                         ("vfio_ap_on_cfg_changed", "mutex_lock(matrix_dev->guests_lock)")]
    assert steps[-4:] == [
        ("ap_scan_bus", f"scan done; {unlock}"), ("ap_scan_bus", lock),
        ("ap_scan_bus", "ap_get_configuration: QCI unchanged; ap_scan_adapter: adapter 04 unchanged (not in QCI, "
                        "no card device): nothing to do"),
        ("ap_scan_bus", f"scan done; {unlock}")]
    assert len(steps) == 16  # the first scan's 13 steps (one mdev, one queue), the second's 3


def test_scan_lock_only_where_the_scenario_changes_the_configuration(tmp_path: Path) -> None:
    """A scenario with no host configuration change keeps its state vector: no scan lock, no copy of QCI."""
    spec = SPEC.format(design="mainline").split("  - name: bus\n")[0]
    _, program = run(tmp_path, spec)
    names = list(program.layout._by_name)  # type: ignore[attr-defined]
    assert not [n for n in names if "ap_scan" in n or "ap_qci_info" in n]
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    names = list(program.layout._by_name)  # type: ignore[attr-defined]
    assert [n for n in names if "ap_scan" in n or "ap_qci_info" in n] == ["ap_qci_info.apm",
                                                                         "ap_scan_bus_mutex.owner"]


def test_lifted_relation_agrees_with_two_copies_of_each_scan() -> None:
    """The relation ``prove --parametric`` lifts, instantiated at two copies each of adapter_standby(4) and
    adapter_online(4), agrees exactly with the explicit successor function on every reachable state: the
    scan's serialisation and the bus's copy of QCI are lifted as the explicit engine runs them."""
    design = default_registry().get("mainline")
    constants = {"vms": 1, "mdevs": 1, "adapters": [4], "domains": [5], "matrix": ["mdev0: 4 x 5"],
                 "attached": ["mdev0 -> kvm0"]}
    scenario = design.universal_scenario(constants, ("adapter_standby", "adapter_online"))
    rep = check_instance(design, scenario, design.build(scenario), [2, 2], 10_000, 0)
    assert (rep.states, rep.transitions) == (435, 454)


@pytest.mark.slow  # 9 operation instances: about 10 seconds
def test_final_config_proves_for_any_number_of_scans(capsys: pytest.CaptureFixture[str]) -> None:
    """``prove --parametric specs/final-config.yaml``: any number of threads changing the host configuration,
    assigning, unassigning and running the guest. Every always property and auto:lock-ownership PROVED (before:
    every goal CTI through lemma-cfg-add-configured, broken by a second adapter_standby thread)."""
    rc = main(["prove", "--parametric", "specs/final-config.yaml", "--crosscheck-states", "5", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    rows = {r["property"]: r for r in out["prove"]}
    assert rc == 0
    assert len(rows) == 25 and {r["status"] for r in rows.values()} == {"PROVED"}  # + the parametric lemmas
    assert "(9 operation instances;" in rows["lemma-cfg-add-configured"]["scope"]
    assert rows["crycb-within-bounds"]["detail"].endswith("jointly with every goal and lemma")
