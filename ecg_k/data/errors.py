"""Errors of the data layer that stop a run (as opposed to per-record skips, see ecg_k.quality)."""


class DataInputError(ValueError):
    """A missing root, file or column: the run cannot start. The message says what and where."""
