"""The simple baseline a trained classifier must beat: logistic regression on the pooled features of
the frozen, pretrained backbone, fitted on the train split and scored on val and test like the model.
"""

from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medcls.evaluation.metrics import roc_auc
from medcls.evaluation.scoring import model_outputs
from medcls.evaluation.splits import OUT_OF_FOLD, ensemble_split, external_split
from medcls.model.backbones import build_backbone
from medcls.model.blocks import Preprocess
from medcls.params import Backbone

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
    split_df: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, float]:
    """Val and test rows (id, group, split, label, probability) of a standardised, L2-regularised
    logistic regression on the train split's features (balanced class weights), and its
    regularisation strength C, chosen on val AUC from `C_GRID` as a fair tuning of the baseline.

    `external` ({dataset: TFRecord folder}) adds the rows of those test sets, split
    `external:<dataset>`, scored by the same fitted regression. A `split_df` with cross-validation
    folds adds the baseline's cross-validation, treated as the model's: one regression per fold
    (fitted on the other folds' train + val images, C chosen on its own fold), its `out_of_fold`
    rows and the mean of the fold regressions on test (`ensemble_test`) and on the external test
    sets (`ensemble_external:<dataset>`)."""
    splits = {split: model_outputs(extractor, tfrecord_dir, split, batch_size) for split in SPLITS}
    for name, folder in (external or {}).items():
        rows, features = model_outputs(extractor, folder, "test", batch_size)
        splits[external_split(name)] = (rows.assign(split=external_split(name)), features)
    (train, train_features), (val, val_features) = splits["train"], splits["val"]
    fitted, best_c = _tuned_regression(
        train_features, train["label"], val_features, val["label"], seed
    )
    frames = [
        rows.assign(probability=fitted.predict_proba(features)[:, 1])
        for split, (rows, features) in splits.items()
        if split != "train"
    ]
    if split_df is not None and "fold" in split_df:
        frames += _cross_validated(splits, split_df, seed)
    return pd.concat(frames, ignore_index=True), best_c


def _tuned_regression(
    train_features: np.ndarray,
    train_labels: pd.Series,
    val_features: np.ndarray,
    val_labels: pd.Series,
    seed: int,
):
    """The regression with the best val AUC over `C_GRID`, and its C."""

    def fitted(c: float):
        classifier = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed),
        )
        return classifier.fit(train_features, train_labels)

    fits = {c: fitted(c) for c in C_GRID}
    best_c = max(
        C_GRID, key=lambda c: roc_auc(val_labels, fits[c].predict_proba(val_features)[:, 1]) or 0
    )
    return fits[best_c], best_c


def _cross_validated(splits: dict, split_df: pd.DataFrame, seed: int) -> list[pd.DataFrame]:
    """Out-of-fold rows of one regression per fold, and their mean probability on test and on the
    external test sets."""
    pooled = pd.concat([splits["train"][0], splits["val"][0]], ignore_index=True)
    features = np.concatenate([splits["train"][1], splits["val"][1]])
    fold_of = pooled["id"].map(split_df.set_index("path")["fold"]).to_numpy()
    held_out = [split for split in splits if split not in ("train", "val")]  # test, external
    out_of_fold, held_out_probabilities = [], {split: [] for split in held_out}
    for fold in sorted(set(fold_of)):
        own = fold_of == fold
        fitted, _ = _tuned_regression(
            features[~own], pooled["label"][~own], features[own], pooled["label"][own], seed
        )
        out_of_fold.append(
            pooled[own].assign(
                split=OUT_OF_FOLD, fold=fold, probability=fitted.predict_proba(features[own])[:, 1]
            )
        )
        for split in held_out:
            held_out_probabilities[split].append(fitted.predict_proba(splits[split][1])[:, 1])
    ensembles = [
        splits[split][0].assign(
            split=ensemble_split(split), probability=np.mean(probabilities, axis=0)
        )
        for split, probabilities in held_out_probabilities.items()
    ]
    return [*out_of_fold, *ensembles]
