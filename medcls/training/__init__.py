"""The train stage's library: input pipelines, augmentation, training phases, distribution."""
