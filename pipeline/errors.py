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
def one_line(message: str) -> str:
    """A message as one line: the non-blank lines of a multi-line one joined with " | ".

    Library messages (YAML marks with a caret, torch's weights_only advice,
    Hub validation errors) span several lines; a user error never does.
    Sources that know a message's shape summarise it better first; this is
    the net every printed error goes through.
    """
    lines = [" ".join(line.split()) for line in str(message).splitlines()]
    return " | ".join(line for line in lines if line)


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name."""
    for line in str(exc).splitlines():
        if line.strip():
            return " ".join(line.split())
    return type(exc).__name__
