"""Download, manifest and split: from a raw dataset folder to labelled, split tables."""
