"""``apcheck prove --parametric --all-sizes``: the goals for any number of guests (checker/cli/allsizes_cli.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import z3

from checker.cli.cli import main
from checker.lang.expr import Expr
from checker.prove.parametric.instance import InstanceMismatch
from checker.prove.parametric.lift import PState
from checker.prove.parametric.poolinstance import check_pool_instance
from checker.prove.parametric.poolread import PoolReading
from checker.prove.parametric.poolsizes import Sized, check_pool_size
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec


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


def test_the_scans_are_not_yet_liftable_and_say_which_step(capsys: pytest.CaptureFixture[str]) -> None:
    """The host configuration scans visit the mdevs one critical section after the other, a loop in the control
    flow (docs/prove.md, "all sizes"): every row is UNKNOWN and names the step, exit 3."""
    rc = main(["prove", "--parametric", "--all-sizes", "tests/data/parametric-stores-scans.yaml", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3
    assert {r["status"] for r in out["prove"]} == {"UNKNOWN"}
    assert {r["detail"] for r in out["prove"]} == {
        "not liftable over any number of guests: vfio_ap_on_cfg_changed: mdev0: if (matrix_mdev->kvm) "
        "mutex_lock(&matrix_mdev->kvm->lock): writes kvm0->lock.owner, a member's part beyond its own, outside a loop"}
    assert out["all_sizes"]["pool"] == "guest"


@pytest.mark.slow
@pytest.mark.long  # about 90 seconds
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
    assert "; at 4 guests it agrees exactly with the program the design builds there on 60 breadth-first and 20 " \
           "sampled reachable states" in out["crosscheck"]


def _sized(spec: str, guests: int) -> tuple[Sized, list[int]]:
    """The universal scenario of ``spec``'s operations at ``guests`` guests (sized_constants), as built, and its
    once-only threads."""
    loaded = load_spec(spec, default_registry())
    d: Any = loaded.design
    constants, sized_ops, _ = d.sized_constants(guests, 2, 1)
    ops = tuple(dict.fromkeys([c.name for t in loaded.scenario.threads for c in t.run] + list(sized_ops)))
    scenario = d.universal_scenario(constants, ops)
    once = [i for i, t in enumerate(scenario.threads) if any(c.name in d.universal_once() for c in t.run)]
    return Sized(d.build(scenario), d.instance_owners(scenario), d.instance_orbits(scenario)), once


@pytest.mark.slow
@pytest.mark.long  # about 30 seconds
def test_the_unbind_lifting_agrees_with_the_programs_built_at_three_and_four_guests(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue unbind's walk of mdev_list, read as a find-first: the lifting of the three-guest program is that
    program at three guests and the program the design builds at four, on their first reachable states (each
    step's successors and failing checks); a walk read as stopping at the wrong mdev is caught."""
    built, once = _sized("tests/data/allsizes-unbind.yaml", 3)
    other, _ = _sized("tests/data/allsizes-unbind.yaml", 4)
    # the walk finds the last guest's mdev: it was assigned the queue 04.0005, then that queue is unbound
    path = ["assign_adapter.mdev2.apid4", "assign_domain.mdev2.apqi5", "unbind_queue.apid4.apqi5"]
    assert check_pool_instance(built.program, "guest", built.owners, 20, 6, path).text() == (
        "on 20 breadth-first and 6 sampled reachable states and 15 along a path (558 transitions)")
    path4 = [name.replace("mdev2", "mdev3") for name in path]
    assert check_pool_size(built, other, "guest", once, 20, 6, path4).text() == (
        "on 20 breadth-first and 6 sampled reachable states and 15 along a path (734 transitions)")

    def always_the_first(self: PoolReading, passes: Callable[[z3.ExprRef], z3.BoolRef], s: PState,
                         test: Expr) -> z3.ExprRef:
        return z3.IntVal(0)
    monkeypatch.setattr(PoolReading, "_chosen_member", always_the_first)
    with pytest.raises(InstanceMismatch, match="unbind_queue"):
        check_pool_instance(built.program, "guest", built.owners, 0, 0, path)
