"""edgekit finetune: the distillation loss, best weights restored, freezing, a new head on a
keras.applications model, and bad input. Real training on the committed Fashion-MNIST sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli

TRAIN = "fashion-mnist-sample:train"


def test_distillation_loss_is_hintons():
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE, against numpy."""
    import keras

    from edgekit.optimize.train import _trainer

    def dense_model(seed):
        rng = np.random.default_rng(seed)
        inp = keras.Input((6,))
        layer = keras.layers.Dense(4)
        model = keras.Model(inp, layer(inp))
        layer.set_weights([rng.normal(size=(6, 4)).astype("float32"), np.zeros(4, "float32")])
        return model

    student, teacher = dense_model(1), dense_model(2)
    trainer = _trainer(student, teacher, temperature=3.0, alpha=0.7)
    trainer.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    y = np.array([0, 1, 2, 3, 0])
    s, t = student(x).numpy(), teacher(x).numpy()
    loss = float(trainer.compute_loss((x, x), y, s, training=True))

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ce = -log_softmax(s)[np.arange(5), y].mean()
    lt, ls = log_softmax(t / 3), log_softmax(s / 3)
    kl = (np.exp(lt) * (lt - ls)).sum(axis=1).mean() * 9
    assert loss == pytest.approx(0.7 * kl + 0.3 * ce, rel=1e-5)
    # validation (no teacher input) reports plain cross-entropy
    assert float(trainer.compute_loss(x, y, s, training=False)) == pytest.approx(ce, rel=1e-5)


def test_finetune_distils_freezes_and_restores_the_best_weights(workdir, small_keras,
                                                                 trained_keras):
    """The untrained zoo model learns from the trained one (teacher) with the first 20 layers
    frozen: those stay as they were; the saved model scores on the held-out split exactly the
    best validation accuracy the record names."""
    import keras

    from edgekit.optimize.train import View, load_train_data, top1

    out = workdir / "student_kd.keras"
    proc = run_cli("finetune", small_keras, "--data", TRAIN, "--teacher", trained_keras,
                   "--temperature", "4", "--alpha", "0.7", "--freeze", "20", "--epochs", "3",
                   "--augment", "flip,crop,brightness", "--bn-momentum", "0.9", "--lr", "3e-3",
                   "--limit", "640", "-o", out, "--json", check=True)
    doc = json.loads(proc.stdout)
    ft, cfg = doc["finetune"], doc["stage"]["config"]
    assert doc["schema"] == "edgekit.finetune/1"
    assert cfg["teacher"]["temperature"] == 4 and cfg["frozen_layers"] == 20
    assert cfg["augment"] == ["flip", "crop", "brightness"] and not cfg["new_head"]
    assert 1 <= len(ft["history"]) <= 3 and all("kd_loss" in r for r in ft["history"])
    assert doc["labels"][0] == "T-shirt/top" and doc["spec"]["classes"] == 10

    before, after = keras.saving.load_model(small_keras), keras.saving.load_model(out)
    # the freezing and the training-only batch-norm momentum are not saved into the model
    assert all(layer.trainable for layer in after.layers)
    def momenta(m):
        return {l.momentum for l in m.layers if isinstance(l, keras.layers.BatchNormalization)}

    assert momenta(after) == momenta(before)
    for layer in before.layers[:20]:
        for a, b in zip(layer.get_weights(), after.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in
               zip(before.layers[-2].get_weights(), after.layers[-2].get_weights()))

    data = load_train_data(TRAIN, (32, 32), limit=640, seed=0)
    measured = top1(after, data.val, View((32, 32), doc["preprocessing"]))
    assert measured == pytest.approx(ft["best_val_accuracy"], abs=100 / len(data.val) + 1e-6)
    assert ft["best_val_accuracy"] == max(r["val_accuracy"] for r in ft["history"])


def test_finetune_puts_a_new_head_on_a_keras_applications_model(workdir):
    """A keras.applications MobileNetV2 with 5 outputs (Dense softmax, no sidecar) gets a
    10-class head for the data; --freeze by layer name and --unfreeze-after, with a cosine
    learning rate that decays to zero in each phase, from --lr and then from --lr / 10."""
    import keras

    src = workdir / "ka_mnv2.keras"
    keras.applications.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3), weights=None,
                                   classes=5).save(src)
    out = workdir / "ka_mnv2_ft.keras"
    proc = run_cli("finetune", src, "--data", TRAIN, "--limit", "320", "--epochs", "3",
                   "--freeze", "block_3_project_BN", "--unfreeze-after", "1",
                   "--schedule", "cosine", "--lr", "1e-3", "--patience", "3",
                   "--preprocessing", "tf", "-o", out, "--json", check=True)
    doc = json.loads(proc.stdout)
    assert doc["stage"]["config"]["new_head"] and doc["path"] == str(out)
    assert doc["output"]["shape"] == [1, 10] and doc["labels"][1] == "Trouser"
    history = doc["finetune"]["history"]
    assert [r["phase"] for r in history] == ["frozen", "unfrozen", "unfrozen"]
    assert [r["lr"] for r in history] == pytest.approx([0, 5e-5, 0], abs=1e-9)
    model = keras.saving.load_model(out)
    assert model.output.shape[-1] == 10 and model.layers[-1].name == "predictions"
    assert model.get_layer("logits").units == 10 and doc["spec"] is None


@pytest.mark.parametrize("args,message", [
    (["--freeze", "no_such_layer"], "no layer or block named"),
    (["--augment", "flip,zoom"], "unknown augmentation 'zoom'"),
    (["--unfreeze-after", "1"], "--unfreeze-after needs --freeze"),
    (["--schedule", "step"], "unknown --schedule 'step'"),
    (["--freeze", "3", "--unfreeze-after", "2", "--epochs", "2"], "from 1 to --epochs - 1"),
    (["--freeze", "predictions"], "leaves no layer with weights to train"),
    (["-o", "x.h5"], "the output must be a .keras file"),
    (["--alpha", "1.5", "--teacher", "SELF"], "--alpha must be in [0, 1]"),
])
def test_finetune_bad_input_exits_2_and_writes_nothing(workdir, small_keras, args, message):
    out = workdir / "never_ft.keras"
    args = [str(small_keras) if a == "SELF" else a for a in args]
    args = args if "-o" in args else [*args, "-o", out]
    proc = run_cli("finetune", small_keras, "--data", TRAIN, "--limit", "100", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
