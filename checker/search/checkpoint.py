"""Checkpoints: a breadth- or depth-first search saved to a file and resumed later (as TLC does).

A checkpoint is everything the explorer's loop needs to continue as if it had
never stopped: the parent/action arrays, the visited keys, the pending states
(the BFS queue or the DFS stack), the loop counters, the findings so far and
which invariants/witnesses are still unchecked. Resuming therefore ends with
the same counts, verdicts and traces as an uninterrupted run.

Format (version 1; never pickle — a checkpoint handed over by someone else must
not run code): one line ``APCHECK-CHECKPOINT 1``, one line of JSON (the header:
identity, counters, findings, section sizes), then the raw sections in header
order: parent (int32), via (its array type), visited keys, pending states, and
for DFS the pending indices and depths (int32), then deadlock states. Keys and
states are fixed-width little-endian ints. ``identity`` is a digest of the
program and of the options that shape the search; a checkpoint of another spec,
design, strategy or property selection is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"APCHECK-CHECKPOINT 1\n"
MAX_HEADER = 1 << 26  # the JSON line: findings and deadlock cycles, far below this


class CheckpointError(ValueError):
    """The file is not a usable checkpoint for this run (message says why)."""


@dataclass
class Snapshot:
    strategy: str
    identity: str
    parent: array  # type: ignore[type-arg]
    via: array  # type: ignore[type-arg]
    seen: list[int]
    pending: list[int]  # BFS queue / DFS stack states, in order
    pending_index: list[int] = field(default_factory=list)  # DFS only
    pending_depth: list[int] = field(default_factory=list)  # DFS only
    counters: dict[str, int] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    deadlock_info: list[list[str]] = field(default_factory=list)
    deadlocks: list[int] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # invariants/witnesses not yet decided
    key_bytes: int = 16
    state_bytes: int = 16


def identity(program_text: str, **shape: Any) -> str:
    """Digest of the program's structure and the options that decide which states are explored."""
    h = hashlib.sha256(program_text.encode("utf-8", "surrogatepass"))
    h.update(json.dumps(shape, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _pack(values: list[int], width: int) -> bytes:
    return b"".join(v.to_bytes(width, "little") for v in values)


def _unpack(buf: bytes, width: int, n: int, what: str) -> list[int]:
    if len(buf) != width * n:
        raise CheckpointError(f"truncated ({what})")
    return [int.from_bytes(buf[i:i + width], "little") for i in range(0, len(buf), width)]


def save(path: str, snap: Snapshot) -> None:
    """Write atomically: a crash while saving leaves the previous checkpoint intact."""
    header = {
        "strategy": snap.strategy, "identity": snap.identity, "counters": snap.counters,
        "findings": snap.findings, "deadlock_info": snap.deadlock_info, "unchecked": snap.unchecked,
        "via_type": snap.via.typecode, "key_bytes": snap.key_bytes, "state_bytes": snap.state_bytes,
        "sizes": {"parent": len(snap.parent), "seen": len(snap.seen), "pending": len(snap.pending),
                  "deadlocks": len(snap.deadlocks)},
    }
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(MAGIC)
        fh.write(json.dumps(header).encode() + b"\n")
        fh.write(snap.parent.tobytes())
        fh.write(snap.via.tobytes())
        fh.write(_pack(snap.seen, snap.key_bytes))
        fh.write(_pack(snap.pending, snap.state_bytes))
        fh.write(array("q", snap.pending_index).tobytes())
        fh.write(array("q", snap.pending_depth).tobytes())
        fh.write(_pack(snap.deadlocks, snap.state_bytes))
    os.replace(tmp, path)


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if type(v) is not int or v < 0:
        raise CheckpointError(f"bad header field {key!r}")
    return v


def load(path: str, expect_identity: str, strategy: str) -> Snapshot:
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise CheckpointError("not an apcheck checkpoint (version 1)")
            line = fh.readline(MAX_HEADER)
            try:
                header = json.loads(line)
            except (ValueError, RecursionError):
                raise CheckpointError("corrupt header") from None
            if not isinstance(header, dict) or not isinstance(header.get("sizes"), dict):
                raise CheckpointError("corrupt header")
            if header.get("identity") != expect_identity:
                raise CheckpointError("it was saved by another spec, design or option set "
                                      "(program, strategy, --exact, --max-depth, --only/--skip must match)")
            if header.get("strategy") != strategy:
                raise CheckpointError(f"it was saved by strategy {header.get('strategy')!r}, not {strategy!r}")
            sizes = header["sizes"]
            n_parent, n_seen, n_pending, n_dead = (_int(sizes, k) for k in ("parent", "seen", "pending", "deadlocks"))
            kb, sb = _int(header, "key_bytes"), _int(header, "state_bytes")
            via_type = header.get("via_type")
            if via_type not in ("B", "H", "I") or not 0 < kb <= 1 << 16 or not 0 < sb <= 1 << 16:
                raise CheckpointError("corrupt header")
            parent, via = array("i"), array(via_type)
            parent.frombytes(_exact(fh, n_parent * parent.itemsize, "parent"))
            via.frombytes(_exact(fh, n_parent * via.itemsize, "actions"))
            seen = _unpack(_exact(fh, n_seen * kb, "visited"), kb, n_seen, "visited")
            pending = _unpack(_exact(fh, n_pending * sb, "pending"), sb, n_pending, "pending")
            dfs = strategy == "dfs"
            pidx, pdep = array("q"), array("q")
            pidx.frombytes(_exact(fh, n_pending * 8 if dfs else 0, "pending"))
            pdep.frombytes(_exact(fh, n_pending * 8 if dfs else 0, "pending"))
            dead = _unpack(_exact(fh, n_dead * sb, "deadlocks"), sb, n_dead, "deadlocks")
            if fh.read(1):
                raise CheckpointError("trailing bytes")
    except OSError as e:
        raise CheckpointError(f"cannot read: {e.strerror or e}") from None
    counters = header.get("counters")
    if not isinstance(counters, dict) or not all(type(v) is int for v in counters.values()):
        raise CheckpointError("corrupt header")
    if any(not -1 <= p < n_parent for p in parent):
        raise CheckpointError("corrupt parent array")
    findings = header.get("findings")
    if not isinstance(findings, list) or not all(_finding_ok(f) for f in findings):
        raise CheckpointError("corrupt findings")
    info = header.get("deadlock_info")
    unchecked = header.get("unchecked")
    if not isinstance(info, list) or not all(isinstance(x, list) and all(isinstance(s, str) for s in x) for x in info):
        raise CheckpointError("corrupt deadlock cycles")
    if not isinstance(unchecked, list) or not all(isinstance(s, str) for s in unchecked):
        raise CheckpointError("corrupt header")
    return Snapshot(strategy, expect_identity, parent, via, seen, pending, list(pidx), list(pdep), counters,
                    findings, info, dead, unchecked, kb, sb)


def _exact(fh: Any, n: int, what: str) -> bytes:
    data: bytes = fh.read(n)
    if len(data) != n:
        raise CheckpointError(f"truncated ({what})")
    return data


def _finding_ok(f: Any) -> bool:
    return (isinstance(f, dict) and isinstance(f.get("property"), str) and isinstance(f.get("message"), str)
            and all(type(f.get(k)) is int for k in ("index", "state", "action", "code")))
