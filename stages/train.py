"""Stage train: two-phase transfer learning (frozen backbone, then fine-tuning) on the train TFRecords."""

import time

import keras
from dvclive import Live

from medcls import inputs, losses, models, plots, tfrecords, training
from medcls.config import DatasetPaths, run_stage
from medcls.reporting import write_json


def phases(params: dict, schedule: dict) -> list[training.Phase]:
    """Phase 1 trains the head at `lr`; phase 2 unfreezes the top of the backbone at `fine_tune_lr`."""
    fine_tune = schedule["fine_tune"]
    return [
        training.Phase("frozen", schedule["epochs"], params["lr"], schedule["patience"]),
        training.Phase(
            "fine_tune",
            fine_tune["epochs"],
            params["fine_tune_lr"],
            fine_tune["patience"],
            unfreeze_fraction=fine_tune.get("unfreeze_fraction"),
            unfreeze_layers=fine_tune.get("unfreeze_layers"),
        ),
    ]


def train(name: str, params: dict, dataset: dict, paths: DatasetPaths) -> None:
    started = time.perf_counter()
    seed, schedule = params["seed"], dataset["train"]
    keras.utils.set_random_seed(seed)
    policy = training.configure_precision(schedule["mixed_precision"])

    train_records = tfrecords.read_split(paths.tfrecords, "train")
    batches = dict(batch_size=schedule["batch_size"], cache=True)
    train_batches = inputs.make_batches(
        train_records,
        augmenter=inputs.build_augmenter(dataset["augment"], seed),
        shuffle=True,
        seed=seed,
        **batches,
    )
    val_batches = inputs.make_batches(tfrecords.read_split(paths.tfrecords, "val"), **batches)
    labels = inputs.labels_of(train_records)

    model = models.build_classifier(
        dataset["backbone"], dataset["head"], dataset["image_size"], seed=seed
    )
    with Live(str(paths.dvclive), dvcyaml=None, report=None) as live:
        summary = training.train(
            model,
            train_batches,
            val_batches,
            phases=phases(params, schedule),
            loss=losses.make_loss(dataset["loss"]),
            class_weight=losses.class_weights(labels, dataset["class_weight"]),
            jit_compile=schedule["jit_compile"],
            callbacks=[training.DVCLiveCallback(live)],
        )
    paths.model.parent.mkdir(parents=True, exist_ok=True)
    model.save(paths.model)
    plots.save_training_curves_png(
        paths.dvclive / "plots" / "metrics", paths.plots / "training_curves.png"
    )
    write_json(
        paths.metrics("train"),
        {
            "train_images": len(labels),
            "precision_policy": policy,
            "phases": summary,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    run_stage(train)
