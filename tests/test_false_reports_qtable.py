"""An unassign (or an assign's filter) against zcrypt's bind of a queue (ap_model/world.py ``vfio_queue``).

The model had one field per queue, ``ap_queue[a.q].driver``, for two pieces of kernel memory: the driver
core's ``dev->driver`` (written by really_probe / __device_release_driver under the device lock, read by the
AP bus) and vfio_ap's own record of the queue (the ``struct vfio_ap_queue`` vfio_ap_mdev_probe_queue links
into the mdev's qtable and vfio_ap_mdev_remove_queue frees). vfio_ap's unassign and filter read only the
record (vfio_ap_mdev_get_queue over the qtable), zcrypt's bind writes only ``dev->driver``. With one field,
an unassign_domain_store poised while the AP bus reprobe bound 03.0005 to zcrypt was reported as
``data-race VIOLATED: admin (unassign_domain_store) reads ap_queue[03.0005].driver while host
(ap_device_probe) writes it`` (17 steps; also on specs/parametric-mainline-masks.yaml), and an assign of
adapter 4 as reading 03.0005's driver. Each test here failed before the record was a field of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from ap_model.world import DRIVERS
from checker.search.races import RaceChecker
from tests.test_false_reports import explore, field, run, status
from tests.test_false_reports_reprobe import VERDICTS as REPROBE_VERDICTS

SPEC = """
name: qtable-vs-zcrypt-bind
design: "{design}"
constants: {{vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}}
threads:
  - {{name: admin, run: [{{unassign_adapter: {{mdev: 0, apid: 3}}}}, {second}]}}
  - {{name: host, run: [{{apmask_store: {{reserve: [3]}}}}]}}
"""
# after the unassign of adapter 3, the host reserves it: in_use finds it unassigned, the reprobe moves
# 03.0005 from vfio_ap to zcrypt while the admin thread runs its second store on mdev0
UNASSIGN_DOMAIN = "{unassign_domain: {mdev: 0, apqi: 5}}"
ASSIGN_ADAPTER = "{assign_adapter: {mdev: 0, apid: 4}}"

# the verdicts of test_false_reports_reprobe's scenario but for its two differences: that scenario's race is
# the kernel's (__ap_revise_reserved reads dev->driver unlocked), and here a queue does move to zcrypt
VERDICTS = REPROBE_VERDICTS | {"data-race": "HOLDS", "queue-to-zcrypt": "WITNESSED"}
# partial-order reduced (states, transitions); the same before the fix: the record is a function of the driver
COUNTS = {UNASSIGN_DOMAIN: (90, 123), ASSIGN_ADAPTER: (87, 107)}


@pytest.mark.parametrize("design", ["mainline", "6.2"])
@pytest.mark.parametrize("second", [UNASSIGN_DOMAIN, ASSIGN_ADAPTER], ids=["unassign_domain", "assign_adapter"])
def test_vfio_ap_store_does_not_race_zcrypt_bind(design: str, second: str, tmp_path: Path) -> None:
    res, _ = run(tmp_path, SPEC.format(design=design, second=second))
    assert status(res) == VERDICTS
    assert (res.stats.states, res.stats.transitions) == COUNTS[second]


def test_v18_unassign_does_not_race_zcrypt_bind(tmp_path: Path) -> None:
    """v18 runs the same queue callbacks: no race either (its assign has a deadlock of its own)."""
    res, _ = run(tmp_path, SPEC.format(design="v18", second=UNASSIGN_DOMAIN))
    assert status(res) == VERDICTS
    assert (res.stats.states, res.stats.transitions) == COUNTS[UNASSIGN_DOMAIN]


def test_footprints_name_the_memory_each_side_touches(tmp_path: Path) -> None:
    """dev->driver of 03.0005 is touched by the host thread alone (the AP bus reprobe and the driver core),
    so it is not a shared field; vfio_ap's record is shared: the unassigns read it, vfio_ap's remove and probe
    write it, zcrypt's bind (the step traces name ap_device_probe) does not touch it."""
    _, program = run(tmp_path, SPEC.format(design="mainline", second=UNASSIGN_DOMAIN))
    races = RaceChecker(program)  # type: ignore[arg-type]
    drv, rec = "ap_queue[03.0005].driver", "ap_queue[03.0005].vfio_ap_queue"
    assert drv not in {f.name for f in races.checked} and rec in {f.name for f in races.checked}
    acts = program.actions  # type: ignore[attr-defined]
    names = [t.name for t in program.threads]  # type: ignore[attr-defined]
    touch: dict[tuple[str, str], str] = {}
    for a in acts:
        for kind, sets in (("R", races.reads), ("W", races.writes)):
            if any(f.name == rec for f in sets[a.aid]):
                key = (names[a.thread], a.function)
                touch[key] = "".join(sorted(set(touch.get(key, "") + kind)))
    assert touch == {("admin", "unassign_adapter_store"): "R", ("admin", "unassign_domain_store"): "R",
                     ("host", "vfio_ap_mdev_remove_queue"): "RW", ("host", "vfio_ap_mdev_probe_queue"): "W"}


def test_record_exists_exactly_while_bound_to_vfio_ap(tmp_path: Path) -> None:
    """Every reachable state of the unreduced program: vfio_ap_queue == (driver == vfio_ap), and the run
    reaches all three drivers of 03.0005 (so the equality is not vacuous)."""
    _, program = run(tmp_path, SPEC.format(design="mainline", second=UNASSIGN_DOMAIN))
    drv, rec = "ap_queue[03.0005].driver", "ap_queue[03.0005].vfio_ap_queue"
    seen = {(DRIVERS[field(program, drv, s)], field(program, rec, s)) for s in explore(program)}
    assert seen == {("vfio_ap", 1), ("none", 0), ("zcrypt", 0)}
