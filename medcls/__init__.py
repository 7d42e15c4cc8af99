"""Library code of the medical-imaging classification pipeline; the DVC stages in `stages/` are thin wrappers around it.

Importing it first keeps TensorFlow's start-up chatter out of the output (MEDCLS_VERBOSE=1 keeps it).
"""

from medcls.pipeline.chatter import quiet_tensorflow

quiet_tensorflow()
