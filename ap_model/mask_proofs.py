"""The AP mask rules proved for EVERY mask value at the architecture width (Z3).

Enumeration checks the vfio_ap designs on a few adapters and domains; here the
rules of ``ap_model.rules`` — the very expressions the designs use — are
translated to Z3 bit-vectors (``checker.z3expr.to_z3``) and proved for all
256-bit APID masks, 256-bit APQI masks and 256-bit control-domain masks:

- P1   the ``in_use`` check keeps assigned APQNs off the host: if no APQN
       assigned to an mdev is reserved for the default drivers, it stays so
       after any apmask or aqmask store (inductive step);
- P1b  the same invariant is kept by assign_adapter/assign_domain (their
       reservation check, EADDRNOTAVAIL);
- P2   the sharing check (EADDRINUSE) keeps "no APQN in two mdevs" (2 and 3 mdevs);
- P3   filtering ⇒ shadow APCB (the guest's CRYCB) ⊆ assigned ∩ host
       configuration ∩ bound to vfio_ap (256 rows of 256 bound bits);
- P3b  filtering is not vacuous: it keeps every domain of assigned ∩ config,
       and drops an APID only if one of its APQNs is not bound.

Each rule has a broken twin (drop the in_use check, the reservation check,
the sharing check, the filtering) that must be VIOLATED; its counterexample is
decoded to real APQNs (``03.0005`` = adapter 3, domain 5) and re-checked by
concrete evaluation (``checker.pycompile.evaluate``) of the same expressions.

The obligations are built in ``ap_model.mask_obligations``; this module solves
them and re-checks every counterexample. ``python -m ap_model.mask_proofs
[--width N] [--timeout S]`` prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import z3

from ap_model.mask_obligations import PROVED as PROVED
from ap_model.mask_obligations import VIOLATED as VIOLATED
from ap_model.mask_obligations import Obligation, obligations
from checker.lang.expr import INT
from checker.prove.z3expr import field_var, model_value, range_constraint, to_z3
from checker.search.pycompile import evaluate

UNKNOWN = "UNKNOWN"  # a solver timeout or unknown, or a counterexample that does not re-check: never a pass


@dataclass
class ProofResult:
    name: str
    statement: str
    status: str  # PROVED | VIOLATED | UNKNOWN
    seconds: float
    counterexample: str | None = None
    expected: str = PROVED  # broken variants are expected VIOLATED
    width: int = 256

    @property
    def ok(self) -> bool:
        """The verdict is the expected one (a broken rule must be VIOLATED)."""
        return self.status == self.expected

    def to_json(self) -> dict[str, object]:
        """Fixed key order, for ``--format json``."""
        return {
            "name": self.name,
            "statement": self.statement,
            "width": self.width,
            "expected": self.expected,
            "status": self.status,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "counterexample": self.counterexample,
        }


# ------------------------------------------------------------------ solving


def _check(ob: Obligation, timeout_s: float) -> ProofResult:
    t0 = time.perf_counter()
    env = {f: field_var(f) for f in ob.fields}
    # pure bit-vector obligations go to the QF_BV solver (bit-blasting); mixing in
    # Int terms (an int id) makes Z3 combine theories and is much slower
    has_int = any(f.sort == INT for f in ob.fields)
    solver = z3.Solver() if has_int else z3.SolverFor("QF_BV")
    solver.set("timeout", max(1, int(timeout_s * 1000)))
    for f in ob.fields:
        solver.add(range_constraint(f, env[f]))
    for f in ob.onehot:
        v = env[f]
        solver.add(v != 0, v & (v - 1) == 0)
    for h in ob.hyps:
        solver.add(to_z3(h, env))
    solver.add(z3.Not(to_z3(ob.goal, env)))
    prefs = list(ob.prefs)
    model = None
    if ob.expected == VIOLATED and prefs:
        # a broken rule: look at the preferred APQN first (a sat answer there is as
        # genuine as any, and usually quicker); otherwise fall back to the full query
        solver.push()
        solver.add(to_z3(prefs.pop(0), env))
        if solver.check() == z3.sat:
            model = solver.model()
        else:
            solver.pop()
    if model is None:
        res = solver.check()
        if res == z3.unsat:
            return ProofResult(ob.name, ob.statement, PROVED, time.perf_counter() - t0, None, ob.expected, ob.width)
        if res != z3.sat:
            why = solver.reason_unknown()
            return ProofResult(
                ob.name, ob.statement, UNKNOWN, time.perf_counter() - t0, f"solver: {why}", ob.expected, ob.width
            )
        model = solver.model()
    deadline = t0 + timeout_s
    for p in prefs:  # shrink towards a readable counterexample (each kept only if still sat)
        if time.perf_counter() > deadline:
            break
        solver.push()
        solver.add(to_z3(p, env))
        if solver.check() == z3.sat:
            model = solver.model()
        else:
            solver.pop()
    values = {f: model_value(model, env[f]) for f in ob.fields}
    # re-check on the concrete evaluator: hypotheses true, goal false
    hyps_ok = all(bool(evaluate(h, values)) for h in ob.hyps)
    hyps_ok = hyps_ok and all(values[f].bit_count() == 1 for f in ob.onehot)
    goal_val = bool(evaluate(ob.goal, values))
    seconds = time.perf_counter() - t0
    if not hyps_ok or goal_val:
        return ProofResult(
            ob.name,
            ob.statement,
            UNKNOWN,
            seconds,
            "internal: Z3 counterexample not confirmed by concrete evaluation (please report)",
            ob.expected,
            ob.width,
        )
    text = ob.describe(values) + " [re-checked by concrete evaluation]"
    return ProofResult(ob.name, ob.statement, VIOLATED, seconds, text, ob.expected, ob.width)


def run_mask_proofs(width: int = 256, timeout_s: float = 60, only: Sequence[str] | None = None) -> list[ProofResult]:
    """Prove (or refute, for the broken variants) every mask rule at ``width`` bits."""
    out = []
    for ob in obligations(width):
        if only and ob.name not in only:
            continue
        t0 = time.perf_counter()
        r = _check(ob, timeout_s)
        r.seconds = time.perf_counter() - t0
        out.append(r)
    return out


def format_table(results: Sequence[ProofResult]) -> str:
    lines = [f"{'property':<14} {'expected':<9} {'status':<9} {'time':>7}  statement"]
    for r in results:
        mark = "" if r.ok else "  <-- UNEXPECTED"
        lines.append(f"{r.name:<14} {r.expected:<9} {r.status:<9} {r.seconds:6.2f}s  {r.statement}{mark}")
        if r.counterexample:
            lines.append(f"{'':<14} counterexample: {r.counterexample}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ap_model.mask_proofs", description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=256, help="mask width in bits (default 256 = AP_DEVICES)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per obligation (default 60)")
    ap.add_argument("--only", action="append", help="run only this property (repeatable)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = run_mask_proofs(args.width, args.timeout, args.only)
    print(
        f"AP mask rules at {args.width}-bit APID/APQI/control-domain masks (all values, Z3 {z3.get_version_string()})"
    )
    print(format_table(results))
    print(f"total {time.perf_counter() - t0:.2f}s")
    if any(r.status == UNKNOWN for r in results):
        return 3
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
