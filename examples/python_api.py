"""edgekit from Python: build a model, quantize it, profile it against its float self, then
run a recipe (the same stages, cache and run folder as ``edgekit run``).

    python examples/python_api.py            # fashion-mnist-demo: a few minutes on 2 cores
    python examples/python_api.py my.yaml    # any recipe file

Everything is written under a new temporary folder (its path is printed), never here.
"""

import os
import sys
import tempfile
from pathlib import Path

import edgekit as ek


def main(recipe: str = "fashion-mnist-demo") -> None:
    recipe = str(Path(recipe).resolve()) if Path(recipe).is_file() else recipe
    os.chdir(tempfile.mkdtemp(prefix="edgekit-example-"))
    print(f"working in {os.getcwd()}")

    m = ek.build("mobilenet_v2", width=0.35, resolution=96, classes=10, out="m.keras")
    q = ek.quantize(m, mode="int8", calib="fashion-mnist-sample:train", out="m_int8.tflite")
    r = ek.profile(q, data="fashion-mnist-sample:test", reference=m)
    print(r.latency.p50_ms, r.accuracy.top1, r.fidelity.top1_agreement)

    try:
        run = ek.run(recipe)  # recipes from Python, same cache and run folder
        print(f"{run.name}: {run.status}; run folder {run.run_dir}")
    except ek.GateFailed as exc:  # the run folder is complete; a gate did not hold
        print(f"gates failed: {exc}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
