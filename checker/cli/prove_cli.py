"""``apcheck prove SPEC``: the symbolic verdicts, as a table, swimlanes and versioned JSON.

Registered by ``checker.cli.cli`` (``register(group)``). Settings resolve
CLI > spec ``prove:`` block (``lemmas``, ``k``, ``bmc``, ``timeout``) > defaults.
Exit codes: 0 every goal PROVED, 1 a VIOLATED goal, 2 usage or spec error,
3 inconclusive (CTI, BOUNDED, UNKNOWN), 4 internal error (including a
disagreement between Z3 and the explicit engine).
"""

from __future__ import annotations

import json
from typing import Any

import click

from checker.cli.params import Seconds
from checker.lang.expr import variables
from checker.lang.layout import Field
from checker.lang.program_types import Program, RwSem
from checker.prove.crosscheck import DEFAULT_MAX_STATES
from checker.prove.prove import (
    CTI,
    PROVED,
    VIOLATED,
    CtiInfo,
    PropertyProof,
    ProveError,
    ProveResult,
    goals_of,
    prove_program,
)
from checker.report.results import EXIT_INCONCLUSIVE, Trace, TraceStep

DEFAULTS: dict[str, Any] = {"lemmas": (), "k": 1, "bmc": 0, "timeout": 30.0}
PROVE_KEYS = ("lemmas", "k", "bmc", "timeout")


def prove_settings(spec_block: Any, **cli: Any) -> dict[str, Any]:
    """CLI (non-None) > spec ``prove:`` mapping > defaults."""
    out = dict(DEFAULTS)
    if isinstance(spec_block, dict):
        out.update({k: v for k, v in spec_block.items() if k in PROVE_KEYS and v is not None})
    out.update({k: v for k, v in cli.items() if v is not None and v != ()})
    out["lemmas"] = tuple(out["lemmas"])
    return out


# --------------------------------------------------------------------------- shown values


def show(f: Field, value: int) -> str:
    if f.kind == "pc":
        return f.names[value] if 0 <= value < len(f.names) else str(value)
    return f.show(value)


def locks_held(program: Program, t: int, values: dict[str, int]) -> list[str]:
    out = []
    for lk in program.locks:
        if isinstance(lk, RwSem):
            if values.get(lk.writer.name) == t + 1:
                out.append(lk.name)
            elif t in lk.readers and values.get(lk.readers[t].name, 0) == 1:
                out.append(f"{lk.name}(r)")
        elif values.get(lk.owner.name) == t + 1:
            out.append(lk.name)
    return out


def relevant_fields(program: Program, proof: PropertyProof, cti: CtiInfo) -> list[Field]:
    """What a reader needs to see of a CTI: fields the failing formula reads, the step reads or writes."""
    a = program.actions[cti.action.aid]
    keep: set[Field] = {program.threads[a.thread].pc}
    goal_expr = next((p.expr for p in program.properties if p.name == cti.invariant), None)
    if goal_expr is not None:
        conj = goal_expr
        from checker.lang.expr import Nary

        if cti.failing_conjunct is not None and isinstance(goal_expr, Nary):
            conj = goal_expr.args[cti.failing_conjunct]
        keep |= {f for f in variables(conj) if isinstance(f, Field)}
    keep |= {f for f in variables(a.guard) if isinstance(f, Field)}
    keep |= set(a.updates)
    if cti.post_failure_action >= 0:  # a check goal: what the failing step reads
        fa = program.actions[cti.post_failure_action]
        keep.add(program.threads[fa.thread].pc)
        keep |= {f for f in variables(fa.guard) if isinstance(f, Field)}
        for c in fa.checks:
            keep |= {f for f in variables(c.bad) if isinstance(f, Field)}
    return [f for f in program.layout.fields if f in keep]


def cti_trace(program: Program, cti: CtiInfo) -> Trace:
    a = program.actions[cti.action.aid]
    changes = []
    for f in program.layout.fields:
        before, after = cti.pre[f.name], cti.post[f.name]
        if before != after:
            changes.append((f.name, show(f, before), show(f, after)))
    step = TraceStep(1, cti.action.thread, a.function, a.operation, a.text,
                     locks_held(program, a.thread, cti.post), changes)
    return Trace([t.name for t in program.threads], [step], [a.aid])


