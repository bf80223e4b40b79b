"""Two apmask_store releases of one adapter against an assign_adapter (ap_model/kernel/ap_bus.py).

Both stores read in __ap_revise_reserved that 03.0005 is not reserved and bound to zcrypt. Before, the model
fixed at that read which driver is removed and which probes, so the second store ran zcrypt's
ap_queue_remove on a queue the first had rebound to vfio_ap and the assign had plugged into the guest:
crycb-within-bounds VIOLATED (23 steps) on every dynamic design. The kernel cannot take that path:
device_reprobe detaches the driver bound when it runs (under the device lock: here vfio_ap's remove, which
unplugs the queue) and ap_device_probe reads devres again before a driver binds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ap_model.config import parse_cfg, queues_reached_twice
from ap_model.world import DRIVERS, E
from checker.search.progmodel import ProgramModel
from tests.test_false_reports import explore, run, status

SPEC = """
name: reprobe-release-race
design: "{design}"
constants:
  vms: 1
  mdevs: 1
  adapters: [3, 4]
  domains: [5]
  matrix: ["mdev0: 4 x 5"]
  attached: ["mdev0 -> kvm0"]
  apmask: [3]
threads:
  - {{name: admin1, run: [{{apmask_store: {{release: [3]}}}}]}}
  - {{name: admin2, run: [{{apmask_store: {{release: [3]}}}}]}}
  - {{name: admin3, run: [{{assign_adapter: {{mdev: 0, apid: 3}}}}]}}
