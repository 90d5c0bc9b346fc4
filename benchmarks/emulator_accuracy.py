"""Arm64 emulator figures: setup time cold and cached, and emulated vs native accuracy and
top-1 agreement of an int8 Fashion-MNIST model on 1,000 test images (class-balanced).

Needs root, qemu-user-static, debootstrap and the network to the Debian mirror and PyPI (for
the cold setup only), plus the int8 model of fmnist_int8_accuracy.py (run that first), or
--model. The cold setup deletes and rebuilds the cached user-space.

    python benchmarks/emulator_accuracy.py [--model M.tflite] [--limit 1000] [--no-cold]
"""

import argparse
import json
import subprocess
import sys
import time

from _util import EDGEKIT, cli, machine, out_dir

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(out_dir("fmnist") / "mnv2_int8.tflite"))
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--no-cold", action="store_true", help="keep the cached user-space")
    args = ap.parse_args()
    d = out_dir("emulator")
    times = {}
    if not args.no_cold:
        cli("emulator", "remove")
        t = time.perf_counter()
        cold = cli("emulator", "setup", json_out=True)
        times["cold"] = time.perf_counter() - t
        print(f"setup cold: {times['cold']:.1f} s wall ({cold['size_mb']} MB, "
              f"{len(cold['wheels'])} wheels, numpy {cold['numpy']}, "
              f"ai-edge-litert {cold['ai_edge_litert']})", flush=True)
    t = time.perf_counter()
    cli("emulator", "setup", json_out=True)
    times["cached"] = time.perf_counter() - t
    print(f"setup cached: {times['cached']:.2f} s wall (the whole `edgekit emulator setup` "
          f"command)", flush=True)
    common = ["--data", "fashion-mnist:test", "--limit", args.limit, "--threads", 1,
              "--runs", 3, "--warmup", 1]
    results = {}
    for name, extra in (("native", []), ("emulated", ["--device", "emulator-arm64"])):
        t = time.perf_counter()
        cli("profile", args.model, *extra, *common, "-o", d / f"{name}.json", "--force")
        results[name] = json.loads((d / f"{name}.json").read_text())
        print(f"{name}: top-1 {results[name]['accuracy']['top1']:.2f}% on "
              f"{results[name]['accuracy']['n']} images, {time.perf_counter() - t:.1f} s "
              f"wall, runtime {results[name]['provenance']['runtime_version']} on "
              f"{results[name]['device']['machine']}", flush=True)
    proc = subprocess.run([*EDGEKIT, "compare", str(d / "native.json"), str(d / "emulated.json"),
                           "--json"], capture_output=True, text=True)
    doc = json.loads(proc.stdout)
    rows = {r["metric"]: r for r in doc["rows"]}
    agree = rows["run agreement"]
    print(f"\nmachine: {machine()}")
    print(f"emulated vs native top-1: {rows['top-1']['new']:.2f}% vs "
          f"{rows['top-1']['base']:.2f}% ({rows['top-1']['change']:+.2f} "
          f"points); top-1 agreement {agree['new']:.2f}% ({agree['note']}); "
          f"edgekit compare exit {proc.returncode}")
    sys.exit(0)
