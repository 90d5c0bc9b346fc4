"""Where int8 loses to fp32 in hard-swish and squeeze-excite models (issue 23, point 5): one
op (or a small block) per model, int8 and fp32 side by side, on LiteRT with XNNPACK, batch 1.

Each case is a Keras model of the op on a (32, 32, 96) tensor, converted with TFLite's
converter (fp32; int8 with 20 calibration samples and int8 I/O). A figure is the lowest of 5
passes' mean time per invoke (2,000 invokes each, 1 thread); the int8 model's op list says
which ops XNNPACK took ("DELEGATE") and which TFLite's own kernels run.

Then whole models: a keras.applications MobileNetV3Small at 64 and 96 px, fp32, int8 with
every op int8, and int8 with HARD_SWISH in float islands (what `edgekit quantize` writes for
the CPU; formats/islands.py); and a keras.applications MobileNetV2 (no hard-swish, no
squeeze-excite) at the same sizes, fp32 and int8, to tell what is particular to those ops
from what int8 gains or loses on this CPU at all.

    python benchmarks/int8_ops.py
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from _util import machine

SHAPE = (32, 32, 96)


def convert(model, int8: bool) -> bytes:
    import tensorflow as tf

    folder = tempfile.mkdtemp()
    model.export(folder, verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(folder)
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.normal(0, 2, (1, *SHAPE)).astype(
            np.float32)] for _ in range(20))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def bench(data: bytes, invokes: int = 2000) -> tuple[float, list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    for _ in range(50):
        it.invoke()
    passes = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(invokes):
            it.invoke()
        passes.append((time.perf_counter() - t) / invokes * 1e6)
    return min(passes), sorted({o["op_name"] for o in it._get_ops_details()})


def cases():
    import keras

    layers = keras.layers
    return {
        "hard_swish": lambda x: layers.Activation("hard_swish")(x),
        "x * relu6(x + 3) / 6": lambda x: x * (layers.ReLU(6.0)(x + 3.0) * (1 / 6)),
        "relu6 (unfused)": lambda x: layers.ReLU(6.0)(x),
        "squeeze-excite gate": lambda x: layers.Multiply()([x, layers.Activation("sigmoid")(
            layers.GlobalAveragePooling2D(keepdims=True)(x))]),
        "depthwise 3x3": lambda x: layers.DepthwiseConv2D(3, padding="same")(x),
        "depthwise + hard_swish": lambda x: layers.Activation("hard_swish")(
            layers.DepthwiseConv2D(3, padding="same")(x)),
    }


def whole_model(kind: str, size: int) -> None:
    """keras.applications ``kind`` (weights=None, a user's 10-way head) at ``size``: fp32,
    int8 with every op int8, and int8 with edgekit's float islands (MobileNetV2, which has no
    hard-swish, gets none: it shows what int8 gains on this CPU without the hard-swish and
    squeeze-excite ops)."""
    import tensorflow as tf

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests"))
    from user_models import build

    from edgekit.formats.islands import float_islands

    model = build(kind, size)
    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    fp32 = conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(0, 255, (1, size, size, 3)).astype(
        np.float32)] for _ in range(20))
    conv.inference_input_type = conv.inference_output_type = tf.int8
    all_int8 = conv.convert()
    islands, moved = float_islands(all_int8)
    variants = [("fp32", fp32), ("int8", all_int8)] + ([("islands", islands)] if moved else [])
    times = {name: bench(data, 500)[0] for name, data in variants}
    line = (f"{kind} {size}px   fp32 {times['fp32']:7.1f} us   int8 {times['int8']:7.1f} "
            f"us ({times['int8'] / times['fp32']:.2f}x)")
    if moved:
        line += (f"   int8 + float islands {times['islands']:7.1f} us "
                 f"({times['islands'] / times['fp32']:.2f}x; {moved})")
    print(line, flush=True)


if __name__ == "__main__":
    sys.path.insert(0, ".")
    import keras

    print(f"machine: {machine()}; LiteRT (ai_edge_litert) with XNNPACK, 1 thread, "
          f"tensor {SHAPE}")
    for name, make in cases().items():
        inp = keras.Input(SHAPE)
        model = keras.Model(inp, make(inp))
        fp32, _ = bench(convert(model, False))
        int8, ops = bench(convert(model, True))
        print(f"{name:24s} fp32 {fp32:7.1f} us   int8 {int8:7.1f} us   int8/fp32 "
              f"{int8 / fp32:5.2f}   int8 ops: {', '.join(ops)}")
    for size in (64, 96):
        for kind in ("mobilenet_v3_small", "mobilenet_v2"):
            whole_model(kind, size)