"""

LEMMAS = ["lemma-mdev-state", "lemma-hook-target", "lemma-guest-is-shadow", "lemma-shadow-within-bounds",
          "lemma-assigned-not-reserved", "lemma-binding-steps", "lemma-cfg-remove-unplugged",
          "lemma-cfg-add-configured", "lemma-queue-data", "lemma-frame"]
# data-race: __ap_revise_reserved reads dev->driver without the device lock while the other store's reprobe
# rebinds the queue (ap_bus.c), a race of the kernel's; the release-only stores call no in_use, so no
# mdev matrix is read under ap_perms_mutex alone (lock-discipline HOLDS)
VERDICTS = {"deadlock": "HOLDS", "lock-order": "HOLDS", "memory-safety": "HOLDS", "data-race": "VIOLATED",
            "lock-discipline": "HOLDS", "no-host-guest-sharing": "HOLDS", "no-two-guests": "HOLDS",
            "no-double-assignment": "HOLDS", "crycb-within-bounds": "HOLDS", "reset-before-owner-change": "HOLDS",
            "hook-safe": "HOLDS", "one-mdev-per-kvm": "HOLDS", "guest-apcb-changed": "WITNESSED",
            "queue-to-zcrypt": "NOT_WITNESSED"} | {name: "HOLDS" for name in LEMMAS}


COUNTS = {"mainline": (1070, 1765), "6.2": (1070, 1765), "v18": (1197, 2158)}


@pytest.mark.parametrize("design", ["mainline", "6.2", "v18"])
def test_two_releases_and_an_assign_keep_the_guest_within_bounds(design: str, tmp_path: Path) -> None:
    res, _ = run(tmp_path, SPEC.format(design=design))
    assert status(res) == VERDICTS
    assert (res.stats.states, res.stats.transitions) == COUNTS[design]  # partial-order reduced


@pytest.mark.parametrize("design", ["v17", "v16"])
def test_older_designs_same_reprobe(design: str, tmp_path: Path) -> None:
    """v17 and v16 run the same reprobe: the guest stays within bounds. (Their other reports are their own,
    e.g. v17's get_update_locks_by_apqn against an assign, ap_perms.apm read by assign_adapter_store.)"""
    res, _ = run(tmp_path, SPEC.format(design=design))
    assert status(res)["crycb-within-bounds"] == "HOLDS"


def _reach(program: object) -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    """Every end state as (driver of 03.0005, its data owner, guest CRYCB apm, admin1/2/3 returns), and the
    (thread, kernel function) of every transition."""
    lay, threads, actions = program.layout, program.threads, program.actions  # type: ignore[attr-defined]
    names = ["ap_queue[03.0005].driver", "ap_queue[03.0005].data", "kvm0.crycb.apm", "admin1.ret", "admin2.ret",
             "admin3.ret"]
    errno = {v: k for k, v in E.items()}
    graph = explore(program)
    done = ProgramModel(program).is_done  # type: ignore[arg-type]
    ends = set()
    for s in filter(done, graph):
        drv, data, apm, *rets = (int(lay[n].get(s)) for n in names)
        ends.add((DRIVERS[drv], ("clean", "host", "kvm0")[data], bin(apm), *(errno[r] for r in rets)))
    return ends, {(threads[actions[a].thread].name, actions[a].function) for succ in graph.values() for a, _ in succ}


def test_every_end_has_the_queue_on_vfio_ap_and_both_stores_succeed(tmp_path: Path) -> None:
    """The assign fails (-EADDRNOTAVAIL) while 03.0005 is still reserved, else the guest gets adapter 3 with
    the queue reset before it (data clean after zcrypt, then the guest's). Before: a third end, the queue
    in the guest with the data zcrypt's remove reset under it."""
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    ends, fired = _reach(program)
    assert ends == {("vfio_ap", "clean", "0b10", "0", "0", "EADDRNOTAVAIL"),
                    ("vfio_ap", "kvm0", "0b11", "0", "0", "0")}
    # zcrypt's remove runs only on a queue bound to zcrypt; a late reprobe detaches vfio_ap (its remove
    # unplugs the queue from the guest) and probes again
    assert {("admin1", "ap_queue_remove"), ("admin2", "ap_queue_remove"),
            ("admin1", "vfio_ap_mdev_remove_queue"), ("admin2", "vfio_ap_mdev_remove_queue"),
            ("admin1", "device_driver_detach"), ("admin1", "bus_rescan_devices_helper")} <= fired


def test_no_driver_binds_a_queue_device_deleted_under_the_reprobe(tmp_path: Path) -> None:
    """A release of adapter 3 against its leaving the configuration: once device_unregister has deleted
    03.0005 (kill_device: dev->p->dead), the reprobe's device_attach probes nothing. Before, an end had
    vfio_ap bound to the deleted queue."""
    spec = SPEC.format(design="mainline").replace("  - {name: admin2, run: [{apmask_store: {release: [3]}}]}\n", "")
    _, program = run(tmp_path, spec.replace("{assign_adapter: {mdev: 0, apid: 3}}", "{adapter_standby: {apid: 3}}"))
    lay = program.layout  # type: ignore[attr-defined]
    done = ProgramModel(program).is_done  # type: ignore[arg-type]
    ends = {(DRIVERS[int(lay["ap_queue[03.0005].driver"].get(s))], int(lay["ap_queue[03.0005]->device.dead"].get(s)))
            for s in filter(done, explore(program))}
    assert ends == {("none", 1)}


def test_device_lock_only_where_two_threads_reach_the_queue(tmp_path: Path) -> None:
    """The state vector of a scenario with one thread on the AP bus side is unchanged: no device lock."""
    _, program = run(tmp_path, SPEC.format(design="mainline").replace(
        "  - {name: admin2, run: [{apmask_store: {release: [3]}}]}\n", ""))
    assert not [n for n in program.layout._by_name if "device.mutex" in n]  # type: ignore[attr-defined]
    _, program = run(tmp_path, SPEC.format(design="mainline"))
    assert [n for n in program.layout._by_name if "device.mutex" in n] == [  # type: ignore[attr-defined]
        "ap_queue[03.0005]->device.mutex.owner"]


def test_queues_reached_twice() -> None:
    cfg = parse_cfg({"adapters": [3, 4], "domains": [5, 6]})
    store = ("apmask_store", {"reserve": [3]})
    unbind = ("unbind_queue", {"apid": 3, "apqi": 6})
    aq = ("aqmask_store", {"release": [5]})
    scan = ("adapter_standby", {"apid": 4})
    assert queues_reached_twice(cfg, [[store], [unbind]]) == {(0, 1)}
    assert queues_reached_twice(cfg, [[store, unbind]]) == set()  # one thread: its steps never overlap
    assert queues_reached_twice(cfg, [[store], [aq], [scan]]) == {(0, 0), (1, 0)}
    assert queues_reached_twice(cfg, [[store], [("assign_adapter", {"mdev": 0, "apid": 3})]]) == set()
    assert queues_reached_twice(cfg, [[("apmask_store", {"reserve": [9, "x"]})], [unbind]]) == set()


def test_v17_probe_releases_the_kvm_lock_of_the_mdev_it_looked_up(tmp_path: Path) -> None:
    """v17's guests_lock is an rwsem both the queue probe and an assign hold for reading: the assign can
    give the APQN to an attached mdev between the probe's lookup (get_update_locks_by_apqn: no mdev, no
    kvm->lock) and its mdevs lock. The probe releases the locks of the mdev it looked up (the C local it
    returned); the model looked it up again at the release: "bad unlock balance: mutex_unlock(kvm0->lock)"."""
    spec = SPEC.format(design="v17").replace("  - {name: admin2, run: [{apmask_store: {release: [3]}}]}\n", "")
    res, _ = run(tmp_path, spec)
    assert (res.stats.states, res.stats.transitions) == (51, 60)
    assert status(res)["lock-order"] == "HOLDS"
    assert status(res)["crycb-within-bounds"] == "HOLDS"
