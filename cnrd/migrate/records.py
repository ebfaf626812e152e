"""What the lease readers produce: a foreign lease, or a record that could not be read.

Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NEVER", "ForeignLease", "Malformed"]

#: An ``end`` that never comes (ISC's ``ends never``, Kea's infinite lifetime).
NEVER = -1


@dataclass(frozen=True)
class ForeignLease:
    """One lease as another server recorded it, in neutral terms.

    ``state`` is the other server's binding state, lower case: ISC's
    ``active``, ``free``, ``expired``, ``released``, ``abandoned``,
    ``reset``, ``backup``, ``bootp``; Kea's states read as ``active``,
    ``declined``, ``expired`` (expired-reclaimed) and ``released``.
    Times are epoch seconds; 0 is unknown.
    """

    address: int
    state: str
    hw: bytes = b""  # chaddr, without the hardware type
    htype: int = 1
    client_id: bytes | None = None
    start: int = 0
    end: int = 0  # NEVER: no end
    cltt: int = 0
    host_name: str = ""
    line: int = 0  # where the record starts in its file, for the report


@dataclass(frozen=True)
class Malformed:
    """A record that could not be read, and why."""

    line: int
    reason: str
    text: str = ""  # the address, when it could be read
