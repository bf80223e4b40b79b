"""``apcheck compare A.yaml B.yaml ...``: several designs, one matrix.

Every spec is checked with the same options (defaults + command line; the
specs' own ``check:`` blocks are ignored so the columns are comparable). The
exit code says whether the comparison is complete (0) or some search was
bounded (3); verdicts themselves are the report, not an error.
"""

from __future__ import annotations

from typing import Any

import click

from checker.report.results import EXIT_INCONCLUSIVE, EXIT_OK


def register(group: click.Group) -> None:
    from checker.cli.cli import build, get_app, load, note_interrupted, search_options, write_report

    @group.command(name="compare")
    @click.argument("specs", nargs=-1, required=True)
    @search_options
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    @click.option("--output", "-o", default=None, metavar="FILE", help="Write the comparison to FILE.")
    @click.option("--prove", "with_prove", is_flag=True, default=False,
                  help="Also run the Z3 prover on each spec's invariants.")
    @click.pass_context
    def compare_cmd(ctx: click.Context, /, specs: tuple[str, ...], fmt: str, output: str | None,
                    with_prove: bool, **cli_values: Any) -> int:
        """Check several specs with the same options and compare their verdicts."""
        from checker.report.compare import compare, render_text, to_dict, to_json
        from checker.search.limits import StopRequest, stop_on_signals
        from checker.search.run import check_program
        from checker.spec.options import Options

        get_app(ctx)
        if len(specs) < 2:
            raise click.UsageError("compare needs at least two specs")
        only = tuple(cli_values.pop("only", ()) or ())
        skip = tuple(cli_values.pop("skip", ()) or ())
        opts = Options(quiet=True).with_overrides(properties=only or None, skip=skip or None, **cli_values)
        results, programs = [], []
        with stop_on_signals(StopRequest()) as stop:  # SIGINT/SIGTERM: the remaining searches end BOUNDED
            for spec in specs:
                loaded = load(ctx, spec)
                program = build(loaded)
                programs.append((program, getattr(loaded, "prove", None)))
                results.append(check_program(program, opts, loaded.scenario.name, loaded.design.name, stop))
        note_interrupted(stop)
        comp = compare(results)
        proofs = _prove_all(programs) if with_prove and not stop.reason else None
        if fmt == "json":
            if proofs is not None:
                import json

                data = to_dict(comp)
                data["prove"] = {col: rows for col, rows in zip(comp.columns, proofs)}
                text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
            else:
                text = to_json(comp)
        else:
            text = render_text(comp)
            if proofs is not None:
                text += "\n" + _render_proofs(comp.columns, proofs)
        write_report(text, output)
        complete = all(r.stats.complete for r in results)
        unproved = proofs is not None and any(row["status"] == "UNKNOWN" for rows in proofs for row in rows)
        return EXIT_OK if complete and not unproved and not stop.reason else EXIT_INCONCLUSIVE


def _prove_all(programs: list[tuple[Any, Any]]) -> list[list[dict[str, Any]]]:
    """Prove each spec's invariants with the lemmas, k and BMC depth of its own ``prove:`` block."""
    from checker.cli.prove_cli import prove_settings
    from checker.prove.prove import prove_program

    out = []
    for program, block in programs:
        st = prove_settings(block, k=None, bmc=None, timeout=None)
        res = prove_program(program, None, tuple(st["lemmas"]), k=int(st["k"]), bmc_depth=int(st["bmc"]),
                            timeout_s=float(st["timeout"]))
        out.append([{"property": p.property, "status": p.status, "detail": p.detail} for p in res.properties])
    return out


def _render_proofs(columns: list[str], proofs: list[list[dict[str, Any]]]) -> str:
    from tabulate import tabulate

    names: list[str] = []
    for rows in proofs:
        for r in rows:
            if r["property"] not in names:
                names.append(r["property"])
    table = []
    for n in names:
        row = [n]
        for rows in proofs:
            hit = next((r for r in rows if r["property"] == n), None)
            row.append(hit["status"] if hit else "-")
        table.append(row)
    return ("Z3 (apcheck prove, each spec's prove: block):\n"
            + tabulate(table, headers=["invariant"] + columns) + "\n")
