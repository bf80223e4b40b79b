"""Shared by the partitioned-search tests: run a spec, and its report minus what timing changes."""

from __future__ import annotations

import os
from typing import Any

from checker.cli.golden import ROOT, run_spec
from checker.report.report_json import result_to_dict
from checker.report.results import CheckResult

# how and where it ran: the one-process native loop stores whole states, partitions fingerprints
TIMING = ("seconds", "states_per_second", "peak_memory_mb", "workers", "backend", "store", "collision_probability")


def comparable(result: CheckResult) -> dict[str, Any]:
    """The whole JSON report (counts, verdicts, traces, lock-order graph) without timings and placement."""
    d = result_to_dict(result)
    for k in TIMING:
        d["stats"].pop(k)
    # the reducer's ample-set counter is per process: workers count their own states
    d["stats"]["reductions"].pop("ample_states", None)
    return d


def run(spec: str, **overrides: Any) -> CheckResult:
    return run_spec(os.path.join(ROOT, spec), **overrides)
