"""Synthetic images and throw-away DVC workspaces: the offline demo, the tests and the benchmarks."""
