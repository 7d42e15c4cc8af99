"""Stage train: two-phase transfer learning (frozen backbone, then fine-tuning) on the train TFRecords.

`python -m stages.train <dataset> <fold>` trains one cross-validation fold's model instead (the
train_fold stage): on the train and val images of every other fold, validated on its own.

Runs on one device, on several GPUs or on several machines (see `medcls.training.distribute`): the
same command on every machine of a `TF_CONFIG` cluster; only the chief's outputs are kept. Every
epoch is backed up (`medcls.training.resume`): a killed run (or cluster) started again continues
after its last finished epoch. The training itself is `medcls.training.trainer`.
"""

from medcls.params import DatasetParams, Params
from medcls.pipeline.outputs import save_figure, write_json
from medcls.pipeline.paths import DatasetPaths
from medcls.pipeline.stage import run_stage
from medcls.training import curves, distribute
from medcls.training.records import TrainingRecords
from medcls.training.trainer import Trainer, TrainingConfig, TrainingFolders


def train(name: str, params: Params, dataset: DatasetParams, paths: DatasetPaths) -> None:
    trainer = Trainer(TrainingConfig.of(params, dataset))  # first: before other TensorFlow work
    records = TrainingRecords.of(paths.tfrecords, paths.split, paths.fold)
    with distribute.output_root(paths.worker_outputs) as root:
        folders = TrainingFolders(
            backup=root / paths.train_backup,
            features=root / paths.feature_cache,
            curves=root / paths.dvclive,
        )
        with trainer.train(records, folders) as trained:
            (root / paths.model).parent.mkdir(parents=True, exist_ok=True)
            trained.model.save(root / paths.model)
            figure = curves.training_curves_figure(trained.curves)
            save_figure(figure, root / paths.plots / "training_curves.png")
            write_json(root / paths.summary("train"), trained.metrics)


if __name__ == "__main__":
    run_stage(train)
