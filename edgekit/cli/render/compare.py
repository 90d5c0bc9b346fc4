"""What ``edgekit compare BASE.json NEW.json`` prints (the CI gate: exit 1 on a regression; the
command is made from the stage's options model: ``edgekit.stages.evaluate``)."""

from __future__ import annotations

from .._common import console


def render(result) -> None:
    """Each metric of the new result against the baseline, with its limit and status."""
    _print(result.to_json(), result.base, result.new)


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "bytes":
        from .._common import fmt_bytes
        return fmt_bytes(v)
    return f"{v:.3f}" if unit == "ms" else f"{v:.2f}"  # % and MB


def _print(doc: dict, base, new) -> None:
    from rich.table import Table

    from rich import box

    table = Table(title=f"{new} vs {base}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("metric", "base", "new", "change", "limit", "status"):
        table.add_column(col, justify="right" if col in ("base", "new", "change") else "left",
                         no_wrap=True)
    notes = []
    for r in doc["rows"]:
        c = r["change"]
        change = "-" if c is None else f"{c:+.2f} pt" if r["unit"] == "%" else (
            f"{c:+.1f}%" if abs(c) < 1000 else f"{1 + c / 100:.0f}x")
        style = {"REGRESSION": "bold red", "ok": "green"}.get(r["status"], "dim")
        mark = ""
        if r["note"]:
            notes.append(r["note"])
            mark = f" [{len(notes)}]"
        table.add_row(r["metric"], _fmt(r["base"], r["unit"]), _fmt(r["new"], r["unit"]),
                      change, r["limit"], f"[{style}]{r['status']}[/]{mark}")
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[dim][{i}] {note}[/]", highlight=False)
