"""The partitioned search's workers as forked processes (``--workers N``).

Fork, not spawn: the compiled successor function is generated code and not
picklable, so each worker inherits it (and the in-process prefix) from the
coordinator. Workers exchange successor boxes directly: one inbox queue per
worker (a ``multiprocessing.Queue`` sends from a feeder thread, so two
workers sending to each other never block). The coordinator talks to each
worker over a pipe: one command per level, one report back. Workers ignore
SIGINT; an interrupted coordinator stops them.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

from checker.search.explore import _peak_mb
from checker.search.parallel import Backend, BackendFactory
from checker.search.parallel_part import Box, LevelReport, Partition


class WorkerError(RuntimeError):
    """A worker process failed or died; the search cannot go on."""


def _serve(prefix: Partition, pid: int, parts: int, conn: Connection, inboxes: list[Queue[Box]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        part = Partition(prefix.model, prefix.opts, pid, parts)
        part.seed_from(prefix.share(pid, parts))
        prefix.seen, prefix.frontier = set(), []  # this process's copy of the prefix store is not needed
        while True:
            cmd = conn.recv()
            op = cmd[0]
            if op == "level":
                _, level, found, further, deadline = cmd
                boxes = part.expand(level, found, further, deadline)
                for dest, box in enumerate(boxes):
                    if dest != pid:
                        inboxes[dest].put(box)
                got = [boxes[pid]] + [inboxes[pid].get() for _ in range(parts - 1)]
                conn.send(part.absorb(level, found, got, probe=not further))
            elif op == "lookup":
                conn.send(part.lookup(cmd[1]))
            elif op == "lock-order":
                comp: Any = getattr(part.model, "comp", None)
                conn.send((bytes(comp.fired), set(comp.dynamic_edges)) if comp is not None else (b"", set()))
            elif op == "peak":
                conn.send(_peak_mb())
            else:
                break
    except BaseException:  # report anything, including MemoryError, to the coordinator
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass


class ProcessBackend:
    def __init__(self, prefix: Partition, parts: int) -> None:
        ctx = mp.get_context("fork")
        self.parts = parts
        self.inboxes: list[Queue[Box]] = [ctx.Queue() for _ in range(parts)]
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for pid in range(parts):
            here, there = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(prefix, pid, parts, there, self.inboxes), daemon=True,
                            name=f"apcheck-worker-{pid}")
            p.start()
            there.close()
            self.conns.append(here)
            self.procs.append(p)

    def _recv(self, pid: int) -> Any:
        conn, proc = self.conns[pid], self.procs[pid]
        while True:
            ready = wait([conn, proc.sentinel])
            if conn in ready:
                try:
                    msg = conn.recv()
                except EOFError:
                    raise WorkerError(f"worker {pid} exited (code {proc.exitcode})") from None
                if isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "error":
                    raise WorkerError(f"worker {pid} failed:\n{msg[1]}")
                return msg
            if not conn.poll():
                raise WorkerError(f"worker {pid} died (exit code {proc.exitcode})")

    def _all(self, cmd: tuple[Any, ...]) -> list[Any]:
        for c in self.conns:
            c.send(cmd)
        return [self._recv(pid) for pid in range(self.parts)]

    def level(self, level: int, found: frozenset[str], further: bool, deadline: float | None) -> list[LevelReport]:
        return self._all(("level", level, found, further, deadline))

    def lookup(self, pid: int, idx: int) -> tuple[int, int]:
        self.conns[pid].send(("lookup", idx))
        out: tuple[int, int] = self._recv(pid)
        return out

    def lock_order(self) -> list[tuple[bytes, set[tuple[int, int, int]]]]:
        return self._all(("lock-order",))

    def peak_mb(self) -> float:
        return float(sum(self._all(("peak",))))

    def close(self) -> None:
        for c, p in zip(self.conns, self.procs):
            if p.is_alive():
                try:
                    c.send(("stop",))
                except OSError:
                    pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
        for q in self.inboxes:
            q.cancel_join_thread()
            q.close()
        for c in self.conns:
            c.close()


def process_factory(parts: int) -> BackendFactory:
    def make(prefix: Partition) -> Backend:
        return ProcessBackend(prefix, parts)

    return make
