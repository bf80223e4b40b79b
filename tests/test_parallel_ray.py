"""The partitioned BFS on Ray actors (``--ray``) gives exactly what one worker gives.

Starts one small local Ray instance (2 CPUs) for the module. Skips only when
the optional ``ray`` package (``apcheck[ray]``) is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from helpers_parallel import comparable, run

import checker.search.parallel as parallel
from checker.cli.cli import main
from checker.cli.golden import ROOT

try:
    import ray
except ImportError:  # pragma: no cover - depends on the environment
    ray = None

pytestmark = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'apcheck[ray]')")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.parametrize("spec", ["examples/lockcycle3.yaml", "specs/v16-hook-ownership.yaml"])
def test_ray_matches_one_worker(spec: str, local_ray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "FAN_OUT_FRONTIER", 1)
    one = run(spec, workers=1)
    on_ray = run(spec, workers=2, ray="")
    assert (on_ray.stats.workers, on_ray.stats.backend) == (2, "ray")
    assert comparable(on_ray) == comparable(one)


def test_ray_workers_default_to_the_cluster_cpus(local_ray: Any, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(parallel, "FAN_OUT_FRONTIER", 1)
    rc = main(["check", os.path.join(ROOT, "specs/v15-lockdep.yaml"), "--ray", "--format", "json", "--quiet"])
    assert rc == 1
    assert '"workers": 2,\n    "backend": "ray"' in capsys.readouterr().out
