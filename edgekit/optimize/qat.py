"""Quantization-aware training for Keras 3 models, in TFLite's int8 scheme.

Written here because no maintained library does it for Keras 3: tensorflow-model-optimization
takes only tf-keras models, NNCF dropped TensorFlow, and Keras's own ``quantize()`` is
post-training. ``to_qat`` rewrites a functional model (the zoo's, keras.applications', a
user's head on either; nested models included) into the model TFLite's converter will make:

* batch norm folded into the convolution or dense layer before it (new kernel and bias), as
  the converter folds it, so weights are quantized as they will be stored;
* weights fake-quantized per output channel, symmetric, to [-127, 127] (depthwise: per
  channel of its output, ``in x multiplier``; dense: one range, as the converter transposes
  its kernel);
* activations fake-quantized per tensor, asymmetric, to 256 levels, with ranges that follow an
  exponential moving average of each batch's min and max while training (``FakeQuant``). The
  range goes where TFLite keeps a tensor: after a ReLU/ReLU6 that fuses into the op before it,
  not between them; none after a layer that only moves values (dropout, reshape, padding, max
  pooling); a fixed [0, 255/256] after softmax and sigmoid, whose int8 outputs TFLite fixes;
  one on each model input.

Gradients pass the rounding unchanged inside the range (TensorFlow's fake-quant ops: a
straight-through estimator). ``tf.lite.TFLiteConverter`` reads the fake-quant ops' ranges, so
the int8 model needs no calibration data and reproduces the trained model's arithmetic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("edgekit")
QAT_PACKAGE = "edgekit_qat"
RANGES_FROM_TRAINING = "the model's fake-quant layers (quantization-aware training)"
MOMENTUM = 0.99  # of the activation ranges' moving average
MOVES_ONLY = ("Dropout", "SpatialDropout2D", "Reshape", "Flatten", "ZeroPadding2D",
              "MaxPooling2D", "InputLayer", "GaussianNoise", "Identity")
FUSES = ("relu", "relu6")  # TFLite folds these into the conv/dense/add before them
FIXED_01 = ("softmax", "sigmoid")  # TFLite int8: scale 1/256, zero point -128


def _layers():
    """The QAT layer classes (defined on first use: they subclass Keras's)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _define()
    return _CLASSES


_CLASSES: dict[str, Any] | None = None


def _define() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    register = keras.saving.register_keras_serializable(package=QAT_PACKAGE)

    def quantized_kernel(kernel, depthwise: bool = False, per_tensor: bool = False):
        if per_tensor:  # dense: TFLite stores the kernel transposed, so one range for all
            m = tf.maximum(tf.reduce_max(tf.abs(kernel)), 1e-8)
            return tf.quantization.fake_quant_with_min_max_vars(kernel, -m, m, num_bits=8,
                                                                narrow_range=True)
        k = kernel
        if depthwise:  # (h, w, in, mult) -> channels (in * mult) last, as TFLite stores it
            shape = tf.shape(k)
            k = tf.reshape(k, [shape[0], shape[1], 1, shape[2] * shape[3]])
        axes = list(range(len(k.shape) - 1))
        m = tf.maximum(tf.reduce_max(tf.abs(k), axis=axes), 1e-8)
        q = tf.quantization.fake_quant_with_min_max_vars_per_channel(k, -m, m, num_bits=8,
                                                                     narrow_range=True)
        return tf.reshape(q, tf.shape(kernel)) if depthwise else q

    @register
    class FakeQuant(keras.layers.Layer):
        """Per-tensor int8 fake quantization; the range is a moving average of batch ranges
        while training (always including 0), or ``fixed``."""

        def __init__(self, fixed: tuple[float, float] | None = None, momentum: float = MOMENTUM,
                     **kwargs):
            super().__init__(**kwargs)
            self.fixed = tuple(fixed) if fixed else None
            self.momentum = momentum

        def build(self, shape):
            lo, hi = self.fixed or (0.0, 0.0)
            self.lo = self.add_weight(name="lo", shape=(), trainable=False,
                                      initializer=keras.initializers.Constant(lo))
            self.hi = self.add_weight(name="hi", shape=(), trainable=False,
                                      initializer=keras.initializers.Constant(hi))
            self.seen = self.add_weight(name="seen", shape=(), trainable=False,
                                        initializer="zeros")

        def call(self, x, training=None):
            if training and not self.fixed:
                m = tf.where(self.seen > 0, self.momentum, 0.0)
                self.lo.assign(m * self.lo + (1 - m) * tf.minimum(tf.reduce_min(x), 0.0))
                self.hi.assign(m * self.hi + (1 - m) * tf.maximum(tf.reduce_max(x), 0.0))
                self.seen.assign(1.0)
            return tf.quantization.fake_quant_with_min_max_vars(x, self.lo, self.hi,
                                                                num_bits=8)

        def compute_output_shape(self, shape):
            return shape

        def get_config(self):
            return {**super().get_config(), "fixed": self.fixed, "momentum": self.momentum}

    @register
    class QuantConv2D(keras.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            return super().convolution_op(inputs, quantized_kernel(kernel))

    @register
    class QuantDepthwiseConv2D(keras.layers.DepthwiseConv2D):
        def call(self, inputs):
            x = keras.ops.depthwise_conv(inputs, quantized_kernel(self.kernel, depthwise=True),
                                         strides=self.strides, padding=self.padding,
                                         dilation_rate=self.dilation_rate,
                                         data_format=self.data_format)
            if self.use_bias:
                x = keras.ops.add(x, self.bias)  # channels last (edgekit's models are NHWC)
            return self.activation(x) if self.activation is not None else x

    @register
    class QuantDense(keras.layers.Dense):
        def call(self, inputs, training=None):
            x = keras.ops.matmul(inputs, quantized_kernel(self.kernel, per_tensor=True))
            if self.use_bias:
                x = keras.ops.add(x, self.bias)
            return self.activation(x) if self.activation is not None else x

    return {"FakeQuant": FakeQuant, "Conv2D": QuantConv2D,
            "DepthwiseConv2D": QuantDepthwiseConv2D, "Dense": QuantDense}


def register() -> None:
    """Make the QAT layers loadable (call before loading a QAT model)."""
    _layers()


def is_qat(model) -> bool:
    """Whether ``model`` (or a model nested in it) carries QAT fake-quant layers."""
    import keras

    for layer in model.layers:
        if type(layer).__name__ == "FakeQuant":
            return True
        if isinstance(layer, keras.Model) and is_qat(layer):
            return True
    return False


def float_parent(source):
    """The float model a QAT model (an Artifact) was trained from, if its file is still
    there: the baseline of its speed check."""
    from ..core.artifacts import open_artifact

    config = ((source.meta.get("stage") or {}).get("config") or {}).get("qat") or {}
    path = (config.get("float_parent") or {}).get("path")
    if not path or not Path(path).exists():
        log.info("the float model it was trained from is not at hand: no speed check")
        return None
    return open_artifact(path)


def _act(op) -> str | None:
    """The activation a layer applies, by name (None: none, or not an activation)."""
    import keras

    if isinstance(op, keras.layers.ReLU):
        if op.negative_slope or op.threshold:
            return "leaky"
        return {None: "relu", 6.0: "relu6"}.get(op.max_value, "relu_n")
    if isinstance(op, keras.layers.Softmax):
        return "softmax"
    fn = getattr(op, "activation", None)
    name = getattr(fn, "__name__", None) if fn is not None else None
    return None if name in (None, "linear") else name


def _consumers(op) -> list:
    return [n.operation for n in getattr(op, "_outbound_nodes", [])]


def _folds(model) -> dict[str, Any]:
    """{conv/dense layer name: the batch norm folded into it}: a BN whose input is a
    convolution or dense layer that feeds nothing else and applies no activation."""
    import keras

    producers = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    out: dict[str, Any] = {}
    for op in model.operations:
        if isinstance(op, keras.Model):
            out.update(_folds(op))
        if not isinstance(op, keras.layers.BatchNormalization) or len(op._inbound_nodes) != 1:
            continue
        src = op._inbound_nodes[0].arguments.keras_tensors[0]._keras_history.operation
        if isinstance(src, producers) and len(_consumers(src)) == 1 and _act(src) is None:
            out[src.name] = op
    return out


def _folded_weights(layer, bn) -> list:
    """``layer``'s kernel and bias with ``bn`` folded in (TFLite's arithmetic)."""
    import numpy as np

    kernel = np.asarray(layer.kernel)
    bias = np.asarray(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1] * (
        kernel.shape[-2] if type(layer).__name__ == "DepthwiseConv2D" else 1), np.float32)
    gamma = np.asarray(bn.gamma) if bn.scale else 1.0
    beta = np.asarray(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    if type(layer).__name__ == "DepthwiseConv2D":
        k = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        k = kernel * scale
    return [k.astype(np.float32), ((bias - np.asarray(bn.moving_mean)) * scale + beta)
            .astype(np.float32)]


def _effective_consumers(op, folds: dict[str, Any]) -> list:
    """The ops reading ``op``'s output, a folded batch norm replaced by its readers."""
    bn = folds.get(getattr(op, "name", None))
    return _consumers(bn) if bn is not None else _consumers(op)


def _fuses_forward(op, folds: dict[str, Any]) -> bool:
    """Whether TFLite fuses the ReLU/ReLU6 that alone reads ``op`` into it (no range between)."""
    kinds = ("Conv2D", "DepthwiseConv2D", "Dense", "Add")
    after = _effective_consumers(op, folds)
    return (type(op).__name__ in kinds and _act(op) is None and len(after) == 1
            and _act(after[0]) in FUSES)


def _bias_follows(op, folds: dict[str, Any]) -> bool:
    """Whether ``op`` (a conv or dense layer) is read only by ``+ constant``, which TFLite
    folds into its bias (MobileNetV3's hard sigmoid: ``relu6(conv(x) + 3) / 6``)."""
    import keras

    after = _effective_consumers(op, folds)
    if type(op).__name__ not in ("Conv2D", "DepthwiseConv2D", "Dense") or _act(op) is not None \
            or len(after) != 1 or type(after[0]).__name__ != "Add" \
            or isinstance(after[0], keras.layers.Layer):
        return False
    args = after[0]._inbound_nodes[0].arguments.args
    return any(isinstance(a, (int, float)) for a in args)


def to_qat(model):
    """``model`` rewritten for quantization-aware training (see the module's docstring); the
    float weights are copied in, batch norms folded."""
    import keras
    import numpy as np

    classes = _layers()
    folds = _folds(model)
    folded_bns = {id(bn) for bn in folds.values()}
    old_of: dict[int, Any] = {}  # id(new op) -> old op
    split: dict[int, str] = {}  # id(new op) -> the activation moved out of it
    tops = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name)
            for t in model.inputs]
    input_fq: dict[int, Any] = {}

    def clone(op):
        config = op.get_config()
        kind = type(op).__name__
        if kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            moved = _act(op) if _act(op) not in (None, *FUSES) else None
            if moved:  # TFLite runs it as an op of its own, with its own range
                config["activation"] = None
            if op.name in folds:
                config["use_bias"] = True
            new = classes[kind].from_config(config)
            if moved:
                split[id(new)] = moved
        else:
            new = op.__class__.from_config(config)
        old_of[id(new)] = op
        return new

    def call(op, *args, **kwargs):
        old = old_of.get(id(op), op)
        if id(old) in folded_bns:
            return args[0]  # folded into the layer before it
        args = keras.tree.map_structure(_input_fq, args)
        if isinstance(old, keras.layers.Rescaling) and np.any(np.asarray(old.offset) != 0):
            # x * scale + offset is two TFLite ops: each needs its range
            scaled = keras.layers.Rescaling(old.scale, 0.0, name=f"{old.name}_scale")(args[0])
            out = _range(scaled, None, f"{old.name}_scale_fq")
            out = keras.layers.Rescaling(1.0, old.offset, name=f"{old.name}_offset")(out)
            return _range(out, None, f"{old.name}_fq")
        out = op(*args, **kwargs)
        if isinstance(op, keras.Model):
            return out  # ranged inside
        name, act = old.name, split.get(id(op))
        if act == "hard_sigmoid":  # relu6(x + 3) / 6: +3 folds into the bias, relu6 fuses
            out = keras.layers.ReLU(6.0, name=f"{name}_relu6")(keras.ops.add(out, 3.0))
            out = _range(out, None, f"{name}_relu6_fq")
            return _range(keras.ops.multiply(out, 1 / 6), (0.0, 1.0), f"{name}_fq")
        if act is not None:  # the op, its range, then its activation (and that one's range)
            out = _range(out, None, f"{name}_fq")
            name = f"{old.name}_{act}"
            out = keras.layers.Activation(act, name=name)(out)
        elif type(old).__name__ in MOVES_ONLY or _fuses_forward(old, folds) or \
                _bias_follows(old, folds):
            return out
        else:
            act = _act(old)
        return _range(out, (0.0, 255 / 256) if act in FIXED_01 else None, f"{name}_fq")

    def _input_fq(x):
        for t in tops:
            if x is t:
                if id(t) not in input_fq:
                    input_fq[id(t)] = classes["FakeQuant"](name=f"{t.name}_fq")(t)
                return input_fq[id(t)]
        return x

    def _range(x, fixed, name):
        if "float" not in str(x.dtype):
            return x
        return classes["FakeQuant"](fixed=fixed, name=name)(x)

    structured = keras.tree.pack_sequence_as(model.input, tops)
    qat = keras.models.clone_model(model, input_tensors=structured, clone_function=clone,
                                   call_function=call, recursive=True)
    _copy_weights(model, qat, folds)
    return qat


def _copy_weights(old_model, new_model, folds: dict[str, Any]) -> None:
    import keras

    new_by_name = {layer.name: layer for layer in new_model.layers}
    for layer in old_model.layers:
        new = new_by_name.get(layer.name)
        if new is None:  # a batch norm folded away
            continue
        if isinstance(layer, keras.Model):
            _copy_weights(layer, new, folds)
        elif layer.name in folds:
            new.set_weights(_folded_weights(layer, folds[layer.name]))
        elif layer.weights:
            new.set_weights(layer.get_weights())
