"""Start-up wall time of the commands people run many times a day: ``edgekit --help``,
``edgekit devices list`` and ``edgekit compare A B`` (goal: under 150 ms each), and
``python -c "import edgekit"``. Median of 10 runs after a warm-up, the checkouts interleaved
round by round so that drift on the machine hits them alike.

    python benchmarks/cli_startup.py [CHECKOUT ...]   # default: this checkout

Each CHECKOUT is a folder holding an ``edgekit`` package (e.g. an old commit's worktree), run
with ``PYTHONPATH=CHECKOUT``."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import machine, median

HERE = Path(__file__).resolve().parents[1]
GOAL_S = 0.150


def _profiles(work: Path) -> tuple[Path, Path]:
    """Two real profile results of a small int8 model (made once, with this checkout)."""
    a, b = work / "a.json", work / "b.json"
    if not b.exists():
        run = [sys.executable, "-m", "edgekit"]
        for args in (["zoo", "build", "mobilenet_v2", "--width", "0.35", "--resolution", "32",
                      "--classes", "10", "-o", work / "m.keras"],
                     ["export", work / "m.keras", "-o", work / "m.tflite"],
                     ["profile", work / "m.tflite", "--runs", "20", "-o", a],
                     ["profile", work / "m.tflite", "--runs", "20", "-o", b]):
            subprocess.run([*run, *map(str, args)], check=True, capture_output=True)
    return a, b


def _time(cmd: list[str], checkout: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    t = time.perf_counter()
    # from a neutral folder: `python -m` puts the working folder ahead of PYTHONPATH
    subprocess.run(cmd, env=env, capture_output=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - t


def main(checkouts: list[Path]) -> None:
    work = Path(tempfile.gettempdir()) / "edgekit-cli-startup"
    work.mkdir(exist_ok=True)
    a, b = _profiles(work)
    py = [sys.executable]
    cases = {"python -c pass": [*py, "-c", "pass"],
             "import edgekit": [*py, "-c", "import edgekit"],
             "edgekit --help": [*py, "-m", "edgekit", "--help"],
             "edgekit devices list": [*py, "-m", "edgekit", "devices", "list"],
             "edgekit compare A B": [*py, "-m", "edgekit", "compare", str(a), str(b)]}
    times = {(c, k): [] for c in checkouts for k in cases}
    for c in checkouts:
        for cmd in cases.values():
            _time(cmd, c)  # warm-up: file caches, .pyc
    for _ in range(10):
        for c in checkouts:
            for k, cmd in cases.items():
                times[c, k].append(_time(cmd, c))
    print(f"machine: {machine()}; median of 10 runs, ms")
    print(f"{'command':<24}" + "".join(f"{str(c)[-28:]:>30}" for c in checkouts))
    for k in cases:
        cells = "".join(f"{median(times[c, k]) * 1000:>30.0f}" for c in checkouts)
        print(f"{k:<24}{cells}")
    last = checkouts[-1]
    for k in ("edgekit --help", "edgekit devices list", "edgekit compare A B"):
        ms = median(times[last, k]) * 1000
        print(f"{k}: {ms:.0f} ms, goal < {GOAL_S * 1000:.0f} ms: "
              f"{'met' if ms < GOAL_S * 1000 else 'NOT met'} ({last})")


if __name__ == "__main__":
    main([Path(p).resolve() for p in sys.argv[1:]] or [HERE])
