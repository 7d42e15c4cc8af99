"""DVC stage modules, `python -m stages.<stage> <dataset>`.

Run before any stage module imports TensorFlow: keeps its start-up chatter out of the stage's output
(MEDCLS_VERBOSE=1 keeps it).
"""

from medcls.pipeline.chatter import quiet_tensorflow

quiet_tensorflow()
