"""Received BNDUPDs against our record of the address: a table of the cases.

Each row is one combination named by draft-ietf-dhc-failover-12 figure
7.1.3-1 (receiver's binding x received binding status), its duelling-update
rule (§7.1.3, in ISC's order) or the conflicting-bindings rule of
docs/failover.md, with the outcome those texts give.  Where the draft and ISC
dhcpd 4.4 differ, the row follows ISC (the partner may be ISC) and says so.

Times: NOW; a lease "unexpired" ends at NOW + 100, an "expired" one at
NOW - 100; our CLTT is NOW - 50.  time1 = the update's CLTT must be later
than ours, time2 = our lease must have expired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from cnrd.failover import wire
from cnrd.failover.bindings import bndupd, decide, status_of
from cnrd.failover.states import Role
from cnrd.failover.wire import BindingStatus as B
from cnrd.failover.wire import RejectReason as R
from cnrd.leases.model import Lease, LeaseState as L

NOW = 1_800_000_000
ADDR = 0x0A010064
ME = b"\x01" + bytes.fromhex("020000000001")  # the client we know
OTHER = b"\x01" + bytes.fromhex("020000000002")
OUR_CLTT = NOW - 50
MAIN, BACKUP = Role.MAIN, Role.BACKUP


def ours(state: L | None, *, expired: bool = False, hw: bytes = ME, expiration: int | None = None) -> Lease | None:
    if state is None:
        return None
    if expiration is None:
        expiration = NOW - 100 if expired else NOW + 100
    if state is not L.LEASED:
        expiration = 0
    return Lease(ADDR, state=state, scope="lan", hw=hw if state is not L.AVAILABLE else b"", cltt=OUR_CLTT,
                 expiration=expiration, start=OUR_CLTT, partner_time=NOW + 10)


@dataclass
class Row:
    name: str
    local: Lease | None
    status: int | None
    role: Role = MAIN
    in_flight: int | None = None
    cltt: int | None = NOW  # the update's CLTT
    hw: bytes | None = ME
    expiration: int = NOW + 100
    address: int | None = ADDR
    reject: R | None = None
    withdraw: bool = False
    keep_ours: bool = False
    state: L | None = None  # the state written when accepted
    fields: dict[str, Any] = field(default_factory=dict)  # further fields expected when accepted


ROWS = [
    # -- what every update needs -------------------------------------------------------------
    Row("no address", None, B.ACTIVE, address=None, reject=R.MISSING_BINDING_INFO),
    Row("no binding status", None, None, reject=R.MISSING_BINDING_INFO),
    Row("ACTIVE without a client", None, B.ACTIVE, hw=None, reject=R.MISSING_BINDING_INFO),
    Row("EXPIRED without a client", ours(L.LEASED, expired=True), B.EXPIRED, hw=None,
        reject=R.MISSING_BINDING_INFO),
    Row("RELEASED without a client", ours(L.LEASED, expired=True), B.RELEASED, hw=None,
        reject=R.MISSING_BINDING_INFO),
    Row("FREE needs no client", None, B.FREE, hw=None, state=L.AVAILABLE, fields={"hw": b"", "client_id": None}),
    # -- figure 7.1.3-1, receiver ACTIVE (our lease LEASED) ------------------------------------
    Row("ACTIVE on ACTIVE, same client, same end", ours(L.LEASED), B.ACTIVE, state=L.LEASED,
        fields={"expiration": NOW + 100, "cltt": NOW}),
    Row("ACTIVE on ACTIVE, other client, main refuses (a)", ours(L.LEASED), B.ACTIVE, hw=OTHER,
        reject=R.FATAL_CONFLICT),
    Row("ACTIVE on ACTIVE, other client, backup accepts (a)", ours(L.LEASED), B.ACTIVE, role=BACKUP, hw=OTHER,
        state=L.LEASED, fields={"hw": OTHER}),
    Row("ACTIVE on expired ACTIVE, other client, main accepts", ours(L.LEASED, expired=True), B.ACTIVE, hw=OTHER,
        state=L.LEASED, fields={"hw": OTHER}),
    Row("ACTIVE on ACTIVE, same client, ours longer: kept and sent back", ours(L.LEASED, expiration=NOW + 500),
        B.ACTIVE, expiration=NOW + 100, state=L.LEASED, keep_ours=True,
        fields={"expiration": NOW + 500, "cltt": NOW}),
    Row("ACTIVE on ACTIVE, same client, theirs longer: taken", ours(L.LEASED), B.ACTIVE, expiration=NOW + 900,
        state=L.LEASED, fields={"expiration": NOW + 900}),
    Row("EXPIRED on unexpired ACTIVE (time2)", ours(L.LEASED), B.EXPIRED, reject=R.OUTDATED_BINDING_INFO),
    Row("EXPIRED on expired ACTIVE (time2)", ours(L.LEASED, expired=True), B.EXPIRED, state=L.AVAILABLE,
        fields={"expiration": 0, "cltt": NOW}),
    Row("FREE on unexpired ACTIVE (time2)", ours(L.LEASED), B.FREE, hw=None, reject=R.OUTDATED_BINDING_INFO),
    Row("FREE on unexpired ACTIVE, backup too (time2)", ours(L.LEASED), B.FREE, role=BACKUP, hw=None,
        reject=R.OUTDATED_BINDING_INFO),
    Row("FREE on expired ACTIVE (time2)", ours(L.LEASED, expired=True), B.FREE, hw=None, state=L.AVAILABLE),
    Row("BACKUP on unexpired ACTIVE (time2)", ours(L.LEASED), B.BACKUP, hw=None, reject=R.OUTDATED_BINDING_INFO),
    Row("BACKUP on expired ACTIVE (time2)", ours(L.LEASED, expired=True), B.BACKUP, hw=None, state=L.BACKUP),
    Row("RELEASED older than our CLTT, unexpired (time1)", ours(L.LEASED), B.RELEASED, cltt=OUR_CLTT - 1,
        reject=R.OUTDATED_BINDING_INFO),
    Row("RELEASED in the second of our CLTT is the client's own", ours(L.LEASED), B.RELEASED, cltt=OUR_CLTT,
        state=L.AVAILABLE),
    Row("RELEASED newer than our CLTT (time1)", ours(L.LEASED), B.RELEASED, cltt=OUR_CLTT + 1, state=L.AVAILABLE),
    Row("RELEASED older than our CLTT, lease expired", ours(L.LEASED, expired=True), B.RELEASED,
        cltt=OUR_CLTT - 1, state=L.AVAILABLE),
    Row("RESET on ACTIVE", ours(L.LEASED), B.RESET, state=L.AVAILABLE),
    Row("ABANDONED on ACTIVE", ours(L.LEASED), B.ABANDONED, hw=None, state=L.UNAVAILABLE),
    # -- receiver EXPIRED / RELEASED -----------------------------------------------------------
    Row("ACTIVE on EXPIRED, newer (time1)", ours(L.EXPIRED), B.ACTIVE, cltt=OUR_CLTT + 1, state=L.LEASED),
    Row("ACTIVE on EXPIRED, same CLTT (time1)", ours(L.EXPIRED), B.ACTIVE, cltt=OUR_CLTT,
        reject=R.OUTDATED_BINDING_INFO),
    Row("ACTIVE on EXPIRED, without CLTT (time1: not later)", ours(L.EXPIRED), B.ACTIVE, cltt=None,
        reject=R.OUTDATED_BINDING_INFO),
    Row("ACTIVE on RELEASED, newer (time1)", ours(L.RELEASED), B.ACTIVE, cltt=OUR_CLTT + 1, state=L.LEASED),
    Row("ACTIVE on RELEASED, older (time1)", ours(L.RELEASED), B.ACTIVE, cltt=OUR_CLTT - 1,
        reject=R.OUTDATED_BINDING_INFO),
    Row("RELEASED on EXPIRED", ours(L.EXPIRED), B.RELEASED, state=L.AVAILABLE),
    Row("FREE on EXPIRED", ours(L.EXPIRED), B.FREE, hw=None, state=L.AVAILABLE),
    Row("EXPIRED on RELEASED (ISC accepts; the draft's time1)", ours(L.RELEASED), B.EXPIRED, cltt=OUR_CLTT - 1,
        state=L.AVAILABLE),
    Row("BACKUP on RELEASED", ours(L.RELEASED), B.BACKUP, hw=None, state=L.BACKUP),
    # -- receiver FREE / BACKUP / no record: everything is accepted ------------------------------
    Row("ACTIVE on FREE", ours(L.AVAILABLE), B.ACTIVE, state=L.LEASED,
        fields={"hw": ME, "cltt": NOW, "expiration": NOW + 100, "partner_time": NOW + 150}),
    Row("ACTIVE on BACKUP", ours(L.BACKUP), B.ACTIVE, state=L.LEASED),
    Row("ACTIVE on no record", None, B.ACTIVE, state=L.LEASED, fields={"partner_time": NOW + 150}),
    Row("EXPIRED on FREE", ours(L.AVAILABLE), B.EXPIRED, state=L.AVAILABLE),
    Row("BACKUP on FREE", ours(L.AVAILABLE), B.BACKUP, hw=None, state=L.BACKUP),
    Row("FREE on BACKUP", ours(L.BACKUP), B.FREE, hw=None, state=L.AVAILABLE),
    # -- receiver RESET / ABANDONED (ISC accepts where the draft names time3 / reject 16) ----------
    Row("ACTIVE on RESET (ISC accepts)", ours(L.RESET), B.ACTIVE, state=L.LEASED),
    Row("ACTIVE on ABANDONED (ISC accepts)", ours(L.UNAVAILABLE), B.ACTIVE, state=L.LEASED),
    # -- duelling updates: ours for the address is unacknowledged ------------------------------
    Row("duel ACTIVE/ACTIVE, our CLTT newer", ours(L.LEASED, hw=OTHER), B.ACTIVE, in_flight=B.ACTIVE,
        cltt=OUR_CLTT - 1, reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel ACTIVE/ACTIVE, equal CLTT, main wins", ours(L.LEASED, hw=OTHER), B.ACTIVE, in_flight=B.ACTIVE,
        cltt=OUR_CLTT, reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel ACTIVE/ACTIVE, equal CLTT, backup yields", ours(L.LEASED, hw=OTHER), B.ACTIVE, role=BACKUP,
        in_flight=B.ACTIVE, cltt=OUR_CLTT, withdraw=True, state=L.LEASED),
    Row("duel ACTIVE/ACTIVE, their CLTT newer, backup takes it", ours(L.LEASED, hw=OTHER), B.ACTIVE, role=BACKUP,
        in_flight=B.ACTIVE, withdraw=True, state=L.LEASED, fields={"hw": ME}),
    Row("duel ACTIVE/ACTIVE, their CLTT newer, main: ours withdrawn, other client refused",
        ours(L.LEASED, hw=OTHER), B.ACTIVE, in_flight=B.ACTIVE, withdraw=True, reject=R.FATAL_CONFLICT),
    Row("duel, same client, ours ends later: ours wins despite an older CLTT",
        ours(L.LEASED, expiration=NOW + 500), B.ACTIVE, role=BACKUP, in_flight=B.ACTIVE, cltt=NOW,
        expiration=NOW + 100, reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel, same client, theirs ends later: theirs wins though we are main with a newer CLTT",
        ours(L.LEASED), B.ACTIVE, in_flight=B.ACTIVE, cltt=OUR_CLTT - 10, expiration=NOW + 900, withdraw=True,
        state=L.LEASED, fields={"expiration": NOW + 900}),
    Row("duel, same client, same end: the CLTT rule", ours(L.LEASED), B.ACTIVE, in_flight=B.ACTIVE,
        cltt=OUR_CLTT - 1, reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel, neither ACTIVE, main wins", ours(L.AVAILABLE), B.FREE, in_flight=B.FREE, hw=None,
        reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel, neither ACTIVE, backup yields", ours(L.AVAILABLE), B.FREE, role=BACKUP, in_flight=B.FREE, hw=None,
        withdraw=True, state=L.AVAILABLE),
    Row("duel, theirs ACTIVE, ours not: theirs wins", ours(L.RELEASED), B.ACTIVE, in_flight=B.RELEASED,
        withdraw=True, state=L.LEASED),
    Row("duel, ours ACTIVE, theirs RELEASED: ours wins", ours(L.LEASED), B.RELEASED, role=BACKUP,
        in_flight=B.ACTIVE, reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel, ours ACTIVE, theirs FREE: ours wins", ours(L.LEASED, expired=True), B.FREE, role=BACKUP,
        in_flight=B.ACTIVE, hw=None, reject=R.LESS_CRITICAL_BINDING_INFO),
    Row("duel, ours ACTIVE, theirs EXPIRED, our lease expired: theirs wins", ours(L.LEASED, expired=True),
        B.EXPIRED, in_flight=B.ACTIVE, withdraw=True, state=L.AVAILABLE),
    Row("duel, ours ACTIVE, theirs EXPIRED, our lease unexpired: withdrawn, then time2 refuses",
        ours(L.LEASED), B.EXPIRED, in_flight=B.ACTIVE, withdraw=True, reject=R.OUTDATED_BINDING_INFO),
]


def _update(row: Row) -> wire.Message:
    kw: dict[str, Any] = dict(lease_expiration=row.expiration, potential_expiration=row.expiration + 50,
                              start_time_of_state=NOW, client_hw=row.hw, cltt=row.cltt)
    msg = wire.bndupd(7, NOW, assigned_address=ADDR, binding_status=int(row.status or B.FREE), **kw)
    # drop what the row leaves out (the constructor insists on address and status)
    drop = set()
    if row.address is None:
        drop.add(wire.Option.ASSIGNED_IP_ADDRESS)
    if row.status is None:
        drop.add(wire.Option.BINDING_STATUS)
    msg.options = [(c, v) for c, v in msg.options if c not in drop]
    return msg


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_received_binding(row: Row) -> None:
    d = decide(row.local, _update(row), row.in_flight, row.role, NOW)
    assert (d.reject[0] if d.reject else None) == row.reject
    assert d.withdraw == row.withdraw
    assert d.keep_ours == row.keep_ours
    if row.reject is None:
        assert d.fields["state"] is row.state
        for name, value in row.fields.items():
            assert d.fields[name] == value, name
    else:
        assert d.fields == {}


def test_every_accepted_active_carries_the_partners_potential_expiration() -> None:
    local = ours(L.LEASED)
    row = Row("", local, B.ACTIVE, expiration=NOW + 900)
    d = decide(local, _update(row), None, MAIN, NOW)
    # the later of the one it sent and the one we held
    assert d.fields["partner_time"] == NOW + 950


@pytest.mark.parametrize("state, status", [
    (None, B.FREE), (L.AVAILABLE, B.FREE), (L.LEASED, B.ACTIVE), (L.EXPIRED, B.EXPIRED),
    (L.RELEASED, B.RELEASED), (L.UNAVAILABLE, B.ABANDONED), (L.RESET, B.RESET), (L.BACKUP, B.BACKUP),
    (L.OFFERED, B.FREE),
])
def test_lease_state_to_binding_status(state: L | None, status: B) -> None:
    lease = None if state is None else Lease(ADDR, state=state)
    assert status_of(lease) == status


def test_bndupd_of_an_abandoned_address_names_no_client() -> None:
    lease = Lease(ADDR, state=L.UNAVAILABLE, hw=ME, client_id=b"x")
    msg, status, pet = bndupd(ADDR, lease, 5, NOW)
    assert status == B.ABANDONED and pet == 0
    assert msg.client_hw is None and msg.client_id is None and msg.xid == 5


def test_bndupd_of_an_active_lease_tells_its_potential_expiration() -> None:
    lease = Lease(ADDR, state=L.LEASED, hw=ME, expiration=NOW + 60, potential_expiration=NOW + 3660, cltt=NOW)
    msg, status, pet = bndupd(ADDR, lease, 5, NOW)
    assert (status, pet) == (B.ACTIVE, NOW + 3660)
    assert msg.potential_expiration == NOW + 3660 and msg.lease_expiration == NOW + 60 and msg.cltt == NOW


def test_bndupd_ip_flags_follow_the_lease_flags():
    # [D] §12.12: IP-flags carries RESERVED and BOOTP; ISC sends the option only when non-zero.
    from cnrd.failover import bindings as b
    from cnrd.leases.model import Lease, LeaseFlag, LeaseState
    lease = Lease(0x0A000001, LeaseState.LEASED, hw=b"\x01\x02\x03\x04\x05\x06\x07", expiration=100, start=1)
    msg, _, _ = b.bndupd(lease.address, lease, 1, 1)
    assert msg.ip_flags is None
    lease.flags = LeaseFlag.RESERVED | LeaseFlag.BOOTP
    msg, _, _ = b.bndupd(lease.address, lease, 1, 1)
    assert msg.ip_flags == wire.IPFlags.RESERVED | wire.IPFlags.BOOTP
    lease.flags = LeaseFlag.BOOTP
    assert b.bndupd(lease.address, lease, 1, 1)[0].ip_flags == wire.IPFlags.BOOTP
