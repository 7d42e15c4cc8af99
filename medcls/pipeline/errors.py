"""Expected failures: bad params, bad or missing inputs, an unreachable source.

Each is the user's to fix, so the stages and `medcls predict` print its message as one
`error: ...` line and exit non-zero; any other exception is a bug and keeps its traceback.
"""

from medcls.params import ParamsError


class PipelineError(Exception):
    """A failure the user can fix; the message says what is wrong and what to do."""


class MissingClassError(PipelineError, ValueError):
    """A split that holds one class only, where training or evaluation needs both."""


# What the stages and `medcls predict` report as one `error: ...` line each: the user's to fix
EXPECTED_ERRORS = (PipelineError, ParamsError, FileNotFoundError)
