"""``edgekit zoo list | build``: the model families, built from architecture data."""

from __future__ import annotations

import typer

from ._common import JSON_OPT, console, emit_json
from .lazy import LazyGroup

class _Zoo(LazyGroup):
    STAGES = {"build": "build"}
    ORDER = ("list", "build")


app = typer.Typer(help="List and build the MobileNet / EfficientNet families.",
                  no_args_is_help=True, rich_markup_mode=None, cls=_Zoo)


@app.command("list")
def list_families(json_out: bool = JSON_OPT) -> None:
    """List every family with its default width, depth and resolution."""
    from ..core.registry import FAMILIES

    rows = [{"name": name, **entry.caps} for name, entry in sorted(FAMILIES.items())]
    if json_out:
        emit_json({"schema": "edgekit.zoo/1", "families": rows})
        return
    from rich.table import Table

    table = Table(title="edgekit zoo", caption="scales: w = width, d = depth, r = resolution")
    table.add_column("family", no_wrap=True)
    for col in ("kind", "width", "depth", "resolution", "scales"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r.get("kind", "")), str(r.get("width", "")),
                      str(r.get("depth", "")), str(r.get("resolution", "")),
                      ",".join(s[0] for s in r.get("scales", [])))
    console.print(table)
