"""What ``edgekit calibrate`` prints (the command is made from the stage's options model:
``edgekit.stages.calibrate``)."""

from __future__ import annotations

from .._common import console


def render(result) -> None:
    """The fit of each precision as a table, and where the profile was written."""
    doc = result.to_json()
    n, threads, suite = doc["measurements_per_precision"], doc["threads"], doc["suite"]
    out = doc["written"]
    from rich.table import Table

    table = Table(title=f"calibration of {doc['device']} ({threads} thread(s), {suite} suite, "
                        f"{n} models per precision)",
                  caption="expected error: 90th percentile of leave-one-out errors (each model "
                          "predicted by a fit without it)")
    for col in ("precision", "measurements", "within ±10% (LOO)", "expected error",
                "largest coefficients (ms per unit)"):
        table.add_column(col)
    for f in doc["fits"]:
        big = sorted(f["coefficients"].items(), key=lambda kv: -kv[1])[:4]
        table.add_row(f["precision"], str(f["measurements"]), f"{f['loo_within_10pct']:.0%}",
                      f"±{f['expected_error_pct']:.0f}%",
                      ", ".join(f"{k} {v:.3g}" for k, v in big if v))
    console.print(table)
    console.print(f"wrote {out} (measured coefficients; `edgekit devices show {doc['device']}`)")
