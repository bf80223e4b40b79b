"""What a check produces: verdicts, statistics, traces and the lock-order graph.

Reports (text, JSON, DOT) render these objects and nothing else, so every
output format carries the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# statuses
HOLDS = "HOLDS"
VIOLATED = "VIOLATED"
BOUNDED = "BOUNDED"
WITNESSED = "WITNESSED"
NOT_WITNESSED = "NOT_WITNESSED"
UNKNOWN = "UNKNOWN"
NOT_APPLICABLE = "N/A"  # nothing to check (no shared field, no object): never a pass

# exit codes (DESIGN.md)
EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_INTERNAL = 0, 1, 2, 3, 4

BUILTIN_PROPERTIES = ("deadlock", "lock-order", "memory-safety", "data-race", "lock-discipline")


@dataclass
class TraceStep:
    index: int  # 1-based
    thread: str
    function: str  # kernel function the step models
    operation: str  # kernel path the thread is in (syscall / callback)
    action: str  # e.g. "mutex_lock(kvm->lock)"
    locks_held: list[str]  # locks the thread holds after the step
    changes: list[tuple[str, str, str]]  # (field, before, after), shown values
    note: str = ""  # e.g. "use after free of kvm"
    label: str = ""  # the statement label: with thread and function, the step's stable identity (replay)


@dataclass
class Trace:
    threads: list[str]  # swimlane columns, in model order
    steps: list[TraceStep]
    actions: list[int]  # action ids from the initial state, for replay
    final: str = ""  # what the last state shows (deadlock: who waits for what)
    waits: list[str] = field(default_factory=list)  # deadlock: one line per blocked thread
    scenario: list[str] = field(default_factory=list)  # lockdep "possible unsafe locking scenario"
    spec: str = ""  # the spec file the trace came from (replay refuses a foreign trace)
    design: str = ""  # the design it ran on
    # deadlock, hung-task view: (thread, kernel function, blocking call, holder thread) per blocked thread
    blocked: list[tuple[str, str, str, str]] = field(default_factory=list)
    # every shown field's value before step 1 (the HTML explorer rebuilds each step's full state)
    initial: list[tuple[str, str]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.steps)


@dataclass
class PropertyResult:
    name: str
    kind: str  # deadlock | lock-order | memory-safety | data-race | always | sometimes
    status: str
    detail: str
    description: str = ""
    source: str = ""
    trace: Trace | None = None
    decides: bool = True  # False: a design witness the spec did not select (reported, not in the exit code)


@dataclass
class Stats:
    states: int = 0
    transitions: int = 0
    deadlock_states: int = 0
    max_depth: int = 0
    seconds: float = 0.0
    complete: bool = False
    limit: str = ""  # which limit stopped the search ("max-states", "max-depth", "timeout", "memory")
    strategy: str = "bfs"
    store: str = "exact"  # exact | fingerprint
    state_bits: int = 0
    collision_probability: float = 0.0
    peak_memory_mb: float = 0.0
    reductions: dict[str, object] = field(default_factory=dict)  # checker.search.reduce describe()
    workers: int = 1  # processes or Ray actors that ran the search (checker.search.parallel)
    backend: str = "in-process"  # in-process | processes | ray

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LockEdge:
    """lockdep's "acquired ``dst`` while holding ``src``" (lock classes)."""

    src: str
    dst: str
    src_mode: str  # "w" or "r"
    dst_mode: str
    thread: str  # first thread seen creating it
    function: str  # function of the acquiring step
    operation: str  # kernel path the thread was in
    src_function: str = ""  # function that acquired ``src`` (when known statically)


@dataclass
class LockCycle:
    locks: list[str]  # classes in cycle order; the cycle closes back to locks[0]
    edges: list[LockEdge]
    reachable: bool  # a reachable deadlock state blocks on exactly these classes
    scenario: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    spec: str
    design: str
    result: str  # HOLDS | VIOLATED | BOUNDED
    stats: Stats
    properties: list[PropertyResult]
    lock_edges: list[LockEdge] = field(default_factory=list)
    cycles: list[LockCycle] = field(default_factory=list)
    lock_classes: list[str] = field(default_factory=list)
    name: str = ""  # the spec's scenario name (``spec`` is then its path); "" when spec is the name

    def exit_code(self) -> int:
        if any(p.status == VIOLATED for p in self.properties):
            return EXIT_VIOLATION
        if any(p.status in (BOUNDED, UNKNOWN) or p.status == NOT_WITNESSED and p.decides for p in self.properties) \
                or not self.stats.complete:
            return EXIT_INCONCLUSIVE
        return EXIT_OK
