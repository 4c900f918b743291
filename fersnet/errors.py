"""Errors meant for the user: the CLI prints their message and exits non-zero, no traceback."""


class FersnetError(Exception):
    """Base of every error whose message is written for the user (names the file or key)."""


class DataError(FersnetError):
    """Bad input data: a missing root, a wrong layout, a corrupt file, a bad label."""


class TrainingError(FersnetError):
    """A training job that cannot go on (e.g. a non-finite loss)."""


class CheckpointError(FersnetError):
    """A checkpoint that cannot be used: corrupt, truncated, or not one fersnet wrote (names the file)."""
