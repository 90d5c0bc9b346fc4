"""What ``edgekit scale`` prints (the command is made from the stage's options model:
``edgekit.stages.scale``)."""

from __future__ import annotations

from .._common import console, fmt_count


def render(result) -> None:
    """The fitting candidates as a table, and the model written."""
    from ...stages.scale import short_name

    doc, target = result.to_json(), result.target
    _table(result.found, target.model, target.budget, doc, target.profile)
    tie = doc.get("tie")
    if tie:
        low, high = tie["top1_range"]
        console.print(f"{len(tie['candidates'])} candidates tie on the accuracy proxy "
                      f"({low:.1f}-{high:.1f}%, within its error; marked =): "
                      f"{', '.join(tie['candidates'])}. Ranked by {tie['broken_by']}.")
    if "output" in doc:
        console.print(f"wrote {doc['output']['path']}: {short_name(result.best)} "
                      f"({doc['output']['inherited']})")
    else:
        console.print(f"best: {short_name(result.best)}. Add -o FILE.keras to build it.")


def _table(rows, model, budget, doc: dict, profile) -> None:
    from rich.table import Table

    from ...stages.scale import short_name

    measured = {(m["family"], m["width"], m["depth"], m["resolution"]): m["measured_ms"]
                for m in doc.get("measured", [])}
    from rich import box

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  title=f"{profile.display_name}: {doc['fitting']} of {doc['searched']} "
                        f"candidates fit {budget.latency_ms:g} ms / {budget.memory_mb:g} MB "
                        f"activations / {budget.size_mb:g} MB file "
                        f"({model.precision}, {model.runtime}, {model.threads} thread(s))",
                  caption=f"ms: predicted latency, {model.basis}. act MB: peak activations. "
                          "φ: on the compound-scaling line. top-1 proxy: published ImageNet "
                          "top-1 of the reference variants interpolated by MACs (and "
                          "resolution), not a measurement on your data; * extrapolated.")
    cols = ["model", "MACs", "params", f"ms±{model.expected_error_pct:.0f}%", "act MB", "MB",
            "top-1"]
    if measured:
        cols.insert(4, "measured")
    for col in cols:
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    tied = set((doc.get("tie") or {}).get("candidates", []))
    for c in rows:
        cells = [short_name(c) + (" φ" if c.phi is not None else "")
                 + (" =" if short_name(c) in tied else ""),
                 f"{c.macs / 1e6:.0f} M", fmt_count(c.params), f"{c.latency_ms:.2f}",
                 f"{c.memory_mb:.2f}", f"{c.size_mb:.2f}",
                 f"{c.proxy.top1:.1f}±{c.proxy.error:.1f}" + ("*" if c.proxy.extrapolated else "")]
        if measured:
            m = measured.get((c.family, c.width, c.depth, c.resolution))
            cells.insert(4, "-" if m is None else f"{m:.2f}")
        table.add_row(*cells)
    console.print(table)
