"""int8 latency against fp32, side by side in one run: MobileNetV2 1.0@224 and
EfficientNet-Lite0 (1000 classes), 1 and 2 threads, batch 1, on this machine's CPU.

Per model, from one float ONNX export (edgekit's ``float_onnx``, target cpu, opset 17):
- ONNX fp32;
- edgekit's ONNX int8 for ``--target cpu``, engine ort (QDQ, per-channel int8 weights in a
  7-bit range, uint8 per-tensor activations: ``quantize_proto(..., engine="ort")``); the same
  with full-range weights (which onnxruntime's kernels saturate on x86 without VNNI); and the
  full-range weights stored as uint8 with zero point 128 (exact, run by u8u8 kernels; how
  edgekit stores QAT weights): what each remedy costs in time;
- edgekit's ONNX int8, engine nncf (per-tensor activations, rewritten to uint8);
- NNCF's default output: ``nncf.quantize(proto, nncf.Dataset(...))`` with no other argument,
  saved as is (if onnxruntime refuses to load or run it, that is the result, with the
  first line of its error);
- NNCF with per-tensor activations but without edgekit's uint8 rewrite, which separates what
  the rewrite buys from what per-tensor scales buy;
- ORT's defaults: ``onnxruntime.quantization.quantize_static(float, out, reader)`` with every
  other argument left at its default (QDQ, per-tensor, int8 activations and weights);
and, from the same Keras model, TFLite fp32 and TFLite int8 (``convert_tflite``, int8 I/O).

Random weights and 32 calibration samples uniform in [-1, 1]: latency does not depend on the
values (the ranges change only the constants of the same kernels). Every model is timed by
edgekit's local runner (``time_artifact``: a harness child process, onnxruntime CPU provider
or ai_edge_litert/XNNPACK, median of about 0.6 s of runs), interleaved: in each round, for
each thread count, every variant of every model is timed in turn; a figure is the lowest of
its per-round medians. Ratio = fp32 ms / variant ms of the same runtime (> 1: faster).

    python benchmarks/int8_speed.py [--rounds 3] [--threads 1 2] [--quick] [--out DIR]

Raw figures (per-round medians, spreads, schemes, versions, start/end time and load average)
go to DIR/int8_speed.json (default /tmp/edgekit-bench-int8).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from pathlib import Path

from _util import machine

MODELS = ("mobilenet_v2", "efficientnet_lite0")
RESOLUTION, CLASSES = 224, 1000
# (key, runtime, label); the first variant of each runtime is its fp32 baseline.
VARIANTS = [
    ("onnx_fp32", "onnx", "fp32"),
    ("edgekit_ort", "onnx", "int8 edgekit --target cpu (ort)"),
    ("edgekit_ort_w8", "onnx", "  the same, full-range weights"),
    ("edgekit_ort_u8w", "onnx", "  the same, stored as uint8"),
    ("edgekit_nncf", "onnx", "int8 edgekit --engine nncf"),
    ("nncf_default", "onnx", "int8 NNCF default"),
    ("nncf_pertensor", "onnx", "int8 NNCF per-tensor, no uint8"),
    ("ort_default", "onnx", "int8 ORT quantize_static defaults"),
    ("tflite_fp32", "tflite", "fp32"),
    ("tflite_int8", "tflite", "int8 (int8 I/O)"),
]
BASELINE = {"onnx": "onnx_fp32", "tflite": "tflite_fp32"}


def _reader(samples, name):
    from edgekit.optimize.onnx_quant import _reader as edgekit_reader

    return edgekit_reader(samples, name, None)  # the same calibration reader edgekit uses


def scheme(path: Path) -> dict:
    """What a QDQ model quantizes how: activation QuantizeLinear nodes by zero-point type and
    per-channel (scale with more than one element), and quantized weights."""
    import onnx

    g = onnx.load(str(path)).graph
    inits = {i.name: i for i in g.initializer}
    out = {"act_uint8": 0, "act_int8": 0, "act_per_channel": 0, "weights_per_channel": 0,
           "weights_per_tensor": 0}
    for n in g.node:
        scale = inits.get(n.input[1]) if len(n.input) > 1 else None
        per_channel = scale is not None and len(scale.dims) > 0 and scale.dims[0] > 1
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            zp = inits.get(n.input[2]) if len(n.input) > 2 else None
            out["act_int8" if zp is not None and zp.data_type == 3 else "act_uint8"] += 1
            out["act_per_channel"] += per_channel
        elif n.op_type == "DequantizeLinear" and n.input[0] in inits:
            out["weights_per_channel" if per_channel else "weights_per_tensor"] += 1
    return out


def loads_in_ort(path: Path, shape) -> str | None:
    """None if onnxruntime loads the model and runs it once, else what failed: the stage
    (session creation or first run) and the error's first line."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # the error is reported below, not as an ORT log line
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - the refusal is the result
        return f"does not load in onnxruntime: {first_line(exc)}"
    try:
        sess.run(None, {sess.get_inputs()[0].name: np.zeros(shape, np.float32)})
    except Exception as exc:  # noqa: BLE001
        return f"onnxruntime loads it but fails on the first run: {first_line(exc)}"
    return None


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def short(error: str) -> str:
    """The readable part of an onnxruntime error line, for the table (the JSON keeps it all)."""
    import re

    stage, _, msg = error.partition(": ")
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", msg)
    if " was false. " in msg:  # ORT_ENFORCE: source location and condition, then the message
        msg = msg.rsplit(" was false. ", 1)[-1]
    elif len(msg) > 160:
        msg = msg[:160] + "..."
    return f"{stage}: " + (f"{node.group(1)} node '{node.group(2)}': " if node else "") + msg


