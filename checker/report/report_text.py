"""Plain-text report: verdict table, statistics, swimlane traces, lockdep-style cycles.

The audience reads lockdep splats for a living, so lock cycles are printed in
the shape of the kernel's "possible circular locking dependency" report, and
traces name the kernel function of every step. Output is plain ASCII unless
``color=True`` (it ends up in mails and CI logs).
"""

from __future__ import annotations

import textwrap

from tabulate import tabulate

from checker.report.results import (
    BOUNDED,
    HOLDS,
    NOT_WITNESSED,
    UNKNOWN,
    VIOLATED,
    WITNESSED,
    CheckResult,
    LockCycle,
    LockEdge,
    PropertyResult,
    Stats,
    Trace,
    TraceStep,
)

CELL_WIDTH = 44  # swimlane column cap: three threads plus "held" still fit a 200-column terminal
CHANGES_MAX = 80  # per-row budget for the "changes" column before truncation
DETAIL_WIDTH = 72
ELLIPSIS = "..."  # ASCII on purpose: reports are pasted into plain-text mail

_RED, _GREEN, _YELLOW, _BOLD, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_STATUS_COLOR = {
    VIOLATED: _RED,
    HOLDS: _GREEN,
    WITNESSED: _GREEN,
    BOUNDED: _YELLOW,
    NOT_WITNESSED: _YELLOW,
    UNKNOWN: _YELLOW,
}


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color and code else text


def _wrap(text: str, width: int = CELL_WIDTH) -> str:
    """Wrap each line of a cell; never split at the '-' of '->' in lock names."""
    out: list[str] = []
    for line in text.splitlines() or [""]:
        out.extend(textwrap.wrap(line, width, break_on_hyphens=False) or [""])
    return "\n".join(out)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _lock(name: str, mode: str) -> str:
    """Lock class as printed in chains and scenarios; read mode is marked "(r)"."""
    return f"{name}(r)" if mode == "r" else name


# --------------------------------------------------------------------------- result


def render_result(result: CheckResult, color: bool = False) -> str:
    """The whole text report for one check, ending with a newline."""
    status = _paint(result.result, _STATUS_COLOR.get(result.result, ""), color)
    parts = [f"spec {result.spec}  design {result.design}  result {status}"]
    parts.append(render_verdicts(result.properties, color))
    parts.append(render_stats(result.stats))
    shown: list[Trace] = []
    for prop in result.properties:
        if prop.trace is not None and not any(prop.trace is t for t in shown):
            shown.append(prop.trace)  # lock-order's reachable cycle shares the deadlock trace
            parts.append(render_trace(prop.trace, title=f"{prop.name}: {prop.detail}"))
    if result.cycles:
        title = f"== lock-order: {len(result.cycles)} cycle{'s' if len(result.cycles) != 1 else ''} =="
        parts.append("\n\n".join([title] + [render_cycle(c) for c in result.cycles]))
    text = "\n\n".join(p.rstrip("\n") for p in parts)
    # no trailing blanks: reports get pasted into patch mail, where checkpatch flags them
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def render_verdicts(properties: list[PropertyResult], color: bool = False) -> str:
    """One row per property, in the given order."""
    rows = []
    for prop in properties:
        detail = prop.detail
        if prop.trace is not None:
            n = prop.trace.length
            steps = f"trace {n} step{'s' if n != 1 else ''}"
            detail = f"{detail}; {steps}" if detail else steps
        status = _paint(prop.status, _STATUS_COLOR.get(prop.status, ""), color)
        rows.append([prop.name, status, _wrap(detail, DETAIL_WIDTH)])
    return tabulate(rows, headers=["property", "status", "detail"], tablefmt="simple", disable_numparse=True)


