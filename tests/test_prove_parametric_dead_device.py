"""A queue device the AP bus scan deleted is probed no more (lemma-dead-device, ap_model/device_lemmas.py).

The kernel: ap_scan_bus's device_unregister -> device_del marks the queue device dead (kill_device, under its
device lock), and __device_attach (the reprobe after an apmask/aqmask write: __ap_revise_reserved ->
device_reprobe -> bus_rescan_devices_helper -> device_attach) tests dev->p->dead under the device lock and probes
nothing on it. The model has had that test since the device lock was modelled (ap_model/kernel/ap_bus.py
``attach``); what ``prove --parametric`` lacked was a lemma saying it: with mask stores and host configuration
changes together, every goal was a CTI through lemma-cfg-add-configured at a reprobe's vfio_ap_mdev_probe_queue
of a queue whose adapter had left the machine's configuration."""

from __future__ import annotations

import json

import pytest

from checker.cli.cli import main
from checker.lang.expr import Expr
from checker.lang.layout import Field
from checker.lang.program import Program
from checker.prove.parametric.pprove import Invariant, ParametricProver
from checker.search.pycompile import evaluate, state_values
from checker.spec.registry import default_registry
from tests.test_false_reports import explore

# queue 03.0005, bound to vfio_ap, assigned to no mdev (so it can be reserved): the host reserves and releases
# adapter 3 (two reprobes of 03.0005) while the AP bus sees it leave the configuration and come back
CONSTANTS = {"vms": 1, "mdevs": 1, "adapters": [3], "domains": [5], "attached": ["mdev0 -> kvm0"]}
OPS = ("apmask_store", "adapter_standby", "adapter_online")
LEMMAS = ["no-double-assignment", "no-two-guests", "lemma-mdev-state", "lemma-hook-target", "lemma-guest-is-shadow",
          "lemma-shadow-within-bounds", "lemma-assigned-not-reserved", "lemma-binding-steps",
          "lemma-cfg-remove-unplugged", "lemma-queue-data", "lemma-frame"]
DELETED = "device deleted (dev->p->dead): nothing to probe"


def _universal() -> Program:
    design = default_registry().get("mainline")
    return design.build(design.universal_scenario(CONSTANTS, OPS))


def test_a_reprobe_probes_no_deleted_device_and_the_lemma_holds() -> None:
    """One thread per operation instance (the size the cross-check compares): on every reachable state
    lemma-dead-device holds, a reprobe's device_attach of a dead device takes the kernel's dev->p->dead branch
    (and it happens), and no driver's probe runs on a dead device."""
    p = _universal()
    assert [t.name for t in p.threads] == ["apmask_store.reserve3", "apmask_store.release3",
                                           "adapter_standby.apid3", "adapter_online.apid3"]
    lemma = next(x.expr for x in p.properties if x.name == "lemma-dead-device")
    dead = p.layout["ap_queue[03.0005]->device.dead"]
    drv = p.layout["ap_queue[03.0005].driver"]
    probes = ("vfio_ap_mdev_probe_queue", "ap_device_probe")
    graph = explore(p)
    skipped = probed_dead = 0
    for s, succ in graph.items():
        values = state_values(p.layout.fields, s)
        assert evaluate(lemma, values)

        def holds(c: Expr, values: dict[Field, int] = values) -> bool:
            return bool(evaluate(c, values))

        for aid, _t in succ:
            a = p.actions[aid]
            if a.function == "bus_rescan_devices_helper" and DELETED in a.shown_text(holds):
                skipped += 1
            if a.function in probes and drv in a.updates and a.thread < 2 and dead.get(s):
                probed_dead += 1  # a reprobe's probe binding the queue on a dead device
    assert (len(graph), skipped, probed_dead) == (9936, 202, 0)