def _weights_to_uint8(proto) -> None:
    """Store each int8 weight read by a DequantizeLinear as uint8, zero point + 128 (the same
    values; how edgekit stores QAT weights, qat_onnx): onnxruntime then runs u8u8 kernels."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    names = {name for n in proto.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(n.input) > 2
             and inits[n.input[0]].data_type == 3  # INT8
             for name in (n.input[0], n.input[2])}  # a set: a shared zero point shifts once
    for name in names:
        v = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
        inits[name].CopyFrom(numpy_helper.from_array(v.astype(np.uint8), name))


def make_variants(family: str, d: Path, n_calib: int, seed: int = 0) -> dict[str, dict]:
    """Build ``family`` (random weights) and write every variant; return key -> facts."""
    import numpy as np
    import onnx

    from edgekit.core.artifacts import Artifact
    from edgekit.formats.onnx import float_onnx
    from edgekit.formats.tflite import convert_tflite
    from edgekit.models.build import build_model
    from edgekit.models.families import get_spec
    from edgekit.optimize import onnx_quant
    from edgekit.optimize.onnx_quant import quantize_proto

    spec = get_spec(family, resolution=RESOLUTION, classes=CLASSES)
    model = build_model(spec, seed=seed)
    source = Artifact(path=d / f"{family}.keras", format="keras", meta={})  # not written
    shape = (1, RESOLUTION, RESOLUTION, 3)
    rng = np.random.default_rng(seed)
    samples = rng.uniform(-1, 1, (n_calib, *shape[1:])).astype(np.float32)
    out: dict[str, dict] = {}

    def make(key: str, suffix: str, write) -> None:
        path = d / f"{family}_{key}{suffix}"
        t = time.perf_counter()
        try:
            write(path)
        except Exception as exc:  # noqa: BLE001 - a quantizer that fails is a result too
            out[key] = {"path": None,
                        "error": f"quantization failed: {type(exc).__name__}: {first_line(exc)}"}
            print(f"  {family} {key}: {out[key]['error']}", flush=True)
            return
        facts = {"path": str(path), "make_s": round(time.perf_counter() - t, 2),
                 "size_bytes": path.stat().st_size, "error": None}
        if suffix == ".onnx":
            facts["scheme"] = scheme(path)
            err = loads_in_ort(path, shape)
            if err:
                facts["error"] = err
        out[key] = facts
        print(f"  {family} {key}: {facts['make_s']:.1f} s"
              + (f" -- {short(facts['error'])}" if facts["error"] else ""), flush=True)

    fproto, _facts = float_onnx(source, "cpu", 17, model=model)
    name = next(i.name for i in fproto.graph.input)
    make("onnx_fp32", ".onnx", lambda p: onnx.save(fproto, str(p)))
    make("edgekit_ort", ".onnx", lambda p: onnx.save(
        quantize_proto(copy.deepcopy(fproto), samples, "cpu", "ort"), str(p)))

    def full_range(p: Path, stored_as_uint8: bool = False) -> None:
        cpu = onnx_quant.TARGETS["cpu"]
        onnx_quant.TARGETS["cpu"] = {**cpu, "weight_bits": 8}
        try:
            q = quantize_proto(copy.deepcopy(fproto), samples, "cpu", "ort")
        finally:
            onnx_quant.TARGETS["cpu"] = cpu
        if stored_as_uint8:
            _weights_to_uint8(q)
        onnx.save(q, str(p))

    make("edgekit_ort_w8", ".onnx", full_range)
    make("edgekit_ort_u8w", ".onnx", lambda p: full_range(p, stored_as_uint8=True))
    make("edgekit_nncf", ".onnx", lambda p: onnx.save(
        quantize_proto(copy.deepcopy(fproto), samples, "cpu", "nncf"), str(p)))

    os.environ.setdefault("NNCF_LOG_LEVEL", "ERROR")
    import nncf
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                       QuantizationParameters)

    logging.getLogger("nncf").setLevel(logging.ERROR)
    dataset = lambda: nncf.Dataset(range(n_calib), lambda i: {name: samples[i:i + 1]})  # noqa: E731
    make("nncf_default", ".onnx", lambda p: onnx.save(
        nncf.quantize(copy.deepcopy(fproto), dataset()), str(p)))
    adv = AdvancedQuantizationParameters(
        activations_quantization_params=QuantizationParameters(per_channel=False))
    make("nncf_pertensor", ".onnx", lambda p: onnx.save(
        nncf.quantize(copy.deepcopy(fproto), dataset(), advanced_parameters=adv), str(p)))

    def ort_default(p: Path) -> None:
        from onnxruntime.quantization import quantize_static

        src = d / f"{family}_ort_default_input.onnx"
        onnx.save(fproto, str(src))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process the model
        try:
            quantize_static(str(src), str(p), _reader(samples, name))
        finally:
            root.setLevel(level)
            src.unlink()

    make("ort_default", ".onnx", ort_default)
    make("tflite_fp32", ".tflite", lambda p: p.write_bytes(
        convert_tflite(source, "fp32", model=model)))
    representative = lambda: ([x[None]] for x in samples)  # noqa: E731
    make("tflite_int8", ".tflite", lambda p: p.write_bytes(
        convert_tflite(source, "int8", representative, io_type="int8", model=model)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--calib", type=int, default=32, help="random calibration samples")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 1 thread, MobileNetV2 only")
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgekit-bench-int8"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.threads, args.models = 1, [1], ["mobilenet_v2"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args.out.mkdir(parents=True, exist_ok=True)

    from importlib import metadata

    from edgekit.core.artifacts import Artifact
    from edgekit.core.errors import EdgekitError
    from edgekit.estimate.timing import time_artifact
    from edgekit.models.load import quiet_tensorflow
    from edgekit.runtime.local import LocalRunner

    quiet_tensorflow()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    variants = {}
    for family in args.models:
        print(f"building and quantizing {family} ...", flush=True)
        variants[family] = make_variants(family, args.out, args.calib)
    build_s = time.perf_counter() - t0

    shape = [1, RESOLUTION, RESOLUTION, 3]
    runtimes: dict[str, str] = {}
    cpu = ""
    medians: dict = {f: {t: {k: [] for k, _, _ in VARIANTS} for t in args.threads}
                     for f in args.models}
    spreads: dict = {f: {t: {k: [] for k, _, _ in VARIANTS} for t in args.threads}
                     for f in args.models}
    load: list[dict] = []  # other processes may share the CPU: keep a trace of the load
    t1 = time.perf_counter()
    for r in range(args.rounds):
        for threads in args.threads:
            for family in args.models:
                for key, runtime, _label in VARIANTS:
                    v = variants[family][key]
                    if v["error"]:
                        continue
                    art = Artifact(path=Path(v["path"]), format=runtime, meta={})
                    try:
                        t = time_artifact(art, LocalRunner(), shape, threads, nchw=False)
                    except EdgekitError as exc:  # the harness could not run it
                        v["error"] = f"harness failed: {exc}"
                        continue
                    medians[family][threads][key].append(t["median_ms"])
                    spreads[family][threads][key].append(round(t["spread_pct"], 1))
                    cpu = cpu or t["cpu"]
                    runtimes[runtime] = f"{t['runtime']} {t['runtime_version']}"
            load.append({"round": r + 1, "threads": threads, "loadavg_1min": os.getloadavg()[0],
                         "at": time.strftime("%H:%M:%S")})
            print(f"round {r + 1}/{args.rounds}, {threads} thread(s) timed "
                  f"(load average {load[-1]['loadavg_1min']:.2f})", flush=True)
    time_s = time.perf_counter() - t1
    ended = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_end = os.getloadavg()

    versions = {}
    for pkg in ("edgekit", "onnxruntime", "ai-edge-litert", "nncf", "tensorflow-cpu", "tf2onnx",
                "onnxslim", "keras"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    results = []
    for family in args.models:
        for threads in args.threads:
            for key, runtime, label in VARIANTS:
                v, m = variants[family][key], medians[family][threads][key]
                base = medians[family][threads][BASELINE[runtime]]
                ms = min(m) if m and not v["error"] else None
                base_ms = min(base) if base else None
                results.append({"model": family, "threads": threads, "variant": key,
                                "label": label, "runtime": runtime, "median_ms": ms,
                                "round_medians_ms": m, "spread_pct": spreads[family][threads][key],
                                "speedup_vs_fp32": (base_ms / ms) if ms and base_ms else None,
                                "error": v["error"]})

    print()
    print(f"machine: {machine()}; harness CPU: {cpu}")
    print(f"onnxruntime {versions.get('onnxruntime')} (CPU provider), ai-edge-litert "
          f"{versions.get('ai-edge-litert')} (XNNPACK), nncf {versions.get('nncf')}; batch 1, "
          f"random weights, {args.calib} random calibration samples")
    print(f"{args.rounds} interleaved round(s); figure = lowest per-round median; "
          f"started {started}, ended {ended}; load average {load_start[0]:.2f} -> {load_end[0]:.2f}")
    for family in args.models:
        for threads in args.threads:
            print(f"\n{family} 1.0@{RESOLUTION}, {threads} thread(s)")
            print(f"{'runtime':<8}{'variant':<36}{'ms':>9}{'fp32/var':>10}  act QDQ (u8/s8/per-ch)")
            for row in results:
                if row["model"] != family or row["threads"] != threads:
                    continue
                sch = variants[family][row["variant"]].get("scheme")
                sch_s = (f"  {sch['act_uint8']}/{sch['act_int8']}/{sch['act_per_channel']}"
                         if sch and (sch["act_uint8"] or sch["act_int8"]) else "")
                if row["error"]:
                    print(f"{row['runtime']:<8}{row['label']:<36}{'-':>9}{'-':>10}{sch_s}\n"
                          f"{'':8}  ^ {short(row['error'])}")
                    continue
                print(f"{row['runtime']:<8}{row['label']:<36}{row['median_ms']:>9.2f}"
                      f"{row['speedup_vs_fp32']:>10.2f}{sch_s}")
    doc = {"benchmark": "int8_speed", "machine": machine(), "cpu": cpu, "runtimes": runtimes,
           "versions": versions, "started": started, "ended": ended,
           "loadavg_start": load_start, "loadavg_end": load_end, "loadavg_rounds": load,
           "rounds": args.rounds,
           "threads": args.threads, "calib_samples": args.calib, "calib": "uniform [-1, 1]",
           "resolution": RESOLUTION, "classes": CLASSES, "build_s": round(build_s, 1),
           "timing_s": round(time_s, 1), "variants": variants, "results": results}
    path = args.out / "int8_speed.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nraw figures: {path}")


if __name__ == "__main__":
    main()
