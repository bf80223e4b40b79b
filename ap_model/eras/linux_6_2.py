"""Design ``6.2``: vfio_ap of v6.2 - v6.7, before the January 2024 filtering and reset fixes.

6.8 without f848cba767e5 "reset queues filtered from the guest's AP config" (an APID filtered out of the
shadow is not reset) and without f009cfa46655 "reset queues associated with adapter for queue unbound
from driver" (unbinding one queue unplugs its whole APID but resets only that queue). Not modelled as a
difference: b9bd10c43456 (6.2 also resets a queue outside the host configuration: the reset fails with
rc 01; the model has no property for a failed reset), 850fb7fa8c68/774d10196e64 (6.2 filters only the
APIDs/APQIs an event touched and re-plugs per probed queue; the model always filters the whole matrix).
The vfio core's own kvm reference (2b48f52f2bff) is in 6.2. docs/designs/6.2.md.
"""

from __future__ import annotations

from checker.lang.expr import Expr

from ..kernel.bodies import refresh, unplug_adapter
from ..kernel.vfio_ap_ops import OPS
from ..kfunc import K, kernel
from ..world import Body
from .linux_6_8 import LINUX_6_8


@kernel(OPS, name="vfio_ap_mdev_filter_matrix")
def filter_matrix_no_reset(k: K, b: Body, m: int, when: Expr | None = None) -> Expr:
    """Filter -> shadow; if changed and attached: update the guest (APIDs filtered out are not reset:
    before f848cba767e5). Returns "the shadow changed"."""
    return refresh(k.w, b, m, when=when, reset_filtered=False)[0]


@kernel(OPS, name="vfio_ap_mdev_remove_queue:unplug")
def remove_queue_unplug_only(k: K, b: Body, m: int, i: int, when: Expr) -> None:
    """The queue was in the shadow: clear its APID and update the guest; the other queues of the APID are
    not reset (before f009cfa46655; the removed queue itself is reset by the caller)."""
    unplug_adapter(k.w, b, m, i, when=when, reset=False)


LINUX_6_2 = LINUX_6_8.derive(
    "6.2",
    "vfio_ap v6.2-v6.7: 6.8 before the Jan 2024 fixes (no reset of filtered APIDs, f848cba767e5; unbind resets "
    "only the queue, f009cfa46655)",
    override=[filter_matrix_no_reset, remove_queue_unplug_only], commits=("2b48f52f2bff",),
    doc="docs/designs/6.2.md")
