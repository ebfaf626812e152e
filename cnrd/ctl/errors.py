"""What makes cnrctl stop, and the exit status each mistake gives."""

from __future__ import annotations

__all__ = ["UsageError", "ApiError", "EXIT_OK", "EXIT_API", "EXIT_USAGE"]

EXIT_OK, EXIT_API, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line (or in finding the server): exit 2, nothing was sent."""


class ApiError(Exception):
    """The server answered with an error, or could not be reached: exit 1."""

    def __init__(self, reason: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body
