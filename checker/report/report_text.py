"""Plain-text report: verdict table, statistics, swimlane traces, lockdep-style cycles.

The audience reads lockdep splats for a living, so lock cycles are printed in
the shape of the kernel's "possible circular locking dependency" report, and
traces name the kernel function of every step. Output is plain ASCII unless
``color=True`` (it ends up in mails and CI logs).
"""

from __future__ import annotations

import textwrap

from tabulate import tabulate

from checker.report.lockdep import blocked_block, fit_width, render_cycle, unsafe_scenario
from checker.report.results import (
    BOUNDED,
    HOLDS,
    NOT_WITNESSED,
    UNKNOWN,
    VIOLATED,
    WITNESSED,
    CheckResult,
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


def _wrap(text: str, width: int = CELL_WIDTH, whole_words: bool = False) -> str:
    """Wrap each line of a cell; never split at the '-' of '->' in lock names.

    ``whole_words`` (compact layout): a word longer than ``width`` stays whole; the
    caller then sees the line is too long and picks a narrower layout."""
    out: list[str] = []
    for line in text.splitlines() or [""]:
        out.extend(textwrap.wrap(line, width, break_on_hyphens=False, break_long_words=not whole_words) or [""])
    return "\n".join(out)


# --------------------------------------------------------------------------- result


def render_result(result: CheckResult, color: bool = False, width: int | None = None) -> str:
    """The whole text report for one check, ending with a newline.

    ``width``: the compact mail layout (``--width N``): no line longer than N where
    the content allows (a lock or field name longer than N stays whole), only the
    threads that act, nothing cut (see ``render_trace``)."""
    status = _paint(result.result, _STATUS_COLOR.get(result.result, ""), color)
    named = f" ({result.name})" if result.name and result.name != result.spec else ""
    parts = [f"spec {result.spec}{named}  design {result.design}  result {status}"]
    parts.append(render_verdicts(result.properties, color, width))
    parts.append(render_stats(result.stats, width))
    shown: list[Trace] = []
    for prop in result.properties:
        if prop.trace is not None and not any(prop.trace is t for t in shown):
            shown.append(prop.trace)  # lock-order's reachable cycle shares the deadlock trace
            parts.append(render_trace(prop.trace, title=f"{prop.name}: {prop.detail}", width=width))
    if result.cycles:
        title = f"== lock-order: {len(result.cycles)} cycle{'s' if len(result.cycles) != 1 else ''} =="
        # a reachable cycle's run is the deadlock trace: its held locks close the splat
        deadlock = next((p.trace for p in result.properties if p.name == "deadlock" and p.trace), None)
        parts.append("\n\n".join([title] + [render_cycle(c, deadlock if c.reachable else None, width)
                                             for c in result.cycles]))
    text = fit_width("\n\n".join(p.rstrip("\n") for p in parts), width)  # the header, findings, hung tasks
    # no trailing blanks: reports get pasted into patch mail, where checkpatch flags them
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def render_verdicts(properties: list[PropertyResult], color: bool = False, width: int | None = None) -> str:
    """One row per property, in the given order; ``width`` bounds the whole table."""
    rows, details = [], []
    detail_width = DETAIL_WIDTH
    if width is not None:  # name and status columns, two 2-space gaps
        detail_width = max(16, width - max([8] + [len(p.name) for p in properties]) - len("NOT_WITNESSED") - 4)
    for prop in properties:
        detail = prop.detail
        if prop.trace is not None:
            n = prop.trace.length
            steps = f"trace {n} step{'s' if n != 1 else ''}"
            detail = f"{detail}; {steps}" if detail else steps
        status = _paint(prop.status, _STATUS_COLOR.get(prop.status, ""), color)
        rows.append([prop.name, status, _wrap(detail, detail_width)])
        details.append(detail)
    table = tabulate(rows, headers=["property", "status", "detail"], tablefmt="simple", disable_numparse=True)
    if width is None or max(len(line) for line in table.splitlines()) <= width:
        return table
    # too narrow for three columns (long property names): name and status, the detail indented below
    lines: list[str] = []
    for (name, status, _), detail in zip(rows, details):
        lines.append(f"{name}  {status}")
        lines += textwrap.wrap(detail, width, initial_indent="    ", subsequent_indent="    ",
                               break_on_hyphens=False)
    return "\n".join(lines)


def render_stats(stats: Stats, max_width: int | None = None) -> str:
    """``max_width``: wrap long values (the reductions line) under their column."""
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
    if stats.reductions:
        rows.append(("reductions", reductions_line(stats.reductions)))
    if stats.workers > 1:
        rows.append(("workers", f"{stats.workers} ({stats.backend})"))
    width = max(len(k) for k, _ in rows)
    lines = []
    for k, v in rows:
        room = max_width - width - 2 if max_width else 0
        chunks = textwrap.wrap(v, room) if room > 0 and len(v) > room else [v]
        lines.append(f"{k.ljust(width)}  {chunks[0]}")
        lines.extend(" " * (width + 2) + c for c in chunks[1:])
    if not stats.complete:
        lines.append(f"search BOUNDED by {stats.limit or 'a limit'}: counts are partial")
    return "\n".join(lines)


def reductions_line(red: dict[str, object]) -> str:
    """One line: which reductions ran, which did not and why, which properties were searched unreduced."""
    ran = red.get("ran") or []
    parts = [", ".join(map(str, ran)) if ran else "none"]  # type: ignore[call-overload]
    skipped = red.get("skipped") or {}
    parts += [f"no {k}: {v}" for k, v in skipped.items()]  # type: ignore[attr-defined]
    unreduced = red.get("unreduced") or {}
    parts += [f"{k} searched unreduced: {v}" for k, v in unreduced.items()]  # type: ignore[attr-defined]
    if ran:
        parts.append("traces are real runs, not necessarily the shortest")
    return "; ".join(parts)


# --------------------------------------------------------------------------- traces


def _constant_operations(trace: Trace) -> dict[str, str]:
    """Threads whose steps all run in one operation: that goes in the column header."""
    ops: dict[str, set[str]] = {}
    for step in trace.steps:
        ops.setdefault(step.thread, set()).add(step.operation)
    return {t: next(iter(s)) for t, s in ops.items() if len(s) == 1 and next(iter(s))}


def _step_cell(step: TraceStep, show_operation: bool, width: int = CELL_WIDTH, whole: bool = False,
               final: str = "") -> str:
    text = f"{step.function}: {step.action}" if step.function else step.action
    if step.note:
        text += _note(step, final)
    cell = _wrap(text, width, whole)
    # The operation line goes first so a thread switching paths (open -> ioctl) is visible.
    return f"{_wrap('(' + step.operation + ')', width, whole)}\n{cell}" if show_operation else cell


def _note(step: TraceStep, final: str) -> str:
    """The step's note; once only: when the trace's closing line says the same, point to it."""
    prop, _, message = step.note.partition(": ")
    return f" [{prop}: see below]" if message and message in final else f" [{step.note}]"


def _changes_text(step: TraceStep) -> str:
    return "; ".join(f"{f}: {before} -> {after}" for f, before, after in step.changes)


def _cut_changes(step: TraceStep) -> str:
    """The changes within CHANGES_MAX, whole entries only (a value cut in the middle, such as a
    sysfs mask's 64 hex digits, would read as another value); the first entry is always whole."""
    parts = [f"{f}: {before} -> {after}" for f, before, after in step.changes]
    out = parts[0] if parts else ""
    for k, part in enumerate(parts[1:], 1):
        more = len(parts) > k + 1
        if len(out) + 2 + len(part) + (2 + len(ELLIPSIS) if more else 0) > CHANGES_MAX:
            return f"{out}; {ELLIPSIS}"
        out += f"; {part}"
    return out


def _changes_cell(step: TraceStep, width: int = CELL_WIDTH, cut: bool = True) -> str:
    return _wrap(_cut_changes(step), width) if cut else _wrap(_changes_text(step), width, whole_words=True)


def _lanes(trace: Trace, compact: bool) -> list[str]:
    threads = list(trace.threads)
    for step in trace.steps:  # tolerate a step by a thread the model did not list
        if step.thread not in threads:
            threads.append(step.thread)
    if compact:  # mail: a thread that does nothing in this trace gets no column
        acting = {s.thread for s in trace.steps}
        threads = [t for t in threads if t in acting]
    return threads


def _swimlane(trace: Trace, threads: list[str], cell: int | None) -> str:
    """The table; ``cell`` (compact layout) is the wrap width of every column, and nothing is cut."""
    width, whole = cell or CELL_WIDTH, cell is not None
    constant = _constant_operations(trace)
    headers = ["#"] + [_wrap(f"{t} ({constant[t]})" if t in constant else t, width, whole) for t in threads]
    headers += ["held", "changes"]
    last_op: dict[str, str] = {}
    rows: list[list[str]] = []
    for step in trace.steps:
        show_op = step.thread not in constant and bool(step.operation) and last_op.get(step.thread) != step.operation
        last_op[step.thread] = step.operation
        row = [str(step.index)] + ["" for _ in threads]
        row[1 + threads.index(step.thread)] = _step_cell(step, show_op, width, whole, trace.final)
        row += [_wrap(", ".join(step.locks_held), width, whole), _changes_cell(step, width, cut=not whole)]
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def _step_list(trace: Trace, width: int) -> str:
    """The narrowest layout: one block per step, the thread first, held locks and changes indented."""
    name_w = max([len(t) for t in trace.threads] + [len(s.thread) for s in trace.steps])
    num_w = len(str(len(trace.steps)))
    indent = " " * (num_w + 2 + name_w + 2)
    lines: list[str] = []
    for step in trace.steps:
        text = f"{step.function}: {step.action}" if step.function else step.action
        if step.operation:
            text = f"({step.operation}) {text}"
        if step.note:
            text += _note(step, trace.final)
        head = f"{str(step.index).rjust(num_w)}  {step.thread.ljust(name_w)}  "
        extra = [f"held: {', '.join(step.locks_held)}"] if step.locks_held else []
        extra += [f"changes: {_changes_text(step)}"] if step.changes else []
        for k, part in enumerate([text, *extra]):
            wrapped = textwrap.wrap(part, max(20, width - len(indent)), break_on_hyphens=False,
                                    break_long_words=False) or [""]
            first = head if k == 0 else indent
            lines += [first + wrapped[0]] + [indent + w for w in wrapped[1:]]
    return "\n".join(lines)


def render_trace(trace: Trace, title: str = "", width: int | None = None) -> str:
    """Swimlane: one column per thread, one row per step, then held locks and changes.

    ``width`` (compact mail layout): only acting threads, every column wrapped to fit
    ``width`` and nothing cut; when even that cannot fit, one block per step."""
    threads = _lanes(trace, compact=width is not None)
    if width is None:
        table = _swimlane(trace, threads, None)
    else:  # columns: "#", threads, held, changes; tabulate puts two spaces between columns
        cols = len(threads) + 2
        cell = (width - len(str(len(trace.steps))) - 2 * (cols + 1) + 1) // cols
        table = _swimlane(trace, threads, cell) if cell >= 16 else ""
        if not table or max(len(line) for line in table.splitlines()) > width:
            table = _step_list(trace, width)
    lines: list[str] = []
    if title:
        head = f"== {title} =="
        lines += [textwrap.fill(head, width, break_on_hyphens=False) if width else head, ""]
    lines.append(table)
    if not trace.steps:
        lines.append("(no steps: the initial state already shows this)")
    if trace.final or trace.waits:
        lines.append("")
    if trace.final:
        lines.append(trace.final)
    if trace.blocked:
        lines += blocked_block(trace.blocked, trace)
    else:
        lines += [f"  {w}" for w in trace.waits]
    if trace.scenario:
        lines += ["", *trace.scenario]
    return fit_width("\n".join(lines), width)


__all__ = ["render_cycle", "render_result", "render_stats", "render_trace", "render_verdicts", "unsafe_scenario"]
