"""``apcheck prove --parametric --sizes``: a grid of instance sizes, each proved for any number of threads
(checker.prove.parametric.sizes, the sized_constants/sized_coverage hooks of ap_model/universal.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from checker.cli.cli import main
from checker.prove.parametric.sizes import Grid, Size, SizeOutcome, SizesError, combine, parse_sizes
from checker.prove.prove_results import CTI, PROVED, VIOLATED, PropertyProof
from checker.spec.registry import default_registry

# specs/parametric-mainline.yaml's operations (catalogue order) and the assign/unassign ones --sizes adds
OPS = ("kvm_run, pv_switch, close_vm_fd, close_vcpu_fd, close_device, mdev_remove, assign_adapter, unassign_adapter, "
       "assign_domain, unassign_domain, unbind_queue, set_apie, assign_control_domain, unassign_control_domain")
FIVE = ["no-host-guest-sharing", "no-two-guests", "no-double-assignment", "crycb-within-bounds", "hook-safe"]
INSTANCES = ("at start: mdev i attached to kvm i, 1 vCPU per VM, every matrix empty; APIDs from 3, APQIs from 5, "
             "all configured, every queue bound to vfio_ap")
COVERED = ("every matrix reached from the empty ones (checked at each size: each assign, run alone, adds its "
           "APID/APQI to the mdev's matrix and its guest's CRYCB, each unassign takes it out)")


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    rc = main(["prove", "--parametric", *args, "--format", "json"])
    return rc, json.loads(capsys.readouterr().out)


def _scope(grid: str, ops: str, matrices: str = COVERED) -> str:
    return (f"all thread counts; every size with {grid}: any number of threads, each running any sequence of the "
            f"operations any number of times, an fd closed once, an mdev removed once "
            f"(operations {ops} on every instance of each size; "
            f"{INSTANCES}; {matrices}); runs up to the first failing check")


def test_parse_sizes_ranges_single_values_and_defaults() -> None:
    g = parse_sizes("vms=1..2, adapters=2,domains=1..3")
    assert g.ranges == ((1, 2), (2, 2), (1, 3))
    assert g.text() == "vms 1..2, adapters 2, domains 1..3 (6 sizes)"
    assert g.sizes()[:2] == [Size(1, 2, 1), Size(1, 2, 2)]
    assert parse_sizes("vms=2").text() == "vms 2, adapters 1, domains 1 (1 size)"
    assert Size(2, 1, 3).key() == "v2a1d3"


@pytest.mark.parametrize("text, message", [
    ("vms=1..2,adaptors=1", "unknown dimension 'adaptors' (did you mean 'adapters'?); known: vms, adapters, domains"),
    ("vms", "'vms': expected NAME=N or NAME=N..M (NAME one of vms, adapters, domains)"),
    ("vms=0..1", "'vms=0..1': a size counts instances, from 1"),
    ("domains=3..2", "'domains=3..2': empty range (3 > 2)"),
    ("vms=1,vms=2", "vms given twice"),
    ("", "empty: expected e.g. vms=1..2,adapters=1..2,domains=1..2"),
])
def test_parse_sizes_errors(text: str, message: str) -> None:
    with pytest.raises(SizesError) as e:
        parse_sizes(text)
    assert str(e.value) == message


def test_bad_sizes_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "specs/parametric-mainline.yaml"
    assert main(["prove", "--parametric", spec, "--sizes", "vms=1..x"]) == 2
    assert "Error: --sizes: 'vms=1..x': expected NAME=N or NAME=N..M" in capsys.readouterr().err
    assert main(["prove", "--parametric", spec, "--sizes", "vms=1..5"]) == 2  # checked before any proof
    assert ("Error: --sizes: size vms 5, adapters 1, domains 1: design mainline does not model it "
            "(constants.vms: vms must be 1..4)") in capsys.readouterr().err
    assert main(["prove", spec, "--sizes", "vms=1"]) == 2
    assert "Error: --sizes goes with --parametric" in capsys.readouterr().err
    assert main(["prove", "--parametric", spec, "--sizes", "vms=1", "--property", "no-such"]) == 2
    assert "unknown always property 'no-such'" in capsys.readouterr().err


def test_sized_constants_hook() -> None:
    d = default_registry().get("mainline")
    constants, ops, text = d.sized_constants(2, 3, 1)
    assert constants == {"vms": 2, "vcpus": 1, "mdevs": 2, "adapters": [3, 4, 5], "domains": [5], "matrix": [],
                         "attached": ["mdev0 -> kvm0", "mdev1 -> kvm1"], "apmask": []}
    assert ops == ("assign_adapter", "unassign_adapter", "assign_domain", "unassign_domain")
    assert text == INSTANCES


@pytest.mark.parametrize("design, ok", [("mainline", True), ("v16", True), ("5.15", False)])
def test_sized_coverage_tells_which_designs_assign_while_the_guest_runs(design: str, ok: bool) -> None:
    """Before the dynamic configuration, assign_adapter_store refuses (-EBUSY) while a guest uses the mdev:
    from the sized start (guests running, matrices empty) those designs reach no other matrix."""
    d = default_registry().get(design)
    constants, ops, _ = d.sized_constants(2, 2, 1)
    scenario = d.universal_scenario(constants, ("kvm_run", *ops))
    covered, text = d.sized_coverage(scenario, d.build(scenario))
    assert covered is ok
    assert text == COVERED if ok else text == (
        "NOT every matrix: the assign operations do not reach them (after the assign_adapter/assign_domain threads "
        "of mdev0, run alone, mdev0.matrix is apm 0x0 aqm 0x0, not apm 0x3 aqm 0x1)")


def test_mainline_small_grid_proves_the_five_goals_at_every_size(capsys: pytest.CaptureFixture[str]) -> None:
    args = [x for g in FIVE for x in ("--property", g)]
    rc, out = _run(["specs/parametric-mainline.yaml", "--sizes", "vms=1,adapters=1..2", *args,
                    "--crosscheck-states", "6"], capsys)
    assert rc == 0
    scope = _scope("vms 1, adapters 1..2, domains 1 (2 sizes)", OPS)
    assert [(r["property"], r["status"], r["scope"]) for r in out["prove"]] == [
        (g, PROVED, scope) for g in ["auto:lock-ownership", *FIVE]]
    assert out["prove"][1]["detail"] == "inductive for every number of threads at each of the 2 sizes"
    assert (out["spec"], out["design"], out["scope"]) == ("specs/parametric-mainline.yaml", "mainline", scope)
    assert out["grid"] == {"vms": [1, 1], "adapters": [1, 2], "domains": [1, 1], "count": 2,
                           "text": "vms 1, adapters 1..2, domains 1 (2 sizes)"}
    assert [(s["vms"], s["adapters"], s["domains"], s["operation_instances"]) for s in out["sizes"]] == [
        (1, 1, 1, 15), (1, 2, 1, 18)]
    for s in out["sizes"]:
        assert s["statuses"] == {g: PROVED for g in ["auto:lock-ownership", *FIVE]}
        assert (s["details"], s["counterexamples"], s["matrices"]) == ({}, {}, COVERED)
        assert s["crosscheck"].startswith("lifted relation at one thread per operation instance agrees exactly")
    assert out["crosscheck"].startswith("at 2 of the 2 sizes (those with a PROVED goal), the lifted relation")


def test_a_goal_failing_at_one_size_names_that_size(capsys: pytest.CaptureFixture[str]) -> None:
    """v16's hot plug at one VM: no-two-guests holds (one guest); at two VMs it is not inductive (the v16
    race of tests for v16-hotplug needs two guests): the grid's row says so and where."""
    rc, out = _run(["specs/v16-hotplug.yaml", "--sizes", "vms=1..2", "--property", "no-two-guests",
                    "--crosscheck-states", "4"], capsys)
    assert rc == 3
    rows = {r["property"]: r for r in out["prove"]}
    row = rows["no-two-guests"]
    assert (row["status"], row["scope"]) == (CTI, None)
    assert row["detail"].startswith("at size vms 2, adapters 1, domains 1: not inductive: a step of any copy of ")
    assert row["detail"].endswith("(PROVED at 1 of the 2 sizes)")
    assert [s["statuses"]["no-two-guests"] for s in out["sizes"]] == [PROVED, CTI]


