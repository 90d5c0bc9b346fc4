"""``edgekit run RECIPE``: a recipe's stages through the edgekit commands, cached by content."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import CACHE_DIR_OPT, JSON_OPT, NO_CACHE_OPT, RUNS_DIR_OPT, console, emit_json


def run(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML file, or the name of a "
                                           "shipped recipe (see --list)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (each stage's "
                                 "command, cached or not) and run nothing."),
    runs_dir: Path = RUNS_DIR_OPT,
    cache_dir: Optional[Path] = CACHE_DIR_OPT,
    no_cache: bool = NO_CACHE_OPT,
    list_: bool = typer.Option(False, "--list", help="List the shipped recipes and exit."),
    json_out: bool = JSON_OPT,
) -> None:
    """Run a recipe: build or load a model, then scale, prune, fine-tune, quantize, export and
    profile it as its stages say, and check its gates. Unchanged stages come from the cache;
    an interrupted run resumes where it stopped."""
    from ..core.errors import BadInput
    from ..recipes.runner import open_recipe
    from ..recipes.schema import shipped

    if list_:
        return _list(shipped(), json_out)
    if recipe is None:
        raise BadInput("give a recipe file or the name of a shipped one (edgekit run --list)")
    pipe = open_recipe(recipe, cache_dir or runs_dir / ".cache")
    if dry_run:
        rows, problems = pipe.plan(), pipe.problems()
        if json_out:
            emit_json({"schema": "edgekit.plan/1", "recipe": str(pipe.path),
                       "name": pipe.recipe.name, "stages": rows, "problems": problems,
                       "gates": pipe.recipe.gates.model_dump(exclude_none=True)})
        else:
            _plan(pipe, rows, problems)
        if problems:
            raise BadInput(f"the run would fail: {problems[0]}" + (
                f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
        return

    def announce(step, cached: bool) -> None:
        if json_out:
            return
        head = f"[bold][{pipe.steps.index(step) + 1}/{len(pipe.steps)}] {step.id}[/]"
        if cached:
            console.print(f"{head} ({step.name}): cached, ran in {step.record['seconds']:.1f} s "
                          f"on {step.record['finished'][:10]}")
        else:
            console.rule(f"{head} ({step.name})", align="left")
            console.print("$ edgekit " + " ".join(step.argv), soft_wrap=True, highlight=False,
                          markup=False)

    from .stage_commands import ConsoleReporter, render

    def show(step, result) -> None:
        if not json_out:
            render(step.name, result)

    doc = None
    try:
        doc = pipe.run(runs_dir, use_cache=not no_cache, announce=announce,
                       watch=lambda step: ConsoleReporter(quiet=json_out), show=show)
    finally:
        if doc is None and not json_out:
            console.print(f"run folder: {_latest(runs_dir)} (finished stages are cached)")
    if json_out:
        emit_json(doc)
    else:
        _summary(doc)


def _plan(pipe, rows: list[dict], problems: list[str]) -> None:
    console.print(f"[bold]{pipe.recipe.name}[/]: {len(rows)} stage(s), "
                  f"{sum(r['cached'] for r in rows)} cached" + (
                      f" -- {pipe.recipe.description}" if pipe.recipe.description else ""))
    for r in rows:
        state = "[green]cached[/]" if r["cached"] else "[yellow]runs[/]"
        console.print(f"  {r['index']:>2} {r['id']:<12} {state}  {r['command']}",
                      soft_wrap=True, highlight=False)
    gates = pipe.recipe.gates.model_dump(exclude_none=True)
    if gates:
        console.print("  gates: " + ", ".join(f"{k} {v:g}" for k, v in gates.items()))
    for p in problems:
        console.print(f"  [red]missing[/] {p}", soft_wrap=True, highlight=False)


def _latest(runs_dir: Path) -> str:
    latest = runs_dir / "latest"
    return str(latest.resolve()) if latest.exists() else str(runs_dir)


def _summary(doc: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{doc['name']}: {doc['status']} in {doc['wall_s']:.1f} s",
                  title_justify="left")
    for col in ("#", "stage", "", "s", "output"):
        table.add_column(col, justify="right" if col in ("#", "s") else "left")
    for s in doc["stages"]:
        table.add_row(str(s["index"]), f"{s['id']} ({s['stage']})",
                      "cached" if s["cached"] else "ran",
                      f"{s['wall_s']:.1f}", Path(s["output"]["path"]).name)
    console.print(table)
    for g in doc["gates"]:
        mark = "[green]pass[/]" if g["passed"] else "[red]FAIL[/]"
        console.print(f"  gate {mark} {g['detail']} ({g['basis']})", soft_wrap=True)
    console.print(f"run folder: {doc['run_dir']}")


def _list(paths: list[Path], json_out: bool) -> None:
    from ..recipes.schema import load_recipe

    rows = []
    for p in paths:
        r, stages = load_recipe(p)
        rows.append({"name": p.stem, "path": str(p), "device": r.device,
                     "stages": [s.name for s in stages], "description": r.description})
    if json_out:
        emit_json({"schema": "edgekit.recipes/1", "recipes": rows})
        return
    for r in rows:
        console.print(f"[bold]{r['name']}[/] ({r['device'] or 'no device'}): "
                      f"{' -> '.join(r['stages'])}. {r['description']}", soft_wrap=True)
