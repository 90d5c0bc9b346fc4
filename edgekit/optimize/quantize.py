"""Post-training quantization. The TFLite engine drives TFLiteConverter; calibration samples
come from any dataset edgekit reads, preprocessed as the source artifact's sidecar says."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import BadInput
from ..core.errors import ctrl_c_stops
from ..formats.output import undo_on_failure
from ..formats.tflite import IO_TYPES, convert_tflite, write_tflite

log = logging.getLogger("edgekit")

from ..core.registry import QUANT_MODES as TFLITE_MODES  # noqa: E402
DEFAULT_CALIB_SIZE = 200
Progress = Callable[[int, int], None]  # (done, total)


def calibration_batches(source: Artifact, calib: str, calib_size: int, input_hwc: tuple[int, int, int],
                        seed: int = 0) -> np.ndarray:
    """``calib_size`` preprocessed float32 samples (N, H, W, C) drawn class-balanced from ``calib``."""
    from ..core.data import draw, load_dataset, read_images, to_model_input

    if calib_size < 1:
        raise BadInput(f"--calib-size must be at least 1 (got {calib_size})")
    data = load_dataset(calib)
    if len(data) == 0:
        raise BadInput(f"{calib}: the calibration dataset is empty")
    idx, _ = draw(data, calib_size, seed=seed, in_order=False)
    h, w, c = input_hwc
    images = read_images(data, idx, h, w, c, crop=(source.preprocessing or {}).get("crop"))
    chunks = [to_model_input(images[i:i + 64], source.preprocessing)
              for i in range(0, len(images), 64)]
    samples = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(samples).all():
        raise BadInput(f"{calib}: calibration data contains NaN or inf after preprocessing")
    return samples


def quantize_tflite(source: Artifact, out: Path, mode: str, calib: str | None = None,
                    calib_size: int = DEFAULT_CALIB_SIZE, io_type: str = "int8",
                    force: bool = False, unsafe: bool = False,
                    progress: Progress | None = None, target: str = "cpu",
                    exclude: Sequence[str] = (), speed_check: bool = True, threads: int = 1,
                    input_size: tuple[int, int] | None = None, float_islands: bool = True,
                    **_ignored) -> Artifact:
    """Quantize a float Keras/SavedModel artifact to a TFLite file in ``mode``; for a CPU, the
    int8 ops XNNPACK cannot run (``formats.islands``) run in float unless ``float_islands`` is
    False."""
    if mode not in TFLITE_MODES:
        raise BadInput(f"unknown quantization mode '{mode}' (known: {', '.join(TFLITE_MODES)})")
    if io_type not in IO_TYPES:
        raise BadInput(f"unknown --io type '{io_type}' (known: {', '.join(IO_TYPES)})")
    if source.format not in ("keras", "savedmodel"):
        raise BadInput(f"{source.path}: quantize needs a float Keras model or SavedModel, "
                       f"not a {source.format} file")
    needs_calib = mode in ("int8", "int16x8")
    representative, model = None, None
    config = {"engine": "tflite", "mode": mode}
    with ctrl_c_stops():  # a Ctrl-C that Keras' loading swallows still stops before writing
        if source.format == "keras":
            from ..models.load import load_keras, with_input_size
            model = with_input_size(load_keras(source.path, unsafe=unsafe), input_size,
                                    str(source.path))
            if input_size is not None:
                config["input_size"] = list(input_size)
            needs_calib = _calibrated_by_training(model, source, mode, calib, config)
        if needs_calib and not calib:
            raise BadInput(f"--mode {mode} needs calibration data: --calib DATASET "
                           "(e.g. fashion-mnist-sample:train or a folder of images)")
        if needs_calib:
            samples = calibration_batches(source, calib, calib_size, _input_hwc(source, model))
            representative = _representative(samples, progress)
            config.update(calib=calib, calib_size=int(len(samples)))
            if mode == "int8":
                config["io_type"] = io_type
        elif calib:
            log.info("--calib is not used by --mode %s", mode)
        if exclude:
            config["float_layers"] = list(exclude)
        data = convert_tflite(source, mode, representative, io_type=io_type, unsafe=unsafe,
                              model=model, keep_float=exclude)
        if "qat" in config:  # an op the rewrite left without a range stays float: say so
            from ..formats.tflite import float_ops

            config["qat"]["float_ops"] = float_ops(data)
            if config["qat"]["float_ops"]:
                log.warning("ops left in float (no range from training): %s",
                            ", ".join(config["qat"]["float_ops"]))
        if mode == "int8" and target == "cpu" and float_islands:
            from ..formats.islands import float_islands as islands

            data, moved = islands(data)
            if moved:
                config["float_islands"] = moved
    art = write_tflite(data, source, out, force, "quantize", config, precision=mode)
    with undo_on_failure(out):  # the checks below complete the artifact: all or nothing
        if target == "gpu":
            from ..formats.tflite import record_gpu_check

            art = record_gpu_check(art)
        if speed_check and target == "cpu":
            from .qat import float_parent
            from .speed import record_speed

            # a QAT model is timed against the float model it was trained from
            baseline, loaded = (float_parent(source), None) if "qat" in config else \
                (source, model)
            if baseline is not None:
                art = record_speed(art, lambda p: p.write_bytes(convert_tflite(
                    baseline, "fp32", unsafe=unsafe, model=loaded)), threads)
    return art


def _calibrated_by_training(model, source: Artifact, mode: str, calib: str | None,
                            config: dict) -> bool:
    """Whether ``mode`` needs calibration data for ``model``: not for int8 of a model trained
    with --qat (its fake-quant layers hold the ranges), which converts to int8 only."""
    from .qat import RANGES_FROM_TRAINING, is_qat

    if not is_qat(model):
        return mode in ("int8", "int16x8")
    if mode != "int8":
        raise BadInput(f"{source.path} was trained with --qat: it converts to int8 only (its "
                       f"ranges are int8's); quantize its float parent for --mode {mode}")
    if calib:
        log.info("--calib is not used: the ranges come from quantization-aware training")
    config["qat"] = {"ranges": RANGES_FROM_TRAINING}
    return False


def tflite_sensitivity(source: Artifact, calib: str, calib_size: int = DEFAULT_CALIB_SIZE,
                       unsafe: bool = False, input_size: tuple[int, int] | None = None,
                       **_ignored) -> list[dict]:
    """Layers ranked by their int8 error against float (``export.tflite.layer_errors``)."""
    from ..formats.tflite import layer_errors
    from ..models.load import load_keras, with_input_size

    model = (with_input_size(load_keras(source.path, unsafe=unsafe), input_size)
             if source.format == "keras" else None)
    samples = calibration_batches(source, calib, calib_size, _input_hwc(source, model))
    return layer_errors(source, _representative(samples, None), unsafe, model)


def _representative(samples: np.ndarray, progress: Progress | None):
    def gen():
        for i, x in enumerate(samples):
            yield [x[None]]
            if progress:
                progress(i + 1, len(samples))
    return gen


def _input_hwc(source: Artifact, model=None) -> tuple[int, int, int]:
    if model is not None:
        from ..models.load import keras_input_hwc
        return keras_input_hwc(model)
    shape = (source.meta.get("input") or {}).get("shape")
    if not shape and source.format == "savedmodel":
        shape = _savedmodel_input_shape(source.path)
    if shape and len(shape) == 4 and all(shape[1:]):
        return int(shape[1]), int(shape[2]), int(shape[3])
    raise BadInput(f"{source.path}: input shape unknown; it must be (batch, H, W, C)")


def _savedmodel_input_shape(path: Path) -> list | None:
    """The input shape of a SavedModel's serving signature."""
    import tensorflow as tf

    sig = tf.saved_model.load(str(path)).signatures.get("serving_default")
    if sig is None:
        raise BadInput(f"{path}: the SavedModel has no serving_default signature")
    specs = list(sig.structured_input_signature[1].values())
    if len(specs) != 1:
        raise BadInput(f"{path}: expected one image input, found {len(specs)}")
    return list(specs[0].shape)
