"""The project's own error type: one clear line that names the problem.

The CLI prints ``str(err)`` and exits with status 2, so a message must stand on its own
(what is wrong, and where: a file path, a name, a value), with no traceback needed.
"""


class SpartaError(Exception):
    """A user-facing problem (bad file, bad name, bad value) with a one-line message."""


class DataError(SpartaError):
    """A data file is missing, truncated, corrupt, or inconsistent."""
