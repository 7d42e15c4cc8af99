"""Seeded on-the-fly augmentation of training batches; images stay float32 in 0..255."""

import math
from collections.abc import Callable
from functools import partial

import keras
from keras import ops

from medcls.params import AugmentParams, RoiParams

VALUE_RANGE = (0, 255)
FILL_MODE = "nearest"  # what the reports' ImageDataGenerator filled uncovered pixels with


class _PixelAugmentation(keras.layers.Layer):
    """A seeded random pixel transform that keeps images in 0..255 (subclasses: `transform`)."""

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = True):
        if not training:
            return images
        return ops.clip(self.transform(images), *VALUE_RANGE)

    def _uniform(self, shape: tuple, low: float, high: float, images):
        return keras.random.uniform(shape, low, high, dtype=images.dtype, seed=self.seed_generator)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="medcls")
class RandomScale(_PixelAugmentation):
    """Multiplies each image by a factor drawn from `factor_range`: brightness as the reports'
    `brightness_range` did it (keras.layers.RandomBrightness adds an offset instead)."""

    def __init__(
        self, factor_range: tuple[float, float], seed: int | None = None, **kwargs
    ) -> None:
        super().__init__(seed, **kwargs)
        self.factor_range = tuple(factor_range)

    def transform(self, images):
        return images * self._uniform((ops.shape(images)[0], 1, 1, 1), *self.factor_range, images)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor_range": list(self.factor_range)}


