"""Loaded by pytest before any test module: TensorFlow's start-up lines stay out of every test
process's log (each pytest-xdist worker would print its own), as they do in the stages."""

from medcls.pipeline.tensorflow_logs import filter_tensorflow_logs

filter_tensorflow_logs()
