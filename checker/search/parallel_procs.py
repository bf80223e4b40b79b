"""The partitioned search's workers as forked processes (``--workers N``).

Fork, not spawn: the compiled successor function is generated code and not
picklable, so each worker inherits it (and the in-process prefix) from the
coordinator. Workers exchange successor boxes directly: one inbox queue per
worker (a ``multiprocessing.Queue`` sends from a feeder thread, so two
workers sending to each other never block).

Workers run the levels on their own: every box carries a small header (the
frontier the sender expanded, its store size, its limit, the properties it
found in earlier levels), so after each exchange every worker holds the same
facts and takes the same decision (go on, stop at a limit, finished) without
a round trip through the coordinator; under load every wake-up costs
milliseconds. The coordinator folds in the level reports the workers stream
to it, and afterwards asks for parents (traces) and lock-order flags.
Workers ignore SIGINT; an interrupted coordinator stops them.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

from checker.search.limits import peak_mb
from checker.search.parallel import Backend, BackendFactory, Limits, Merge, Progress
from checker.search.parallel_part import Box, LevelReport, Partition

Header = tuple[int, int, str, frozenset[str]]  # (frontier expanded, states stored before, limit, found)
Message = tuple[int, int, Header, Box]  # (level, sender, header, box)


class WorkerError(RuntimeError):
    """A worker process failed or died; the search cannot go on."""


def _exchange(part: Partition, inboxes: list[Queue[Message]], level: int, mine: Header, boxes: list[Box],
              early: list[Message]) -> tuple[list[Header], list[Box]]:
    """Send each peer its box; collect this level's box from every peer (a peer may be one level ahead)."""
    pid = part.pid
    for dest, box in enumerate(boxes):
        if dest != pid:
            inboxes[dest].put((level, pid, mine, box))
    got = [m for m in early if m[0] == level]
    early[:] = [m for m in early if m[0] != level]
    while len(got) < part.parts - 1:
        msg = inboxes[pid].get()
        (got if msg[0] == level else early).append(msg)
    return [mine] + [m[2] for m in got], [boxes[pid]] + [m[3] for m in got]


def _levels(part: Partition, conn: Connection, inboxes: list[Queue[Message]], level: int, found: frozenset[str],
            limits: Limits, states_before: int, stop_flag: Any = None) -> None:
    """One worker's level loop; every worker takes the same decisions from the same headers.
    ``stop_flag`` (shared, set by the coordinator on SIGINT/SIGTERM): this level is the last; the
    limit travels in the headers, so every worker stops after the same level."""
    early: list[Message] = []
    known = set(found)
    while True:
        further = level < limits.max_depth
        size, stored, props = part.frontier_size(), part.store_size(), frozenset(part.found_props)
        boxes = part.expand(level, frozenset(known), further, limits.deadline)
        if stop_flag is not None and stop_flag.value and not part.report.limit:
            part.report.limit = "interrupted"
        headers, got = _exchange(part, inboxes, level, (size, stored, part.report.limit, props), boxes, early)
        if not any(h[0] for h in headers):  # nobody had a frontier: the search is over
            break
        limit = min((h[2] for h in headers if h[2]), default="")
        total = states_before + sum(h[1] for h in headers)
        if not limit and further and limits.max_states is not None and total >= limits.max_states:
            # the one-worker search would not have expanded this level: drop it, as pending
            part.report = LevelReport(limit="max-states", pending=size)
            conn.send(("stopped", level, part.take_report()))
            break
        rep = part.absorb(level, frozenset(known), got, probe=not further)
        rep.limit = limit
        conn.send(("level", level, rep))
        for h in headers:
            known |= h[3]
        if limit or not further:
            break
        level += 1
    conn.send(("done", level))


def _serve(prefix: Partition, pid: int, parts: int, conn: Connection, inboxes: list[Queue[Message]],
           stop_flag: Any = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        part = Partition(prefix.model, prefix.opts, pid, parts, prefix.reducer)
        part.seed_from(prefix.share(pid, parts))
        prefix.seen, prefix.frontier = set(), []  # this process's copy of the prefix store is not needed
        while True:
            cmd = conn.recv()
            op = cmd[0]
            if op == "run":
                _, level, found, limits, before = cmd
                _levels(part, conn, inboxes, level, found, limits, before, stop_flag)
            elif op == "lookup":
                conn.send(part.lookup(cmd[1]))
            elif op == "lock-order":
                comp: Any = getattr(part.model, "comp", None)
                conn.send((bytes(comp.fired), set(comp.dynamic_edges)) if comp is not None else (b"", set()))
            elif op == "peak":
                conn.send(peak_mb())
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
        self.stop: Any = None  # a limits.StopRequest the coordinator polls (signals); set by partitioned_bfs
        self.stop_flag = ctx.Value("b", 0, lock=False)  # tells the workers: end after this level
        self.busy = False  # inside run(): workers are not listening for commands
        self.inboxes: list[Queue[Message]] = [ctx.Queue() for _ in range(parts)]
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for pid in range(parts):
            here, there = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(prefix, pid, parts, there, self.inboxes, self.stop_flag), daemon=True,
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

    def run(self, level: int, frontier: int, m: Merge, limits: Limits, progress: Progress) -> tuple[int, int]:
        """Start the workers' level loop; fold in their reports a whole level at a time, as they come."""
        self.busy = True
        for c in self.conns:
            c.send(("run", level, m.found(), limits, m.states))
        levels: dict[tuple[str, int], list[LevelReport]] = {}
        running = set(range(self.parts))
        depth, left = level, frontier
        while running:
            ready = wait([self.conns[p] for p in running] + [self.procs[p].sentinel for p in running], timeout=0.25)
            if self.stop is not None and self.stop.reason:
                self.stop_flag.value = 1
            for pid in sorted(running):
                if self.conns[pid] not in ready and self.procs[pid].sentinel not in ready:
                    continue
                msg = self._recv(pid)
                if msg[0] == "done":
                    running.discard(pid)
                    continue
                kind, lvl, rep = msg
                got = levels.setdefault((kind, lvl), [])
                got.append(rep)
                if len(got) < self.parts:
                    continue
                del levels[(kind, lvl)]
                new = m.add(got)
                if kind == "stopped":  # dropped unexpanded: its frontier is left
                    continue
                depth, left = lvl, new
                progress(depth, new)
                if lvl >= limits.max_depth:  # the states at the bound were checked, not expanded
                    m.limit = m.limit or ("max-depth" if m.unseen else "")
                    left = 0
        self.busy = False
        return depth, left

    def lookup(self, pid: int, idx: int) -> tuple[int, int]:
        self.conns[pid].send(("lookup", idx))
        out: tuple[int, int] = self._recv(pid)
        return out

    def lock_order(self) -> list[tuple[bytes, set[tuple[int, int, int]]]]:
        return self._all(("lock-order",))

    def peak_mb(self) -> float:
        return float(sum(self._all(("peak",))))

    def close(self) -> None:
        """Stop the workers; at once if they are still inside a level (an interrupt, a failed worker)."""
        for c, p in zip(self.conns, self.procs):
            if self.busy:
                p.terminate()
            elif p.is_alive():
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
