"""``lemma-dead-device``: a queue device the AP bus scan deleted is probed no more (``apcheck prove --parametric``
with mask stores and host configuration changes among the operations; a PARAMETRIC_LEMMAS entry, stated for the
universal scenario only, as the others).

The kernel: device_unregister -> device_del marks the device dead (kill_device, under its device lock) before it
releases the driver, and __device_attach (the reprobe's bus_rescan_devices_helper -> device_attach) tests
dev->p->dead under the device lock and probes nothing on a dead device (__driver_probe_device tests it too).
The model (ap_model/kernel/ap_bus.py ``release_driver(kill=True)``, ``attach``): the dead flag is written where
the scan's device_unregister section of the queue ends and read at the reprobe's device_lock step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from checker.lang.expr import And, Const, Expr, Implies, Not, Or, variables
from checker.lang.program import Program

from .properties import _add, _at

if TYPE_CHECKING:
    from .world import World


def add_dead_device_lemma(w: World, program: Program, leaving: dict[int, list[Expr]]) -> None:
    """Per queue device with a lock (``w.DEV``): a reprobe past its device_attach's dead check (holding the device
    lock, up to its device_unlock) finds the device alive; an alive device of an adapter out of the machine's
    configuration exists only while the scan that saw the adapter leave (``leaving``: adapter -> "that scan is
    past its fetch of QCI") has not yet deleted it; from that scan's device_unregister of the queue to its end the
    device is dead; a scan that saw the adapter enter finds it dead until it registers it. And the driver core
    holds the device lock from its device_lock to its device_unlock (where ``heldsets`` has no static held set,
    as after a conditional kvm->lock, auto:lock-ownership does not say so)."""
    dd: list[Expr] = []
    for (i, j), dead in w.dev_dead.items():
        lk = w.DEV[i, j]
        for a in program.actions:
            if not any(q.lock is lk for q in a.acquires):
                continue
            later = [c for c in program.actions if c.thread == a.thread and c.label > a.label]
            unlock = min(c.label for c in later if any(x is lk for x, _ in c.releases))
            # the driver core's section: device_lock .. device_unlock (a step that does not take the lock jumps
            # past its unlock): the device is that thread's, whatever else it holds (heldsets may not know)
            dd.append(Implies(_at(program, (a.thread, list(range(a.label + 1, unlock + 1)))),
                              lk.owner.var == a.thread + 1))
            if dead in variables(a.target):
                # __device_attach: dev->p->dead -> straight to device_unlock; else the probes, up to it
                dd.append(Implies(_at(program, (a.thread, list(range(a.label + 1, unlock)))), Not(dead.var)))
        for a in program.actions:
            mark = a.updates.get(dead)
            if not isinstance(mark, Const) or not any(x is lk for x, _ in a.releases):
                continue
            mine = [c for c in program.actions if c.thread == a.thread]
            if mark.value:
                # device_unregister's device_del (kill_device) in a scan: the device is dead until the scan ends
                ends = [c.label for c in mine if c.label > a.label and any(x is w.SB for x, _ in c.releases)]
                if ends:
                    dd.append(Implies(_at(program, (a.thread, list(range(a.label + 1, min(ends) + 1)))), dead.var))
                continue
            # device_register in a scan that saw the adapter enter QCI: the queue had no device (dead) from that
            # fetch until the device_unlock that ends its registration
            fetch = max((c.label for c in mine if c.label < a.label and w.qci_apm in c.updates), default=None)
            if fetch is not None:
                dd.append(Implies(_at(program, (a.thread, list(range(fetch + 1, a.label + 1)))), dead.var))
        dd.append(Or(w.hw_configured(i, j), dead.var, *leaving.get(i, [])))
    _add(program, "lemma-dead-device", And(*dd),
         "a reprobe past device_attach's dead check finds the queue device alive; a queue device of an adapter out "
         "of the machine's configuration is alive only until the scan that saw the adapter leave deletes it "
         "(device_unregister), and dead from there",
         "device_del -> kill_device (dev->p->dead, under device_lock); __device_attach tests it under device_lock")
