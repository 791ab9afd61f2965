"""User-facing errors.

Anything wrong with what the user gave us (a malformed model, an unsupported op, a bad
flag) is raised as a `UserError`; the CLI prints its message and exits with code 2, never a
traceback. Internal bugs stay ordinary exceptions so they are loud.
"""

EXIT_OK = 0
EXIT_MISMATCH = 1  # verify/run: outputs were compared, and the generated C's differ from TFLite's
EXIT_USER_ERROR = 2
EXIT_FAILED = 3  # run: the firmware crashed or hung, so nothing could be compared


class UserError(Exception):
    """An error in the user's input, with a message that says what to do about it."""

    def __init__(self, message: str, *, source: str | None = None):
        self.source = source
        super().__init__(f"{printable(source)}: {message}" if source else message)


def printable(text: str) -> str:
    """A file name as it may be printed: one line, no terminal control sequences (a hostile
    name could hold a newline or an escape code); quoted and escaped only when needed."""
    return text if text.isprintable() else ascii(text)


class ModelError(UserError):
    """The model file is malformed, inconsistent or uses something we do not support."""
