"""DVC stage modules, `python -m stages.<stage> <dataset>`.

Python runs this file before the stage module, whose imports load TensorFlow, so this is where a
stage's run filters TensorFlow's log lines (`medcls.pipeline.tensorflow_logs`; MEDCLS_VERBOSE=1
shows them all): `run_stage` itself runs after TensorFlow has printed its start-up lines.
"""

from medcls.pipeline.tensorflow_logs import filter_tensorflow_logs

filter_tensorflow_logs()
