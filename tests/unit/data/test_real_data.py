"""The data half of the pipeline on the real BUSI and Kermany copies in ../shared/data.

Skipped when ../shared is absent (a user's clone does not have it).
"""

from pathlib import Path

import pandas as pd
import pytest

from medcls.data.layouts import parse
from medcls.data.manifest import CONFLICTING_LABELS, MASK_OF_REJECTED_IMAGE, build_manifest
from medcls.data.splitting import grouped_stratified_split

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}

if not DATA.is_dir():
    pytest.skip(f"real data not available at {DATA}", allow_module_level=True)


@pytest.fixture(scope="module")
def busi() -> tuple[pd.DataFrame, pd.DataFrame]:
    return build_manifest(DATA / "busi", "busi", ["benign", "malignant"], workers=2)


@pytest.fixture(scope="module")
def kermany() -> pd.DataFrame:
    manifest, rejected = build_manifest(
        DATA / "chest_xray", "kermany", ["NORMAL", "PNEUMONIA"], workers=2
    )
    assert rejected.empty
    return manifest


def test_busi_counts_and_normal_rejected(busi) -> None:
    manifest, rejected = busi
    assert manifest["class_name"].value_counts().to_dict() == {"benign": 436, "malignant": 209}
    assert rejected["reason"].value_counts().to_dict() == {
        "class not selected: normal": 2 * 133,
        CONFLICTING_LABELS: 2,
        MASK_OF_REJECTED_IMAGE: 2,
    }


def test_busi_image_filed_as_benign_and_malignant_is_rejected(busi) -> None:
    _, rejected = busi
    reasons = rejected.set_index("path")["reason"]
    for path in ("benign/benign (433).png", "malignant/malignant (145).png"):
        assert reasons[f"Dataset_BUSI_with_GT/{path}"] == CONFLICTING_LABELS


def test_busi_extra_masks_are_merged(busi) -> None:
    manifest, _ = busi
    n_masks = manifest.set_index("path")["mask_paths"].str.split(";").str.len()
    assert n_masks.sum() == 645 + 18 and (n_masks > 1).sum() == 17
    assert n_masks["Dataset_BUSI_with_GT/benign/benign (195).png"] == 3


def test_kermany_patients_are_parsed(kermany: pd.DataFrame) -> None:
    assert len(kermany) == 5856
    assert kermany["class_name"].value_counts().to_dict() == {"PNEUMONIA": 4273, "NORMAL": 1583}
    stems = kermany["path"].map(lambda path: Path(path).stem)
    assert (kermany["group"] != stems).all()  # every file name matched a patient pattern
    assert kermany["group"].nunique() < len(kermany) / 1.5
    groups = kermany.set_index("path")["group"]
    assert groups["train/PNEUMONIA/person1_bacteria_2.jpeg"] == "person1"
    assert groups["val/NORMAL/NORMAL2-IM-1427-0001.jpeg"] == "NORMAL2-IM-1427"


def test_kermany_split_has_no_leakage_and_follows_fractions(kermany: pd.DataFrame) -> None:
    assert kermany["sha256"].duplicated().any()  # the source has byte-identical images
    split = grouped_stratified_split(kermany, FRACTIONS, seed=0)
    for column in ("group", "sha256"):
        assert (split.groupby(kermany[column]).nunique() == 1).all()
    shares = pd.crosstab(split, kermany["label"], normalize="columns")
    for name, fraction in FRACTIONS.items():
        assert shares.loc[name].to_numpy() == pytest.approx(fraction, abs=0.02)


def test_kermany_layout_rejects_nothing() -> None:
    entries, rejects = parse("kermany", DATA / "chest_xray", ["normal", "pneumonia"])
    assert len(entries) == 5856 and rejects == []
