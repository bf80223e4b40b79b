"""An apmask store that reserves only bits already reserved, against an unassign (ap_model/kernel/ap_bus.py).

apmask_commit calls the drivers' in_use callbacks only when ``bitmap_andnot(reserved, newapm,
ap_perms.apm)`` is non-empty; only then does vfio_ap take guests_lock and mdevs_lock and read the mdevs'
matrices. Before, the model's commit step read every mdev's matrix on both paths, so a store reserving
adapter 3 again (already in apmask) read mdev0's matrix under ap_perms_mutex alone while the unassign wrote
it: lock-discipline and data-race VIOLATED, which the kernel does not have."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_false_reports import run, status
from tests.test_false_reports_reprobe import SPEC as REPROBE
from tests.test_reports_branches import run_in_order

# the reprobe tests' constants (mdev0: 4 x 5 attached to kvm0, apmask [3]) with a store and an unassign
SPEC = REPROBE.split("threads:")[0].replace("reprobe-release-race", "commit-reserves-no-new-bit") + """threads:
  - {{name: host, run: [{{apmask_store: {{reserve: [3]}}}}]}}
  - {{name: admin, run: [{{unassign_adapter: {{mdev: 0, apid: 4}}}}]}}
"""

COUNTS = {"mainline": (33, 49), "v17": (23, 25)}  # partial-order reduced


@pytest.mark.parametrize("design", ["mainline", "v17"])
def test_a_commit_that_reserves_no_new_bit_reads_no_matrix(design: str, tmp_path: Path) -> None:
    res, _ = run(tmp_path, SPEC.format(design=design))
    verdicts = status(res)
    assert (verdicts["lock-discipline"], verdicts["data-race"]) == ("HOLDS", "HOLDS")
    assert [n for n, s in verdicts.items() if s == "VIOLATED"] == []
    assert (res.stats.states, res.stats.transitions) == COUNTS[design]


def test_the_commit_test_shows_in_the_trace(tmp_path: Path) -> None:
    """The store's steps: the test folded into the first in_use lock step, then the commit without in_use."""
    steps = run_in_order(tmp_path, SPEC.format(design="mainline").replace(
        "  - {name: admin, run: [{unassign_adapter: {mdev: 0, apid: 4}}]}\n", ""))
    assert [(f, a) for _, f, a in steps][:3] == [
        ("apmask_store", "mutex_lock(ap_perms_mutex)"),
        ("apmask_commit", "no bit newly reserved: in_use not called"),
        ("apmask_commit", "commit ap_perms.apm; mutex_unlock(ap_perms_mutex)")]


def test_v15_a_release_reads_no_matrix(tmp_path: Path) -> None:
    """v15 consults in_use (mutex_trylock(matrix_dev->lock)) whenever the write sets bits; a write that only
    clears bits takes no lock of vfio_ap's, and read mdev0's matrix under ap_perms_mutex alone before."""
    res, _ = run(tmp_path, SPEC.format(design="v15").replace("reserve: [3]", "release: [3]"))
    assert status(res)["lock-discipline"] == "HOLDS"
    assert (res.stats.states, res.stats.transitions) == (54, 61)
