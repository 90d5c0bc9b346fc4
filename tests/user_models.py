"""Models as users bring them, which edgekit did not build: keras.applications bases
(weights=None) with their own 10-class heads, trained briefly on the committed Fashion-MNIST
sample with the input each expects, saved with no edgekit sidecar. Used by
tests/test_user_models.py and benchmarks/user_models.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# name -> (keras.applications constructor, its options, the input it is trained on)
KINDS = {
    "mobilenet_v2": ("MobileNetV2", {"alpha": 0.35}, "tf"),  # nothing in the graph: [-1, 1]
    "efficientnet_b0": ("EfficientNetB0", {}, "raw"),  # Rescaling + Normalization inside
    "mobilenet_v3_small": ("MobileNetV3Small", {"minimalistic": False}, "raw"),  # Rescaling
}


def build(kind: str, size: int, seed: int = 0):
    """The application (no top) under a user's head: pooling, dropout, a 10-way softmax."""
    import keras

    constructor, options, _ = KINDS[kind]
    keras.utils.set_random_seed(seed)
    base = getattr(keras.applications, constructor)(
        weights=None, include_top=False, input_shape=(size, size, 3), **options)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    x = keras.layers.Dropout(0.1)(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x))


def user_input(pixels: np.ndarray, kind: str) -> np.ndarray:
    """What the user feeds the model: [-1, 1] for MobileNetV2, raw pixels for the others."""
    x = pixels.astype(np.float32)
    return x / 127.5 - 1.0 if KINDS[kind][2] == "tf" else x


def train(kind: str, out: Path, size: int = 32, epochs: int = 3, seed: int = 0,
          train_data: str = "fashion-mnist-sample:train") -> Path:
    """Build and train ``kind`` on ``train_data``; save it to ``out`` with no sidecar."""
    import keras

    from edgekit.core.data import load_dataset

    ds = load_dataset(train_data)
    x = user_input(np.concatenate([b for b, _ in ds.batches(500, size, size, 3)]), kind)
    model = build(kind, size, seed)
    for layer in model.layers[1].layers:  # a short run needs faster batch-norm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, ds.labels, epochs=epochs, batch_size=64, verbose=0)
    model.save(out)
    return out


# --- a PyTorch user ------------------------------------------------------------------------


def torch_mobilenet_v2(width: float = 1.0, classes: int = 1000):
    """torchvision.models.MobileNetV2 (torchvision 0.20 mobilenetv2.py) rewritten layer for
    layer, because torchvision has no CPU wheel beside this machine's torch: an implementation
    independent of edgekit's, with torchvision's state-dict names."""
    from torch import nn

    def ch(c):  # torchvision's _make_divisible(c * width, 8)
        v = max(8, int(c * width + 4) // 8 * 8)
        return v + 8 if v < 0.9 * c * width else v

    def cbr(i, o, k=3, s=1, g=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, (k - 1) // 2, groups=g, bias=False),
                             nn.BatchNorm2d(o), nn.ReLU6(inplace=True))

    class Block(nn.Module):
        def __init__(self, i, o, s, t):
            super().__init__()
            h = i * t
            layers = [cbr(i, h, 1)] if t != 1 else []
            layers += [cbr(h, h, 3, s, h), nn.Conv2d(h, o, 1, bias=False), nn.BatchNorm2d(o)]
            self.conv, self.skip = nn.Sequential(*layers), s == 1 and i == o

        def forward(self, x):
            return x + self.conv(x) if self.skip else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            c = ch(32)
            feats = [cbr(3, c, s=2)]
            for t, o, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
                for j in range(n):
                    feats.append(Block(c, ch(o), s if j == 0 else 1, t))
                    c = ch(o)
            last = max(1280, ch(1280))
            self.features = nn.Sequential(*feats, cbr(c, last, 1))
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

        def forward(self, x):
            return self.classifier(self.features(x).mean((2, 3)))

    return MobileNetV2()


TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torch_onnx(out_dir: Path, size: int = 32, epochs: int = 3, seed: int = 0,
               train_data: str = "fashion-mnist-sample:train") -> dict[str, Path]:
    """A torchvision-style MobileNetV2 (width 0.5) trained on ``train_data`` with ImageNet
    normalisation, exported by ``torch.onnx.export`` with dynamic H and W, twice: with the
    normalisation inside the graph (``Div``/``Sub``/``Div`` on raw pixels, as many deployment
    exports do) and without it (the input is normalised by the caller, as torchvision's
    transforms do). Returns {"inside": path, "outside": path}."""
    import torch

    from edgekit.core.data import load_dataset

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # beside another test worker, more threads only contend
    ds = load_dataset(train_data)
    pixels = np.concatenate([b for b, _ in ds.batches(500, size, size, 3)])
    mean = torch.tensor(TORCH_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(TORCH_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
    y = torch.from_numpy(ds.labels)
    net = torch_mobilenet_v2(0.5, 10)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()

    class RawPixels(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return self.inner((image / 255.0 - mean) / std)

    paths = {}
    for where, module in (("inside", RawPixels(net)), ("outside", net)):
        paths[where] = out_dir / f"torch_mnv2_{where}.onnx"
        torch.onnx.export(module, torch.zeros(1, 3, size, size), str(paths[where]),
                          input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch"}}, dynamo=False)
    return paths
