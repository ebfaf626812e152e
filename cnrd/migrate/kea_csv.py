"""Kea's DHCPv4 memfile (``kea-leases4.csv``) read into foreign leases.

The first line names the columns (Kea adds columns over versions: ``state``
came in 2.0 of the file format, ``user_context`` later, ``pool_id`` later
still), so columns are found by name; ``address``, ``hwaddr``,
``client_id``, ``valid_lifetime``, ``expire``, ``subnet_id`` and
``hostname`` are required.  Kea escapes a comma inside a value as
``&#x2c`` (any byte as ``&#xHH``).  Like dhcpd's file it is appended to: a
later row for an address replaces an earlier one, and a row with a valid
lifetime of 0 records that the lease was deleted.  ``expire`` is
``cltt + valid_lifetime``; a lifetime of 0xffffffff never ends.  States:
0 default (leased), 1 declined, 2 expired-reclaimed, 3 released.

Pure module.
"""

from __future__ import annotations

import re

from cnrd.migrate.isc_leases import parse_hex_bytes
from cnrd.migrate.records import NEVER, ForeignLease, Malformed
from cnrd.text import ip_to_int

__all__ = ["KEA_COLUMNS", "read_kea_csv"]

#: The columns this reader needs.
KEA_COLUMNS = ("address", "hwaddr", "client_id", "valid_lifetime", "expire", "subnet_id", "hostname")
_STATES = {0: "active", 1: "declined", 2: "expired", 3: "released"}
_ESCAPED = re.compile(r"&#x([0-9a-fA-F]{2})")
_INFINITE = 0xFFFFFFFF


def _unescape(value: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value)


def read_kea_csv(text: str) -> list[ForeignLease | Malformed]:
    """Every row of a Kea lease4 CSV, in file order (a row that cannot be read is a Malformed)."""
    lines = text.splitlines()
    if not lines:
        return []
    header = [c.strip() for c in lines[0].split(",")]
    missing = [c for c in KEA_COLUMNS if c not in header]
    if missing:
        return [Malformed(1, f"not a Kea lease4 CSV header: no column {', '.join(missing)}")]
    col = {name: i for i, name in enumerate(header)}
    out: list[ForeignLease | Malformed] = []
    for n, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cells = raw.split(",")
        address = cells[0].strip() if cells else ""
        if len(cells) < len(KEA_COLUMNS) or len(cells) > len(header):
            out.append(Malformed(n, f"{len(cells)} columns where the header has {len(header)}", address))
            continue
        cells += [""] * (len(header) - len(cells))
        try:
            addr = ip_to_int(address)
            valid = int(cells[col["valid_lifetime"]])
            expire = int(cells[col["expire"]])
            code = int(cells[col["state"]] or "0") if "state" in col else 0
            if code not in _STATES:
                raise ValueError(f"unknown lease state {code}")
            if valid < 0 or expire < 0:
                raise ValueError("a negative lifetime or expiry")
            hw = parse_hex_bytes(cells[col["hwaddr"]].strip())
            cid = parse_hex_bytes(cells[col["client_id"]].strip()) or None
        except ValueError as e:
            out.append(Malformed(n, str(e), address))
            continue
        cltt = max(0, expire - valid)
        state = "deleted" if valid == 0 else _STATES[code]
        out.append(ForeignLease(address=addr, state=state, hw=hw, htype=1, client_id=cid, start=cltt,
                                end=NEVER if valid == _INFINITE else expire, cltt=cltt,
                                host_name=_unescape(cells[col["hostname"]]), line=n))
    return out
