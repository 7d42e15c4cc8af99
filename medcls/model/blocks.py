"""Custom Keras layers of the classifier: the PDF and SE head blocks and in-model preprocessing.

They use `keras.ops` only, so they run on any Keras backend, and they are registered, so a saved
`.keras` model reloads without a `custom_objects` argument once this module is imported.
"""

from collections.abc import Callable, Sequence

import keras
from keras import ops

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="medcls")
class PDFBlock(keras.layers.Layer):
    """Parallel dilated convolutions: branches with growing kernels and dilations see lesions at
    several scales at once; their concatenation is projected back to `filters` channels.

    `reduce_to` first squeezes the input with a 1x1 convolution (the lighter variant: the
    reference block on a 1280-channel map has ~56 M parameters); `separable` uses depthwise
    separable branches for the same reason.
    """

    def __init__(
        self,
        filters: int,
        kernel_sizes: Sequence[int] = (1, 3, 5, 7),
        dilation_rates: Sequence[int] = (1, 2, 3, 4),
        reduce_to: int | None = None,
        separable: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_sizes = tuple(kernel_sizes)
        self.dilation_rates = tuple(dilation_rates)
        self.reduce_to = reduce_to
        self.separable = separable
        relu = {"activation": "relu", "dtype": self.dtype_policy}
        convolution = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
        self.reduce = (
            keras.layers.Conv2D(reduce_to, 1, name="reduce", **relu) if reduce_to else None
        )
        self.branches = [
            convolution(
                filters,
                kernel,
                dilation_rate=dilation,
                padding="same",
                name=f"k{kernel}_d{dilation}",
                **relu,
            )
            for kernel, dilation in zip(self.kernel_sizes, self.dilation_rates, strict=True)
        ]
        self.project = keras.layers.Conv2D(filters, 1, name="project", **relu)

    def build(self, input_shape: tuple) -> None:
        if self.reduce is not None:
            self.reduce.build(input_shape)
            input_shape = self.reduce.compute_output_shape(input_shape)
        for branch in self.branches:
            branch.build(input_shape)
        self.project.build((*input_shape[:-1], self.filters * len(self.branches)))

    def call(self, inputs):
        features = inputs if self.reduce is None else self.reduce(inputs)
        return self.project(
            ops.concatenate([branch(features) for branch in self.branches], axis=-1)
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.filters)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_sizes": list(self.kernel_sizes),
            "dilation_rates": list(self.dilation_rates),
            "reduce_to": self.reduce_to,
            "separable": self.separable,
        }


@keras.saving.register_keras_serializable(package="medcls")
class SEBlock(keras.layers.Layer):
    """Squeeze-and-excitation: reweights channels by a gate computed from their global average,
    so the head can emphasise the feature maps that matter for the lesion."""

    def __init__(self, ratio: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        self.squeeze = keras.layers.Dense(
            max(1, channels // self.ratio),
            activation="relu",
            name="squeeze",
            dtype=self.dtype_policy,
        )
        self.excite = keras.layers.Dense(
            channels, activation="sigmoid", name="excite", dtype=self.dtype_policy
        )
        pooled_shape = (input_shape[0], 1, 1, channels)
        self.squeeze.build(pooled_shape)
        self.excite.build(self.squeeze.compute_output_shape(pooled_shape))

    def call(self, inputs):
        gate = self.excite(self.squeeze(ops.mean(inputs, axis=(1, 2), keepdims=True)))
        return inputs * gate

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "ratio": self.ratio}


def _constant(values: Sequence[float], like):
    return ops.convert_to_tensor(values, dtype=like.dtype)


PREPROCESSING: dict[str, Callable] = {
    "caffe": lambda images: ops.flip(images, axis=-1) - _constant(CAFFE_MEAN_BGR, images),
    "torch": lambda images: (
        (images / 255.0 - _constant(IMAGENET_MEAN_RGB, images))
        / _constant(IMAGENET_STD_RGB, images)
    ),
    "tf": lambda images: images / 127.5 - 1.0,
    "unit": lambda images: images / 255.0,
    "none": lambda images: images,
}


@keras.saving.register_keras_serializable(package="medcls")
class Preprocess(keras.layers.Layer):
    """A backbone's input preprocessing on raw 0..255 RGB, inside the model, so a saved model takes
    raw pixels and nobody has to remember which normalisation it was trained with.

    Modes: "caffe" (RGB->BGR minus the ImageNet BGR means, as vgg16/resnet50 `preprocess_input`),
    "torch" (0..1, then ImageNet mean/std), "tf" (-1..1), "unit" (0..1), "none" (identity).
    """

    def __init__(self, mode: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images):
        return PREPROCESSING[self.mode](images)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}
