"""Image preparation for the roi stage and prediction: decoding, ROI crops, TFRecord shards."""
