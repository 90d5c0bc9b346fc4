"""int8 and fp16 latency divided by fp32 latency, MobileNetV2 1.0@224 and EfficientNet-Lite0,
1 and 2 threads, measured side by side in one run with the local runner (ai_edge_litert,
XNNPACK). Random weights: latency does not depend on the weight values.

    python benchmarks/latency_ratios.py [--runs 100]
"""

import argparse

from _util import cli, machine, out_dir

MODELS = {"mobilenet_v2": [], "efficientnet_lite0": []}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    d = out_dir("latency")
    rows = []
    for family in args.models:
        keras_path = d / f"{family}.keras"
        cli("zoo", "build", family, "-o", keras_path, "--force")
        files = {"fp32": d / f"{family}_fp32.tflite"}
        cli("export", keras_path, "-o", files["fp32"], "--force")
        for mode in ("int8", "fp16"):
            files[mode] = d / f"{family}_{mode}.tflite"
            cli("quantize", keras_path, "--mode", mode, "--calib", "fashion-mnist-sample:train",
                "--calib-size", "100", "-o", files[mode], "--force")
        for threads in (1, 2):
            p50 = {}
            for mode, path in files.items():  # interleaved: same conditions for all three
                r = cli("profile", path, "--threads", threads, "--runs", args.runs,
                        "--warmup", 10, json_out=True)
                p50[mode] = r["latency_ms"]["p50"]
            rows.append((family, threads, p50))
    print(f"machine: {machine()}; runtime ai_edge_litert (XNNPACK), batch 1, {args.runs} runs, p50")
    print(f"{'model':<20}{'thr':>4}{'fp32 ms':>10}{'int8 ms':>10}{'fp16 ms':>10}"
          f"{'int8/fp32':>11}{'fp16/fp32':>11}")
    for family, threads, p in rows:
        print(f"{family:<20}{threads:>4}{p['fp32']:>10.2f}{p['int8']:>10.2f}{p['fp16']:>10.2f}"
              f"{p['int8'] / p['fp32']:>11.2f}{p['fp16'] / p['fp32']:>11.2f}")
