"""What ``apcheck prove`` reports: per-property proofs, counterexamples to induction, traces."""

from __future__ import annotations

from dataclasses import dataclass, field

PROVED, CTI, VIOLATED, BOUNDED, UNKNOWN = "PROVED", "CTI", "VIOLATED", "BOUNDED", "UNKNOWN"



@dataclass
class ActionRef:
    aid: int
    thread: str
    function: str
    operation: str
    text: str


@dataclass
class CtiInfo:
    """A counterexample to induction: a pre-state satisfying the invariant (and lemmas)
    from which one step leads to a state violating ``invariant``."""

    invariant: str  # the property itself or the lemma whose consecution fails
    pre: dict[str, int]
    action: ActionRef
    post: dict[str, int]
    failing_conjunct: int | None  # index into the top-level conjunction, when there is one
    conjunct_text: str
    k: int = 1  # induction depth at which this CTI was found
    path: list[int] = field(default_factory=list)  # k-induction: actions leading into ``pre``
    pre_state: int = 0  # packed states (layout encoding)
    post_state: int = 0
    post_failure: str = ""  # check goals: which step would fail in the post-state, and why
    post_failure_action: int = -1  # its action id


@dataclass
class PropertyProof:
    property: str
    kind: str  # always | check
    status: str
    detail: str
    k: int  # induction depth tried (0: induction disabled)
    bmc_depth: int  # depth BMC reached without violation, or the violation's depth
    lemmas: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)  # invariants proved first, then assumed
    cti: CtiInfo | None = None
    trace: list[int] | None = None  # VIOLATED: action ids from the initial state
    seconds: float = 0.0
    description: str = ""
    scope: str = ""  # PROVED: "this scenario", "cyclic scenario (unbounded repetitions)" or "all sizes" (+ caveat)


@dataclass
class ProveResult:
    design: str
    properties: list[PropertyProof]
    seconds: float = 0.0
    crosscheck: str = ""  # what the relation was cross-checked on before PROVED was reported
    found: list[str] = field(default_factory=list)  # --engine spacer: re-checked invariants, as saved text

    def exit_code(self) -> int:
        statuses = {p.status for p in self.properties}
        if VIOLATED in statuses:
            return 1
        if statuses <= {PROVED}:
            return 0
        return 3

    def by_name(self) -> dict[str, PropertyProof]:
        return {p.property: p for p in self.properties}

    def statuses(self) -> dict[str, str]:
        """name -> status (for ``apcheck compare --prove``)."""
        return {p.property: p.status for p in self.properties}
