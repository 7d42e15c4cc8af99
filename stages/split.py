"""Stage split: grouped, stratified train/val/test split (no patient or identical image in two
splits; held-out sources all in test), and with `split.folds` > 1 the cross-validation fold of
every train and val image."""

import pandas as pd

from medcls.data import splitting
from medcls.params import DatasetParams, Params
from medcls.pipeline.outputs import write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage


def split(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    rows = pd.read_csv(paths.manifest, keep_default_na=False)
    seed = params.seed if params.split.seed is None else params.split.seed
    rows["split"] = splitting.grouped_stratified_split(
        rows, params.split.fractions, seed, held_out=dataset.held_out()
    )
    if params.split.folds > 1:
        rows["fold"] = splitting.cross_validation_folds(rows, rows["split"], params.split.folds, seed)
    paths.split.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(paths.split, index=False)
    write_json(paths.summary("split"), splitting.split_counts(rows))


if __name__ == "__main__":
    run_stage(split)
