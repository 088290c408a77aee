"""Typed errors. The CLI turns each into `Error: <message>` on stderr and its exit code, in one place.

Exit codes (documented in README.md):
    1  internal error (a bug: run with --debug and report it)
    2  bad input or usage (a missing file, a bad option value, an unreadable image)
    3  weights (unknown name, missing file offline, hash mismatch, incompatible tensors)
    4  device or precision (no such device, no GPU)
    5  data set (missing, malformed)
    6  network (download failed)
    7  some inputs failed while the others succeeded (batch commands without --strict)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations


class DLError(Exception):
    """Base of every error a user may see. `message` says what went wrong and what to do."""

    exit_code: int = 1
    # True when each problem was already shown as its own `Error:` line (a batch's bad inputs):
    # the CLI then prints `message` as a plain summary (or nothing when it is empty), never a
    # second `Error:` line for the same input.
    reported: bool = False

    def __init__(self, message: str, *, exit_code: int | None = None, reported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        self.reported = reported


class InputError(DLError):
    exit_code = 2


class WeightsError(DLError):
    exit_code = 3


class DeviceError(DLError):
    exit_code = 4


class DataError(DLError):
    exit_code = 5


class NetworkError(DLError):
    exit_code = 6


class PartialFailure(DLError):
    """Raised after output was rendered, when some (not all) inputs of a batch failed."""

    exit_code = 7


EXIT_INTERRUPTED = 130
