"""Image decoding, ROI box, preparation (crop, pad, resize) and the ordered process map."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from medcls.data.manifest import build_manifest
from medcls.demo import synthetic
from medcls.images.decode import ImageDecodeError, mask_paths_of, read_image, read_masks
from medcls.images.parallel import ordered_starmap
from medcls.images.roi import prepare, prepare_file, prepare_file_png, roi_box
from medcls.images.samples import draw_roi_samples
from medcls.params import RoiParams

ROOT = Path(__file__).resolve().parents[3]
ROI = RoiParams(use_mask=True, margin=0.0, mask_background=False, keep_aspect=False)
SIZE = 16


def roi(**changes) -> RoiParams:
    return ROI.model_copy(update=changes)


def rectangle_mask(shape: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def write(path: Path, bgr_or_grey: np.ndarray) -> Path:
    path.write_bytes(cv2.imencode(path.suffix, bgr_or_grey)[1].tobytes())
    return path


def test_read_image_returns_rgb_for_colour_grey_and_alpha(tmp_path: Path) -> None:
    blue_first = np.zeros((4, 6, 3), np.uint8)
    blue_first[..., 2] = 200  # BGR: red
    assert read_image(write(tmp_path / "red.png", blue_first))[0, 0].tolist() == [200, 0, 0]
    grey = read_image(write(tmp_path / "grey.png", np.full((4, 6), 7, np.uint8)))
    assert grey.shape == (4, 6, 3) and (grey == 7).all()
    rgba = read_image(write(tmp_path / "alpha.png", np.full((4, 6, 4), 9, np.uint8)))
    assert rgba.shape == (4, 6, 3) and rgba.dtype == np.uint8


@pytest.mark.parametrize("content", [b"", b"this is not an image\n"])
def test_read_image_names_the_undecodable_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match="broken.png"):
        read_image(path)


def test_read_masks_ors_all_lesions(tmp_path: Path) -> None:
    first = write(tmp_path / "a.png", rectangle_mask((10, 10), 0, 0, 2, 2).astype(np.uint8) * 255)
    second = write(
        tmp_path / "b.png", rectangle_mask((10, 10), 5, 5, 10, 10).astype(np.uint8) * 255
    )
    assert read_masks([first, second]).sum() == 4 + 25


def test_roi_box_known_mask() -> None:
    mask = rectangle_mask((50, 60), x0=20, y0=10, x1=40, y1=20)
    assert roi_box(mask, margin=0.0) == (20, 10, 40, 20)
    assert roi_box(mask, margin=0.1) == (18, 9, 42, 21)
    assert roi_box(mask, margin=1.0) == (0, 0, 60, 30)  # clipped left, top and right
    with pytest.raises(ValueError, match="empty mask"):
        roi_box(np.zeros((5, 5), bool), margin=0.1)


def test_prepare_crops_to_the_mask() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:20, 10:30] = 255
    mask = rectangle_mask((40, 40), 10, 10, 30, 20)
    cropped = prepare(image, mask, roi=ROI, size=SIZE)
    assert cropped.shape == (16, 16, 3) and cropped.dtype == np.uint8 and (cropped == 255).all()
    whole = prepare(image, mask, roi=roi(use_mask=False), size=SIZE)
    assert whole.mean() == pytest.approx(255 * 200 / 1600, rel=0.05)
    assert np.array_equal(prepare(image, None, roi=ROI, size=SIZE), whole)


def test_keep_aspect_pads_with_black_and_stretch_does_not() -> None:
    wide = np.full((20, 40, 3), 255, np.uint8)
    padded = prepare(wide, None, roi=roi(keep_aspect=True), size=SIZE)
    assert (padded[:4] == 0).all() and (padded[-4:] == 0).all() and (padded[6:10] == 255).all()
    assert (prepare(wide, None, roi=ROI, size=SIZE) == 255).all()


def test_mask_background_blanks_pixels_outside_the_lesion() -> None:
    image = np.full((40, 40, 3), 255, np.uint8)
    mask = rectangle_mask((40, 40), 10, 10, 30, 30)
    assert (prepare(image, mask, roi=roi(margin=0.5), size=40) == 255).all()
    blanked = prepare(image, mask, roi=roi(margin=0.5, mask_background=True), size=40)
    assert (blanked[:10] == 0).all() and (blanked[10:30, 10:30] == 255).all()


def test_clahe_spreads_a_low_contrast_scan_and_keeps_grey_grey() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(100, 130, (64, 64), dtype=np.uint8)
    image = np.repeat(grey[..., None], 3, axis=2)
    mask = rectangle_mask((64, 64), 8, 8, 56, 56)
    plain = prepare(image, mask, roi=ROI, size=48)
    equalized = prepare(image, mask, roi=roi(clahe=2.0), size=48)
    assert equalized.shape == plain.shape and equalized.dtype == np.uint8
    assert equalized.std() > 1.5 * plain.std()  # contrast stretched
    assert np.abs(equalized[..., 0].astype(int) - equalized[..., 2]).max() <= 1  # still grey
    assert np.array_equal(prepare(image, mask, roi=roi(clahe=0.0), size=48), plain)


def test_prepare_file_reads_masks_from_the_manifest_paths(tmp_path: Path) -> None:
    raw = synthetic.make_busi(tmp_path, n_per_class=3)
    mask_paths = synthetic.BUSI_EXTRA_MASKS
    prepared = prepare_file(raw, synthetic.BUSI_EXTRA_MASK_IMAGE, mask_paths, roi=ROI, size=32)
    mask = read_masks([raw / path for path in mask_paths])
    expected = prepare(read_image(raw / synthetic.BUSI_EXTRA_MASK_IMAGE), mask, roi=ROI, size=32)
    assert np.array_equal(prepared, expected)


def test_mask_paths_of_manifest_cells() -> None:
    assert mask_paths_of("a.png;b.png") == ("a.png", "b.png")
    assert mask_paths_of("") == () and mask_paths_of(float("nan")) == ()


def test_ordered_starmap_keeps_order_in_and_out_of_process() -> None:
    arguments = [(number, 2) for number in range(40)]
    expected = [number**2 for number in range(40)]
    assert list(ordered_starmap(pow, arguments, workers=1)) == expected
    assert list(ordered_starmap(pow, iter(arguments), workers=2, chunksize=3)) == expected


def test_workers_never_import_tensorflow() -> None:
    loaded = next(ordered_starmap(sorted_modules_with_prefix, [("tensorflow",)], workers=2))
    assert loaded == []


def sorted_modules_with_prefix(prefix: str) -> list[str]:
    return sorted(name for name in sys.modules if name.startswith(prefix))


def test_roi_stage_module_imports_no_tensorflow() -> None:
    """Spawned workers re-import the stage's own module (their __main__) before any work, so the
    check above only holds under `python -m stages.roi` if that module keeps TensorFlow out too."""
    check = (
        "import sys, stages.roi; print(any(name.startswith('tensorflow') for name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "False"


def test_prepare_file_png_is_the_prepared_image_losslessly(tmp_path: Path) -> None:
    raw = synthetic.make_busi(tmp_path, n_per_class=3)
    arguments = (raw, synthetic.BUSI_EXTRA_MASK_IMAGE, synthetic.BUSI_EXTRA_MASKS)
    png = prepare_file_png(*arguments, roi=ROI, size=SIZE)
    decoded = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert np.array_equal(decoded, prepare_file(*arguments, roi=ROI, size=SIZE))


def test_draw_roi_samples_writes_a_png(tmp_path: Path) -> None:
    raw = synthetic.make_busi(tmp_path / "raw", n_per_class=4)
    manifest, _ = build_manifest(raw, "busi", synthetic.BUSI_CLASSES, workers=1)
    out = tmp_path / "plots" / "roi.png"
    draw_roi_samples(raw, manifest, out, per_class=3, seed=0, roi=roi(margin=0.1), size=SIZE)
    image = read_image(out)
    assert image.shape[0] > 200 and image.shape[1] > 400
