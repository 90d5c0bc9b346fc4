"""SSH runner overhead: `edgekit profile` of one model through a real OpenSSH server on
loopback vs the local runner, side by side (alternating, median of --repeat runs each).

Reports the wall time of the whole command (connection, copying model + harness + inputs,
cleanup) and the p50 latency each run measured (which should not move: the harness is the same).
Needs openssh-server (apt-get install openssh-server) and a model (default: the int8 model of
fmnist_int8_accuracy.py).

    python benchmarks/ssh_overhead.py [--model M.tflite] [--repeat 5] [--limit 1000]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import EDGEKIT, machine, out_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import sshd_server  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(out_dir("fmnist") / "mnv2_int8.tflite"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--limit", type=int, default=1000)
    args = ap.parse_args()
    server = sshd_server.start(Path(tempfile.mkdtemp(prefix="edgekit-sshd-")))
    common = [args.model, "--data", "fashion-mnist:test", "--limit", str(args.limit),
              "--threads", "1", "--runs", "100", "--json"]
    sides = {"local": [], "ssh": [*server.cli_args(), "--remote-python", sys.executable]}
    wall = {k: [] for k in sides}
    p50 = {k: [] for k in sides}
    try:
        for i in range(args.repeat):
            for name, extra in sides.items():
                t = time.perf_counter()
                proc = subprocess.run([*EDGEKIT, "profile", *common, *extra], capture_output=True,
                                      text=True, check=True)
                wall[name].append(time.perf_counter() - t)
                p50[name].append(json.loads(proc.stdout)["latency_ms"]["p50"])
    finally:
        server.stop()
    med = {k: statistics.median(v) for k, v in wall.items()}
    print(f"machine: {machine()}; model {Path(args.model).name}, 100 timed runs + "
          f"{args.limit} images evaluated, 1 thread, median of {args.repeat}")
    for k in sides:
        print(f"  {k:5s}: wall {med[k]:.2f} s, p50 latency {statistics.median(p50[k]):.3f} ms")
    print(f"ssh / local wall: {med['ssh'] / med['local']:.3f} "
          f"(+{med['ssh'] - med['local']:.2f} s per profile); p50 latency ratio "
          f"{statistics.median(p50['ssh']) / statistics.median(p50['local']):.3f}")
