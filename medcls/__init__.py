"""Library code of the medical-imaging classification pipeline; the DVC stages in `stages/` are thin wrappers around it."""
