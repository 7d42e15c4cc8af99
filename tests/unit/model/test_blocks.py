"""Head blocks and in-model preprocessing: shapes, exact parameter counts, values, configs."""

from typing import get_args

import keras
import numpy as np
import pytest

from medcls.model.blocks import PREPROCESSING, PDFBlock, Preprocess, SEBlock
from medcls.params import Preprocessing


def feature_map(channels: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((2, 8, 8, channels), dtype=np.float32)


@pytest.mark.parametrize(
    "options",
    [{}, {"reduce_to": 4}, {"separable": True}, {"kernel_sizes": [3], "dilation_rates": [2]}],
)
def test_pdf_block_keeps_the_spatial_size_and_outputs_filters_channels(options):
    assert PDFBlock(8, **options)(feature_map()).shape == (2, 8, 8, 8)


def test_reference_pdf_block_on_efficientnet_features_has_56m_parameters():
    block = PDFBlock(512, kernel_sizes=(1, 3, 5, 7), dilation_rates=(1, 2, 3, 4))
    block.build((None, 7, 7, 1280))
    branches = sum(k * k * 1280 * 512 + 512 for k in (1, 3, 5, 7))  # one conv per branch
    projection = 4 * 512 * 512 + 512  # 1x1 conv over the concatenated branches
    assert branches + projection == 56_101_376
    assert block.count_params() == 56_101_376


def test_lighter_pdf_variants_have_the_expected_parameter_counts():
    reduced = PDFBlock(32, kernel_sizes=(1, 3), dilation_rates=(1, 2), reduce_to=16)
    reduced.build((None, 8, 8, 64))
    reduction = 64 * 16 + 16
    assert reduced.count_params() == reduction + (1 + 9) * 16 * 32 + 2 * 32 + 2 * 32 * 32 + 32

    separable = PDFBlock(32, kernel_sizes=(1, 3), dilation_rates=(1, 2), separable=True)
    separable.build((None, 8, 8, 64))
    depthwise_and_pointwise = sum(k * k * 64 + 64 * 32 + 32 for k in (1, 3))
    assert separable.count_params() == depthwise_and_pointwise + 2 * 32 * 32 + 32


def test_pdf_block_refuses_unpaired_kernels_and_dilations():
    with pytest.raises(ValueError, match="zip"):
        PDFBlock(8, kernel_sizes=(1, 3, 5), dilation_rates=(1, 2))


def test_se_block_scales_each_channel_by_its_gate():
    block = SEBlock(ratio=4)
    features = feature_map()
    assert block(features).shape == features.shape
    assert block.squeeze.units == 4
    block.excite.kernel.assign(np.zeros(block.excite.kernel.shape))
    block.excite.bias.assign(np.log(3.0) * np.ones(16))  # sigmoid(log 3) = 0.75
    np.testing.assert_allclose(block(features), 0.75 * features, rtol=1e-6)


def test_caffe_preprocessing_equals_keras_vgg16_preprocess_input():
    images = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_allclose(Preprocess("caffe")(images), expected, atol=1e-4)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("torch", [(0 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (1 - 0.406) / 0.225]),
        ("tf", [-1.0, -0.6, 1.0]),
        ("unit", [0.0, 0.2, 1.0]),
        ("none", [0.0, 51.0, 255.0]),
    ],
)
def test_preprocessing_modes_on_a_known_pixel(mode, expected):
    pixel = np.array([[[[0.0, 51.0, 255.0]]]], dtype=np.float32)
    np.testing.assert_allclose(Preprocess(mode)(pixel)[0, 0, 0], expected, rtol=1e-5)


def test_every_preprocessing_mode_the_params_allow_is_implemented():
    assert set(get_args(Preprocessing)) == set(PREPROCESSING)


@pytest.mark.parametrize(
    "layer",
    [PDFBlock(8, (1, 3), (1, 2), reduce_to=4, separable=True), SEBlock(ratio=8), Preprocess("tf")],
)
def test_layer_config_round_trips(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
