"""The classifier: raw pixels -> backbone preprocessing -> backbone -> head -> P(positive).

Importing this module registers the custom layers; `load_classifier` reloads a saved classifier.
"""

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import keras

from medcls.model.backbones import BACKBONE_NAME, build_backbone
from medcls.model.blocks import PDFBlock, Preprocess, SEBlock
from medcls.params import Backbone, HeadBlock, HeadParams, PdfBlockParams
from medcls.pipeline.errors import PipelineError

POOLING = {"gap": keras.layers.GlobalAveragePooling2D, "flatten": keras.layers.Flatten}


def build_classifier(
    backbone_spec: Backbone, head_spec: HeadParams, image_size: int, *, seed: int
) -> keras.Model:
    """A binary classifier on raw RGB images (float 0..255) of `image_size`; the backbone is frozen.

    BatchNormalization inside the backbone always uses its moving statistics because its layers stay
    frozen (also through `unfreeze_top`): in Keras 3 a frozen BatchNormalization runs in inference
    mode even when the model trains, whereas a `training=False` call argument on the nested backbone
    would be overridden by `fit`'s training flag.
    """
    keras.utils.set_random_seed(seed)  # reproducible head initialisation
    backbone, preprocessing = build_backbone(backbone_spec, image_size)
    backbone.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = backbone(Preprocess(preprocessing, name="preprocess")(inputs))
    for block in head_spec.blocks:
        features = _head_block(block)(features)
    features = POOLING[head_spec.pooling]()(features)
    features = keras.layers.Dense(head_spec.dense_units, activation="relu")(features)
    features = keras.layers.Dropout(head_spec.dropout)(features)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(
        features
    )
    return keras.Model(inputs, outputs, name="classifier")


def _head_block(block: HeadBlock) -> keras.layers.Layer:
    if isinstance(block, PdfBlockParams):
        return PDFBlock(**block.pdf.model_dump())
    return SEBlock(**block.se.model_dump())


class ModelFileError(PipelineError):
    """A model file that is missing, truncated or not a Keras model."""


def load_classifier(path) -> keras.Model:
    """A classifier saved with `model.save`, for inference: without its training configuration, so a
    model compiled with a loss this code no longer defines (the former `medcls>BinaryFocalLoss`) still
    loads.

    Keras reports a truncated or foreign file as "File not found"; this names the file and the
    stage that writes it (models/<dataset>/model.keras is the train stage's output).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path} not found; run `dvc repro train@{path.parent.name}`")
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        if zipfile.is_zipfile(path):
            raise  # a readable archive that Keras cannot rebuild is a bug, not a damaged file
        raise ModelFileError(
            f"{path} is not a readable .keras file (truncated or damaged?); "
            f"run `dvc repro train@{path.parent.name}` to write it again"
        ) from error


def backbone_of(model: keras.Model) -> keras.Model:
    """The classifier's nested backbone model."""
    return model.get_layer(BACKBONE_NAME)


def layer_chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The classifier's top-level layers in order, input excluded; `build_classifier` makes a plain
    chain of them, so any cut between two of them splits the model in two."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def apply_layers(layers: list[keras.layers.Layer], tensor):
    """Call `layers` in turn on `tensor`: a new graph over the same layers (same weights)."""
    for layer in layers:
        tensor = layer(tensor)
    return tensor


def split_after(
    model: keras.Model, layer: keras.layers.Layer, *, with_output_layer: bool = True
) -> tuple[keras.Model, keras.Model]:
    """(front, back): images -> `layer`'s output, and that output -> the classifier's output (or,
    `with_output_layer=False`, the input of its output layer). Both are built from the classifier's
    own layers, so fitting either half fits the classifier (no weights to copy); asking a nested
    functional backbone for its `output` would give its inner graph's tensor instead."""
    layers = layer_chain(model)
    cut = layers.index(layer) + 1
    back_layers = layers[cut:] if with_output_layer else layers[cut:-1]
    images = keras.Input(model.input_shape[1:], name="image")
    features = apply_layers(layers[:cut], images)
    features_input = keras.Input(features.shape[1:], dtype=features.dtype, name="features")
    return (
        keras.Model(images, features),
        keras.Model(features_input, apply_layers(back_layers, features_input)),
    )


def split_at_backbone(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head): images -> backbone features, and features -> probability. Lets the frozen
    phase run the backbone once instead of every epoch."""
    return split_after(model, backbone_of(model))


def unfreeze_top(
    model: keras.Model, *, fraction: float | None = None, layers: int | None = None
) -> list[str]:
    """Make the top of the backbone trainable for fine-tuning; return the unfrozen layers' names.

    Counts the backbone layers that own weights, BatchNormalization excluded, and unfreezes the top
    ceil(`fraction` x count) or the last `layers` of them. BatchNormalization layers stay frozen so
    their ImageNet statistics are not overwritten by small medical batches.
    """
    if (fraction is None) == (layers is None):
        raise ValueError("unfreeze_top: give exactly one of fraction or layers")
    backbone = backbone_of(model)
    tunable = [
        layer
        for layer in _leaf_layers(backbone)
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    # round() first: 0.3 x 10 is 3.0000000000000004 in floating point, which must give 3, not 4
    count = layers if fraction is None else math.ceil(round(fraction * len(tunable), 9))
    if not 0 <= count <= len(tunable):
        raise ValueError(
            f"unfreeze_top: cannot unfreeze {count} layers; the backbone has {len(tunable)} "
            "layers with weights"
        )
    chosen = {id(layer) for layer in tunable[len(tunable) - count :]}
    # In Keras 3 `trainable = True` on a model makes every sublayer trainable: refreeze the rest.
    backbone.trainable = True
    for layer in _leaf_layers(backbone):
        layer.trainable = id(layer) in chosen
    return [layer.name for layer in tunable if id(layer) in chosen]


def _leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """The layers of `model` in order, with those of nested models expanded."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
