"""Stage download: bring the dataset's source (Kaggle, https archive or local copy) into data/raw/<name>."""

from medcls import sources
from medcls.config import DatasetPaths, run_stage


def download(name: str, params: dict, dataset: dict, paths: DatasetPaths) -> None:
    sources.fetch(dataset["source"], paths.raw)


if __name__ == "__main__":
    run_stage(download)
