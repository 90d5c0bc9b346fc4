"""int8 ONNX quantization, with the scheme chosen per target because speed depends on it.

- ``--target cpu`` (onnxruntime's CPU provider): QDQ, **uint8** per-tensor activations and
  per-channel symmetric int8 weights in a **7-bit** range (-64..64). onnxruntime's x86-64
  kernels multiply uint8 activations by int8 weights; where the CPU has no VNNI (AVX2, AVX-512
  without VNNI) they use VPMADDUBSW, which adds pairs of products in saturating 16-bit
  arithmetic, and full-range weights overflow it, silently. 7-bit weights cannot (2 x 255 x 64
  fits); this is onnxruntime's ``reduce_range``, and NNCF's ``overflow_fix``. (onnxruntime's
  session option ``session.x64quantprecision=1`` avoids the overflow at run time, on such CPUs
  only, but it is a setting of whoever runs the file: edgekit cannot count on it; ``profile``
  warns about full-range files on such CPUs, ``full_range_weights``.) Measured on an
  AMD EPYC (AVX2), top-1 agreement with the float model on 1,000 test images (PyTorch
  MobileNetV2 / edgekit's Keras MobileNetV2, 32 px): full-range weights 83.7 / 78.9% (94.5 /
  92.0% with onnxruntime's fused kernels turned off: the overflow), 7-bit 93.3 / 91.4%, and
  full range stored as uint8 (zero point 128, run by onnxruntime's uint8 x uint8 kernels,
  which do not saturate) 94.9 / 91.8%. At 224 px (benchmarks/int8_speed.py, 1 thread,
  MobileNetV2) 7-bit weights took 6.06 ms, full range 5.93 ms, uint8 storage 8.19 ms and fp32
  8.97 ms: uint8 storage costs 1.3-1.4x and leaves int8 barely faster than fp32. int8 activations
  take a slower path (measured on a Xeon: MobileNetV2 3.5 ms with uint8 activations, 5.6 ms
  with int8, fp32 6.2 ms). Every run re-measures the speed (``speed.compare_speed``).
- ``--target tensorrt`` (alias ``jetson``): QDQ, symmetric int8 activations and weights
  (zero point 0), per-channel weights: TensorRT's explicit quantization takes only that.
  The model is NCHW with a static shape (``export.onnx.TARGETS``).

Engines: ``ort`` (onnxruntime.quantization.quantize_static, MinMax calibration) and ``nncf``
(NNCF's post-training quantization: its quantizer placement plus fast bias correction, which
often wins accuracy back). NNCF writes activations in int8 or uint8 as it sees fit and, by
default, per-channel scales on depthwise inputs, which onnxruntime's CPU kernels reject; edgekit
asks for per-tensor activations and 7-bit weights and re-expresses every int8 activation as
uint8 (same scale, zero point + 128: the same real values, exactly) so the output runs on the
fast path. No library does that rewrite, hence the few lines below.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import BadInput, EnvironmentProblem
from ..core.shapes import channels_axis
from ..formats.onnx import DEFAULT_OPSET, float_onnx, full_range_weights, layout, write_onnx

log = logging.getLogger("edgekit")

# quantize_bias: TensorRT's ONNX parser takes int8 QDQ only (onnxOpImporters.cpp,
# QuantDequantLinearHelper), so int32 bias DequantizeLinear nodes would be refused: biases stay
# float and TensorRT folds them itself.
# weight_bits 7 (cpu): see the module docstring.
TARGETS = {"cpu": {"activation": "uint8", "weight_bits": 7, "symmetric_activations": False,
                   "quantize_bias": True},
           "tensorrt": {"activation": "int8", "weight_bits": 8, "symmetric_activations": True,
                        "quantize_bias": False}}
TARGETS["jetson"] = TARGETS["tensorrt"]
ENGINES = ("ort", "nncf")
_WEIGHTS = {8: "int8 per-channel symmetric",
            7: "int8 per-channel symmetric, 7-bit range (-64..64; NNCF: not depthwise convs): "
               "onnxruntime's uint8 x int8 kernels saturate full-range weights on x86 without "
               "VNNI"}
Progress = Callable[[int, int], None]


def _reader(samples: np.ndarray, name: str, progress: Progress | None):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(samples):
                return None
            self.i += 1
            if progress:
                progress(self.i, len(samples))
            return {name: samples[self.i - 1:self.i]}

        def rewind(self):
            self.i = 0

    return Reader()


def quantize_proto(proto, samples: np.ndarray, target: str = "cpu", engine: str = "ort",
                   exclude: Sequence[str] = (), progress: Progress | None = None):
    """Quantize a float ONNX proto to int8 QDQ for ``target``; ``samples`` are calibration
    inputs already in the model's layout; ``exclude`` names nodes kept in float."""
    if target not in TARGETS:
        raise BadInput(f"unknown ONNX quantization target '{target}' (known: {', '.join(TARGETS)})")
    if engine not in ENGINES:
        raise BadInput(f"unknown ONNX quantization engine '{engine}' (known: {', '.join(ENGINES)})")
    name = next(i.name for i in proto.graph.input
                if i.name not in {t.name for t in proto.graph.initializer})
    unknown = sorted(set(exclude) - {n.name for n in proto.graph.node})
    if unknown:  # quantizers ignore unknown names: say so rather than quantize them
        raise BadInput(f"no node named {unknown[0]!r} in the ONNX graph"
                       + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                       hint="edgekit inspect MODEL.onnx --layers lists node names")
    if engine == "nncf":
        if TARGETS[target]["symmetric_activations"]:
            raise BadInput("--engine nncf is for --target cpu; TensorRT needs symmetric int8 "
                           "activations, which the ort engine writes")
        return _nncf(proto, samples, name, exclude, progress)
    return _ort(proto, samples, name, target, exclude, progress)


