"""The offline demo: its params validate, every dataset has a generator, and it never deletes a
directory it did not make. (Its workspace builder runs in the end-to-end test's fixture.)"""

import pytest

from medcls.demo import synthetic, workspace
from medcls.params import Params, load
from scripts import demo


@pytest.fixture(scope="module")
def params() -> Params:
    return load(demo.PROFILE)


def test_demo_profile_validates_and_is_labelled_synthetic(params):
    assert params.datasets and all(name.startswith("demo_") for name in params.datasets)
    assert demo.PROFILE.read_text().startswith("# SYNTHETIC DEMO PROFILE")


def test_every_demo_dataset_has_a_generator_and_a_source_outside_the_workspace(params):
    for dataset in params.datasets.values():
        assert dataset.layout in demo.GENERATORS
        assert dataset.source.startswith("../")  # the workspace must start out empty


def test_generated_sources_land_where_the_profile_points(params, tmp_path, monkeypatch):
    small = {
        "bus_uc": lambda root: demo.synthetic.make_bus_uc(root, n_per_class=3, size=32),
        "kermany": lambda root: demo.synthetic.make_kermany(root, n_patients_per_class=3, size=32),
    }
    monkeypatch.setattr(demo, "GENERATORS", small)
    workspace = tmp_path / "workspace"
    demo.generate_sources(params, workspace)
    for dataset in params.datasets.values():
        assert any((workspace / dataset.source).resolve().iterdir())
    assert not workspace.exists()  # create_workspace needs it new


def test_an_unmarked_directory_is_never_removed(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=demo.MARKER):
        demo.clear_previous_demo(tmp_path)
    assert (tmp_path / "keep.txt").exists()
    (tmp_path / demo.MARKER).write_text(demo.MARKER_TEXT)
    demo.clear_previous_demo(tmp_path)
    assert not tmp_path.exists()


def test_a_workspace_outside_a_clone_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace, "PROJECT", tmp_path / "site-packages")
    with pytest.raises(FileNotFoundError, match=r"not one \(no dvc.yaml\).*pip install -e \."):
        workspace.write_pipeline(tmp_path / "workspace", {})
    assert not (tmp_path / "workspace").exists()


@pytest.mark.parametrize(
    "constant", ["BUS_UC_FAULTS", "BUSI_FAULTS", "KERMANY_FAULTS", "BUS_UC_MASK_WITH_SUFFIX"]
)
def test_the_synthetic_data_reference_lists_every_fault_and_quirk(constant):
    page = (workspace.PROJECT / "docs/reference/synthetic-data.md").read_text()
    assert f"`{constant}`" in page
    faults = getattr(synthetic, constant) if constant.endswith("FAULTS") else {}
    for path, reason in faults.items():
        assert path.split("/", 3 if constant.startswith("BUS_UC") else 1)[-1] in page
        assert f"`{reason}`" in page
