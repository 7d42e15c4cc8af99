"""Layout parsing: roots found wherever nested, every file accounted for, every anomaly named."""

import shutil
from collections import Counter
from pathlib import Path

import pytest

from medcls.data.layouts import Entry, Reject, kermany_patient, parse
from medcls.demo import synthetic

N = 6


def assert_every_file_accounted_for(
    raw_dir: Path, entries: list[Entry], rejects: list[Reject]
) -> None:
    used = [entry.path for entry in entries] + [
        mask for entry in entries for mask in entry.mask_paths
    ]
    rejected = [reject.path for reject in rejects]
    on_disk = {
        path.relative_to(raw_dir).as_posix() for path in raw_dir.rglob("*") if path.is_file()
    }
    assert sorted(used + rejected) == sorted(on_disk)  # each file exactly once


def reasons(rejects: list[Reject]) -> dict[str, str]:
    return {reject.path: reject.reason for reject in rejects}


@pytest.fixture(scope="module")
def bus_uc(tmp_path_factory) -> Path:
    return synthetic.make_bus_uc(tmp_path_factory.mktemp("bus_uc"), n_per_class=N)


@pytest.fixture(scope="module")
def busi(tmp_path_factory) -> Path:
    return synthetic.make_busi(tmp_path_factory.mktemp("busi"), n_per_class=N)


@pytest.fixture(scope="module")
def kermany(tmp_path_factory) -> Path:
    return synthetic.make_kermany(tmp_path_factory.mktemp("kermany"), n_patients_per_class=N)


def test_bus_uc_finds_nested_root_and_skips_flat_copies(bus_uc: Path) -> None:
    entries, rejects = parse("bus_uc", bus_uc, synthetic.BUS_UC_CLASSES)
    assert_every_file_accounted_for(bus_uc, entries, rejects)
    assert Counter(entry.class_name for entry in entries) == {
        "Benign": N - 1,
        "Malignant": N,
    }  # one missing mask
    assert all(entry.path.startswith(f"{synthetic.BUS_UC_ROOT}/") for entry in entries)
    flat = [reject for reject in rejects if reject.path.split("/")[3] in ("images", "masks")]
    assert len(flat) == 4 * N - 1 and {reject.reason for reject in flat} == {"unlabelled flat copy"}


def test_bus_uc_pairs_masks_by_stem_and_rejects_planted_files(bus_uc: Path) -> None:
    entries, rejects = parse("bus_uc", bus_uc, synthetic.BUS_UC_CLASSES)
    layout_level = {
        path: reason
        for path, reason in synthetic.BUS_UC_FAULTS.items()
        if reason != "undecodable image"
    }
    assert layout_level.items() <= reasons(rejects).items()
    pairs = {entry.path: entry.mask_paths for entry in entries}
    assert (synthetic.BUS_UC_MASK_WITH_SUFFIX,) in pairs.values()
    for image, (mask,) in pairs.items():
        assert mask.replace("/masks/", "/images/").replace("_mask", "") == image
    assert all(entry.group == entry.path and entry.source_split == "" for entry in entries)


def test_classes_match_case_insensitively_and_keep_disk_spelling(bus_uc: Path) -> None:
    entries, _ = parse("bus_uc", bus_uc, ["BENIGN", "malignant"])
    assert {entry.class_name for entry in entries} == {"Benign", "Malignant"}


def test_busi_merges_extra_masks_and_rejects_unselected_class(busi: Path) -> None:
    entries, rejects = parse("busi", busi, synthetic.BUSI_CLASSES)
    assert_every_file_accounted_for(busi, entries, rejects)
    assert Counter(entry.class_name for entry in entries) == {"benign": N - 1, "malignant": N}
    by_path = {entry.path: entry for entry in entries}
    assert by_path[synthetic.BUSI_EXTRA_MASK_IMAGE].mask_paths == synthetic.BUSI_EXTRA_MASKS
    assert sum(len(entry.mask_paths) > 1 for entry in entries) == 1
    assert Counter(reasons(rejects).values()) == {
        "class not selected: normal": 2 * N,
        "missing mask": 1,
    }
    assert reasons(rejects)[f"{synthetic.BUSI_ROOT}/benign/benign (2).png"] == "missing mask"


def test_orphan_mask_and_nested_duplicate_copy_are_rejected(busi: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(busi, raw)
    orphan = raw / synthetic.BUSI_ROOT / "malignant" / "malignant (99)_mask.png"
    shutil.copy(raw / synthetic.BUSI_ROOT / "malignant" / "malignant (3)_mask.png", orphan)
    shutil.copytree(raw / synthetic.BUSI_ROOT, raw / synthetic.BUSI_ROOT / "copy" / synthetic.BUSI_ROOT)
    entries, rejects = parse("busi", raw, synthetic.BUSI_CLASSES)
    assert_every_file_accounted_for(raw, entries, rejects)
    assert reasons(rejects)[orphan.relative_to(raw).as_posix()] == "mask without image"
    nested = [reject.reason for reject in rejects if "/copy/" in reject.path]
    assert nested and set(nested) == {"outside layout root"}
    assert len(entries) == 2 * N - 1


def generated_patient(name: str) -> str:
    """The patient id `synthetic.make_kermany` wrote into a file name, read without the parser."""
    return name.split("_")[0] if name.startswith("person") else name.rsplit("-", 1)[0]


def test_kermany_reads_patients_and_source_splits(kermany: Path) -> None:
    entries, rejects = parse("kermany", kermany, synthetic.KERMANY_CLASSES)
    assert_every_file_accounted_for(kermany, entries, rejects)
    assert len(entries) == 2 * N * 2 + 2  # + the duplicate copy and the undecodable file
    assert reasons(rejects) == {
        path: r for path, r in synthetic.KERMANY_FAULTS.items() if r == "outside layout root"
    }
    for entry in entries:
        root, split, class_name, name = entry.path.split("/")
        assert (split, class_name, entry.mask_paths) == (entry.source_split, entry.class_name, ())
        assert entry.group == generated_patient(name)
    assert len({entry.group for entry in entries}) == 2 * N


@pytest.mark.parametrize(
    ("stem", "patient"),
    [
        ("person1_bacteria_1", "person1"),
        ("person1000_virus_1681", "person1000"),
        ("person1_virus_11_2", "person1"),
        ("IM-0115-0001", "IM-0115"),
        ("IM-0001-0001-0001", "IM-0001"),
        ("NORMAL2-IM-1427-0001", "NORMAL2-IM-1427"),
        ("scan_17", "scan_17"),
    ],
)
def test_kermany_patient_ids(stem: str, patient: str) -> None:
    assert kermany_patient(stem) == patient


def test_missing_structure_says_what_was_expected_and_found(busi: Path) -> None:
    with pytest.raises(
        ValueError, match=r"\{train,val,test\}.*found at the top of it: \['Dataset_BUSI_with_GT/'\]"
    ):
        parse("kermany", busi, synthetic.KERMANY_CLASSES)
    with pytest.raises(ValueError, match="class folders"):
        parse("busi", busi, ["benign", "cyst"])