def _ort(proto, samples, name, target, exclude, progress):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    scheme = TARGETS[target]
    act = QuantType.QUInt8 if scheme["activation"] == "uint8" else QuantType.QInt8
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="edgekit-q-") as tmp:
        src, out = Path(tmp) / "float.onnx", Path(tmp) / "q.onnx"
        onnx.save(proto, str(src))  # a path, not the proto: quantize_static rewrites its input
        root.setLevel(logging.ERROR)  # its root-logger advice to pre-process (edgekit slims)
        try:
            quantize_static(src, out, _reader(samples, name, progress),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=act,
                            weight_type=QuantType.QInt8, reduce_range=scheme["weight_bits"] == 7,
                            nodes_to_exclude=list(exclude) or None,
                            extra_options={"ActivationSymmetric": scheme["symmetric_activations"],
                                           "WeightSymmetric": True,
                                           "QuantizeBias": scheme["quantize_bias"],
                                           # ORT's note: TensorRT cannot share a QDQ pair
                                           "DedicatedQDQPair": not scheme["quantize_bias"]})
        finally:
            root.setLevel(level)
        return onnx.load(str(out))


def _nncf(proto, samples, name, exclude, progress):
    os.environ.setdefault("NNCF_LOG_LEVEL", "ERROR")
    try:
        import nncf
        from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                           OverflowFix, QuantizationParameters)
    except ImportError as exc:
        raise EnvironmentProblem(f"--engine nncf needs the nncf package ({exc})") from None
    logging.getLogger("nncf").setLevel(logging.ERROR)

    def transform(i):
        if progress:
            progress(min(i + 1, len(samples)), len(samples))
        return {name: samples[i:i + 1]}

    adv = AdvancedQuantizationParameters(  # ENABLE: every weight in the 7-bit range, as ort's
        overflow_fix=OverflowFix.ENABLE,  # reduce_range (NNCF's default fixes the first conv)
        activations_quantization_params=QuantizationParameters(per_channel=False))
    scope = nncf.IgnoredScope(names=list(exclude), validate=False) if exclude else None
    # NNCF draws its own progress bars on stdout, which --json keeps for the document alone
    with contextlib.redirect_stdout(sys.stderr):
        q = nncf.quantize(proto, nncf.Dataset(range(len(samples)), transform),
                          subset_size=len(samples), advanced_parameters=adv,
                          **({"ignored_scope": scope} if scope else {}))
    wide = full_range_weights(q)  # NNCF's overflow fix skips grouped (not depthwise) convs
    if wide:
        log.warning("NNCF left %d layer(s) with full-range int8 weights (first: %s), which "
                    "onnxruntime's kernels can saturate on x86 CPUs without VNNI; --engine ort "
                    "quantizes every layer in 7 bits", len(wide), wide[0])
    return activations_to_uint8(q)


