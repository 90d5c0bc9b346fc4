"""The rate model against published phone latencies: fitted on two figures of each series,
it predicts the others (held out). All latencies are published; nothing is measured here.

    python benchmarks/published_anchors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from edgekit.estimate.published import SERIES, check, summary

    results = check()
    for series, source, *_ in SERIES:
        print(f"\n{series}  ({source})")
        for r in (r for r in results if r.series == series):
            print(f"  {r.model:28s} {r.role:11s} {r.macs / 1e6:7.1f} M MACs  published "
                  f"{r.published_ms:5.1f} ms  predicted {r.predicted_ms:6.2f} ms  "
                  f"{r.error_pct:+5.1f}%")
    s = summary(results)
    print(f"\ncalibration figures reproduced within {s['calibration_max_abs_error_pct']:.1e}%; "
          f"{s['held_out']} held-out figures: median |error| "
          f"{s['held_out_median_abs_error_pct']:.1f}%, max {s['held_out_max_abs_error_pct']:.1f}%, "
          f"{s['held_out_within_10pct']:.0%} within +-10%")


if __name__ == "__main__":
    main()
