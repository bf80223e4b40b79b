"""Package metadata, LICENSE, ``--help`` with the exit codes, ``-V`` (issue 10, point 13)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.report import results

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_pypi_metadata() -> None:
    p = PROJECT["project"]
    assert p["license"] == "Apache-2.0" and p["license-files"] == ["LICENSE"]
    assert p["readme"] == "README.md" and p["authors"]
    assert "Development Status :: 3 - Alpha" in p["classifiers"] and "Typing :: Typed" in p["classifiers"]
    assert not any(c.startswith("License ::") for c in p["classifiers"])  # PEP 639: the expression says it
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_package_data_covers_every_shipped_file() -> None:
    data = PROJECT["tool"]["setuptools"]["package-data"]
    shipped = [ROOT / "checker/py.typed", *(ROOT / "checker/report/assets").iterdir(),
               *(ROOT / "checker/schemas").iterdir()]
    for f in shipped:
        owners = [pkg for pkg in data if f.is_relative_to(ROOT / pkg.replace(".", "/"))]
        rel = [str(f.relative_to(ROOT / pkg.replace(".", "/"))) for pkg in owners]
        assert any(fnmatch.fnmatch(r, g) for pkg, r in zip(owners, rel) for g in data[pkg]), f


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    codes = [results.EXIT_OK, results.EXIT_VIOLATION, results.EXIT_USAGE, results.EXIT_INCONCLUSIVE,
             results.EXIT_INTERNAL]
    block = out[out.index("Exit codes:"):].splitlines()[1:]
    assert [int(line.split()[0]) for line in block if line.strip()] == codes
    assert "1  a property is VIOLATED" in out


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flag(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out.startswith("apcheck, version ")


def test_project_urls() -> None:
    """The URLs PyPI shows beside the description (``Project-URL`` in the built metadata)."""
    urls = PROJECT["project"]["urls"]
    home = "https://github.com/apcheck/apcheck"
    assert urls == {"Homepage": home, "Repository": home, "Issues": f"{home}/issues",
                    "Documentation": f"{home}/tree/main/docs"}
    assert (ROOT / "docs").is_dir()  # what Documentation points into