def render_cti(program: Program, proof: PropertyProof, cti: CtiInfo) -> str:
    from checker.report.report_text import render_trace

    lemma = "" if cti.invariant == proof.property else f" (lemma {cti.invariant})"
    how = "induction" if cti.k == 1 else f"{cti.k}-induction"
    lines = [f"== {proof.property}: counterexample to {how}{lemma} ==", ""]
    assumed = [proof.property] + [x for x in proof.lemmas + proof.assumed if x != proof.property]
    lines.append(f"pre-state: satisfies {', '.join(assumed)} (need not be reachable)")
    if cti.path:
        lines.append(f"  ({cti.k - 1} earlier step{'s' if cti.k > 2 else ''} also satisfy them: actions {cti.path})")
    for f in relevant_fields(program, proof, cti):
        lines.append(f"  {f.name} = {show(f, cti.pre[f.name])}")
    held = {t.name: locks_held(program, t.index, cti.pre) for t in program.threads}
    held_txt = "; ".join(f"{t}: {', '.join(h)}" for t, h in held.items() if h)
    if held_txt:
        lines.append(f"  locks held: {held_txt}")
    lines += ["", render_trace(cti_trace(program, cti)), "", "post-state (changed fields):"]
    for f in program.layout.fields:
        before, after = cti.pre[f.name], cti.post[f.name]
        if before != after:
            lines.append(f"  {f.name}: {show(f, before)} -> {show(f, after)}")
    lines.append("")
    where = f"conjunct {cti.failing_conjunct}: {cti.conjunct_text}" if cti.failing_conjunct is not None else ""
    where = where or cti.post_failure
    lines.append(f"post-state violates {cti.invariant}" + (f": {where}" if where else ""))
    return "\n".join(lines)


def render_text(program: Program, result: ProveResult, spec: str, design: str) -> str:
    from tabulate import tabulate

    from checker.report.report_text import DETAIL_WIDTH, _wrap, render_trace
    from checker.search.run import replay_trace

    rows = []
    for p in result.properties:
        detail = f"{p.detail} [scope: {p.scope}]" if p.scope else p.detail
        rows.append([p.property, p.status, str(p.k), str(p.bmc_depth), f"{p.seconds:.2f}",
                     _wrap(detail, DETAIL_WIDTH)])
    parts = [f"spec {spec}  design {design}  prove"]
    if rows:
        parts.append(tabulate(rows, headers=["property", "status", "k", "bmc", "seconds", "detail"], tablefmt="simple",
                               disable_numparse=True))
    if result.crosscheck:
        parts.append(f"cross-check before PROVED: {result.crosscheck}")
    for p in result.properties:
        if p.status == VIOLATED and p.trace is not None:
            parts.append(render_trace(replay_trace(program, p.trace), title=f"{p.property}: {p.detail}"))
        elif p.status == CTI and p.cti is not None:
            parts.append(render_cti(program, p, p.cti))
    if not result.properties:
        goals = ", ".join(sorted(goals_of(program))) or "none"
        parts.append("nothing to prove: this spec has no always properties "
                     f"(goals available with --property: {goals})")
    return "\n\n".join(x.rstrip("\n") for x in parts) + "\n"


# --------------------------------------------------------------------------- JSON


def _cti_dict(c: CtiInfo) -> dict[str, Any]:
    return {
        "invariant": c.invariant,
        "pre": dict(c.pre),
        "action": {"id": c.action.aid, "thread": c.action.thread, "function": c.action.function,
                   "text": c.action.text},
        "post": dict(c.post),
        "failing_conjunct": None if c.failing_conjunct is None else {"index": c.failing_conjunct,
                                                                     "text": c.conjunct_text},
        "post_failure": c.post_failure,
        "k": c.k,
        "path": list(c.path),
    }


def proof_to_dict(program: Program, p: PropertyProof) -> dict[str, Any]:
    trace: dict[str, Any] | None = None
    if p.trace is not None:
        from checker.report.report_json import trace_to_dict
        from checker.search.run import replay_trace

        trace = trace_to_dict(replay_trace(program, p.trace))
    return {
        "property": p.property,
        "kind": p.kind,
        "status": p.status,
        "scope": p.scope or None,
        "detail": p.detail,
        "k": p.k,
        "bmc_depth": p.bmc_depth,
        "lemmas": list(p.lemmas),
        "assumed": list(p.assumed),
        "seconds": round(p.seconds, 3),
        "cti": None if p.cti is None else _cti_dict(p.cti),
        "trace": trace,
    }


def result_to_dict(program: Program, result: ProveResult, spec: str, design: str) -> dict[str, Any]:
    return {
        "version": 1,
        "spec": spec,
        "design": design,
        "prove": [proof_to_dict(program, p) for p in result.properties],
        "crosscheck": result.crosscheck or None,
    }


def statuses(result: ProveResult) -> dict[str, str]:
    """name -> status, for ``apcheck compare --prove``."""
    return result.statuses()


# --------------------------------------------------------------------------- command


def register(group: click.Group) -> None:
    group.add_command(prove)


@click.command()
@click.argument("spec", required=False)
@click.option("--property", "props", multiple=True, metavar="NAME",
              help="Prove only NAME (repeatable); check:KIND proves a built-in check group.")
