"""Stage download: bring the dataset's source (Kaggle, https archive or local copy) into data/raw/<name>."""

from medcls.data import sources
from medcls.pipeline.config import DatasetParams, Params
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def download(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    sources.fetch(dataset.source, paths.raw)


if __name__ == "__main__":
    run_stage(download)
