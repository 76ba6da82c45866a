"""``python -m bench <suite>|all [--quick] [--json]``: run benchmark suites.

A suite is any module in ``bench/suites`` with ``run(quick: bool) -> dict``; new
suites need no registration. ``all`` also writes the figures and the machine's
description into ``docs/benchmarks.md`` (between its markers; ``--no-write`` not to,
``--skip a,b`` to leave suites out).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

import click

from . import report, suites

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(suites.__path__) if not m.name.startswith("_")
    )


def run_suite(name: str, quick: bool) -> dict[str, Any]:
    mod = importlib.import_module(f"bench.suites.{name}")
    result: dict[str, Any] = mod.run(quick)
    return result


@click.command()
@click.argument("suite")
@click.option("--quick", is_flag=True, help="Shorter runs (less precise).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--skip", default="", help="With 'all': comma-separated suites to leave out.")
@click.option(
    "--write/--no-write", default=True, help="With 'all': update docs/benchmarks.md (default)."
)
@click.option("--out", type=click.Path(path_type=Path), default=DOC, help="The report file.")
def main(suite: str, quick: bool, as_json: bool, skip: str, write: bool, out: Path) -> None:
    """Run SUITE (one of bench/suites, or 'all')."""
    names = available()
    if suite != "all" and suite not in names:
        raise click.ClickException(f"unknown suite {suite!r}; have: {', '.join(names)}, all")
    skipped = {s.strip() for s in skip.split(",") if s.strip()}
    chosen = [n for n in names if n not in skipped] if suite == "all" else [suite]
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        if suite != "all":
            results[name] = run_suite(name, quick)
            continue
        try:  # with 'all', one broken suite must not hide the others' figures
            results[name] = run_suite(name, quick)
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    if suite == "all" and write:
        report.write(out, results, quick)
    shown: dict[str, Any] = results if suite == "all" else results[suite]
    if as_json:
        sys.stdout.write(json.dumps(shown, sort_keys=True) + "\n")
    else:
        for name, res in results.items():
            click.echo(f"[{name}]")
            for k, v in sorted(res.items()):
                click.echo(f"  {k}: {v}")


if __name__ == "__main__":
    main()
