"""User-facing errors: one clear sentence, an exit code, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave us (a file, flag, config value or form field).

    The message is one sentence that names what was wrong and what would be valid. The CLI prints it as
    ``error: <message>`` and exits with ``exit_code`` instead of showing a traceback.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DataError(UserError):
    """Market data that fails validation or cannot be read."""

    exit_code = 3


class BusyError(UserError):
    """Another process holds what this command would write (a dataset, a run directory): it is refused."""


class DiskFullError(UserError):
    """A write found its disk or quota full (ENOSPC, EDQUOT); the message names the path and bytes needed.

    Exit code 4: nothing is wrong with what the user asked, only with the room to store it.
    """

    exit_code = 4
