"""Object lifecycle facts read back from a trace, for memory-safety messages."""

from __future__ import annotations

from checker.report.results import Trace

FREED = "freed"  # how checker.lang.program's LIFECYCLE shows a freed object


def freed_by(trace: Trace | None, message: str) -> str:
    """", freed by kvm_put_kvm (qemu, step 7)" for the object a use-after-free message names.

    The message names an instance ("use after free of struct kvm kvm0: ..."); the step that
    freed it is the last one whose changes take ``kvm0.state`` to freed. Empty when the
    message names no instance or the object was freed before the trace began."""
    if trace is None or not message.startswith("use after free of "):
        return ""
    for step in reversed(trace.steps):
        for field, _, after in step.changes:
            slot = field.removesuffix(".state")
            if field.endswith(".state") and after == FREED and (f" {slot}:" in message or message.endswith(f" {slot}")):
                return f", freed by {step.function} ({step.thread}, step {step.index})"
    return ""
