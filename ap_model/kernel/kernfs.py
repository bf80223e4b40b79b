"""The mdev's sysfs attribute files against its removal (fs/kernfs/file.c, fs/kernfs/dir.c, drivers/base/dd.c).

A write to an mdev attribute (``echo APID > assign_adapter``: kernfs_fop_write_iter) runs the store between
``kernfs_get_active`` and ``kernfs_put_active``. Removing the mdev (device_del -> __device_release_driver)
removes the driver's attribute groups (``device_remove_groups``: kernfs_remove -> kernfs_drain) *before*
the bus remove callback reaches ``vfio_ap_mdev_remove``: the drain deactivates the files, so a new
``kernfs_get_active`` fails (the write returns -ENODEV), and waits for the writes in progress to return.
So no store ever runs on a removed mdev.

Modelled where a write to an attribute of mdev M can meet M's removal: the write and the remove in
different threads, or a write after the remove in one thread (``Cfg.sysfs_removed``; every other scenario
builds the same program as before): lockdep's own view, an rwsem ``kn->active`` per mdev
(read side: a write in progress; write side: the drain, whose waiting writer makes new readers queue, as
deactivation makes new ``kernfs_get_active`` fail) and ``mdevM.attributes_removed``, set by the drain. Not
modelled: the files of an mdev created again after its removal (``mdev_create`` clears the flag at its
start, before the probe), and the removals of ``vfio_ap_exit`` (module unload)."""

from __future__ import annotations

from collections.abc import Callable

from checker.lang.expr import Not

from ..kfunc import K
from ..world import Body

KERNFS = "fs/kernfs/file.c"
WRITE = "kernfs_fop_write_iter"


def attribute_write(k: K, m: int, store: Callable[[], None]) -> None:
    """kernfs_fop_write_iter on an attribute of mdev ``m``: kernfs_get_active (fails with -ENODEV once the
    remove has drained the files), the store (its returns land on the put), kernfs_put_active."""
    w, t = k.w, k.t
    gone = w.sysfs_gone[m].var
    after = w.label(t, "enodev")
    b = Body()
    k.ret(b, "ENODEV", when=gone)
    k.lock(w.KN[m], WRITE, when=Not(gone), mode="r", body=b, jumps=[(gone, after)],
           text="kernfs_get_active(kn)",
           branches=[(Not(gone), "kernfs_get_active(kn)"),
                     (gone, "the attribute was removed (device_del): kernfs_get_active fails: -ENODEV")])
    store()
    w.begin_op(t)  # the store's "return" label names the put
    k.unlock(WRITE, (w.KN[m], None, None, "r"), text="kernfs_put_active(kn)")
    w.pending_end[t.name] = after  # the -ENODEV path skips the put: it names the next step


def remove_attributes(k: K, m: int) -> None:
    """mdev_device_remove -> device_del -> __device_release_driver -> device_remove_groups(drv->dev_groups):
    kernfs_drain deactivates mdev ``m``'s attribute files and waits for the writes in progress."""
    w = k.w
    b = Body()
    b.set(w.sysfs_gone[m], 1)
    fn = "device_remove_groups"
    k.lock(w.KN[m], fn, body=b, text="kernfs_drain(kn): deactivate; wait for the writes in progress")
    k.unlock(fn, (w.KN[m], None, None), text="kernfs_drain(kn): drained")


def add_attributes(k: K, m: int) -> None:
    """mdev_device_create -> device_add: mdev ``m`` has attribute files again (its earlier removal drained
    the old ones; see the module docstring for what this leaves out)."""
    b = Body()
    b.set(k.w.sysfs_gone[m], 0)
    k.step("device_add", "mdev device added: its attribute files exist", body=b)
