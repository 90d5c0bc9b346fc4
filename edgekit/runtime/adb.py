"""ADBRunner: Android phones over adb, timed by TFLite's own ``benchmark_model``.

Phones rarely have Python, so timing uses the tool Android ML engineers already trust:
``benchmark_model`` (given with ``--benchmark-binary``, pushed, or found on the device), with
the device profile's recommended flags: ``--num_threads``, XNNPACK on the CPU or
``--use_gpu=true``, and ``taskset`` pinning to the fastest cores (Linux numbers an Arm
big.LITTLE SoC's cores from the slowest cluster up; the profile lists clusters fastest
first). Its summary (microseconds: count/min/max/avg/std, and p5/median/p95 in newer builds;
init time; memory footprint) is parsed into the same result document as every runner.

Accuracy needs no Python on the phone: every image is pushed as a raw input file (preprocessed
and quantized on this machine exactly as the harness does), ``benchmark_model
--input_layer_value_files=... --output_filepath=...`` runs once per image in one device-side
loop, and the raw outputs are pulled back and dequantized.

No phone or Android emulator exists where edgekit is developed: the tests check the command
lines and parse output in benchmark_model's printed format through a stand-in ``adb``; the
README says so.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import BadInput, EnvironmentProblem
from .base import Runner

DEVICE_TMP = "/data/local/tmp"
_NUM = r"([0-9.]+(?:e[+-]?[0-9]+)?)"


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """The timing summary of a ``benchmark_model`` run (any log prefix), in milliseconds."""
    runs = [m for m in re.finditer(r"count=(\d+)((?: \w+=" + _NUM + r")+)", text)]
    if not runs:
        raise EnvironmentProblem("benchmark_model printed no timings: "
                                 + (text.strip().splitlines() or ["(no output)"])[-1][:200])
    last = runs[-1]  # the warm-up pass prints first, the timed pass last
    fields = {k: float(v) for k, v in re.findall(r"(\w+)=" + _NUM, last.group(2))}
    stats: dict[str, Any] = {"count": int(last.group(1))}
    for key, name in (("min", "min"), ("max", "max"), ("avg", "mean"), ("std", "std"),
                      ("median", "p50"), ("p5", "p5"), ("p95", "p95"), ("first", "first")):
        if key in fields:
            stats[name] = fields[key] / 1000.0
    out: dict[str, Any] = {"latency_summary": stats}
    m = re.search(r"Inference timings in us: Init: " + _NUM, text)
    if m:
        out["init_ms"] = float(m.group(1)) / 1000.0
    m = re.search(r"(?:Peak memory footprint|Memory footprint delta from the start of the "
                  r"tool) \(MB\): init=" + _NUM + r" overall=" + _NUM, text)
    if m:
        out["memory_init_mb"], out["memory_overall_mb"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM, text)
    if m:
        out["memory_peak_mb"] = float(m.group(1))
    return out


def big_core_mask(cores_fastest_first: list[int], threads: int) -> str:
    """Hex CPU mask of the ``threads`` fastest cores."""
    total = sum(cores_fastest_first)
    threads = max(1, min(threads, total))
    return format(sum(1 << c for c in range(total - threads, total)), "x")


def benchmark_command(binary: str, model: str, *, threads: int, warmup: int, runs: int,
                      gpu: bool = False, mask: str | None = None,
                      extra: tuple[str, ...] = ()) -> list[str]:
    argv = ([] if mask is None else ["taskset", mask]) + [
        binary, f"--graph={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
        f"--num_runs={runs}", "--min_secs=0", "--warmup_min_secs=0",
        "--use_gpu=true" if gpu else "--use_xnnpack=true", *extra]
    return argv


class ADBRunner(Runner):
    name = "adb"

    def __init__(self, serial: str | None = None, *, benchmark_binary: Path | None = None,
                 device=None, accelerator: str = "cpu", timeout_s: float = 1800.0,
                 adb: str = "adb"):
        if serial is not None and not re.match(r"^[\w.:-]+$", serial):
            raise BadInput(f"--serial {serial!r} is not an adb serial")
        if benchmark_binary is not None and not Path(benchmark_binary).is_file():
            raise BadInput(f"--benchmark-binary {benchmark_binary}: no such file")
        if shutil.which(adb) is None:
            raise EnvironmentProblem("adb is not installed", hint="apt-get install adb")
        self.serial, self.binary_src, self.device = serial, benchmark_binary, device
        self.gpu, self.timeout_s, self.adb = accelerator == "gpu", timeout_s, adb
        self.remote: str | None = None
        self.binary: str | None = None
        self.model: str | None = None
        self.artifact: Artifact | None = None
        self.prep: dict = {}

    # --- transport --------------------------------------------------------------------------
    def _adb(self, *args: str, what: str, timeout_s: float | None = None) -> str:
        argv = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        limit = timeout_s or self.timeout_s
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"adb: {what} timed out after {limit:g} s",
                                     hint="--timeout sets the limit") from None
        if proc.returncode != 0:
            msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
            raise EnvironmentProblem(f"adb {self.serial or ''}: {what} failed: {msg[0][:300]}")
        return proc.stdout

    def _shell(self, words: list[str], what: str, timeout_s: float | None = None) -> str:
        return self._adb("shell", " ".join(shlex.quote(w) for w in words), what=what,
                         timeout_s=timeout_s)

    # --- Runner -----------------------------------------------------------------------------
    def check(self) -> None:
        """adb sees the device online (not offline, unauthorized or gone)."""
        state = self._adb("get-state", what="reaching the device", timeout_s=30).strip()
        if state != "device":
            raise EnvironmentProblem(f"adb device {self.serial or '(default)'} is {state}")

    def prepare(self, artifact: Artifact, input_shape: list[int], preprocessing: dict,
                nchw: bool = False) -> None:
        self.check()
        self.remote = self._shell(["mktemp", "-d", f"{DEVICE_TMP}/edgekit.XXXXXXXX"],
                                  "creating a private folder", 60).strip()
        if not re.match(r"^/data/local/tmp/edgekit\.\w+$", self.remote):
            raise EnvironmentProblem(f"adb: mktemp returned {self.remote[:80]!r}")
        self.model = f"{self.remote}/model.tflite"
        self._adb("push", str(artifact.path), self.model, what="pushing the model")
        self.artifact, self.prep = artifact, preprocessing
        self.binary = self._find_binary()

    def _find_binary(self) -> str:
        if self.binary_src is not None:
            dst = f"{self.remote}/benchmark_model"
            self._adb("push", str(self.binary_src), dst, what="pushing benchmark_model")
            self._shell(["chmod", "755", dst], "chmod benchmark_model")
            return dst
        found = self._shell(["sh", "-c", f"ls {DEVICE_TMP}/benchmark_model 2>/dev/null || "
                                         "command -v benchmark_model || true"],
                            "looking for benchmark_model", 30).strip().splitlines()
        if not found:
            raise EnvironmentProblem("benchmark_model is not on the device",
                                     hint="pass --benchmark-binary PATH (TFLite's "
                                          "android_aarch64 benchmark_model)")
        return found[0]

    def _threads(self, threads: int | None) -> int:
        if threads:
            return threads
        if self.device is not None:
            return int(self.device.default_budget.threads.value)
        return 4

    def _mask(self, threads: int) -> str | None:
        if self.device is None or self.gpu:
            return None
        return big_core_mask([int(c.cores.value) for c in self.device.cpu.clusters], threads)

    def run(self, n_warmup: int, n_runs: int, threads: int | None) -> dict[str, Any]:
        assert self.binary and self.model, "prepare() first"
        t = self._threads(threads)
        argv = benchmark_command(self.binary, self.model, threads=t, warmup=n_warmup,
                                 runs=n_runs, gpu=self.gpu, mask=self._mask(t))
        parsed = parse_benchmark_output(self._shell(argv, "benchmark_model"))
        props = self._props()
        return {"latency_ms": None, **parsed, "threads": t,
                "init_ms": parsed.get("init_ms", float("nan")),
                "rss_start_mb": 0.0, "rss_loaded_mb": parsed.get("memory_init_mb", 0.0),
                "peak_rss_timing_mb": parsed.get("memory_peak_mb",
                                                 parsed.get("memory_overall_mb", 0.0)),
                "runtime": "tflite benchmark_model" + (" (GPU delegate)" if self.gpu else ""),
                "runtime_version": "unknown", "cpu": props.get("ro.soc.model") or
                props.get("ro.product.model", "android"), "cores": None,
                "machine": props.get("ro.product.cpu.abi", "arm64-v8a"),
                "system": f"Android {props.get('ro.build.version.release', '?')}",
                "python": None, "numpy": None, "command": " ".join(argv),
                "memory_note": "benchmark_model's memory footprint: overall (or periodic peak) "
                               "as peak_rss_mb, at init as model_rss_mb"}

    def _props(self) -> dict[str, str]:
        out = self._shell(["getprop"], "reading device properties", 30)
        return dict(re.findall(r"^\[([\w.]+)\]: \[(.*)\]$", out, re.M))

    def evaluate(self, images: np.ndarray, threads: int | None) -> np.ndarray:
        """Scores per image, one benchmark_model run each on the device (no Python needed)."""
        assert self.artifact is not None and self.remote is not None, "prepare() first"
        from ai_edge_litert.interpreter import Interpreter

        from .harness import to_input

        it = Interpreter(model_path=str(self.artifact.path))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        t = self._threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            local_in = Path(tmp) / "in"
            local_in.mkdir()
            for i, img in enumerate(images):
                x = to_input(img[None], self.prep, np.dtype(inp["dtype"]), inp["quantization"],
                             False)
                (local_in / f"{i}.bin").write_bytes(np.ascontiguousarray(x).tobytes())
            self._adb("push", str(local_in), f"{self.remote}/in", what="pushing inputs")
            name = inp["name"].replace(":", "::")  # the tool's escape for "input:0" names
            shape = ",".join(str(d) for d in inp["shape"])
            one = benchmark_command(self.binary, self.model, threads=t, warmup=0, runs=1,
                                    gpu=self.gpu, extra=(
                                        f"--input_layer={inp['name']}",
                                        f"--input_layer_shape={shape}",
                                        f"--input_layer_value_files={name}:"
                                        f"{self.remote}/in/$i.bin",
                                        f"--output_filepath={self.remote}/out/$i.bin"))
            # the device shell expands $i; every other word is quoted (paths were validated)
            words = " ".join(f'"{w}"' if "$i" in w else shlex.quote(w) for w in one)
            loop = (f"mkdir -p {self.remote}/out && i=0; while [ $i -lt {len(images)} ]; do "
                    f"{words} >/dev/null 2>&1 || exit 1; i=$((i+1)); done")
            self._adb("shell", loop, what="evaluating images with benchmark_model")
            self._adb("pull", f"{self.remote}/out", str(Path(tmp) / "out"),
                      what="pulling outputs")
            dtype, (scale, zero) = np.dtype(out["dtype"]), out["quantization"]
            scores = np.stack([np.fromfile(Path(tmp) / "out" / f"{i}.bin", dtype=dtype)
                               for i in range(len(images))])
        scores = scores.astype(np.float32)
        return (scores - zero) * scale if scale else scores

    def cleanup(self) -> None:
        remote, self.remote = self.remote, None
        if remote is not None:
            self._shell(["rm", "-rf", remote], "cleaning up", 60)

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, "serial": self.serial, "accelerator":
                "gpu" if self.gpu else "cpu"}


__all__ = ["ADBRunner", "benchmark_command", "big_core_mask", "parse_benchmark_output"]
