"""The one builder: any resolved ``ArchSpec`` -> a Keras 3 functional model.

Layer names are deterministic and follow keras' EfficientNet scheme for every family
(``stem_conv``, ``block2a_expand_conv``, ``block2a_dwconv``, ``block2a_se_reduce``,
``block2a_project_bn``, ``top_conv``, ``avg_pool``, ``top_dropout``), then ``logits``
(Dense) and ``predictions`` (softmax). No preprocessing layer: the input is already
normalised as ``spec.preprocessing`` says. Keras is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from .load import import_keras
from .spec import ArchSpec, BlockSpec, validate

_KERAS_ACT = {"relu": "relu", "relu6": "relu6", "swish": "silu", "hard_swish": "hard_silu",
              "sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid"}


def build_model(spec: ArchSpec, seed: int | None = 0) -> Any:
    """A ``keras.Model`` for ``spec``; the same ``seed`` gives the same initial weights."""
    keras = import_keras()
    validate(spec)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    b = _Builder(spec)
    inputs = keras.Input(shape=spec.input_shape, name="input")
    x = b.conv_bn(inputs, spec.stem)
    for block in spec.blocks:
        x = b.block(x, block)
    if spec.head is not None:
        x = b.conv_bn(x, spec.head)
    return keras.Model(inputs, b.classifier(x), name=spec.name)


class _Builder:
    """Layer factories that share the spec's batch-norm settings and initializers."""

    def __init__(self, spec: ArchSpec):
        from keras import initializers, layers

        self.spec, self.L, self._init = spec, layers, initializers

    # A fresh initializer per layer: a Keras 3 unseeded initializer instance returns the same
    # values every time it is called, which would start same-shaped layers identical.
    @property
    def conv_init(self):
        return self._init.VarianceScaling(2.0, "fan_out", "truncated_normal")

    @property
    def dense_init(self):
        return self._init.VarianceScaling(1 / 3, "fan_out", "uniform")

    # -- primitives ------------------------------------------------------------------------
    def conv(self, x, ch: int, kernel: int, stride: int, name: str, bias: bool = False,
             act: str | None = None):
        x, padding = self.pad(x, kernel, stride, name)
        return self.L.Conv2D(ch, kernel, strides=stride, padding=padding, use_bias=bias,
                             activation=_KERAS_ACT[act] if act else None,
                             kernel_initializer=self.conv_init, name=name)(x)

    def dwconv(self, x, kernel: int, stride: int, name: str):
        x, padding = self.pad(x, kernel, stride, name)
        return self.L.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False,
                                      depthwise_initializer=self.conv_init, name=name)(x)

    def pad(self, x, kernel: int, stride: int, name: str):
        """(input, keras padding) of a conv: "same", or explicit symmetric zero padding for
        a strided conv of a PyTorch-padded spec (stride 1 and an odd kernel: "same" is
        already symmetric)."""
        if self.spec.padding == "same" or stride == 1 or kernel == 1:
            return x, "same"
        return self.L.ZeroPadding2D(kernel // 2, name=name + "_pad")(x), "valid"

    def bn(self, x, name: str):
        return self.L.BatchNormalization(epsilon=self.spec.bn_eps,
                                         momentum=self.spec.bn_momentum, name=name)(x)

    def act(self, x, act: str, name: str):
        return self.L.Activation(_KERAS_ACT[act], name=name)(x)

    def conv_bn(self, x, b: BlockSpec):
        """A plain conv block (stem, head): conv, BN, activation."""
        x = self.conv(x, b.out_ch, b.kernel, b.stride, b.name + "conv")
        return self.act(self.bn(x, b.name + "bn"), b.act, b.name + "activation")

    # -- blocks ----------------------------------------------------------------------------
    def block(self, x, b: BlockSpec):
        return {"conv": self.conv_bn, "dwsep": self.dwsep, "mbconv": self.mbconv,
                "fused": self.fused}[b.kind](x, b)

    def dwsep(self, x, b: BlockSpec):
        """MobileNet v1: depthwise conv, BN, act, pointwise conv, BN, act."""
        n = b.name
        x = self.act(self.bn(self.dwconv(x, b.kernel, b.stride, n + "dwconv"), n + "bn"),
                     b.act, n + "activation")
        x = self.bn(self.conv(x, b.out_ch, 1, 1, n + "project_conv"), n + "project_bn")
        return self.act(x, b.act, n + "project_activation")

    def mbconv(self, x, b: BlockSpec):
        """Inverted residual: [expand 1x1], depthwise, [squeeze-excite], project 1x1."""
        n, inputs = b.name, x
        if b.expand:
            x = self.bn(self.conv(x, b.mid_ch, 1, 1, n + "expand_conv"), n + "expand_bn")
            x = self.act(x, b.act, n + "expand_activation")
        x = self.bn(self.dwconv(x, b.kernel, b.stride, n + "dwconv"), n + "bn")
        x = self.act(x, b.act, n + "activation")
        x = self.squeeze_excite(x, b)
        x = self.bn(self.conv(x, b.out_ch, 1, 1, n + "project_conv"), n + "project_bn")
        return self.residual(inputs, x, b)

    def fused(self, x, b: BlockSpec):
        """Fused-MBConv (EfficientNetV2): kxk expand conv, [squeeze-excite], [1x1 project]."""
        n, inputs = b.name, x
        if b.expand:
            x = self.bn(self.conv(x, b.mid_ch, b.kernel, b.stride, n + "expand_conv"),
                        n + "expand_bn")
            x = self.squeeze_excite(self.act(x, b.act, n + "expand_activation"), b)
            x = self.bn(self.conv(x, b.out_ch, 1, 1, n + "project_conv"), n + "project_bn")
        else:
            x = self.squeeze_excite(x, b)
            x = self.bn(self.conv(x, b.out_ch, b.kernel, b.stride, n + "project_conv"),
                        n + "project_bn")
            x = self.act(x, b.act, n + "project_activation")
        return self.residual(inputs, x, b)

    def squeeze_excite(self, x, b: BlockSpec):
        if not b.se_ch:
            return x
        n, ch = b.name, x.shape[-1]
        s = self.L.GlobalAveragePooling2D(keepdims=True, name=n + "se_squeeze")(x)
        s = self.conv(s, b.se_ch, 1, 1, n + "se_reduce", bias=True, act=self.spec.se_act)
        s = self.conv(s, ch, 1, 1, n + "se_expand", bias=True, act=self.spec.se_gate)
        return self.L.Multiply(name=n + "se_excite")([x, s])

    def residual(self, inputs, x, b: BlockSpec):
        if not b.residual:
            return x
        if b.drop_path > 0:  # stochastic depth: drop the whole branch per sample
            x = self.L.Dropout(b.drop_path, noise_shape=(None, 1, 1, 1), name=b.name + "drop")(x)
        return self.L.Add(name=b.name + "add")([x, inputs])

    # -- classifier ------------------------------------------------------------------------
    def classifier(self, x):
        """Pool, [pre-logits dense], dropout, ``logits`` dense, ``predictions`` softmax."""
        spec, L = self.spec, self.L
        x = L.GlobalAveragePooling2D(name="avg_pool")(x)
        if spec.pre_logits:
            x = L.Dense(spec.pre_logits, kernel_initializer=self.dense_init,
                        name="pre_logits")(x)
            x = self.act(x, spec.pre_logits_act, "pre_logits_activation")
        x = L.Dropout(spec.dropout, name="top_dropout")(x)
        x = L.Dense(spec.classes, kernel_initializer=self.dense_init, name="logits")(x)
        return L.Activation("softmax", name="predictions")(x)
