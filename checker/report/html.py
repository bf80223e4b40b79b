"""Self-contained HTML trace explorer: ``apcheck check SPEC --format html -o report.html``.

One file, no network: the CSS and JavaScript (``assets/``, shipped as package
data) are inlined and the run's JSON report is embedded, so the page can be
attached to a bug report and opened anywhere. It shows the verdict table and,
per counterexample, a swimlane you step through (buttons, arrow keys or a click
on a step number), the full state at each step with the fields that step
changed highlighted, the locks each thread holds, and a thread filter; lock
cycles follow in lockdep's format. The page reads the same JSON as every other
consumer (docs/json-schema.md), plus the lockdep text rendered here.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files

from checker.report.lockdep import render_cycle
from checker.report.report_json import result_to_dict
from checker.report.results import CheckResult


def _asset(name: str) -> str:
    return files("checker.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(data: object) -> str:
    """JSON safe inside <script>: no "</script>" or "<!--" can end or confuse the element."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def render_html(result: CheckResult) -> str:
    deadlock = next((p.trace for p in result.properties if p.name == "deadlock" and p.trace), None)
    payload = {
        "report": result_to_dict(result),
        "lockdep": [render_cycle(c, deadlock if c.reachable else None) for c in result.cycles],
    }
    title = html.escape(f"apcheck: {result.spec} ({result.design}): {result.result}")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # no network: nothing but inline styles and scripts may load
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{title}</title>",
        f"<style>\n{_asset('explorer.css')}</style>",
        "</head>",
        "<body>",
        '<main id="app"></main>',
        f'<script type="application/json" id="apcheck-data">{_script_json(payload)}</script>',
        f"<script>\n{_asset('explorer.js')}</script>",
        "</body>",
        "</html>",
        "",
    ])