def activations_to_uint8(proto):
    """Re-express int8 activation QuantizeLinear/DequantizeLinear pairs in uint8: q' = q + 128,
    zero point' = zero point + 128, scale unchanged, so every dequantized value is identical."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def shift(zp_name: str) -> None:
        zp = inits[zp_name]
        if zp.data_type == 3:  # INT8
            v = numpy_helper.to_array(zp).astype(np.int16) + 128
            zp.CopyFrom(numpy_helper.from_array(v.astype(np.uint8), zp.name))

    changed = set()
    for n in g.node:
        if (n.op_type == "QuantizeLinear" and n.input[0] not in inits and len(n.input) > 2
                and n.input[2] in inits and inits[n.input[2]].data_type == 3):
            deqs = consumers.get(n.output[0], [])
            if any(d.op_type != "DequantizeLinear" or len(d.input) < 3 or d.input[2] not in inits
                   for d in deqs):
                continue  # not a plain Q -> DQ pair: leave it as NNCF wrote it
            zps = {n.input[2], *(d.input[2] for d in deqs)}
            pair = {id(x) for x in (n, *deqs)}
            if any(id(c) not in pair for z in zps for c in consumers.get(z, [])):
                continue  # a zero point shared with other nodes: shifting would change them
            for z in zps:
                shift(z)
            changed.add(n.output[0])
    keep = [v for v in g.value_info if v.name not in changed]  # stale int8 type annotations
    del g.value_info[:]
    g.value_info.extend(keep)
    return proto


def float_source(source: Artifact, target: str, opset: int, unsafe: bool,
                 input_size: tuple[int, int] | None = None, model=None):
    """(float proto, facts, (H, W, C), NCHW?) of ``source`` for the ONNX quantizers: a Keras
    model exported and checked, or a user's ONNX model with its input size made static."""
    from ..formats.onnx import onnx_io, onnx_source
    from ..models.load import keras_input_hwc, load_keras, with_input_size

    onnx_target = "cpu" if target == "cpu" else "tensorrt"
    if source.format == "onnx":
        fproto, facts = onnx_source(source, onnx_target, input_size)
        shape = onnx_io(fproto)["input"]["shape"]
        nchw = channels_axis(shape) == 1
        hwc = (shape[2], shape[3], shape[1]) if nchw else tuple(shape[1:])
        return fproto, facts, hwc, nchw
    if source.format != "keras":
        raise BadInput(f"{source.path}: ONNX quantization needs a float Keras or ONNX model, "
                       f"not a {source.format} file")
    if model is None:  # else: loaded, at its input size, by the caller
        model = with_input_size(load_keras(source.path, unsafe=unsafe), input_size,
                                str(source.path))
    fproto, facts = float_onnx(source, onnx_target, opset, model=model)
    if input_size is not None:
        facts["input_size"] = list(input_size)
    return fproto, facts, keras_input_hwc(model), layout(onnx_target)["nchw"]


def onnx_calibration(source: Artifact, calib: str, calib_size: int, hwc: tuple[int, int, int],
                     nchw: bool, seed: int = 0) -> np.ndarray:
    from .quantize import calibration_batches

    x = calibration_batches(source, calib, calib_size, hwc, seed=seed)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x)


