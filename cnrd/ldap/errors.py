"""The errors of LDAP operations, shared by the protocol and the client."""

from __future__ import annotations


class LdapError(Exception):
    """An LDAP operation failed; ``reason`` is one line for a log or an API answer."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code  # the RFC 4511 result code; -1 when no server result is behind it
        self.reason = reason


class LdapUnavailable(LdapError):
    """No bound connection: never connected, connection lost, or the client stopped."""


class LdapTimeout(LdapError):
    """The server did not answer within the configured timeout."""