@click.option("--lemma", "lemmas", multiple=True, metavar="NAME",
              help="Strengthen with the always-property NAME (repeatable; adds to the spec's prove: lemmas).")
@click.option("--k", "k", type=click.IntRange(min=0), default=None, help="k-induction depth (default 1; 0: BMC only).")
@click.option("--bmc", "bmc", type=click.IntRange(min=0), default=None, help="Bounded model checking depth.")
@click.option("--timeout", type=Seconds(), default=None,
              help="Solver seconds per property (default 30; 60 per rule with --masks); running out is UNKNOWN.")
@click.option("--auto-lemmas/--no-auto-lemmas", "auto_lemmas", default=True, show_default=True,
              help="Prove the derived auto:lock-ownership invariant first and assume it when PROVED.")
@click.option("--houdini", is_flag=True, default=False,
              help="Derive auto:held-locks (which locks each thread holds where heldsets cannot tell) by "
                   "Houdini, prove it, assume it (slow on big designs: minutes).")
@click.option("--crosscheck-states", "crosscheck_states", type=click.IntRange(min=0), default=None,
              help="Before PROVED, check the Z3 relation against the explicit successor function on every "
                   "reachable state up to N (then a sample; default 2000; 0: off).")
@click.option("--engine", type=click.Choice(["induction", "spacer"]), default="induction", show_default=True,
              help="spacer: Z3's CHC engine finds an inductive invariant per goal, re-checked by induction.")
@click.option("--no-lemmas", "no_lemmas", is_flag=True, default=False,
              help="Ignore the spec's prove: lemmas and found invariants (what Spacer finds alone).")
@click.option("--save-lemmas", "save_lemmas", is_flag=True, default=False,
              help="With --engine spacer: write the re-checked invariants into SPEC's prove: found: list.")
@click.option("--parametric", is_flag=True, default=False,
              help="SPEC or DESIGN: prove for any number of threads, each running any sequence of the design's "
                   "operations (checker.prove.parametric); --bmc writes a counterexample out as a spec.")
@click.option("--counterexample-dir", "cex_dir", default=".", metavar="DIR", show_default=True,
              help="With --parametric: where counterexample specs are written.")
@click.option("--sizes", "sizes", default=None, metavar="GRID",
              help="With --parametric: prove at every size of GRID, e.g. vms=1..2,adapters=1..2,domains=1..2 "
                   "(the design's sized constants; a dimension not given is 1).")
@click.option("--all-sizes", "all_sizes", is_flag=True, default=False,
              help="With --parametric: prove for any number of guests (a VM with its mdev) as well as threads "
                   "(checker.prove.parametric.poollift; the design's sized constants at three guests).")
@click.option("--masks", is_flag=True, default=False,
              help="Prove the AP mask rules for every 256-bit mask value (ap_model.mask_proofs; no SPEC).")
