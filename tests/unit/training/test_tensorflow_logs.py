"""TensorFlow's log lines: its start-up chatter is filtered out, its real errors are not, and
training's input pipeline gives it nothing to report."""

from __future__ import annotations

import subprocess
import sys

from medcls.demo.workspace import PROJECT, command_environment

# Writes lines to the process's stderr (file descriptor 2, as TensorFlow's C++ code does) inside
# the filter, then says it is done.
WRITES_THROUGH_THE_FILTER = r"""
import os
from medcls.pipeline.tensorflow_logs import filtered_stderr
with filtered_stderr():
    for line in [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1.0 123 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1.0 123 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
        "E0000 00:00:1.0 123 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
        "E0000 00:00:1.0 123 op_kernel.cc:1857] OP_REQUIRES failed: INVALID_ARGUMENT: bad shape",
        "error: data/split/demo.csv is missing: run dvc repro split@demo",
    ]:
        os.write(2, (line + "\n").encode())
print("done")
"""

# Batches of augmented images under op determinism, as the train stage makes them, read twice.
AUGMENTED_BATCHES = """
import numpy as np
import tensorflow as tf
from medcls.training.augment import build_augmenter
from medcls.training.inputs import make_batches
from tests.support.builders import EVERY_AUGMENTATION
tf.config.experimental.enable_op_determinism()
examples = tf.data.Dataset.from_tensor_slices({
    "image": np.zeros((8, 16, 16, 3), np.uint8), "label": np.arange(8, dtype=np.int64),
})
augmenter = build_augmenter(EVERY_AUGMENTATION, seed=0)
batches = make_batches(examples, batch_size=4, augmenter=augmenter, shuffle=True, cache=True)
for _ in range(2):
    for _ in batches:
        pass
print("done")
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    env = command_environment() | {"PYTHONPATH": str(PROJECT), "MEDCLS_VERBOSE": "0"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_filter_drops_start_up_chatter_and_keeps_real_errors():
    result = run_python(WRITES_THROUGH_THE_FILTER)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert result.stderr.splitlines() == [
        "E0000 00:00:1.0 123 op_kernel.cc:1857] OP_REQUIRES failed: INVALID_ARGUMENT: bad shape",
        "error: data/split/demo.csv is missing: run dvc repro split@demo",
    ]


def test_augmented_batches_under_op_determinism_log_no_error():
    """tf.data's determinism rewrite of parallel maps logged `E0000 ... NodeDef mentions attribute
    use_unbounded_threadpool` for every training run; the pipeline now asks for what it rewrote."""
    result = run_python(AUGMENTED_BATCHES)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert "use_unbounded_threadpool" not in result.stderr, result.stderr
