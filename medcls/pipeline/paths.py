"""Where each stage reads and writes, per dataset: the one Python mirror of the paths in dvc.yaml."""

from dataclasses import dataclass, replace
from pathlib import Path

SCRATCH = Path("tmp")  # ignored by git (.gitignore) and DVC (.dvcignore)


@dataclass(frozen=True)
class DatasetPaths:
    """Every file a stage reads or writes for one dataset; mirrors the paths in dvc.yaml.

    With a `fold`, the training outputs (model, DVCLive logs, curves, train metrics) are those of
    that cross-validation fold's model; the data paths are the dataset's.
    """

    name: str
    fold: int | None = None

    def for_fold(self, fold: int) -> "DatasetPaths":
        return replace(self, fold=fold)

    @property
    def _fold_folder(self) -> str:
        return "" if self.fold is None else f"fold{self.fold}"

    @property
    def _scratch_name(self) -> str:
        """Side by side, never nested: removing one model's scratch leaves the folds' alone."""
        return self.name if self.fold is None else f"{self.name}-{self._fold_folder}"

    def source_record(self, part: str) -> Path:
        """`data/sources/<name>/<part>.json`: what the source stage records for one data stage
        (`fetch` for download, `read` for manifest, `hold_out` for split)."""
        return Path("data/sources") / self.name / f"{part}.json"

    @property
    def raw(self) -> Path:
        return Path("data/raw") / self.name

    @property
    def manifest(self) -> Path:
        return Path("data/manifest") / f"{self.name}.csv"

    @property
    def rejected(self) -> Path:
        return Path("data/manifest") / f"{self.name}_rejected.csv"

    @property
    def split(self) -> Path:
        return Path("data/split") / f"{self.name}.csv"

    @property
    def tfrecords(self) -> Path:
        return Path("data/tfrecords") / self.name

    @property
    def external(self) -> Path:
        """The other datasets this model is tested on, prepared with its image_size and roi."""
        return Path("data/external") / self.name

    def external_records(self, other: str) -> Path:
        """TFRecords of dataset `other` prepared for this model (one `test` split)."""
        return self.external / other

    def external_images(self, other: str) -> Path:
        """The rows of dataset `other` this model is tested on, with every manifest column (its
        subgroups' values)."""
        return self.external / f"{other}.csv"

    @property
    def predictions(self) -> Path:
        return Path("data/predictions") / f"{self.name}.csv"

    @property
    def subgroups(self) -> Path:
        """Every scored image's subgroup values (split, id, one column per subgroup), in git
        beside the predictions, for `medcls compare` to pair the two revisions per subgroup."""
        return Path("data/subgroups") / f"{self.name}.csv"

    @property
    def model(self) -> Path:
        return Path("models") / self.name / self._fold_folder / "model.keras"

    @property
    def dvclive(self) -> Path:
        return Path("dvclive") / self.name / self._fold_folder

    @property
    def train_backup(self) -> Path:
        """Scratch state of an unfinished train stage (git- and DVC-ignored, never an output)."""
        return SCRATCH / "train_backup" / self._scratch_name

    @property
    def feature_cache(self) -> Path:
        """Backbone features too large for the memory budget (git- and DVC-ignored scratch)."""
        return SCRATCH / "features" / self._scratch_name

    @property
    def worker_outputs(self) -> Path:
        """Where the workers of a training cluster other than the chief write what the chief writes
        to the project (`<this>-<task>`: git- and DVC-ignored scratch, removed when training ends)."""
        return SCRATCH / "workers" / self._scratch_name

    @property
    def plots(self) -> Path:
        return Path("plots") / self.name / self._fold_folder

    @property
    def report(self) -> Path:
        return Path("reports") / f"{self.name}.md"

    def card(self, suffix: str) -> Path:
        """The model card, `reports/<name>_card.md` or `.json`."""
        return Path("reports") / f"{self.name}_card{suffix}"

    @property
    def cases(self) -> Path:
        """Grad-CAM thumbnails of single test images (the most confident errors, the borderline
        ones), named by `cases.thumbnail_name` of their id."""
        return self.plots / "cases"

    def metrics(self) -> Path:
        """`metrics/<name>.json`: the model's headline scalars, the DVC metric."""
        return Path("metrics") / f"{self.name}.json"

    @property
    def evaluation(self) -> Path:
        """`reports/<name>.json`: everything the evaluate stage measured."""
        return Path("reports") / f"{self.name}.json"

    def summary(self, stage: str) -> Path:
        """`reports/<name>_<stage>.json`: what a data or training stage counted and took
        (`reports/<name>_fold<i>_train.json` for a fold's training); not DVC metrics, as run times
        and bookkeeping vary from run to run."""
        owner = "_".join(filter(None, (self.name, self._fold_folder)))
        return Path("reports") / f"{owner}_{stage}.json"


def stage_writing_records(records: Path) -> str:
    """The DVC stage that writes a TFRecord folder, for the message that says how to rebuild it:
    `external@<name>` for another dataset prepared for model <name> (data/external/<name>/<other>),
    `roi@<name>` for a dataset's own (data/tfrecords/<name>)."""
    records = Path(records)
    if records.parent.parent.parts[-2:] == DatasetPaths("").external.parts:
        return f"external@{records.parent.name}"
    return f"roi@{records.name}"