def render_stats(stats: Stats) -> str:
    if stats.store == "fingerprint":
        store = f"fingerprint, collision probability ~{stats.collision_probability:.1e}"
    else:
        store = stats.store
    rows: list[tuple[str, str]] = [
        ("states", f"{stats.states:,}"),
        ("transitions", f"{stats.transitions:,}"),
        ("deadlock states", f"{stats.deadlock_states:,}"),
        ("max depth", str(stats.max_depth)),
        ("seconds", f"{stats.seconds:.3f}"),
        ("states/s", f"{stats.states_per_second:,.0f}"),
        ("strategy", stats.strategy),
        ("store", store),
    ]
    if stats.peak_memory_mb > 0:
        rows.append(("peak memory", f"{stats.peak_memory_mb:.1f} MB"))
    if stats.workers > 1:
        rows.append(("workers", f"{stats.workers} ({stats.backend})"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if not stats.complete:
        lines.append(f"search BOUNDED by {stats.limit or 'a limit'}: counts are partial")
    return "\n".join(lines)


# --------------------------------------------------------------------------- traces


def _constant_operations(trace: Trace) -> dict[str, str]:
    """Threads whose steps all run in one operation: that goes in the column header."""
    ops: dict[str, set[str]] = {}
    for step in trace.steps:
        ops.setdefault(step.thread, set()).add(step.operation)
    return {t: next(iter(s)) for t, s in ops.items() if len(s) == 1 and next(iter(s))}


def _step_cell(step: TraceStep, show_operation: bool) -> str:
    text = f"{step.function}: {step.action}" if step.function else step.action
    if step.note:
        text += f" [{step.note}]"
    cell = _wrap(text)
    # The operation line goes first so a thread switching paths (open -> ioctl) is visible.
    return f"{_wrap('(' + step.operation + ')')}\n{cell}" if show_operation else cell


def _changes_cell(step: TraceStep) -> str:
    text = "; ".join(f"{f}: {before} -> {after}" for f, before, after in step.changes)
    return _wrap(_truncate(text, CHANGES_MAX))


def render_trace(trace: Trace, title: str = "") -> str:
    """Swimlane: one column per thread, one row per step, then held locks and changes."""
    threads = list(trace.threads)
    for step in trace.steps:  # tolerate a step by a thread the model did not list
        if step.thread not in threads:
            threads.append(step.thread)
    constant = _constant_operations(trace)
    headers = ["#"] + [_wrap(f"{t} ({constant[t]})" if t in constant else t) for t in threads]
    headers += ["held", "changes"]

    last_op: dict[str, str] = {}
    rows: list[list[str]] = []
    for step in trace.steps:
        show_op = step.thread not in constant and bool(step.operation) and last_op.get(step.thread) != step.operation
        last_op[step.thread] = step.operation
        row = [str(step.index)] + ["" for _ in threads]
        row[1 + threads.index(step.thread)] = _step_cell(step, show_op)
        row += [_wrap(", ".join(step.locks_held)), _changes_cell(step)]
        rows.append(row)

    lines: list[str] = []
    if title:
        lines += [f"== {title} ==", ""]
    lines.append(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    if not trace.steps:
        lines.append("(no steps: the initial state already shows this)")
    if trace.final or trace.waits:
        lines.append("")
    if trace.final:
        lines.append(trace.final)
    lines += [f"  {w}" for w in trace.waits]
    if trace.scenario:
        lines += ["", _scenario_block(trace.scenario)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- lockdep


def _scenario_block(scenario: list[str]) -> str:
    """Caller-supplied scenario lines, framed like lockdep unless they already are."""
    lines = list(scenario)
    if not any("Possible unsafe locking scenario" in s for s in lines):
        lines = [" Possible unsafe locking scenario:", ""] + lines
    if not any("DEADLOCK" in s for s in lines):
        lines += ["", " *** DEADLOCK ***"]
    return "\n".join(lines)


def _cycle_edges(cycle: LockCycle) -> list[LockEdge | None]:
    """edge k is locks[k] -> locks[k+1] (closing back to locks[0]); None when not recorded."""
    n = len(cycle.locks)
    out: list[LockEdge | None] = []
    for k in range(n):
        src, dst = cycle.locks[k], cycle.locks[(k + 1) % n]
        out.append(next((e for e in cycle.edges if e.src == src and e.dst == dst), None))
    return out


def generate_scenario(cycle: LockCycle) -> list[str]:
    """lockdep's unsafe-scenario table generalised to n CPUs.

    CPU k first takes locks[k], then every CPU reaches for the next lock of the
    cycle, which the CPU to its right holds.  The kernel prints two columns
    even for longer chains; n columns show every participant.
    """
    n = len(cycle.locks)
    edges = _cycle_edges(cycle)
    held: list[str] = []
    wanted: list[str] = []
    for k, edge in enumerate(edges):
        held.append(f"lock({_lock(cycle.locks[k], edge.src_mode if edge else 'w')});")
        wanted.append(f"lock({_lock(cycle.locks[(k + 1) % n], edge.dst_mode if edge else 'w')});")
    width = max([24] + [len(s) + 4 for s in held + wanted])
    indent = " " * 7

    def at(col: int, text: str) -> str:
        return (indent + " " * (col * width) + text).rstrip()

    lines = [(indent + "".join(f"CPU{k}".ljust(width) for k in range(n))).rstrip()]
    lines.append((indent + "".join("----".ljust(width) for _ in range(n))).rstrip())
    lines += [at(k, held[k]) for k in range(n)]
    lines += [at(k, wanted[k]) for k in range(n)]
    return lines


def render_cycle(cycle: LockCycle) -> str:
    """A lock-order cycle in the shape of lockdep's circular-dependency warning."""
    n = len(cycle.locks)
    rule = "=" * 54
    # lockdep calls a one-lock cycle (A while holding A) recursive locking
    warning = "possible recursive locking detected" if n == 1 else "possible circular locking dependency detected"
    lines = [rule, f"WARNING: {warning}", "-" * 54]
    if cycle.reachable:
        lines.append("apcheck: reachable deadlock (an explored run blocks on these locks)")
    else:
        lines.append("apcheck: possible (cycle only; no explored run deadlocked)")
    if n == 0:
        return "\n".join(lines + ["(empty cycle)"])
    edges = _cycle_edges(cycle)

    closing = edges[-1]  # locks[n-1] -> locks[0]: the acquisition that closes the cycle
    if closing is not None:
        lines += [
            "",
            f"{closing.thread} is trying to acquire lock:",
            f"  ({_lock(closing.dst, closing.dst_mode)}), at: {closing.function}",
            "",
            "but task is already holding lock:",
            f"  ({_lock(closing.src, closing.src_mode)})"
            + (f", at: {closing.src_function}" if closing.src_function else ""),
            "",
            "which lock already depends on the new lock.",
        ]

    # lockdep numbers the chain in reverse: #0 is the acquisition that closes it.
    lines += ["", "the existing dependency chain (in reverse order) is:", ""]
    for k, edge in enumerate(edges):
        dst = cycle.locks[(k + 1) % n]
        if edge is None:
            lines += [f"-> #{n - 1 - k} ({dst}):", f"       (no edge {cycle.locks[k]} -> {dst} recorded)"]
            continue
        holding = f"       while holding {_lock(edge.src, edge.src_mode)}"
        if edge.src_function:
            holding += f" (taken in {edge.src_function})"
        lines += [
            f"-> #{n - 1 - k} ({edge.dst}){{{edge.dst_mode}}}:",
            f"       acquired by {edge.thread} in {edge.function} ({edge.operation})",
            holding,
            "",
        ]
    if lines[-1] != "":
        lines.append("")

    lines += ["other info that might help us debug this:", "", "Chain exists of:"]
    lines.append("  " + " --> ".join(cycle.locks + [cycle.locks[0]]))
    scenario = cycle.scenario or [" Possible unsafe locking scenario:", ""] + generate_scenario(cycle)
    lines += ["", _scenario_block(scenario)]
    return "\n".join(lines)
