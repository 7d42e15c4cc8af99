"""Small training inputs shared by the training tests: a plain head, 16 px batches, and a callback
that records the phases a fit ran."""

import keras
import numpy as np
import tensorflow as tf

from medcls.params import HeadParams
from medcls.training.inputs import make_batches

HEAD = HeadParams(blocks=[], pooling="gap", dense_units=4, dropout=0.0)


class PhaseRecorder(keras.callbacks.Callback):
    """Records the epochs run and the optimizer's learning rate at the end of each fit."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.learning_rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_end(self, logs=None):
        self.learning_rates.append(float(self.model.optimizer.learning_rate))


def batches(seed: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    examples = {
        "image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
        "label": np.array([0, 1] * 4, dtype=np.int64),
        "id": [str(index) for index in range(8)],
        "group": [str(index) for index in range(8)],
    }
    return make_batches(tf.data.Dataset.from_tensor_slices(examples), batch_size=4)
