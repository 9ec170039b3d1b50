"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class KbhError(Exception):
    """A user-facing error: the message names the file (or input) and the problem in one line."""
