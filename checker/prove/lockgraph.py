"""``auto:lock-order-acyclic``: no cycle in lockdep's graph, for every reachable state.

The candidate edges (``derived.edge_candidates``) over-approximate every edge
the explicit search can record. While the class graph of the edges not yet
refuted has a cycle, every candidate behind one class edge of that cycle is
refuted by proving its "never fires" invariant (the same induction, lemmas,
k-induction and BMC as any goal). An acyclic remainder is PROVED; a cycle with
a class edge that cannot be refuted is reported with that edge's CTI (or its
BMC trace when every class edge on the cycle is reachable: VIOLATED).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from checker.prove.derived import EdgeCandidate, edge_candidates
from checker.prove.goals import Goal
from checker.prove.prove_results import CTI, PROVED, UNKNOWN, VIOLATED, PropertyProof
from checker.search.lockorder import find_cycles

MAX_EDGE_PROOFS = 200


def _edge_goal(c: EdgeCandidate) -> Goal:
    from checker.lang.expr import Not

    e = c.edge
    return Goal(c.name, "derived", Not(c.fires),
                description=f"{e.thread}: {e.function} never takes {e.dst} while holding {e.src}")


def prove_lock_graph(prover: object, goal: Goal, lemmas: Sequence[Goal], k: int, bmc: int) -> PropertyProof:
    """``prover``: a ``checker.prove.prove.Prover`` (typed loosely: that module imports this one)."""
    from checker.prove.prove import Prover

    assert isinstance(prover, Prover)
    t0 = time.monotonic()
    cands = edge_candidates(prover.program)
    proofs: dict[int, PropertyProof] = {}

    def live() -> list[int]:
        return [i for i in range(len(cands)) if not (i in proofs and proofs[i].status == PROVED)]

    def done(status: str, detail: str, src: PropertyProof | None = None) -> PropertyProof:
        out = PropertyProof(goal.name, goal.kind, status, detail, k, 0 if src is None else src.bmc_depth,
                            lemmas=[g.name for g in lemmas], cti=None if src is None else src.cti,
                            trace=None if src is None else src.trace, description=goal.description)
        out.seconds = time.monotonic() - t0
        if prover.assumed:
            out.assumed = [g.name for g in prover.assumed]
        return out

    while True:
        alive = live()
        cycles = find_cycles([cands[i].edge for i in alive])
        if not cycles:
            refuted = len(cands) - len(alive)
            return done(PROVED, f"no cycle in the lock-order graph: {len(cands)} candidate edge"
                                f"{'s' if len(cands) != 1 else ''}, {len(alive)} left after refuting {refuted} "
                                f"by induction; the {len(alive)} left form no cycle")
        cycle = cycles[0]
        text = " -> ".join([e.src for e in cycle] + [cycle[0].src])
        stuck: list[PropertyProof] = []
        for e in cycle:
            pair = (e.src, e.dst)
            behind = [i for i in alive if (cands[i].edge.src, cands[i].edge.dst) == pair]
            failed: PropertyProof | None = None
            for i in behind:
                if i not in proofs:
                    if len(proofs) >= MAX_EDGE_PROOFS:
                        return done(UNKNOWN, f"cycle {text}: more than {MAX_EDGE_PROOFS} edge proofs needed")
                    proofs[i] = prover.prove(_edge_goal(cands[i]), lemmas, k, bmc)
                if proofs[i].status != PROVED:
                    failed = proofs[i]
                    break
            if failed is None:
                break  # this class edge is refuted: the cycle is broken, look again
            stuck.append(failed)
        else:
            # no class edge of the cycle could be refuted
            if all(p.status == VIOLATED for p in stuck):
                first = stuck[0]
                return done(VIOLATED, f"cycle {text}: every edge is reachable ({first.property}: {first.detail})",
                            first)
            worst = next((p for p in stuck if p.status == CTI), stuck[0])
            status = CTI if worst.status in (CTI, VIOLATED) else worst.status
            return done(status, f"cycle {text} not excluded: {worst.property} is {worst.status}: {worst.detail}",
                        worst)


__all__ = ["MAX_EDGE_PROOFS", "prove_lock_graph"]
