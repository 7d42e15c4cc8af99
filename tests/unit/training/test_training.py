"""Two-phase training on a tiny dataset, logged by DVCLive, and the precision policy."""

import dataclasses

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from medcls.demo.workspace import PROJECT
from medcls.model.classifier import build_classifier
from medcls.model.losses import make_loss
from medcls.params import BceLoss, FocalLoss, SmallCnnBackbone, load
from medcls.training import curves
from medcls.training.fit import Batches, FitSettings, Phase, configure_precision, train
from medcls.training.inputs import make_batches
from medcls.training.trainer import TrainingConfig
from tests.support.training import HEAD, PhaseRecorder, batches


def test_two_phases_use_their_learning_rates_and_continue_the_epochs(tmp_path):
    model = build_classifier(SmallCnnBackbone(filters=[4, 8]), HEAD, 16, seed=0)
    recorder = PhaseRecorder()
    phases = [
        Phase("frozen", epochs=1, learning_rate=1e-3, patience=1),
        Phase("skipped", epochs=0, learning_rate=0.5, patience=1),
        Phase("fine_tune", epochs=1, learning_rate=1e-5, patience=1, unfreeze_layers=1),
    ]
    live = Live(str(tmp_path / "dvclive"), dvcyaml=None, report=None, save_dvc_exp=False)
    with live:  # as the train stage
        summaries = train(
            model,
            phases,
            Batches(batches(0), batches(1)),
            FitSettings(
                loss=make_loss(FocalLoss(alpha=0.5, gamma=2.0)),
                class_weight={0: 1.0, 1: 1.0},
                jit_compile=False,
                callbacks=[recorder, DVCLiveCallback(live=live)],
            ),
        )
    assert list(summaries) == ["frozen", "fine_tune"]
    frozen, fine_tune = summaries["frozen"], summaries["fine_tune"]
    assert [frozen["learning_rate"], fine_tune["learning_rate"]] == [1e-3, 1e-5]
    assert recorder.learning_rates == pytest.approx([1e-3, 1e-5], rel=1e-6)
    assert [frozen["epochs_run"], fine_tune["epochs_run"]] == [1, 1]
    assert recorder.epochs == [0, 1]
    assert [frozen["trainable_weights"], fine_tune["trainable_weights"]] == [4, 6]  # + last conv
    assert fine_tune["trainable_params"] - frozen["trainable_params"] == 3 * 3 * 4 * 8 + 8
    metrics_dir = tmp_path / "dvclive" / "plots" / "metrics"  # dvc.yaml's train plots
    steps = {
        path.relative_to(metrics_dir).as_posix(): pd.read_csv(path, sep="\t")["step"].tolist()
        for path in metrics_dir.rglob("*.tsv")
    }  # one step per epoch, continuing across the phases' fits
    assert steps == {
        f"{split}/{metric}.tsv": [0, 1]
        for split in ("train", "eval")
        for metric in ("loss", "auc", "accuracy")
    }
    assert len(curves.write_plot_files(tmp_path / "dvclive", tmp_path / "plots")) == 2
    model.save(tmp_path / "trained.keras")  # compiled with the focal loss
    images = next(iter(batches(2)))[0]
    reloaded = keras.models.load_model(tmp_path / "trained.keras")
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


class WeightRecorder(keras.callbacks.Callback):
    """The model's weights at the end of each phase's fit, after early stopping restored its best."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []

    def on_train_end(self, logs=None):
        self.weights.append(self.model.get_weights())


def separable_batches(seed: int) -> tf.data.Dataset:
    """Bright images are class 1, dark ones class 0: a small CNN separates them within epochs."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * 8, dtype=np.int64)
    pixels = rng.integers(0, 60, (16, 16, 16, 3)) + 180 * labels[:, None, None, None]
    examples = {
        "image": pixels.astype(np.uint8),
        "label": labels,
        "id": [str(index) for index in range(16)],
        "group": [str(index) for index in range(16)],
    }
    return make_batches(tf.data.Dataset.from_tensor_slices(examples), batch_size=8)


def train_phases(*phases: Phase) -> tuple[keras.Model, dict, list]:
    """Train a small CNN through `phases`; also return the weights each phase ended with."""
    model = build_classifier(SmallCnnBackbone(filters=[4, 8]), HEAD, 16, seed=0)
    recorder = WeightRecorder()
    summaries = train(
        model,
        phases,
        Batches(separable_batches(0), separable_batches(1)),
        FitSettings(make_loss(BceLoss()), class_weight=None, jit_compile=False, callbacks=[recorder]),
    )
    return model, summaries, recorder.weights


def same_weights(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_phase_that_does_not_beat_an_earlier_one_on_val_is_discarded():
    model, summaries, (after_first, after_second) = train_phases(
        Phase("first", epochs=4, learning_rate=1e-2, patience=4, unfreeze_layers=2),
        Phase("wrecked", epochs=2, learning_rate=1e3, patience=2, unfreeze_layers=2),
    )
    first, wrecked = summaries["first"], summaries["wrecked"]
    assert first["early_stopping_val_auc"] > 0.5 and first["selected"] and not wrecked["selected"]
    assert not same_weights(after_second, after_first)
    assert same_weights(model.get_weights(), after_first)


def test_a_phase_that_beats_the_earlier_ones_on_val_is_kept():
    model, summaries, (_, after_fine_tune) = train_phases(
        Phase("frozen", epochs=4, learning_rate=0.0, patience=4),  # learns nothing
        Phase("fine_tune", epochs=4, learning_rate=1e-2, patience=4, unfreeze_layers=2),
    )
    frozen, fine_tune = summaries["frozen"], summaries["fine_tune"]
    assert fine_tune["early_stopping_val_auc"] > frozen["early_stopping_val_auc"]
    assert fine_tune["selected"] and not frozen["selected"]
    assert same_weights(model.get_weights(), after_fine_tune)


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mode", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_precision_policy_is_set(restore_policy, mode):
    assert configure_precision(mode) == mode
    assert keras.mixed_precision.global_policy().name == mode


def test_auto_precision_is_mixed_only_with_a_gpu(restore_policy):
    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    assert configure_precision("auto") == expected



def test_the_training_config_holds_what_the_params_say_and_cannot_change():
    params = load(PROJECT / "params.yaml")
    dataset = params.trained_dataset("bus_uc")
    schedule = dataset.train.model_copy(update={"cache_features": True})
    dataset = dataset.model_copy(update={"train": schedule})
    config = TrainingConfig.of(params, dataset)
    assert (config.seed, config.batch_size) == (params.seed, schedule.batch_size)
    assert (config.mixed_precision, config.memory_fraction) == (
        schedule.mixed_precision,
        schedule.memory_fraction,
    )
    assert (config.image_size, config.backbone, config.head, config.loss, config.roi) == (
        dataset.image_size,
        dataset.backbone,
        dataset.head,
        dataset.loss,
        dataset.roi,
    )
    frozen, fine_tune = config.phases
    assert (frozen.learning_rate, fine_tune.learning_rate) == (params.lr, params.fine_tune_lr)
    assert config.caches_features and frozen.cache_features and not fine_tune.cache_features
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
