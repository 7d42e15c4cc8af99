"""The evaluate stage's library: scoring, baseline, metrics, plots, Grad-CAM, the review report."""