@click.option("--mask-width", "mask_width", type=click.IntRange(min=8), default=256, hidden=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--output", "-o", default=None, metavar="FILE", help="Write the report to FILE.")
@click.pass_context
def prove(ctx: click.Context, spec: str | None, props: tuple[str, ...], lemmas: tuple[str, ...], k: int | None,
          bmc: int | None, timeout: float | None, auto_lemmas: bool, houdini: bool, crosscheck_states: int | None,
          engine: str,
          no_lemmas: bool, save_lemmas: bool, parametric: bool, cex_dir: str, masks: bool, mask_width: int, fmt: str,
          output: str | None, sizes: str | None = None, all_sizes: bool = False) -> int:
    """Prove SPEC's invariants for every reachable state (induction), or find violations (BMC).

    With --masks (and no SPEC): prove the AP mask rules at full architecture width."""
    from checker.cli.cli import build, load, write_report
    from checker.spec.errors import SpecError, SpecErrors
    from checker.spec.spec import unknown_names, validate_lemma_names

    if masks:
        if spec is not None:
            raise click.UsageError("--masks proves the mask rules and takes no SPEC")
        return prove_masks(mask_width, 60.0 if timeout is None else timeout, fmt, output)
    if spec is None:
        raise click.UsageError("Missing argument 'SPEC' (or give --masks).")
    if parametric:
        from checker.cli.parametric_cli import run_parametric

        if engine != "induction" or houdini or save_lemmas or k not in (None, 1):
            raise click.UsageError("--parametric proves by 1-induction: no --engine spacer, --houdini, "
                                   "--save-lemmas or --k")
        if all_sizes:
            from checker.cli.allsizes_cli import run_all_sizes
            from checker.cli.parametric_cli import DEFAULT_CROSSCHECK_STATES, resolve

            if sizes is not None or bmc:
                raise click.UsageError("--all-sizes proves for every size: no --sizes or --bmc")
            states = DEFAULT_CROSSCHECK_STATES if crosscheck_states is None else crosscheck_states
            return run_all_sizes(resolve(ctx, spec), props, lemmas, 60.0 if timeout is None else timeout, auto_lemmas,
                                 states, fmt, output, no_lemmas)
        return run_parametric(ctx, spec, props, lemmas, 30.0 if timeout is None else timeout, bmc or 0, auto_lemmas,
                              crosscheck_states, fmt, output, cex_dir, no_lemmas, sizes)
    if sizes is not None or all_sizes:
        raise click.UsageError(f"{'--sizes' if sizes is not None else '--all-sizes'} goes with --parametric")
    loaded = load(ctx, spec)
    program = build(loaded)
    known = list(goals_of(program))
    validate_lemma_names(loaded, known)
    errors = unknown_names(lemmas, known, "--lemma", indexed=False, what="lemma")
    if errors:
        raise SpecErrors(errors)
    if save_lemmas and engine != "spacer":
        raise click.UsageError("--save-lemmas saves what --engine spacer finds")
    block = getattr(loaded, "prove", None)
    settings = prove_settings(block, k=k, bmc=bmc, timeout=timeout)
    spec_lemmas = () if no_lemmas else tuple(settings["lemmas"])
    found = [] if no_lemmas or not isinstance(block, dict) else list(block.get("found", ()))
    all_lemmas = tuple(dict.fromkeys(spec_lemmas + lemmas))
    try:
        result = prove_program(program, list(props) or None, all_lemmas, k=int(settings["k"]),
                               bmc_depth=int(settings["bmc"]), timeout_s=float(settings["timeout"]),
                               auto_lemmas=auto_lemmas,
                               crosscheck_states=DEFAULT_MAX_STATES if crosscheck_states is None
                               else crosscheck_states, engine=engine, found=found, houdini=houdini)
    except ProveError as e:
        where = "prove.found" if str(e).startswith("found[") else "--property" if props else "prove.lemmas"
        raise SpecError(loaded.path if where == "prove.found" else "", where, str(e)) from None
    except KeyboardInterrupt:  # Z3 was told to stop (attempt.interruptible_check): nothing was proved
        click.echo("apcheck: prove interrupted: no verdict (inconclusive)", err=True)
        return EXIT_INCONCLUSIVE
    if save_lemmas:
        saved = save_found(ctx, spec, program, result)
        click.echo(f"{spec}: prove.found: {saved} invariant{'s' if saved != 1 else ''} saved", err=True)
    design = loaded.design.name
    if fmt == "json":
        text = json.dumps(result_to_dict(program, result, spec, design), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_text(program, result, spec, design)
    write_report(text, output)
    return result.exit_code()


def save_found(ctx: click.Context, spec: str, program: Program, result: ProveResult) -> int:
    """Merge the run's re-checked invariants into SPEC's ``prove: found:`` (one per goal; the run's
    replace older ones), re-load the spec to make sure it stays valid; returns how many it holds."""
    from pathlib import Path

    from checker.cli.cli import load
    from checker.prove.lemmafile import with_found
    from checker.prove.spacer import parse_found

    path = Path(spec)
    original = path.read_text(encoding="utf-8")
    by_goal: dict[str, str] = {}
    block = getattr(load(ctx, spec), "prove", None) or {}
    for text in [*block.get("found", ()), *result.found]:
        by_goal[parse_found(program.layout.fields, text)[0]] = text
    path.write_text(with_found(original, list(by_goal.values())), encoding="utf-8")
    try:
        load(ctx, spec)
    except Exception:
        path.write_text(original, encoding="utf-8")
        raise
    return len(by_goal)


def prove_masks(width: int, timeout: float, fmt: str, output: str | None) -> int:
    """``apcheck prove --masks``: the mask rules for every ``width``-bit value (docs/mask-proofs.md).

    Exit 0 when every rule has its expected verdict (PROVED, or VIOLATED for a
    deliberately broken variant), 3 when one is UNKNOWN, else 1."""
    import time

    import z3

    from ap_model.mask_proofs import UNKNOWN, format_table, run_mask_proofs
    from checker.cli.cli import write_report

    t0 = time.perf_counter()
    results = run_mask_proofs(width=width, timeout_s=timeout)
    if fmt == "json":
        text = json.dumps({"version": 1, "masks": [r.to_json() for r in results]}, indent=2,
                          ensure_ascii=False) + "\n"
    else:
        text = (f"AP mask rules at {width}-bit APID/APQI/control-domain masks "
                f"(all values, Z3 {z3.get_version_string()})\n{format_table(results)}\n"
                f"total {time.perf_counter() - t0:.2f}s\n")
    write_report(text, output)
    if any(r.status == UNKNOWN for r in results):
        return 3
    return 0 if all(r.ok for r in results) else 1


__all__ = ["PROVED", "proof_to_dict", "prove", "prove_masks", "register", "render_text", "result_to_dict", "statuses"]
