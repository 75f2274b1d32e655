"""`emergence plots`: the plots of dvc.yaml rendered offline, as one self-contained page.

``dvc plots show`` writes a page that loads Vega from a CDN, blank without a network. This asks
DVC for the filled Vega-Lite specs (``dvc plots show --json``, or ``dvc plots diff REV ... --json``
to overlay revisions and experiments) with the templates in ``.dvc/plots/`` (one line per
component, scatters coloured by training step) and renders each to SVG with vl-convert.
"""
from __future__ import annotations

import html
import json
import logging
import subprocess
import sys
from pathlib import Path

from emergence.errors import EmergenceError
from emergence.io import write_text

log = logging.getLogger(__name__)


def specs(revs: list[str] | None = None, cwd: str | Path = ".") -> dict[str, list[dict]]:
    """{plot id: [DVC's rendered entries]} for the workspace, or for `revs` overlaid."""
    cmd = [sys.executable, "-m", "dvc", "plots", *(["diff", *revs] if revs else ["show"]), "--json"]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise EmergenceError(f"`{' '.join(cmd[2:])}` failed in {Path(cwd).resolve()}: "
                             f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return json.loads(res.stdout)["data"]


def render(plots: dict[str, list[dict]]) -> tuple[str, list[str]]:
    """An HTML page with every Vega-Lite plot as inline SVG, and the ids of the entries that are
    not Vega-Lite (image plots) and are listed on the page instead of drawn."""
    import vl_convert
    parts, skipped = [], []
    for name, entries in plots.items():
        for entry in entries:
            if entry.get("type") != "vega":
                skipped.append(name)
                continue
            parts.append(f"<section><h2>{html.escape(name)}</h2>{vl_convert.vegalite_to_svg(entry['content'])}</section>")
    note = (f"<p>Not drawn here (not Vega-Lite): {html.escape(', '.join(skipped))}</p>" if skipped else "")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>DVC plots</title>"
            "<style>body{font-family:sans-serif;margin:2em} section{display:inline-block;margin:1em}</style>"
            f"</head><body><h1>DVC plots</h1>{note}{''.join(parts)}</body></html>")
    return page, skipped


def main(args) -> None:
    page, skipped = render(specs(args.revs))
    out = Path(args.out)
    write_text(out / "index.html", page)
    log.info("%s: the plots of dvc.yaml as SVG (%d not Vega-Lite, listed on the page)", out / "index.html", len(skipped))
