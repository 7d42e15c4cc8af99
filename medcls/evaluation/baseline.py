"""The simple baseline a trained classifier must beat: logistic regression on the pooled features of
the frozen, pretrained backbone, fitted on the train split and scored on val and test like the model.
"""

from collections.abc import Mapping
from pathlib import Path

import keras
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medcls.evaluation.metrics import external_split, roc_auc
from medcls.evaluation.scoring import model_outputs
from medcls.model.backbones import build_backbone
from medcls.model.blocks import Preprocess
from medcls.pipeline.config import Backbone

SPLITS = ("train", "val", "test")
C_GRID = (0.001, 0.01, 0.1, 1.0)


def feature_extractor(backbone_spec: Backbone, image_size: int, *, seed: int) -> keras.Model:
    """Raw images -> the backbone's own preprocessing -> backbone -> global average pooling.

    The seed fixes the weights of a backbone without pretrained ones (`small_cnn`, `weights: none`).
    """
    keras.utils.set_random_seed(seed)
    backbone, preprocessing = build_backbone(backbone_spec, image_size)
    inputs = keras.Input((image_size, image_size, 3))
    features = backbone(Preprocess(preprocessing)(inputs))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(features))


def logistic_regression_predictions(
    extractor: keras.Model,
    tfrecord_dir: Path,
    *,
    seed: int,
    batch_size: int = 64,
    external: Mapping[str, Path] | None = None,
) -> tuple[pd.DataFrame, float]:
    """Val and test rows (id, group, split, label, probability) of a standardised, L2-regularised
    logistic regression on the train split's features (balanced class weights), and its
    regularisation strength C, chosen on val AUC from `C_GRID` as a fair tuning of the baseline.

    `external` ({dataset: TFRecord folder}) adds the rows of those test sets, split
    `external:<dataset>`, scored by the same fitted regression."""
    splits = {split: model_outputs(extractor, tfrecord_dir, split, batch_size) for split in SPLITS}
    for name, folder in (external or {}).items():
        rows, features = model_outputs(extractor, folder, "test", batch_size)
        splits[external_split(name)] = (rows.assign(split=external_split(name)), features)
    (train, train_features), (val, val_features) = splits["train"], splits["val"]

    def fitted(c: float):
        classifier = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed),
        )
        return classifier.fit(train_features, train["label"])

    fits = {c: fitted(c) for c in C_GRID}
    best_c = max(
        C_GRID, key=lambda c: roc_auc(val["label"], fits[c].predict_proba(val_features)[:, 1]) or 0
    )
    frames = [
        rows.assign(probability=fits[best_c].predict_proba(features)[:, 1])
        for split, (rows, features) in splits.items()
        if split != "train"
    ]
    return pd.concat(frames, ignore_index=True), best_c
