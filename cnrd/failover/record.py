"""The persisted failover state of one relationship: what survives a restart.

One record per ``[failover-pair]`` under :func:`key`, written with each
state change in the same lease-store commit as the lease changes.  The
layout is fixed (it is in every existing store); a record written before
the role was stored is one byte shorter and belongs to either role.

Pure module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cnrd.failover.states import S, Role

# state, stos, partner state, partner stos, mclt, previous, talked, role
_LAYOUT = struct.Struct("!BqBqIBBB")
_LAYOUT_V1 = struct.Struct("!BqBqIBB")  # before the role was stored
_ROLE_CODE = {Role.MAIN: 1, Role.BACKUP: 2}


@dataclass(frozen=True)
class StateRecord:
    """The server state values a restart starts from."""

    state: S
    stos: int  # start time of ``state``
    partner_state: S | None  # last heard from the partner, None if never
    partner_stos: int
    mclt: int  # the backup keeps the main's MCLT, learnt from its CONNECT
    previous: S  # the state before STARTUP, for a record written in STARTUP
    talked: bool  # a handshake completed and the partner's knowledge arrived
    role_code: int  # 1 main, 2 backup; 0 in a record written before roles were stored

    def belongs_to(self, role: Role) -> bool:
        """True unless the record was written by this server in the other role."""
        return self.role_code in (0, _ROLE_CODE[role])


def key(pair: str) -> str:
    """The lease-store state key of relationship ``pair``."""
    return f"failover/{pair}/state"


def role_code(role: Role) -> int:
    """How ``role`` is stored in a record."""
    return _ROLE_CODE[role]


def pack(record: StateRecord) -> bytes:
    """The stored form of ``record`` (always the current layout)."""
    return _LAYOUT.pack(int(record.state), record.stos, int(record.partner_state or 0), record.partner_stos,
                        record.mclt, int(record.previous), int(record.talked), record.role_code)


def unpack(data: bytes) -> StateRecord:
    """Read a stored record, either layout; raises ``struct.error`` or ``ValueError`` on junk."""
    if len(data) == _LAYOUT_V1.size:
        st, stos, pst, pstos, mclt, prev, talked = _LAYOUT_V1.unpack(data)
        code = 0
    else:
        st, stos, pst, pstos, mclt, prev, talked, code = _LAYOUT.unpack(data)
    return StateRecord(state=S(st), stos=stos, partner_state=S(pst) if pst else None, partner_stos=pstos,
                       mclt=mclt, previous=S(prev), talked=bool(talked), role_code=code)