def test_text_output_has_a_line_per_size(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["prove", "--parametric", "specs/parametric-hook-5.15.yaml", "--sizes", "vms=1",
               "--property", "no-two-guests", "--crosscheck-states", "4"])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.startswith("spec specs/parametric-hook-5.15.yaml --sizes vms=1  design v16-hook  prove\n")
    assert "NOT every matrix: the assign operations do not reach them" in " ".join(text.split())
    assert "no-two-guests PROVED 1 0" in " ".join(text.split())
    assert "inductive for every number of threads at the one size [scope: all thread counts; every size with vms 1, " \
        "adapters 1, domains 1 (1 size):" in " ".join(text.split())
    lines = text.splitlines()
    at = lines.index("sizes: vms 1, adapters 1, domains 1 (1 size)")
    # kvm_run, open_device, close_device, mdev_remove (its one mdev), the four sized assign/unassign
    assert lines[at + 1].startswith("  size vms 1, adapters 1, domains 1: 2/2 PROVED, 8 operation instances, ")


def _proof(name: str, status: str) -> PropertyProof:
    return PropertyProof(name, "always", status, f"{status.lower()} here", 1, 0, scope="s" if status == PROVED else "")


def test_combine_takes_the_worst_status_at_the_first_size_it_was_reached() -> None:
    sizes = [Size(1, 1, 1), Size(2, 1, 1), Size(3, 1, 1)]
    per_size = [[_proof("a", PROVED), _proof("b", PROVED)], [_proof("a", CTI), _proof("b", PROVED)],
                [_proof("a", VIOLATED), _proof("b", PROVED)]]
    out = combine(Grid(((1, 3), (1, 1), (1, 1))), [SizeOutcome(s, r, 1, 0.0) for s, r in zip(sizes, per_size)],
                  "the grid")
    assert [(r.property, r.status, r.scope) for r in out] == [("a", VIOLATED, ""), ("b", PROVED, "the grid")]
    assert out[0].detail == ("at size vms 3, adapters 1, domains 1: violated here (PROVED at 1 of the 3 sizes; "
                             "first not PROVED at size vms 2, adapters 1, domains 1)")


@pytest.mark.slow  # 106 s at load average 3.3-4.1 (44 operation instances at 2 x 2 x 2; docs/prove.md)
@pytest.mark.long
def test_mainline_grid_of_eight_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _run(["specs/parametric-mainline.yaml", "--sizes", "vms=1..2,adapters=1..2,domains=1..2"], capsys)
    assert rc == 0
    assert len(out["prove"]) == 24 and {r["status"] for r in out["prove"]} == {PROVED}
    assert {r["scope"] for r in out["prove"]} == {_scope(
        "vms 1..2, adapters 1..2, domains 1..2 (8 sizes)", OPS)}
    assert [s["operation_instances"] for s in out["sizes"]] == [15, 20, 18, 24, 29, 38, 34, 44]
