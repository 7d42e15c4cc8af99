"""Small model parts shared by the model tests: a tiny CNN backbone, a plain and a PDF + SE head,
and random raw images."""

import numpy as np

from medcls.params import HeadParams, SmallCnnBackbone

SMALL_CNN = SmallCnnBackbone(filters=[4, 8])
PDF_SE_HEAD = HeadParams.model_validate(
    {
    "blocks": [
        {
            "pdf": {
                "filters": 8,
                "kernel_sizes": [1, 3],
                "dilation_rates": [1, 2],
                "reduce_to": 4,
                "separable": False,
            }
        },
        {"se": {"ratio": 2}},
    ],
    "pooling": "gap",
    "dense_units": 8,
    "dropout": 0.5,
    }
)
PLAIN_HEAD = HeadParams(blocks=[], pooling="flatten", dense_units=4, dropout=0.0)


def raw_images(size: int, count: int = 3) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype(np.float32)
