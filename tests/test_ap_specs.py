"""Every spec in specs/ builds, runs to a complete verdict, and reports the expected violations."""

from __future__ import annotations

import glob
import os

import pytest

from checker.search.run import check_program
from checker.spec.options import Options
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))

# spec file -> properties expected VIOLATED (everything else HOLDS or WITNESSED unless listed in NOT_WITNESSED)
VIOLATED = {
    "final-apie.yaml": set(),
    "final-config.yaml": set(),
    "final-hooks.yaml": {"hook-safe", "memory-safety"},
    "final-hotplug.yaml": set(),
    "parametric-hook-5.15.yaml": {"hook-safe", "memory-safety"},  # the -EPERM path leaves the hook (5.15)
    "mainline-c1-two-openers.yaml": {"hook-safe", "memory-safety"},  # the C1 fix as read: two failing openers
    "parametric-mainline.yaml": set(),
    "allsizes-mainline.yaml": set(),  # --all-sizes: KVM_RUN, APIE, PV and the adapter and domain stores
    "allsizes-mainline-close.yaml": set(),  # and close_device, the control domain stores
    "parametric-mainline-masks.yaml": {"data-race"},  # dev->driver, as in final-ownership
    "final-lifecycle.yaml": set(),
    "final-lockdep.yaml": set(),
    # final = 6.8: after close_device, vfio_ap_mdev_cfg_remove locks mdev0's NULL kvm->lock (§5 C2)
    "final-mixed.yaml": {"memory-safety"},
    # __ap_revise_reserved reads dev->driver without device_lock while an unbind clears it (ap_bus.c)
    "final-ownership.yaml": {"data-race"},
    "final-two-vms.yaml": set(),  # symmetry reduction: two identical VMs
    "final-two-vms-apqns.yaml": set(),  # ... each with its own APQN
    # the open-coded kvm_busy deadlock (set/unset_kvm vs PQAP vs PV switch), as in v16-lockdep
    "v15-apie.yaml": {"data-race", "deadlock", "lock-discipline", "memory-safety"},
    # unlocked hook: priv.c re-reads the pointer (NULL dereference there), read without matrix_dev->lock
    "v15-hooks.yaml": {"data-race", "lock-discipline", "memory-safety", "one-mdev-per-kvm"},
    "v15-hotplug.yaml": {"reset-before-owner-change"},
    "v15-lockdep.yaml": {"deadlock", "lock-order"},
    # dev->driver, as in final-ownership
    "v15-ownership.yaml": {"data-race"},
    "v16-apie.yaml": {"data-race", "deadlock", "lock-discipline", "memory-safety"},
    "v16-hook-apie.yaml": set(),
    # the last kvm_put_kvm under kvm->lock: kvm_destroy_vm takes kvm->lock again (issue 8 #6)
    "v16-hook-lifecycle.yaml": {"deadlock", "lock-order"},
    "v16-hook-lockdep.yaml": set(),
    "v16-hook-ownership.yaml": {"data-race", "no-host-guest-sharing", "reset-before-owner-change"},
    "v16-hooks.yaml": {"data-race", "lock-discipline", "memory-safety", "one-mdev-per-kvm"},
    "v16-hotplug.yaml": {"no-two-guests", "reset-before-owner-change"},
    "v16-lockdep.yaml": {"deadlock"},
    # and v16's commit_apcb reads shadow_apcb under kvm->lock with matrix_dev->lock dropped
    "v16-ownership.yaml": {"data-race", "lock-discipline"},
    "v16.yaml": {"deadlock", "hook-safe", "lock-order", "memory-safety"},
    "v17-apie.yaml": set(),
    "v17-data-before-put.yaml": {"deadlock", "lock-order", "memory-safety"},
    "v17-hook-registry.yaml": set(),
    "v17-hotplug.yaml": set(),
    "v17-lifecycle.yaml": {"deadlock", "lock-order"},
    "v17-lockdep.yaml": set(),
    # v17-lifecycle once per VM (symmetry reduction on a violation)
    "v17-two-vms-lifecycle.yaml": {"deadlock", "lock-order"},
    # dev->driver, as in final-ownership
    "v17-ownership.yaml": {"data-race"},
    "v17.yaml": {"deadlock", "lock-order", "memory-safety"},
}
NOT_WITNESSED = {
    "v17.yaml": {"two-vms-in-pqap"},  # pqap_hook_lock serializes every PQAP intercept of every VM
    "v17-data-before-put.yaml": {"two-vms-in-pqap"},
    "v17-two-vms-lifecycle.yaml": {"two-vms-in-pqap"},
    "v16-hook-ownership.yaml": {"guest-apcb-changed"},  # pre-dynamic: the CRYCB is never updated
    "v16-hook-lockdep.yaml": {"guest-apcb-changed"},  # pre-dynamic: assign is refused (-EBUSY) while attached
}


def _spec_ids() -> list[str]:
    return [os.path.basename(p) for p in SPECS]


def test_every_spec_is_listed() -> None:
    assert set(_spec_ids()) == set(VIOLATED)


@pytest.mark.parametrize("path", SPECS, ids=_spec_ids())
def test_spec_verdicts(path: str) -> None:
    name = os.path.basename(path)
    loaded = load_spec(path, default_registry())
    program = loaded.design.build(loaded.scenario)
    result = check_program(program, Options(), name, loaded.design.name)
    assert result.stats.complete
    status = {p.name: p.status for p in result.properties}
    violated = {n for n, s in status.items() if s == "VIOLATED"}
    assert violated == VIOLATED[name], status
    nw = {n for n, s in status.items() if s == "NOT_WITNESSED"}
    assert nw == NOT_WITNESSED.get(name, set()), status
