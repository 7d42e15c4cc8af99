"""Feature-extractor backbones: Keras applications, a backbone saved as `.keras`, or a small CNN.

Every backbone is returned with the preprocessing mode it expects (see `blocks.Preprocess`), so
the classifier can put that preprocessing inside the model, and is named "backbone" so the
fine-tuning code finds it.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import keras

from medcls.params import ApplicationBackbone, Backbone, SavedBackbone, SmallCnnBackbone

BACKBONE_NAME = "backbone"

# name -> (constructor, preprocessing). EfficientNet rescales 0..255 inputs itself.
APPLICATIONS: dict[str, tuple[Callable[..., keras.Model], str]] = {
    "efficientnetb0": (keras.applications.EfficientNetB0, "none"),
    "resnet50": (keras.applications.ResNet50, "caffe"),
    "vgg16": (keras.applications.VGG16, "caffe"),
}
# `weights` values that are not a file: what keras.applications takes for them.
NAMED_WEIGHTS = {"imagenet": "imagenet", "none": None}


def build_backbone(spec: Backbone, image_size: int) -> tuple[keras.Model, str]:
    """The backbone for `spec` on (image_size, image_size, 3) inputs, and its preprocessing mode."""
    shape = (image_size, image_size, 3)
    if isinstance(spec, SavedBackbone):
        return _saved(Path(spec.path), shape), spec.preprocessing
    if isinstance(spec, SmallCnnBackbone):
        return _small_cnn(spec.filters, shape), "unit"
    return _application(spec, shape)


def _application(spec: ApplicationBackbone, shape: tuple[int, int, int]) -> tuple[keras.Model, str]:
    constructor, preprocessing = APPLICATIONS[spec.name]
    weights_file = (
        None if spec.weights in NAMED_WEIGHTS else _existing(Path(spec.weights), "backbone.weights")
    )
    model = constructor(
        include_top=False,
        weights=NAMED_WEIGHTS.get(spec.weights),
        input_shape=shape,
        name=BACKBONE_NAME,
    )
    if weights_file is not None:
        model.load_weights(weights_file)
    return model, preprocessing


def _saved(path: Path, shape: tuple[int, int, int]) -> keras.Model:
    """A saved backbone, rebuilt on an input of `shape` (the same layers on a new input, with the
    saved weights copied over), which also works when it was saved for another image size."""
    saved = keras.models.load_model(_existing(path, "backbone.path"))
    try:
        model = keras.models.clone_model(saved, input_tensors=keras.Input(shape))
        model.set_weights(saved.get_weights())
    except ValueError as error:
        raise ValueError(
            f"backbone.path: {path} was saved for inputs of shape {saved.input_shape[1:]} and "
            f"cannot run on {shape}; set image_size to its size, or save it with a variable "
            "input size (keras.Input((None, None, 3)))"
        ) from error
    model.name = BACKBONE_NAME
    return model


def _small_cnn(filters: Sequence[int], shape: tuple[int, int, int]) -> keras.Model:
    """Conv(3x3, ReLU) + max-pool per filter count: the chest X-ray report's CNN, for training from
    scratch (and for fast tests)."""
    layers = [keras.Input(shape)]
    for count in filters:
        layers += [
            keras.layers.Conv2D(count, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
        ]
    return keras.Sequential(layers, name=BACKBONE_NAME)


def _existing(path: Path, param: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{param}: {path} does not exist; fix the path in params.yaml")
    return path
