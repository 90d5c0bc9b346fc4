"""What Ray costs and buys for ``edgekit sweep``, measured side by side in one run.

1. Overhead: a 1-variant sweep on a local Ray against ``edgekit run`` of the same recipe,
   each from an empty cache, in fresh processes (wall ratio; median of 2).
2. Throughput: one 12-job sweep (4 variants: 2 widths x int8/fp16, build + train + quantize
   + profile on host) on a local Ray of 1 CPU against a two-node Ray (1 CPU each,
   ``ray.cluster_utils.Cluster`` on loopback); then, from the measured per-job seconds, jobs
   per hour of a lab of N CPUs and D devices (CPU-bound vs device-bound).
3. Cache: the same sweep again: wall time and jobs run (goal: 0).
4. ``calibrate`` (tiny suite, fp32) on this machine's runner against the same through a local
   Ray (``--lab`` with no devices: ``host`` only): wall ratio, and how far each model's
   latency moves (the two measure the same CPU, so this is the lab path's own error).

Usage: python benchmarks/sweep.py   (about 11 minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml

from _util import EDGEKIT, machine, median, out_dir

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
RECIPE = {  # one variant
    "zoo": {"family": "mobilenet_v2", "width": 0.35, "depth": 0.3, "resolution": 32,
            "classes": 10},
    "device": "host",
    "datasets": {"train": "fashion-mnist-sample:train", "test": "fashion-mnist-sample:test"},
    "stages": [
        {"id": "trained", "stage": "finetune", "data": "@train", "epochs": 2},
        {"id": "quantized", "stage": "quantize", "mode": "int8", "calib": "@train"},
        {"stage": "profile", "data": "@test", "threads": 1, "runs": 50}]}


def edgekit(*args, env=None) -> tuple[float, dict]:
    t = time.perf_counter()
    proc = subprocess.run([*EDGEKIT, *map(str, args), "--json"], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"edgekit {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout)


def sweep_file(folder: Path, matrix: dict) -> Path:
    recipe = json.loads(json.dumps(RECIPE))
    for axis in matrix:
        if axis == "width":
            recipe["zoo"]["width"] = "${width}"
        if axis == "mode":
            recipe["stages"][1]["mode"] = "${mode}"
    path = folder / f"sweep-{len(list(folder.glob('sweep-*')))}.yaml"
    path.write_text(yaml.safe_dump({"schema": "edgekit.sweep/1", "name": "bench",
                                    "matrix": matrix, "recipe": recipe}))
    return path


def overhead(folder: Path) -> None:
    recipe = folder / "one.yaml"
    recipe.write_text(yaml.safe_dump({"schema": "edgekit.recipe/1", "name": "one", **RECIPE}))
    one = sweep_file(folder, {"width": [0.35]})
    runs, sweeps = [], []
    for i in range(2):
        runs.append(edgekit("run", recipe, "--runs-dir", folder / f"r{i}")[0])
        sweeps.append(edgekit("sweep", one, "--runs-dir", folder / f"s{i}", "--cpus", "2")[0])
    print(f"1. overhead: edgekit run {median(runs):.1f} s, 1-variant sweep on a local Ray "
          f"{median(sweeps):.1f} s (runs: {', '.join(f'{x:.1f}' for x in runs)} / "
          f"{', '.join(f'{x:.1f}' for x in sweeps)}): ratio {median(sweeps) / median(runs):.2f}")


def throughput(folder: Path) -> None:
    grid = sweep_file(folder, {"width": [0.35, 0.5], "mode": ["int8", "fp16"]})
    wall1, doc1 = edgekit("sweep", grid, "--runs-dir", folder / "one-node", "--cpus", "1")
    os.environ.update(RAY_ENV)
    from ray.cluster_utils import Cluster

    from edgekit.cluster.lab import node_env, resources, this_machine

    host = [this_machine()]
    c = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": "127.0.0.1", "num_cpus": 1, "resources": resources(host),
        "env_vars": node_env(host)})
    c.add_node(node_ip_address="127.0.0.1", num_cpus=1)
    c.wait_for_nodes()
    try:
        wall2, doc2 = edgekit("sweep", grid, "--address", c.address, "--runs-dir",
                              folder / "two-nodes")
        wall3, doc3 = edgekit("sweep", grid, "--address", c.address, "--runs-dir",
                              folder / "two-nodes")
    finally:
        c.shutdown()
    n = doc1["counts"]["jobs"]
    print(f"2. throughput, {n} jobs: 1 node x 1 CPU {wall1:.1f} s, 2 nodes x 1 CPU "
          f"{wall2:.1f} s: {wall1 / wall2:.2f}x ({n * 3600 / wall1:.0f} vs "
          f"{n * 3600 / wall2:.0f} jobs/hour)")
    cpu_s = sum(j["seconds"] for j in doc2["jobs"] if not j["device"])
    dev_s = sum(j["seconds"] for j in doc2["jobs"] if j["device"])
    variants = len(doc2["variants"])
    print(f"   per variant: {cpu_s / variants:.1f} CPU-s of jobs that compute (build, train "
          f"and quantize; shared ones counted once), {dev_s / variants:.1f} device-s of "
          "measurement")
    for cpus, devices in ((2, 1), (8, 10), (32, 10)):
        by_cpu = cpus * 3600 / (cpu_s / variants)
        by_dev = devices * 3600 / (dev_s / variants)
        bound = "CPU-bound" if by_cpu < by_dev else "device-bound"
        print(f"   a lab of {cpus} CPUs and {devices} devices: {min(by_cpu, by_dev):.0f} "
              f"variants/hour ({bound}; {by_cpu:.0f} by CPUs, {by_dev:.0f} by devices), "
              "computed from these per-job seconds, not measured")
    print(f"3. cache: the same sweep again {wall3:.1f} s wall, {doc3['counts']['ran']} jobs "
          f"run, {doc3['counts']['cached']} cached (Ray start-up included)")


def calibrate_on_lab(folder: Path) -> None:
    lab = folder / "lab.yaml"
    lab.write_text("schema: edgekit.lab/1\ndevices: []\n")
    args = ["calibrate", "--device", "host", "--suite", "tiny", "--precision", "fp32"]
    wall1, local = edgekit(*args, "-o", folder / "local.yaml")
    wall2, ray = edgekit(*args, "--lab", lab, "-o", folder / "lab.yaml.out.yaml")
    a, b = ({m["model"]: m["median_ms"] for m in d["fits"][0]["measured"]} for d in (local, ray))
    moves = [100 * (b[k] - a[k]) / a[k] for k in a]
    print(f"4. calibrate --suite tiny (fp32, {len(a)} models): local runner {wall1:.1f} s, "
          f"through a local Ray {wall2:.1f} s: ratio {wall2 / wall1:.2f}; per-model latency "
          f"moved {min(moves):+.1f}% to {max(moves):+.1f}% (one run each)")


if __name__ == "__main__":
    sys.path.insert(0, ".")
    folder = out_dir(f"sweep-{int(time.time())}")
    print(f"machine: {machine()}")
    overhead(folder)
    throughput(folder)
    calibrate_on_lab(folder)
