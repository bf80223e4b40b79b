"""Limits that hold in every explorer: time, memory, and a stop request from a signal.

The explorers call ``Limits.poll()`` every ``POLL_EVERY`` expansions (about a
millisecond of work), so ``--timeout 0.01`` stops within milliseconds, not after
4,096 expansions. The resident size is read from /proc at most every
``MEMORY_EVERY`` seconds: a cheap check that still stops a run growing by
hundreds of MB a second close to ``--max-memory``.

``StopRequest`` is the one mutable object shared with a signal handler: the
handler only sets ``reason``; the explorer sees it at its next poll and stops
cleanly, so the caller still gets statistics, findings and a report.
"""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from checker.spec.options import Options

POLL_EVERY = 64  # expansions between polls (a power of two: the explorers test ``n & (POLL_EVERY - 1)``)
MEMORY_EVERY = 0.02  # seconds between two reads of the resident size
INTERRUPTED = "interrupted"


def peak_mb() -> float:
    """This process's own resident high-water mark (VmHWM). ru_maxrss is not used first:
    after vfork + exec it carries the parent's peak into a child."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_mb() -> float:
    """The resident size now (statm's second field, in pages)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return peak_mb()


class StopRequest:
    """A request to stop the search, set asynchronously (signal handler, test hook)."""

    def __init__(self) -> None:
        self.reason = ""
        self.signal_name = ""

    def request(self, reason: str = INTERRUPTED) -> None:
        if not self.reason:
            self.reason = reason

    def __bool__(self) -> bool:
        return bool(self.reason)


class Limits:
    """The run's limits, polled by the explorers; ``poll()`` returns the limit hit, or ``""``."""

    def __init__(self, opts: Options, t0: float, stop: StopRequest | None = None,
                 on_poll: Callable[[], None] | None = None) -> None:
        self.deadline = t0 + opts.timeout if opts.timeout else None
        self.max_mb = opts.max_memory_mb
        self.stop = stop
        self.on_poll = on_poll  # e.g. a periodic checkpoint
        self._next_memory = 0.0

    def poll(self) -> str:
        if self.stop is not None and self.stop.reason:
            return self.stop.reason
        now = time.perf_counter()
        if self.deadline is not None and now > self.deadline:
            return "timeout"
        if self.max_mb is not None and now >= self._next_memory:
            self._next_memory = now + MEMORY_EVERY
            if current_mb() > self.max_mb:
                return "memory"
        if self.on_poll is not None:
            self.on_poll()
        return ""


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask ``stop`` to end the search; a second SIGINT aborts at once.

    Outside the main thread (signals cannot be installed there) this is a no-op."""
    installed: list[tuple[signal.Signals, object]] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.reason and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the user insists
        stop.signal_name = stop.signal_name or name
        stop.request(INTERRUPTED)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed.append((sig, signal.signal(sig, handler)))
    except ValueError:  # not the main thread
        pass
    try:
        yield stop
    finally:
        for sig, old in installed:
            signal.signal(sig, old)  # type: ignore[arg-type]