def test_stores_and_scans_prove_only_with_the_lemma() -> None:
    """lemma-cfg-add-configured for any number of store and scan threads: without lemma-dead-device a CTI at a
    reprobe's vfio_ap_mdev_probe_queue (the induction does not know the scan's device_unregister killed the
    device); with it, PROVED."""
    p = _universal()
    always = {x.name: x.expr for x in p.properties if x.kind == "always"}
    out = []
    for extra in ([], ["lemma-dead-device"]):
        rows = ParametricProver(p, 30.0).prove([Invariant("lemma-cfg-add-configured",
                                                          always["lemma-cfg-add-configured"])],
                                               [Invariant(n, always[n]) for n in LEMMAS + extra])
        out.append([(r.property, r.status, r.detail) for r in rows][1:])
    assert out[0] == [("lemma-cfg-add-configured", "CTI",
                       "not inductive: a step of any copy of apmask_store.reserve3: vfio_ap_mdev_probe_queue: alloc q; "
                       "link to mdev; unless a config add is pending: filter + update_guest_apcb; unlock breaks it")]
    assert out[1] == [("lemma-cfg-add-configured", "PROVED",
                       "inductive for every number of threads (444 consecution checks)")]


def test_a_queue_the_bus_never_registered_is_no_live_device() -> None:
    """Adapter 3 out of the machine's configuration at start: the bus has registered no queue device for 03.0005,
    so its dead flag starts set (nothing to probe: __driver_probe_device also refuses a device not registered)
    until adapter_online's device_register. Before, it started clear: a live device of an adapter out of the
    configuration with no scan deleting it, which lemma-dead-device says never exists."""
    design = default_registry().get("mainline")
    p = design.build(design.universal_scenario({**CONSTANTS, "config_apm": []}, OPS))
    dead = p.layout["ap_queue[03.0005]->device.dead"]
    assert dead.init == 1
    lemma = next(x.expr for x in p.properties if x.name == "lemma-dead-device")
    graph = explore(p)
    assert all(evaluate(lemma, state_values(p.layout.fields, s)) for s in graph)
    assert (len(graph), sum(1 for s in graph if not dead.get(s))) == (9519, 7535)


def _prove_all(spec: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict[str, str]]:
    """``prove --parametric SPEC``: exit 0, auto:lock-ownership and every always property PROVED, jointly."""
    rc = main(["prove", "--parametric", spec, "--crosscheck-states", "5", *extra, "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    rows = {r["property"]: r for r in out["prove"]}
    assert rc == 0
    assert len(rows) == 25 and {r["status"] for r in rows.values()} == {"PROVED"}
    assert rows["lemma-dead-device"]["detail"].endswith("jointly with every goal and lemma")
    return rows


@pytest.mark.slow  # 9 operation instances: about 25 seconds
def test_stores_and_scans_prove_for_any_number_of_threads(capsys: pytest.CaptureFixture[str]) -> None:
    """apmask stores (reserve and release adapter 3: reprobes), adapter 3 leaving the machine's configuration and
    coming back, and KVM_RUN, any number of each: every always property and auto:lock-ownership PROVED (before
    lemma-dead-device: every goal CTI through lemma-cfg-add-configured)."""
    rows = _prove_all("tests/data/parametric-stores-scans.yaml", capsys)
    assert "(9 operation instances; adapters [3, 4], domains [5], vms 1, vcpus 1, mdevs 1)" in \
        rows["no-host-guest-sharing"]["scope"]


@pytest.mark.slow
@pytest.mark.long  # about 2.5 minutes: started first in CI's slow set
def test_masks_spec_with_scans_proves_for_any_number_of_threads(capsys: pytest.CaptureFixture[str]) -> None:
    """specs/parametric-mainline-masks.yaml with adapter_standby(3), adapter_online(3) added (44 operation
    instances): every always property and auto:lock-ownership PROVED (docs/prove.md, "Host configuration
    changes")."""
    rows = _prove_all("tests/data/parametric-mainline-masks-config.yaml", capsys)
    assert "(44 operation instances; adapters [3, 4], domains [5], vms 2, vcpus 1, mdevs 2)" in \
        rows["no-host-guest-sharing"]["scope"]
