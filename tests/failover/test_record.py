"""The persisted failover state record: both layouts read back, the current one round-trips."""

from __future__ import annotations

import struct

import pytest

from cnrd.failover import record
from cnrd.failover.record import StateRecord
from cnrd.failover.states import S, Role

T0 = 1_800_000_000


@pytest.mark.parametrize("rec", [
    StateRecord(S.NORMAL, T0, S.NORMAL, T0 - 5, 60, S.NORMAL, True, record.role_code(Role.MAIN)),
    StateRecord(S.STARTUP, T0, None, 0, 3600, S.RECOVER, False, record.role_code(Role.BACKUP)),
    StateRecord(S.RECOVER_WAIT, 0, S.PARTNER_DOWN, T0, 0, S.RECOVER, True, record.role_code(Role.BACKUP)),
])
def test_round_trip(rec: StateRecord) -> None:
    assert record.unpack(record.pack(rec)) == rec


def test_layout_is_the_stored_one() -> None:
    rec = StateRecord(S.NORMAL, T0, S.COMMUNICATIONS_INTERRUPTED, T0 - 5, 60, S.NORMAL, True, 2)
    assert record.pack(rec) == struct.pack("!BqBqIBBB", 2, T0, 3, T0 - 5, 60, 2, 1, 2)


def test_record_written_before_roles_belongs_to_either() -> None:
    old = struct.pack("!BqBqIBB", int(S.NORMAL), T0, int(S.NORMAL), T0, 60, int(S.NORMAL), 1)
    rec = record.unpack(old)
    assert rec.belongs_to(Role.MAIN) and rec.belongs_to(Role.BACKUP)
    assert (rec.state, rec.previous, rec.talked, rec.mclt) == (S.NORMAL, S.NORMAL, True, 60)


def test_record_of_the_other_role_does_not_belong() -> None:
    rec = record.unpack(record.pack(StateRecord(S.NORMAL, T0, None, 0, 60, S.NORMAL, True,
                                                record.role_code(Role.MAIN))))
    assert rec.belongs_to(Role.MAIN) and not rec.belongs_to(Role.BACKUP)
    assert record.key("examplepair") == "failover/examplepair/state"
