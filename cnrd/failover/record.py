"""The persisted failover state of one relationship: what survives a restart.

One record per ``[failover-pair]`` under :func:`key`, written with each
state change in the same lease-store commit as the lease changes.  The
layout is fixed (it is in every existing store); a record written before
the role was stored is one byte shorter and belongs to either role.

Beside it, :func:`peers_key` holds the pair's main and backup addresses,
so that a pair renamed in the configuration finds its state again
(:func:`renamed_from`).  A store written before that key existed has no
identity to match: its pairs keep their state only under their own name.

Pure module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from collections.abc import Collection, Iterable

from cnrd.failover.states import S, Role
from cnrd.text import int_to_ip, ip_to_int

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


def peers_key(pair: str) -> str:
    """The lease-store key of relationship ``pair``'s main and backup addresses."""
    return f"failover/{pair}/peers"


def pack_peers(main: int, backup: int) -> bytes:
    """The stored form of a pair's addresses: ``main,backup`` in dotted quads."""
    return f"{int_to_ip(main)},{int_to_ip(backup)}".encode()


def unpack_peers(data: bytes) -> tuple[int, int] | None:
    """(main, backup) from :func:`pack_peers`; None for anything else."""
    try:
        main, backup = data.decode("ascii").split(",")
        return ip_to_int(main), ip_to_int(backup)
    except (UnicodeDecodeError, ValueError, OSError):
        return None


def renamed_from(
    name: str,
    *,
    main: int,
    backup: int,
    role: Role,
    configured: Collection[str],
    stored: Iterable[tuple[str, bytes]],
) -> str | None:
    """The old name of relationship ``name`` when it was renamed with its roles unchanged; else None.

    CNR 7.2 ("Changing Failover Pair Server Addresses") keeps a pair's
    failover state across a rename as long as this server's role is the
    same.  ``stored`` is the store's ``failover/`` state items.  An old name qualifies when it is no
    longer configured, has a record written in ``role`` and its stored
    addresses are ``main`` and ``backup``: exactly one must qualify (two
    pairs between the same servers cannot be told apart).  With a single
    pair configured (CNR's simple failover, where name and addresses may
    change together), the one old relationship of the same role qualifies
    whatever its addresses.
    """
    stored = list(stored)
    records = {k[len("failover/"):-len("/state")]: v for k, v in stored
               if k.startswith("failover/") and k.endswith("/state")}
    same_role: dict[str, tuple[int, int] | None] = {}
    for k, v in stored:
        if not (k.startswith("failover/") and k.endswith("/peers")):
            continue
        old = k[len("failover/"):-len("/peers")]
        if old == name or old in configured or old not in records:
            continue
        try:
            rec = unpack(records[old])
        except (ValueError, struct.error):
            continue
        if rec.role_code == _ROLE_CODE[role]:
            same_role[old] = unpack_peers(v)
    matches = [old for old, peers in same_role.items() if peers == (main, backup)]
    if len(matches) == 1:
        return matches[0]
    if not matches and len(configured) == 1 and len(same_role) == 1:
        return next(iter(same_role))
    return None


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
