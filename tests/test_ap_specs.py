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
    "v15-lockdep.yaml": {"deadlock", "lock-order"},
    "v16-lockdep.yaml": {"deadlock"},
    "v15-hotplug.yaml": {"reset-before-owner-change"},
    "v16-hotplug.yaml": {"no-two-guests", "reset-before-owner-change"},
    "v17-hotplug.yaml": set(),
    "final-hotplug.yaml": set(),
    "v16.yaml": {"memory-safety", "hook-safe", "deadlock", "lock-order"},
    "v17.yaml": {"memory-safety", "deadlock", "lock-order"},
    "v17-data-before-put.yaml": {"memory-safety", "deadlock", "lock-order"},
    "final-hooks.yaml": {"memory-safety", "hook-safe"},
    "v16-hook-ownership.yaml": {"no-host-guest-sharing", "reset-before-owner-change"},
    "final-ownership.yaml": set(),
    "final-config.yaml": set(),
    "v17-hook-registry.yaml": set(),
    "v17-ownership.yaml": set(),
    # unlocked hook: priv.c re-reads the pointer -> NULL dereference there; the vCPU never reaches a bad mdev
    "v15-hooks.yaml": {"memory-safety", "data-race", "one-mdev-per-kvm"},
    "v16-hooks.yaml": {"memory-safety", "data-race", "one-mdev-per-kvm"},
    # the last kvm_put_kvm under kvm->lock: kvm_destroy_vm takes kvm->lock again (issue 8 #6)
    "v16-hook-lifecycle.yaml": {"deadlock", "lock-order"},
    "v17-lifecycle.yaml": {"deadlock", "lock-order"},
    "final-lifecycle.yaml": set(),
    "v16-hook-lockdep.yaml": set(),
    "v17-lockdep.yaml": set(),
    "final-lockdep.yaml": set(),
    # final = 6.8: after close_device, vfio_ap_mdev_cfg_remove locks mdev0's NULL kvm->lock (kernel-facts §5 C2)
    "final-mixed.yaml": {"memory-safety"},
    # APIE toggled while the guest runs: no new lock edge (kvm->lock only); v15/v16 deadlock through the
    # open-coded kvm_busy (set_kvm/unset_kvm vs PQAP waiting for kvm_busy vs PV switch), as in v16-lockdep
    "final-apie.yaml": set(),
    "v16-hook-apie.yaml": set(),
    "v17-apie.yaml": set(),
    "v15-apie.yaml": {"deadlock", "data-race", "memory-safety"},
    "v16-apie.yaml": {"deadlock", "data-race", "memory-safety"},
    "v15-ownership.yaml": set(),
    "v16-ownership.yaml": set(),
}
NOT_WITNESSED = {
    "v17.yaml": {"two-vms-in-pqap"},  # pqap_hook_lock serializes every PQAP intercept of every VM
    "v17-data-before-put.yaml": {"two-vms-in-pqap"},
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
