"""The ``apcheck`` command line.

Commands: check, validate, replay, designs, graph; ``compare`` and ``prove``
are added by ``checker.cli.compare_cli`` / ``checker.cli.prove_cli`` when present:
each module defines ``register(group: click.Group) -> None`` and may use the
helpers here (``get_app``, ``load``, ``build``, ``resolve_options``,
``search_options``, ``write_report``).

Exit codes (checker/results.py): 0 all hold after a complete search,
1 a violation, 2 usage or spec error, 3 inconclusive, 4 internal error.
Spec errors print as ``file:line:col: error: path: message``; an unexpected
exception prints one "internal error" line (a traceback only with
APCHECK_DEBUG=1).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

import click

from checker.cli.params import Seconds
from checker.lang.design import ScenarioError, ScenarioErrors
from checker.lang.program_types import ModelError
from checker.report.results import (
    BUILTIN_PROPERTIES,
    EXIT_INCONCLUSIVE,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
)
from checker.spec.errors import SpecError, SpecErrors, did_you_mean
from checker.spec.options import CORES, REDUCTIONS, STRATEGIES, Options
from checker.spec.registry import Registry, default_registry
from checker.spec.spec import (
    LoadedSpec,
    load_spec,
    normalize_key,
    scenario_error,
    unknown_names,
    validate_property_names,
)
from checker.spec.userprops import add_user_properties

if TYPE_CHECKING:
    from checker.lang.program_types import Program
    from checker.report.results import CheckResult

F = TypeVar("F", bound=Callable[..., Any])
EXTENSIONS = ("checker.cli.compare_cli", "checker.cli.prove_cli", "checker.cli.history_cli")


def _version() -> str:
    try:
        return version("apcheck")
    except PackageNotFoundError:  # running from a source checkout
        return "0+unknown"


@dataclass
class App:
    """Per-invocation state (click's ``ctx.obj``): the design registry, built on first use."""

    registry_factory: Callable[[], Registry] = default_registry
    _registry: Registry | None = field(default=None, repr=False)

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self.registry_factory()
            for w in self._registry.warnings:
                click.echo(f"apcheck: warning: {w}", err=True)
        return self._registry


def get_app(ctx: click.Context) -> App:
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = App()
    return root.obj


# ---------------------------------------------------------------- helpers for commands


def load(ctx: click.Context, spec: str) -> LoadedSpec:
    return load_spec(spec, get_app(ctx).registry())


def engine(module: str) -> Any:
    """An engine module, imported on use: the CLI starts fast, and ``designs``/``validate``
    keep working while an optional part of the engine (reports, ...) is broken or absent."""
    return importlib.import_module(module)


def build(loaded: LoadedSpec) -> Program:
    """Build the spec's program; the design's complaints come back located in the spec."""
    try:
        program: Program = engine("checker.search.run").build_program(loaded.design, loaded.scenario)
        add_user_properties(loaded, program)  # the spec's own always/sometimes, over the built state
        return program
    except ScenarioErrors as e:
        raise SpecErrors([scenario_error(loaded, x) for x in e.errors]) from None
    except ScenarioError as e:
        raise scenario_error(loaded, e) from None
    except ModelError as e:
        raise SpecError(loaded.path, "", f"design {loaded.design.name!r}: {e}") from None


def known_properties(program: Program) -> list[str]:
    names = [p.name for p in program.properties]
    return names + [b for b in BUILTIN_PROPERTIES if b not in names]


def resolve_options(loaded: LoadedSpec, program: Program, **cli_values: Any) -> Options:
    """CLI > spec ``check:`` > defaults. Property names are checked against the built program."""
    known = known_properties(program)
    validate_property_names(loaded, known)
    only = tuple(cli_values.pop("only", ()) or ())
    skip = tuple(cli_values.pop("skip", ()) or ())
    errors = unknown_names(only, known, "--only", indexed=False) + unknown_names(skip, known, "--skip", indexed=False)
    if errors:
        raise SpecErrors(errors)
    return (
        Options()
        .with_overrides(**loaded.check_options)
        .with_overrides(properties=loaded.only or None, skip=loaded.skip or None)
        .with_overrides(properties=only or None, skip=skip or None, **cli_values)
    )


def search_options(f: F) -> F:
    """The search flags shared by check, graph (and compare)."""
    opts = [
        click.option("--strategy", type=click.Choice(STRATEGIES), default=None, help="Search order (default bfs)."),
        click.option("--max-states", type=click.IntRange(min=1), default=None, help="Stop (BOUNDED) after N states."),
        click.option("--max-depth", type=click.IntRange(min=1), default=None, help="Do not explore deeper than D."),
        click.option("--timeout", type=Seconds(), default=None, help="Seconds."),
        click.option("--max-memory", "max_memory_mb", type=click.IntRange(min=1), default=None,
                     help="Stop (BOUNDED) past this resident size, in MB."),
        click.option("--seed", type=int, default=None, help="Random simulation seed."),
        click.option("--walks", type=click.IntRange(min=1), default=None, help="Random simulation: walks."),
        click.option("--exact/--no-exact", default=None, help="Store whole states, not 64-bit fingerprints."),
        click.option("--core", type=click.Choice(CORES), default=None,
                     help="Successor core: auto (default), python, native (C compiled at run time)."),
        click.option("--only", multiple=True, metavar="NAME", help="Report only these properties (repeatable)."),
        click.option("--skip", multiple=True, metavar="NAME", help="Do not report these properties (repeatable)."),
        click.option("--quiet", is_flag=True, default=None, help="No progress; no summary line with --output."),
        click.option("--reduction", type=click.Choice(REDUCTIONS), default=None,
                     help="State-space reduction: none, por (partial-order), symmetry, all (default)."),
        click.option("--workers", type=click.IntRange(min=0), default=None,
                     help="Processes for the partitioned BFS (default 1: one process; 0: one per core)."),
        click.option("--ray", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                     help="Run the partitioned BFS on Ray actors: a cluster address, or none to start a local "
                          "instance (needs apcheck[ray]; put it after SPEC)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def write_report(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text.rstrip("\n"))
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise SpecError("", "--output", f"cannot write {output}: {e.strerror or e}") from None


def summary_line(result: CheckResult, output: str) -> str:
    bad = [p.name for p in result.properties if p.status == "VIOLATED"]
    verdict = f"{result.result} ({', '.join(bad)})" if bad else result.result
    s = result.stats
    return f"{result.spec}: {verdict}, {s.states} states in {s.seconds:.1f}s; report written to {output}"


def run_check(ctx: click.Context, spec: str, cli_values: dict[str, Any], stop: Any = None) -> CheckResult:
    """``stop``: a limits.StopRequest a signal handler sets (check, compare): the search ends BOUNDED."""
    loaded = load(ctx, spec)
    program = build(loaded)
    options = resolve_options(loaded, program, **cli_values)
    if (options.checkpoint or options.resume) and options.strategy == "random":
        raise click.UsageError("--checkpoint and --resume work with --strategy bfs or dfs")
    ckpt = engine("checker.search.checkpoint")
    try:
        result: CheckResult = engine("checker.search.run").check_program(program, options, loaded.path,
                                                                  loaded.design.name, stop, loaded.path)
        # the report's "spec" is the path (docs/json-schema.md); the scenario name travels beside it
        result.name = loaded.scenario.name
    except ckpt.CheckpointError as e:
        raise SpecError(options.resume or "", "--resume", f"cannot resume: {e}") from None
    except OSError as e:  # the periodic checkpoint could not be written
        raise SpecError("", "--checkpoint", f"cannot write {options.checkpoint}: {e.strerror or e}") from None
    return result


def note_interrupted(stop: Any) -> None:
    if stop.reason:
        click.echo(f"apcheck: interrupted ({stop.signal_name or 'stop requested'}): the search stopped early; "
                   "verdicts are BOUNDED, counts partial", err=True)


# ---------------------------------------------------------------- commands


EXIT_CODES_HELP = """\b
Exit codes:
  0  every property holds (or is witnessed) after a complete search
  1  a property is VIOLATED
  2  usage or spec error (file:line:col: error: ...); nothing was checked
  3  inconclusive: a bound was hit (BOUNDED), UNKNOWN, or a witness not found
  4  internal error in apcheck (please report)
"""


@click.group(name="apcheck", context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(_version(), "-V", "--version", prog_name="apcheck")
def cli() -> None:
    """Model checker for Linux driver designs (first: the s390 vfio_ap driver)."""


@cli.command()
@click.argument("spec")
@search_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="html: one self-contained page with a trace explorer (use with -o).")
@click.option("--output", "-o", default=None, metavar="FILE", help="Write the report to FILE.")
@click.option("--checkpoint", default=None, metavar="FILE",
              help="Save the search to FILE periodically and when it stops early (bfs, dfs).")
@click.option("--checkpoint-every", "checkpoint_seconds", type=Seconds(),
              default=None, help="Seconds between two checkpoints (default 60).")
@click.option("--resume", default=None, metavar="FILE", help="Continue the search saved in checkpoint FILE.")
@click.option("--width", type=click.IntRange(min=40), default=None, metavar="N",
              help="Text: compact layout for mail, lines of at most N columns (only acting threads, nothing cut).")
@click.pass_context
def check(ctx: click.Context, /, spec: str, fmt: str, output: str | None, width: int | None,
          **cli_values: Any) -> int:
    """Explore every interleaving of SPEC and report each property.

    SIGINT (Ctrl-C) or SIGTERM stops the search cleanly: the report is written with BOUNDED
    verdicts and what was found so far (exit 3, or 1 when a violation was found); a second
    Ctrl-C aborts."""
    limits = engine("checker.search.limits")
    with limits.stop_on_signals(limits.StopRequest()) as stop:
        result = run_check(ctx, spec, cli_values, stop)
    note_interrupted(stop)
    if fmt == "json":
        text: str = engine("checker.report.report_json").result_to_json(result)
    elif fmt == "html":
        text = engine("checker.report.html").render_html(result)
    else:
        text = engine("checker.report.report_text").render_result(result, width=width)
    write_report(text, output)
    if output is not None and not cli_values.get("quiet"):
        click.echo(summary_line(result, output))
    return result.exit_code()


@cli.command()
@click.argument("spec")
@click.pass_context
def validate(ctx: click.Context, spec: str) -> int:
    """Load SPEC and build its program, without searching."""
    loaded = load(ctx, spec)
    program = build(loaded)
    validate_property_names(loaded, known_properties(program))
    click.echo(
        f"{spec}: ok (design {loaded.design.name}, {len(program.threads)} threads, "
        f"{len(program.actions)} actions, {program.layout.total_bits} state bits)"
    )
    return EXIT_OK


def _read_report(path: str) -> dict[str, Any]:
    rj = engine("checker.report.report_json")
    try:
        data: dict[str, Any] = rj.load_report(path)
    except FileNotFoundError:
        raise SpecError("", path, "no such file") from None
    except OSError as e:
        raise SpecError("", path, f"cannot read: {e.strerror or e}") from None
    except rj.ReportError as e:
        msg = str(e)
        raise SpecError("", "" if msg.startswith(path) else path, msg) from None
    if not isinstance(data.get("properties"), list):
        raise SpecError("", path, 'not an apcheck report (no "properties" list)')
    return data


def _pick_trace(data: dict[str, Any], path: str, prop: str | None) -> tuple[str, str, Any]:
    """(property name, kind, trace object) of the chosen property."""
    props = [p for p in data["properties"] if isinstance(p, dict) and isinstance(p.get("name"), str)]
    with_trace = [p for p in props if isinstance(p.get("trace"), dict)]
    if prop is not None:
        names = [p["name"] for p in props]
        if prop not in names:
            raise SpecError("", "--property", f"no property {prop!r} in {path}{did_you_mean(prop, names)}")
        chosen = next(p for p in props if p["name"] == prop)
        if chosen not in with_trace:
            raise SpecError("", "--property", f"property {prop!r} has no trace in {path}")
    elif with_trace:
        chosen = with_trace[0]
    else:
        raise SpecError("", path, "no property in this report has a trace")
    return chosen["name"], str(chosen.get("kind", "")), chosen["trace"]


@cli.command()
@click.argument("spec")
@click.argument("trace_file", metavar="TRACE.json")
@click.option("--property", "prop", default=None, metavar="NAME", help="Which property's trace (default: first).")
@click.option("--width", type=click.IntRange(min=40), default=None, metavar="N",
              help="Compact layout for mail, lines of at most N columns.")
@click.pass_context
def replay(ctx: click.Context, spec: str, trace_file: str, prop: str | None, width: int | None) -> int:
    """Re-check a saved trace (JSON report) on SPEC: does the violation still happen?

    Exit 1: it still happens; 0: it no longer reproduces (a fix works); 2: the trace
    belongs to another spec or design, or a step no longer applies (says which and why)."""
    rj = engine("checker.report.report_json")
    rp = engine("checker.search.replay")
    loaded = load(ctx, spec)
    program = build(loaded)
    data = _read_report(trace_file)
    name, kind, tdict = _pick_trace(data, trace_file, prop)
    try:
        saved = rj.trace_from_dict(tdict, f"property {name!r}: trace")
    except rj.ReportError as e:
        raise SpecError(trace_file, "", f"cannot replay: {e}") from None
    try:
        r = rp.recheck(program, saved, name, loaded.path, loaded.design.name)
    except rp.ReplayRefused as e:
        raise SpecError(trace_file, "", f"trace of {name!r} does not apply to {spec}: {e}") from None
    title = f"{name}: replay of {trace_file} on {spec}"
    click.echo(engine("checker.report.report_text").render_trace(r.trace, title, width=width).rstrip("\n"))
    if kind == "sometimes":
        click.echo(f"{name}: witnessed again ({r.how})" if r.reproduced else f"{name}: no longer witnessed ({r.how})")
        return EXIT_OK if r.reproduced else EXIT_INCONCLUSIVE
    if r.reproduced:
        click.echo(f"{name}: the violation still happens ({r.how})")
        return EXIT_VIOLATION
    click.echo(f"{name}: no longer reproduces ({r.how})")
    return EXIT_OK


@cli.command()
@click.argument("spec")
@click.argument("trace_file", metavar="TRACE.json")
@click.option("--property", "prop", default=None, metavar="NAME", help="Which property's trace (default: first).")
@click.option("--output", "-o", default=None, metavar="FILE", help="Write the script to FILE.")
@click.pass_context
def repro(ctx: click.Context, spec: str, trace_file: str, prop: str | None, output: str | None) -> int:
    """Write the script that tries TRACE.json's interleaving on a real machine (design hook)."""
    rj = engine("checker.report.report_json")
    rp = engine("checker.search.replay")
    loaded = load(ctx, spec)
    hook = getattr(loaded.design, "repro_script", None)  # optional: Design.repro_script(scenario, trace, prop, kind)
    if hook is None:
        raise SpecError("", spec, f"design {loaded.design.name!r} has no reproduction mapping (no repro_script)")
    program = build(loaded)
    data = _read_report(trace_file)
    name, kind, tdict = _pick_trace(data, trace_file, prop)
    try:
        saved = rj.trace_from_dict(tdict, f"property {name!r}: trace")
        r = rp.recheck(program, saved, name, loaded.path, loaded.design.name)
    except (rj.ReportError, rp.ReplayRefused) as e:
        raise SpecError(trace_file, "", f"trace of {name!r} does not replay on {spec}: {e}") from None
    trace = r.trace
    trace.blocked = trace.blocked or saved.blocked  # the replay recomputes steps, the report keeps the rest
    trace.final = trace.final or saved.final
    write_report(hook(loaded.scenario, trace, name, kind), output)
    return EXIT_OK


@cli.command()
@click.argument("name", required=False)
@click.pass_context
def designs(ctx: click.Context, name: str | None) -> int:
    """List registered designs, or show NAME's constants and operations."""
    from tabulate import tabulate

    reg = get_app(ctx).registry()
    if name is None:
        rows = [(d.name, d.summary) for d in reg.all()]
        click.echo(tabulate(rows, headers=["design", "summary"], tablefmt="simple"))
        return EXIT_OK
    d = reg.get(name)
    click.echo(f"{d.name}: {d.summary}")
    if d.constants:
        click.echo("\nconstants:")
        rows2 = [(k, p.type, "required" if p.required else repr(p.default), p.doc) for k, p in d.constants.items()]
        click.echo(tabulate(rows2, headers=["name", "type", "default", "doc"], tablefmt="simple"))
    click.echo("\noperations:" if d.operations else "\noperations: none (the threads come from the constants)")
    for op in d.operations.values():
        params = ", ".join(f"{k}: {p.type}" + ("" if p.required else f" = {p.default!r}") for k, p in op.params.items())
        click.echo(f"  {op.name}({params})  {op.doc}".rstrip())
    return EXIT_OK


@cli.command()
@click.argument("spec")
@search_options
@click.option("--output", "-o", default=None, metavar="FILE", help="Write the DOT graph to FILE.")
@click.pass_context
def graph(ctx: click.Context, /, spec: str, output: str | None, **cli_values: Any) -> int:
    """Run the check and print the lock-order graph as DOT."""
    result = run_check(ctx, spec, cli_values)
    write_report(engine("checker.report.report_dot").lock_graph_dot(result), output)
    if not result.stats.complete:
        click.echo(f"apcheck: note: search incomplete ({result.stats.limit or 'bounded'}); "
                   "the graph may miss edges", err=True)
    return EXIT_OK


@cli.command()
@click.argument("which", type=click.Choice(["report", "spec"]))
def schema(which: str) -> int:
    """Print the JSON Schema of the JSON report or of specs (for editors and other tools)."""
    from importlib.resources import files

    click.echo(files("checker").joinpath("schemas", f"{which}.schema.json").read_text(encoding="utf-8").rstrip())
    return EXIT_OK


def _register_extensions(group: click.Group) -> None:
    for mod in EXTENSIONS:
        try:
            m = importlib.import_module(mod)
        except ImportError:
            if os.environ.get("APCHECK_DEBUG") == "1":
                raise
            continue  # command not shipped in this build
        m.register(group)


_register_extensions(cli)


# ---------------------------------------------------------------- entry point


def _err(line: str) -> None:
    click.echo(line, err=True)


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    """Run the CLI; return the exit code. ``registry`` replaces the default designs (tests)."""
    app = App() if registry is None else App(lambda: registry)
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="apcheck",
                      standalone_mode=False, obj=app)
    except click.ClickException as e:
        e.show()
        return EXIT_USAGE
    except click.Abort:
        _err("apcheck: interrupted")
        return 130
    except SpecError as e:
        for line in e.lines():
            _err(line)
        return EXIT_USAGE
    except ScenarioError as e:  # raised outside build(): no spec position known
        _err(f"error: {normalize_key(e.key)}: {e.message}")
        return EXIT_USAGE
    except ModelError as e:
        _err(f"error: {e}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("apcheck: interrupted")
        return 130
    except BrokenPipeError:  # `apcheck check ... | head`
        return EXIT_OK
    except Exception as e:  # the promise: never a bare traceback
        if os.environ.get("APCHECK_DEBUG") == "1":
            raise
        _err(f"apcheck: internal error: {type(e).__name__}: {e}")
        _err("please report this at the apcheck issue tracker with the spec and command line")
        return EXIT_INTERNAL
    return rv if isinstance(rv, int) else EXIT_OK
