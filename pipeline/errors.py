"""One base class for every error a user can cause (bad input, bad params).

The CLI turns these into a one-line message and a non-zero exit; anything
else is a bug and keeps its traceback.
"""


class PgolfError(Exception):
    """A problem with the user's input, files or parameters."""


class DataError(PgolfError):
    """A corpus, tokenizer or shard is missing, malformed or inconsistent."""


class ArtifactError(PgolfError):
    """A packed model artifact is corrupt, truncated or of an unknown format."""


class TrainingError(PgolfError):
    """Training cannot continue (non-finite loss, bad checkpoint, ...)."""


class OutputError(PgolfError):
    """An output cannot be written safely: it would replace something pgolf did not create, or is in use."""