@keras.saving.register_keras_serializable(package="medcls")
class RandomChannelShift(_PixelAugmentation):
    """Adds a random offset in [-intensity, intensity] to each channel of each image."""

    def __init__(self, intensity: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.intensity = intensity

    def transform(self, images):
        shape = (ops.shape(images)[0], 1, 1, ops.shape(images)[-1])
        return images + self._uniform(shape, -self.intensity, self.intensity, images)

    def get_config(self) -> dict:
        return {**super().get_config(), "intensity": self.intensity}


@keras.saving.register_keras_serializable(package="medcls")
class RandomSaturation(_PixelAugmentation):
    """Blends each image with its own grey version, by a factor drawn from 1 ± `change` (0 is grey,
    above 1 more saturated), as PIL's and torchvision's saturation do. One cheap pass: the HSV round
    trip of keras.layers.RandomSaturation made it the slowest augmentation (`benchmarks/`). Grey
    images, such as ultrasound scans, stay unchanged under either."""

    LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B in grey

    def __init__(self, change: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.change = change

    def transform(self, images):
        grey = ops.sum(images * ops.array(self.LUMA, images.dtype), axis=-1, keepdims=True)
        factor = self._uniform(
            (ops.shape(images)[0], 1, 1, 1), 1 - self.change, 1 + self.change, images
        )
        return grey + factor * (images - grey)

    def get_config(self) -> dict:
        return {**super().get_config(), "change": self.change}


def affine_transforms(angle, shear_x, shear_y, zoom_x, zoom_y, shift_x, shift_y, *, height, width):
    """[B, 8] transforms for `keras.ops.image.affine_transform`, one per image, from [B] parameters.

    Like ImageDataGenerator, each maps output pixels to input pixels: rotation (radians) · shear ·
    zoom (above 1 shows more of the image) about the image centre, then a shift in pixels.
    """
    cos, sin = ops.cos(angle), ops.sin(angle)
    a00, a01 = (cos - sin * shear_y) * zoom_x, (cos * shear_x - sin) * zoom_y
    a10, a11 = (sin + cos * shear_y) * zoom_x, (sin * shear_x + cos) * zoom_y
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    offset_x = centre_x + shift_x - a00 * centre_x - a01 * centre_y
    offset_y = centre_y + shift_y - a10 * centre_x - a11 * centre_y
    zeros = ops.zeros_like(angle)
    return ops.stack([a00, a01, offset_x, a10, a11, offset_y, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="medcls")
class RandomAffine(_PixelAugmentation):
    """Rotation (± degrees), shift, shear and zoom (± fractions) drawn per image and applied in one
    resampling, as the reports' ImageDataGenerator did.

    Kept instead of chaining keras.layers.RandomRotation, RandomTranslation, RandomShear and
    RandomZoom, which resample (and blur) every image four times: chest_xray's whole augmenter runs
    at 633 images/s, the four Keras layers alone at 262 (`python -m benchmarks.augmentation`)."""

    def __init__(
        self,
        rotation: float = 0.0,
        shift: float = 0.0,
        shear: float = 0.0,
        zoom: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(seed, **kwargs)
        self.rotation, self.shift, self.shear, self.zoom = rotation, shift, shear, zoom

    def transform(self, images):
        height, width = (ops.cast(size, images.dtype) for size in ops.shape(images)[1:3])
        shape = (ops.shape(images)[0],)

        def symmetric(extent):
            return self._uniform(shape, -extent, extent, images)

        transforms = affine_transforms(
            symmetric(math.radians(self.rotation)),
            symmetric(self.shear),
            symmetric(self.shear),
            1 + symmetric(self.zoom),
            1 + symmetric(self.zoom),
            symmetric(self.shift) * width,
            symmetric(self.shift) * height,
            height=height,
            width=width,
        )
        return ops.image.affine_transform(images, transforms, fill_mode=FILL_MODE)

    def get_config(self) -> dict:
        geometry = {key: getattr(self, key) for key in GEOMETRY}
        return {**super().get_config(), **geometry}


@keras.saving.register_keras_serializable(package="medcls")
class RandomSpeckle(_PixelAugmentation):
    """Multiplies each pixel by 1 + `strength` · n, n standard normal: the multiplicative speckle of
    coherent imaging (its intensity scales with the echo, unlike additive noise). One factor per
    pixel for all channels, so grey scans (grey replicated to RGB) stay grey."""

    def __init__(self, strength: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.strength = strength

    def transform(self, images):
        shape = (*ops.shape(images)[:3], 1)
        noise = keras.random.normal(shape, dtype=images.dtype, seed=self.seed_generator)
        return images * (1 + self.strength * noise)

    def get_config(self) -> dict:
        return {**super().get_config(), "strength": self.strength}


@keras.saving.register_keras_serializable(package="medcls")
class RandomGamma(_PixelAugmentation):
    """255 · (x / 255) ^ g with g drawn per image, log-uniformly from `gamma_range`: g and 1/g
    (darker and brighter mid-tones by the same amount) are equally likely when the range is
    symmetric in ratio, e.g. [0.8, 1.25]. Black and white stay black and white."""

    def __init__(
        self, gamma_range: tuple[float, float], seed: int | None = None, **kwargs
    ) -> None:
        super().__init__(seed, **kwargs)
        self.gamma_range = tuple(gamma_range)

    def transform(self, images):
        log_low, log_high = (math.log(bound) for bound in self.gamma_range)
        gamma = ops.exp(self._uniform((ops.shape(images)[0], 1, 1, 1), log_low, log_high, images))
        return 255 * ops.power(ops.clip(images, *VALUE_RANGE) / 255, gamma)

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma_range": list(self.gamma_range)}


@keras.saving.register_keras_serializable(package="medcls")
class RandomGaussianBlur(_PixelAugmentation):
    """A Gaussian blur whose sigma is drawn per image in [0, `max_sigma`] pixels (0: unchanged),
    as a softer transducer or focus would give. Separable: a weighted sum of 2·⌈3·max_sigma⌉ + 1
    shifted copies of the image along each axis, with per-image weights (a convolution would need
    one kernel for the whole batch); borders are mirrored."""

    def __init__(self, max_sigma: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.max_sigma = max_sigma
        self.radius = max(1, math.ceil(3 * max_sigma))

    def transform(self, images):
        sigma = self._uniform((ops.shape(images)[0], 1), 0, self.max_sigma, images)
        offsets = ops.arange(-self.radius, self.radius + 1, dtype=images.dtype)
        weights = ops.exp(-0.5 * ops.square(offsets / ops.maximum(sigma, 1e-3)))  # [B, taps]
        weights = weights / ops.sum(weights, axis=1, keepdims=True)
        return self._smooth(self._smooth(images, weights, axis=1), weights, axis=2)

    def _smooth(self, images, weights, axis: int):
        """`images` convolved along `axis` (1: rows, 2: columns) with each image's own weights."""
        padding = [[0, 0]] * 4
        padding[axis] = [self.radius, self.radius]
        padded = ops.pad(images, padding, mode="symmetric")
        length = ops.shape(images)[axis]
        taps = ops.reshape(weights, (-1, 2 * self.radius + 1, 1, 1, 1))
        blurred = 0.0
        for tap in range(2 * self.radius + 1):
            window = padded[:, tap : tap + length] if axis == 1 else padded[:, :, tap : tap + length]
            blurred = blurred + taps[:, tap] * window
        return blurred

    def get_config(self) -> dict:
        return {**super().get_config(), "max_sigma": self.max_sigma}


def _centre_zooms(images, zoom):
    """`images` resampled (bilinear) about their centre by a [B] zoom: above 1 shrinks the content
    into the middle, below 1 enlarges the middle (`affine_transforms`' zoom)."""
    height, width = (ops.cast(size, images.dtype) for size in ops.shape(images)[1:3])
    none = ops.zeros_like(zoom)
    transforms = affine_transforms(
        none, none, none, zoom, zoom, none, none, height=height, width=width
    )
    return ops.image.affine_transform(images, transforms, fill_mode=FILL_MODE)


@keras.saving.register_keras_serializable(package="medcls")
class RandomDownscale(_PixelAugmentation):
    """Each image shrunk to a side fraction drawn in [`min_factor`, 1] and enlarged back, both
    bilinear: the detail of a lower-resolution scanner. Per image, as two centred zooms (no
    anti-aliasing on the way down: mild for factors above 1/2)."""

    def __init__(self, min_factor: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.min_factor = min_factor

    def transform(self, images):
        factor = self._uniform((ops.shape(images)[0],), self.min_factor, 1.0, images)
        return _centre_zooms(_centre_zooms(images, 1 / factor), factor)

    def get_config(self) -> dict:
        return {**super().get_config(), "min_factor": self.min_factor}


def margin_crop(images, margins, widest: float):
    """Crops made at margin `widest` around their box, shown at [B] `margins` (at most `widest`):
    the centred crop of (1 + 2·margin) / (1 + 2·widest) of the side, resized back (bilinear)."""
    return _centre_zooms(images, (1 + 2 * margins) / (1 + 2 * widest))


@keras.saving.register_keras_serializable(package="medcls")
class RandomMarginCrop(_PixelAugmentation):
    """The lesion at a margin drawn per image in [max(margin - jitter, 0), margin + jitter], from
    crops made at margin + jitter (the roi stage's wide training records), by `margin_crop`."""

    def __init__(self, margin: float, jitter: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.margin, self.jitter = margin, jitter

    def transform(self, images):
        widest = self.margin + self.jitter
        margins = self._uniform(
            (ops.shape(images)[0],), max(self.margin - self.jitter, 0.0), widest, images
        )
        return margin_crop(images, margins, widest)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin, "jitter": self.jitter}


FLIPS = {"flip_horizontal": "horizontal", "flip_vertical": "vertical"}
GEOMETRY = ("rotation", "shift", "shear", "zoom")  # one RandomAffine layer for all four
INTENSITIES: dict[str, Callable[..., keras.layers.Layer]] = {
    "brightness": RandomScale,
    "contrast": partial(keras.layers.RandomContrast, value_range=VALUE_RANGE),
    "saturation": RandomSaturation,
    "channel_shift": RandomChannelShift,
}
# In the order of image formation: speckle, then the scanner's blur and resolution, then display
ULTRASOUND: dict[str, Callable[..., keras.layers.Layer]] = {
    "speckle": RandomSpeckle,
    "blur": RandomGaussianBlur,
    "downscale": RandomDownscale,
    "gamma": RandomGamma,
}
# A key's position gives its layer's seed: new keys go at the end, so the others keep theirs.
AUGMENTATION_KEYS = (*FLIPS, *GEOMETRY, *INTENSITIES, *ULTRASOUND)
MARGIN_CROP_SEED = 100  # the margin crop's seed offset, beyond every key's position


def build_augmenter(
    spec: AugmentParams, seed: int, roi: RoiParams | None = None
) -> keras.Sequential | None:
    """The random augmentations switched on in `spec` (0/false = off), or None when none is:
    flips, then one affine transform, then intensity changes, then the ultrasound ones.

    With a `roi` whose `margin_jitter` is on, a `RandomMarginCrop` comes first: the augmenter is
    then for the wide training records (`tfrecords.wide`), which it crops to a random margin.

    Each layer gets its own seed, from the position of its (first) key in AUGMENTATION_KEYS, so
    that, e.g., the two flips are drawn independently and switching one augmentation on or off does
    not change the others' draws. Layers compute in float32 whatever the mixed-precision policy, as
    they run on raw pixels in the input pipeline.
    """
    on = {key: value for key, value in spec.model_dump().items() if value}
    makers = {
        key: partial(keras.layers.RandomFlip, mode) for key, mode in FLIPS.items() if key in on
    }
    geometry = {key: on[key] for key in GEOMETRY if key in on}
    if geometry:
        makers[next(iter(geometry))] = partial(RandomAffine, **geometry)
    for makers_of_kind in (INTENSITIES, ULTRASOUND):
        makers |= {key: partial(make, on[key]) for key, make in makers_of_kind.items() if key in on}
    layers = [
        make(seed=seed + AUGMENTATION_KEYS.index(key), dtype="float32")
        for key, make in makers.items()
    ]
    if roi is not None and roi.margin_jitter:
        crop = RandomMarginCrop(
            roi.margin, roi.margin_jitter, seed=seed + MARGIN_CROP_SEED, dtype="float32"
        )
        layers.insert(0, crop)
    return keras.Sequential(layers, name="augmenter") if layers else None
