"""Lock reports in the kernel's own formats: lockdep's circular-dependency splat and a
hung-task style list of blocked threads.

Kernel developers read these formats daily, so the text follows
kernel/locking/lockdep.c (print_circular_bug, print_circular_lock_scenario,
lockdep_print_held_locks) as closely as a model allows:

- lock classes print as lockdep names them: ``&kvm->lock`` for a lock that is a
  member of a structure (``mutex_init(&kvm->lock)`` stringifies its argument),
  the bare name for a statically defined one (``DEFINE_MUTEX(ap_perms_mutex)``);
- the chain is numbered from the lock already held (``-> #N``) down to the new
  lock (``-> #0``);
- usage bits ``{+.+.}`` (``{++++}`` when the class is also read-acquired) and
  wait type ``-{3:3}``: every modelled lock is a sleeping lock taken in process
  context with interrupts enabled;
- the "Possible unsafe locking scenario" has two CPUs, as the kernel prints it,
  with ``rlock(`` for read acquisitions.

Where the model knows more than lockdep (which thread made each dependency, a
reachable deadlock), it says so in lines starting with ``apcheck:``.
"""

from __future__ import annotations

import textwrap

from checker.report.results import LockCycle, LockEdge, Trace

RULE = "=" * 54
USAGE_WRITE = "{+.+.}-{3:3}"  # lockdep usage chars + wait type for a process-context sleeping lock
USAGE_READ = "{++++}-{3:3}"  # the same class also acquired for reading
CPU_COL = 31  # lockdep's scenario: "  lock(" at column 2, CPU1's "lock(" at column 31
CONTINUATION = "    "  # a line wrapped to --width continues under its own indent plus this


