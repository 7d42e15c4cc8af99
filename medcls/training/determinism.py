"""Repeatable training: the same seed, params and data give the same weights and metrics.

Without it, parallel input pipelines draw augmentation randomness in thread order and some
kernels accumulate in thread order, so two runs of one commit differ (busi val AUC 0.626 vs
0.637), and DVC's run cache would hide the spread. `benchmarks/determinism.py` measures the cost.
"""

import keras
import tensorflow as tf


def configure_determinism(deterministic: bool, seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras and, when `deterministic`, switch TensorFlow's op
    determinism on for the rest of the process (TensorFlow has no public way back).

    Op determinism also makes `tf.data` run maps that draw random numbers in a fixed order, and
    raises an error for any op that has no deterministic implementation, instead of varying.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
