"""``apcheck prove --parametric --all-sizes``: the goals for any number of guests (checker/cli/allsizes_cli.py)."""

from __future__ import annotations

import json

import pytest

from checker.cli.cli import main


@pytest.mark.parametrize("args, message", [
    (["prove", "--all-sizes", "specs/parametric-mainline.yaml"], "--all-sizes goes with --parametric"),
    (["prove", "--parametric", "--all-sizes", "--sizes", "vms=1..2", "specs/parametric-mainline.yaml"],
     "--all-sizes proves for every size: no --sizes or --bmc"),
    (["prove", "--parametric", "--all-sizes", "--bmc", "3", "specs/parametric-mainline.yaml"],
     "--all-sizes proves for every size: no --sizes or --bmc"),
])
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_the_queue_unbind_path_is_not_yet_liftable_and_says_which_step(capsys: pytest.CaptureFixture[str]) -> None:
    """parametric-mainline unbinds a queue by hand: the AP bus's walk of mdev_list for the queue's mdev is a
    find-first over the guests (docs/prove.md, "all sizes"); every row is UNKNOWN and names the step, exit 3."""
    rc = main(["prove", "--parametric", "--all-sizes", "specs/parametric-mainline.yaml", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3
    assert {r["status"] for r in out["prove"]} == {"UNKNOWN"}
    assert {r["detail"] for r in out["prove"]} == {
        "not liftable over any number of guests: get_update_locks_for_queue: mutex_lock(kvm->lock): writes "
        "kvm0->lock.owner, a member's part beyond its own, outside a loop"}
    assert out["all_sizes"]["pool"] == "guest"


@pytest.mark.slow
@pytest.mark.long  # about 75 seconds
def test_mainline_goals_for_any_number_of_guests(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11's five goals (and every other always property but the sum over the mdevs) on mainline, for any
    number of guests and threads running KVM_RUN, APIE, PV and the adapter and domain stores on any guest."""
    rc = main(["prove", "--parametric", "--all-sizes", "specs/allsizes-mainline.yaml", "--timeout", "20",
               "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    rows = {r["property"]: r for r in out["prove"]}
    assert len(rows) == 23 and {r["status"] for r in rows.values()} == {"PROVED"}  # auto:lock-ownership too
    for goal in ("no-host-guest-sharing", "no-two-guests", "no-double-assignment", "crycb-within-bounds",
                 "hook-safe"):
        assert rows[goal]["detail"].startswith("inductive for every number of guests and threads")
    assert "lemma-kvm-refs" not in rows and "lemma-kvm-guest-refs" in rows
    assert out["all_sizes"] == {"pool": "guest", "built_with": 3, "scope": rows["hook-safe"]["scope"]}
    assert rows["hook-safe"]["scope"] == (
        "all sizes: any number of guests (a VM with its mdev attached, one vCPU each) and of threads, each running "
        "any sequence of the operations any number of times on any guest "
        "(operations kvm_run, pv_switch, assign_adapter, unassign_adapter, assign_domain, unassign_domain, set_apie; "
        "adapters [3, 4], domains [5], every queue bound to vfio_ap at start); runs up to the first failing check")
    assert out["crosscheck"].startswith("the lifting over the guests at 3 guests agrees exactly with the explicit "
                                        "successor function on 60 breadth-first and 20 sampled reachable states")