def quantize_onnx(source: Artifact, out: Path, mode: str = "int8", calib: str | None = None,
                  calib_size: int = 200, target: str = "cpu", engine: str = "ort",
                  opset: int = DEFAULT_OPSET, exclude: Sequence[str] = (), force: bool = False,
                  unsafe: bool = False, progress: Progress | None = None,
                  speed_check: bool = True, threads: int = 1,
                  input_size: tuple[int, int] | None = None, **_ignored) -> Artifact:
    """``edgekit quantize --format onnx``: export ``source`` (Keras) to ONNX for ``target``,
    or take it as it is (ONNX), quantize it to int8 QDQ, check it against the float model and
    (CPU) time it against it."""
    if mode != "int8":
        raise BadInput(f"--format onnx quantizes to int8 only (got --mode {mode})")
    model = None
    if source.format == "keras":
        from ..models.load import load_keras, with_input_size
        from .qat import is_qat

        model = with_input_size(load_keras(source.path, unsafe=unsafe), input_size,
                                str(source.path))
        if is_qat(model):  # its ranges come from training
            from .qat_onnx import quantize_qat_onnx

            return quantize_qat_onnx(source, model, out, target, opset, calib, calib_size,
                                     force, speed_check, threads)
    if not calib:
        raise BadInput("--mode int8 needs calibration data: --calib DATASET "
                       "(e.g. fashion-mnist-sample:train or a folder of images)")
    from ..core.errors import ctrl_c_stops

    with ctrl_c_stops():  # a Ctrl-C that a library swallows still stops before writing
        fproto, facts, hwc, nchw = float_source(source, target, opset, unsafe, input_size,
                                                model)
        samples = onnx_calibration(source, calib, calib_size, hwc, nchw)
        qproto = quantize_proto(fproto, samples, target, engine, exclude, progress)
        facts["fidelity_on_calibration"] = _fidelity(qproto, fproto, samples)
    config = {"engine": engine, "target": target, "mode": mode, "calib": calib,
              "calib_size": int(len(samples)), "opset": opset,
              "scheme": {"format": "QDQ", "weights": _WEIGHTS[TARGETS[target]["weight_bits"]],
                         "activations": f"{TARGETS[target]['activation']} per-tensor "
                         + ("symmetric" if TARGETS[target]["symmetric_activations"]
                            else "asymmetric")}}
    if exclude:
        config["float_nodes"] = list(exclude)
    if target != "cpu":  # how to build and time the int8 engine on the Jetson
        from ..runtime.trtexec import build_command

        facts["trtexec"] = {"int8": " ".join(build_command(Path(out).name, "int8"))}
    art = write_onnx(qproto, source, out, force, "quantize", config, "int8", **facts)
    if speed_check and target == "cpu":
        import onnx

        from ..formats.output import undo_on_failure
        from .speed import record_speed

        with undo_on_failure(out):  # the speed check completes the artifact
            art = record_speed(art, lambda p: onnx.save(fproto, str(p)), threads)
    elif target != "cpu":
        art.meta["speed_check"] = None
        log.info("TensorRT int8 speed is measured on the device: edgekit profile %s --engine "
                 "tensorrt --host ...", out)
    return art


def _fidelity(qproto, fproto, samples: np.ndarray) -> dict:
    from ..evaluate.metrics import fidelity

    from ..formats.onnx import run_onnx

    q, f = (run_onnx(p, samples) for p in (qproto, fproto))
    return fidelity(q, f)


def onnx_sensitivity(source: Artifact, calib: str, calib_size: int = 200, target: str = "cpu",
                     opset: int = DEFAULT_OPSET, unsafe: bool = False, samples_used: int = 32,
                     input_size: tuple[int, int] | None = None, **_ignored) -> list[dict]:
    """Activations ranked by the noise their int8 quantization adds, worst first: the
    signal-to-quantization-noise ratio of each tensor before and after its QDQ pair, measured
    with onnxruntime's QDQ debugging tools on calibration inputs. Keeping one in float means
    keeping the node that writes it and the nodes that read it out of quantization."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    fproto, _, hwc, nchw = float_source(source, target, opset, unsafe, input_size)
    samples = onnx_calibration(source, calib, calib_size, hwc, nchw)
    qproto = quantize_proto(fproto, samples, target, "ort")
    name = next(i.name for i in fproto.graph.input)
    with tempfile.TemporaryDirectory(prefix="edgekit-dbg-") as tmp:
        acts = []
        for tag, proto in (("q", qproto), ("f", fproto)):
            path, aug = Path(tmp) / f"{tag}.onnx", Path(tmp) / f"{tag}_aug.onnx"
            onnx.save(proto, str(path))
            dbg.modify_model_output_intermediate_tensors(path, aug)
            acts.append(dbg.collect_activations(str(aug), _reader(samples[:samples_used], name,
                                                                  None)))
    errors = dbg.compute_activation_error(dbg.create_activation_matching(*acts))
    producer = {o: n.name for n in fproto.graph.node for o in n.output}
    readers: dict[str, list[str]] = {}
    for n in fproto.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.name)
    rows = []
    for tensor, err in errors.items():
        if tensor not in producer:
            continue  # the graph input: nothing to keep in float before it
        nodes = [producer[tensor], *readers.get(tensor, [])]
        rows.append({"name": producer[tensor], "tensor": tensor, "nodes": nodes,
                     "error": -float(err["qdq_err"]), "metric": "-SQNR dB"})
    return sorted(rows, key=lambda r: -r["error"])
