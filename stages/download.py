"""Stage download: bring the dataset's sources (Kaggle, https archives or local copies) into
data/raw/<name>: its one source there, or each of several in data/raw/<name>/<source name>."""

from medcls.data import sources
from medcls.params import DatasetParams, Params
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def download(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    sources.fetch_all(
        {source.folder: (source.source, source.key) for source in dataset.named_sources.values()},
        paths.raw,
    )


if __name__ == "__main__":
    run_stage(download)
