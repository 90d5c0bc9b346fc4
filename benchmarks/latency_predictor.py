"""How well does the calibrated latency model predict models it was not fitted on?

1. Calibrate this host (the `edgekit calibrate` suite: probes + representative networks),
   1 thread, fp32 and int8.
2. Draw N random scaled variants across the zoo (width, depth, resolution; none of them in
   the calibration suite), build, convert and time each with the same local runner.
3. Report, per precision and overall, the share of variants whose predicted latency is within
   +-10% of the measured median, and the median absolute error.

Raw measurements go to $EDGEKIT_BENCH_DIR/latency_predictor/raw.json so that a changed
feature set can be re-fitted offline (--refit) without measuring again.

    python benchmarks/latency_predictor.py [--variants 44] [--jobs 2] [--refit]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import machine, out_dir  # noqa: E402

FAMILIES = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "efficientnet_b0", "efficientnet_b1", "efficientnet_lite0", "efficientnet_lite1",
            "efficientnet_lite2"]


def draw_variants(n: int, seed: int, exclude: set) -> list[tuple[str, float, float, int]]:
    from edgekit.core.registry import FAMILIES as REG

    rng, out = random.Random(seed), []
    while len(out) < n:
        fam = FAMILIES[len(out) % len(FAMILIES)]
        caps = REG.get_entry(fam).caps
        w = round(caps["width"] * rng.choice([0.35, 0.5, 0.6, 0.75, 0.9, 1.0, 1.15, 1.3]), 3)
        d = round(caps["depth"] * rng.choice([0.8, 1.0, 1.2, 1.5]), 3) \
            if "depth" in caps["scales"] else 1.0
        r = rng.choice([96, 112, 128, 160, 176, 192, 224, 240])
        key = (fam, w, d, r)
        if key not in exclude and key not in out:
            out.append(key)
    return out


def spec_of(row: dict):
    from edgekit.estimate.calibrate import suite_specs
    from edgekit.models.families import get_spec

    if row["family"].startswith("probe_"):
        return dict(suite_specs("full"))[row["family"]]
    return get_spec(row["family"], width=row["width"], depth=row["depth"],
                    resolution=row["resolution"], classes=1000)


def measure(args) -> dict:
    from edgekit.estimate.calibrate import NETWORKS, suite_specs
    from edgekit.estimate.timing import measure_specs
    from edgekit.models.load import quiet_tensorflow
    from edgekit.runtime.local import LocalRunner

    quiet_tensorflow()
    suite = suite_specs("full")
    variants = draw_variants(args.variants, args.seed, set(NETWORKS))
    from edgekit.models.families import get_spec
    vspecs = [get_spec(f, width=w, depth=d, resolution=r, classes=1000) for f, w, d, r in variants]
    raw = {"machine": machine(), "threads": 1, "calibration": [], "variants": []}
    runner = LocalRunner()
    # The suite and the held-out variants are timed in the same passes, in a shuffled order,
    # so that a slow drift of the machine (other tenants of the VM host) does not fall on
    # one side only; the fit still sees the suite's measurements alone.
    labelled = list(suite) + [(f"{f} w{w:g} d{d:g} r{r}", s) for (f, w, d, r), s
                              in zip(variants, vspecs)]
    order = list(range(len(labelled)))
    random.Random(args.seed).shuffle(order)
    for precision in ("fp32", "int8"):
        print(f"[{precision}] {len(suite)} calibration models + {len(vspecs)} held-out variants",
              flush=True)
        rows = measure_specs([labelled[i][1] for i in order], precision, runner, 1,
                             jobs=args.jobs)
        by_index = dict(zip(order, rows))
        for i, (label, s) in enumerate(labelled):
            r = by_index[i]
            if i < len(suite):
                raw["calibration"].append(_row(label, s, r))
            else:
                f, w, d, _ = variants[i - len(suite)]
                raw["variants"].append(_row(label, s, r) | {"width": w, "depth": d})
    return raw


def _row(label: str, spec, r: dict) -> dict:
    fam = label.split()[0]
    return {"family": fam, "label": label, "width": spec.width, "depth": spec.depth,
            "resolution": spec.resolution, "precision": r["precision"],
            "median_ms": r["median_ms"], "spread_pct": r["spread_pct"], "runs": r["runs"],
            "round_medians_ms": r["round_medians_ms"], "size_bytes": r["size_bytes"],
            "llc_bytes": r.get("llc_bytes")}


def report(raw: dict) -> None:
    from edgekit.estimate.calibrate import fit_measurements
    from edgekit.estimate.latency import predict_ms

    print(f"machine: {raw['machine']}; threads: {raw['threads']}; latency = lowest of 2 "
          "rounds' medians (about 0.6 s of inference each) by the local runner")
    all_err = []
    for precision in ("fp32", "int8"):
        cal = [dict(r, spec=spec_of(r)) for r in raw["calibration"] if r["precision"] == precision]
        fit = fit_measurements(cal, precision, raw["threads"])
        held = [r for r in raw["variants"] if r["precision"] == precision]
        err = np.array([100 * (predict_ms(spec_of(r), fit.coefficients, precision,
                                          fit.llc_bytes) / r["median_ms"] - 1) for r in held])
        all_err.append(err)
        loo = np.abs(fit.loo_errors_pct)
        print(f"\n{precision}: calibrated on {fit.n} measurements "
              f"(leave-one-out: {np.mean(loo <= 10):.0%} within 10%, median {np.median(loo):.1f}%)")
        print(f"  held-out: {len(held)} variants, {np.mean(np.abs(err) <= 10):.0%} within +-10%, "
              f"median |error| {np.median(np.abs(err)):.1f}%, worst {np.max(np.abs(err)):.1f}%")
        for r, e in sorted(zip(held, err), key=lambda t: -abs(t[1]))[:5]:
            print(f"    {r['family']:20s} w{r['width']:<5g} d{r['depth']:<5g} r{r['resolution']:<4d}"
                  f" measured {r['median_ms']:7.3f} ms  error {e:+6.1f}%")
    err = np.concatenate(all_err)
    print(f"\nALL: {len(err)} predictions, {np.mean(np.abs(err) <= 10):.1%} within +-10% "
          f"(goal >= 90%), median |error| {np.median(np.abs(err)):.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=44)
    ap.add_argument("--seed", type=int, default=11,
                    help="draw of the held-out variants (the features were chosen on the "
                         "draw of seed 7, so the reported figure uses a fresh one)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel conversions (timing runs alone)")
    ap.add_argument("--refit", action="store_true", help="re-fit saved measurements only")
    args = ap.parse_args()
    path = out_dir("latency_predictor") / "raw.json"
    if args.refit:
        raw = json.loads(path.read_text())
    else:
        raw = measure(args)
        path.write_text(json.dumps(raw, indent=1))
        print(f"raw measurements: {path}")
    report(raw)


if __name__ == "__main__":
    main()
