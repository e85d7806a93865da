"""The error every part of training raises when a run cannot go on."""


class TrainingError(RuntimeError):
    """Training cannot go on (diverged loss, unusable run directory, inconsistent init)."""