def fit_width(text: str, width: int | None) -> str:
    """Every line of ``text`` at most ``width`` columns (``--width N``), nothing cut.

    A longer line continues on indented lines (its own indent plus four spaces), broken
    between words, so lock names, functions and ``-->`` arrows stay whole; only a single
    word longer than the room is split. Lines that fit are left exactly as they are."""
    if width is None:
        return text
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())][: width // 2]
        cont = (indent + CONTINUATION)[: width // 2]
        out += textwrap.wrap(line.strip(), width, initial_indent=indent, subsequent_indent=cont,
                             break_on_hyphens=False, expand_tabs=False)
    return "\n".join(out)


def lockdep_name(name: str) -> str:
    """A lock (class or instance) as lockdep names it: ``&`` before a structure member."""
    if name.startswith("&") or not any(sep in name for sep in ("->", ".")):
        return name
    return "&" + name


def _usage(cls: str, read_classes: set[str]) -> str:
    return USAGE_READ if cls in read_classes else USAGE_WRITE


def _read_classes(cycle: LockCycle) -> set[str]:
    out = {e.src for e in cycle.edges if e.src_mode == "r"}
    return out | {e.dst for e in cycle.edges if e.dst_mode == "r"}


def _cycle_edges(cycle: LockCycle) -> list[LockEdge | None]:
    """edge k is locks[k] -> locks[k+1] (closing back to locks[0]); None when not recorded."""
    n = len(cycle.locks)
    out: list[LockEdge | None] = []
    for k in range(n):
        src, dst = cycle.locks[k], cycle.locks[(k + 1) % n]
        out.append(next((e for e in cycle.edges if e.src == src and e.dst == dst), None))
    return out


def _op(mode: str) -> str:
    return "rlock(" if mode == "r" else "lock("


def unsafe_scenario(cycle: LockCycle, width: int | None = None) -> list[str]:
    """lockdep's two-CPU "Possible unsafe locking scenario" (print_circular_lock_scenario).

    ``source`` is the lock being acquired (locks[0]), ``target`` the lock already
    held (locks[-1]), ``parent`` the lock the chain reaches ``target`` from (locks[-2]: lockdep's
    first_parent, ``source`` itself in a two-lock cycle); CPU1 prints ``lock(`` whatever the mode,
    as lockdep does. ``width``
    (``--width N``): CPU1's column moves left of lockdep's 31 as far as its lines need."""
    n = len(cycle.locks)
    edges = _cycle_edges(cycle)
    lines = [" Possible unsafe locking scenario:", ""]
    if n == 1:  # print_deadlock_scenario: recursive locking
        mode = edges[0].dst_mode if edges[0] else "w"
        name = lockdep_name(cycle.locks[0])
        lines += ["       CPU0", "       ----", f"  {_op(mode)}{name});", f"  {_op(mode)}{name});",
                  "", " *** DEADLOCK ***", "", " May be due to missing lock nesting notation"]
        return lines
    source, parent, target = cycle.locks[0], cycle.locks[-2], cycle.locks[-1]
    closing = edges[-1]
    cpu1 = [f"lock({lockdep_name(parent)});", f"lock({lockdep_name(target)});"]
    col = CPU_COL if width is None else max(len("       CPU0 "), min(CPU_COL, width - max(map(len, cpu1))))
    pad = " " * col
    lines += [
        "       CPU0".ljust(col) + "CPU1",
        "       ----".ljust(col) + "----",
        f"  {_op(closing.src_mode if closing else 'w')}{lockdep_name(target)});",
        f"{pad}{cpu1[0]}",
        f"{pad}{cpu1[1]}",
        f"  {_op(closing.dst_mode if closing else 'w')}{lockdep_name(source)});",
        "",
        " *** DEADLOCK ***",
    ]
    return lines


def held_locks_by_thread(trace: Trace) -> dict[str, list[tuple[str, str]]]:
    """Locks each thread holds at the end of ``trace``, with the function that took each.

    A thread's held set changes only by its own steps, so its last step says what it holds."""
    held: dict[str, list[tuple[str, str]]] = {}
    for step in trace.steps:
        before = dict(held.get(step.thread, []))
        held[step.thread] = [(lk, before.get(lk, step.function)) for lk in step.locks_held]
    return held


def held_locks_block(thread: str, locks: list[tuple[str, str]]) -> list[str]:
    """lockdep_print_held_locks: "N locks held by task:" then " #i: (lock), at: function"."""
    n = len(locks)
    if n == 0:
        return [f"no locks held by {thread}."]
    lines = [f"{n} lock{'s' if n != 1 else ''} held by {thread}:"]
    for i, (lk, fn) in enumerate(locks):
        name, read = (lk[:-3], True) if lk.endswith("(r)") else (lk, False)
        usage = USAGE_READ if read else USAGE_WRITE
        lines.append(f" #{i}: ({lockdep_name(name)}){usage}, at: {fn}")
    return lines


def render_cycle(cycle: LockCycle, trace: Trace | None = None, width: int | None = None) -> str:
    """A lock-order cycle as lockdep's "possible circular locking dependency" splat.

    ``trace``, when given, is a run that deadlocks on this cycle: its held locks
    close the report as lockdep's "N locks held by" lines, one block per thread.
    ``width`` (``--width N``): no line longer, see ``fit_width``."""
    n = len(cycle.locks)
    reads = _read_classes(cycle)
    warning = "possible recursive locking detected" if n == 1 else "possible circular locking dependency detected"
    rule = len(RULE) if width is None else min(len(RULE), width)  # a rule is drawn, not wrapped
    lines = ["=" * rule, f"WARNING: {warning}", "-" * rule]
    if n == 0:
        return "\n".join(lines + ["(empty cycle)"])
    edges = _cycle_edges(cycle)

    def cls(name: str) -> str:
        return f"({lockdep_name(name)}){_usage(name, reads)}"

    closing = edges[-1]  # locks[n-1] -> locks[0]: the acquisition that closes the cycle
    if closing is not None and closing.thread:
        held_at = f", at: {closing.src_function}" if closing.src_function else ""
        lines += [
            f"{closing.thread} is trying to acquire lock:",
            f"{cls(closing.dst)}, at: {closing.function}",
            "",
            "but task is already holding lock:",
            f"{cls(closing.src)}{held_at}",
            "",
        ]
        lines += ["which lock already depends on the new lock." if n > 1 else "", ""]
    if cycle.reachable:
        lines += ["apcheck: reachable deadlock (an explored run blocks on these locks)", ""]
    else:
        lines += ["apcheck: possible (cycle only; no explored run deadlocked)", ""]

    if n > 1:
        # lockdep walks back from the held lock: entry #j (j >= 1) is locks[j], created by
        # edges[j-1] (locks[j-1] -> locks[j]); #0 is the new lock, created by the closing edge.
        lines += ["the existing dependency chain (in reverse order) is:", ""]
        for j in range(n - 1, -1, -1):
            edge = edges[j - 1] if j >= 1 else closing
            lines.append(f"-> #{j} {cls(cycle.locks[j])}:")
            if edge is None:
                lines += [f"       apcheck: no edge into {lockdep_name(cycle.locks[j])} recorded", ""]
                continue
            lines += [f"       {edge.function}"]
            if edge.operation and edge.operation != edge.function:
                lines.append(f"       {edge.operation}")
            taken = f" (taken in {edge.src_function})" if edge.src_function else ""
            lines += [f"       apcheck: {edge.thread} took it while holding {lockdep_name(edge.src)}{taken}", ""]
        lines += ["other info that might help us debug this:", ""]
        if n > 2:  # lockdep: only when parent != source, and then source --> parent --> target
            chain = (cycle.locks[0], cycle.locks[-2], cycle.locks[-1])
            lines += ["Chain exists of:", "  " + " --> ".join(lockdep_name(x) for x in chain), ""]
    lines += unsafe_scenario(cycle, width)
    if trace is not None:
        held = held_locks_by_thread(trace)
        for thread in trace.threads:
            if held.get(thread):
                lines += [""] + held_locks_block(thread, held[thread])
    return fit_width("\n".join(lines), width)


def blocked_block(blocked: list[tuple[str, str, str, str]], trace: Trace | None = None) -> list[str]:
    """Hung-task style: one line per blocked thread with the kernel function where it sleeps,
    then (with a trace) the locks it holds, as the hung-task detector's lock dump shows them.

    ``blocked``: (thread, function, call, holder) per blocked thread, e.g.
    ("pv", "kvm_s390_cpus_to_pv", "mutex_lock(&vcpu->mutex)", "vcpu0")."""
    held = held_locks_by_thread(trace) if trace is not None else {}
    lines: list[str] = []
    for thread, function, call, holder in blocked:
        by = f", held by {holder}" if holder else ""
        lines.append(f"INFO: task {thread} blocked in {function}: {call}{by}")
    if held:
        for thread, _, _, _ in blocked:
            lines += held_locks_block(thread, held.get(thread, []))
    return lines
