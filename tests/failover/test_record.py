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


# -- the pair's identity, and finding a renamed pair's state ------------------------------

MAIN, BACKUP = 0x0A010001, 0x0A010002  # 10.1.0.1, 10.1.0.2


def _rec(role: Role) -> bytes:
    return record.pack(StateRecord(S.NORMAL, T0, S.NORMAL, T0, 60, S.NORMAL, True, record.role_code(role)))


def _store(*pairs: tuple[str, int, int, Role]) -> list[tuple[str, bytes]]:
    items: list[tuple[str, bytes]] = []
    for name, main, backup, role in pairs:
        items.append((record.peers_key(name), record.pack_peers(main, backup)))
        items.append((record.key(name), _rec(role)))
    return sorted(items)


def _renamed(new: str, role: Role, configured: set[str], items, main: int = MAIN,
             backup: int = BACKUP) -> str | None:
    return record.renamed_from(new, main=main, backup=backup, role=role, configured=configured,
                               stored=items)


def test_peers_round_trip_and_junk() -> None:
    assert record.pack_peers(MAIN, BACKUP) == b"10.1.0.1,10.1.0.2"
    assert record.unpack_peers(b"10.1.0.1,10.1.0.2") == (MAIN, BACKUP)
    assert record.peers_key("p") == "failover/p/peers"
    for junk in (b"", b"10.1.0.1", b"10.1.0.1,10.1.0.2,10.1.0.3", b"a,b", b"\xff,\xfe"):
        assert record.unpack_peers(junk) is None


def test_renamed_pair_found_by_its_addresses_and_role() -> None:
    items = _store(("old", MAIN, BACKUP, Role.BACKUP), ("other", MAIN, 0x0A010003, Role.BACKUP))
    assert _renamed("new", Role.BACKUP, {"new", "x"}, items) == "old"
    # the role changed: the state is not the new pair's (CNR: discarded)
    assert _renamed("new", Role.MAIN, {"new", "x"}, items) is None


def test_old_name_still_configured_or_own_name_is_not_adopted() -> None:
    items = _store(("old", MAIN, BACKUP, Role.BACKUP))
    assert _renamed("new", Role.BACKUP, {"new", "old"}, items) is None
    assert _renamed("old", Role.BACKUP, {"old"}, items) is None


def test_two_candidates_cannot_be_told_apart() -> None:
    items = _store(("a", MAIN, BACKUP, Role.MAIN), ("b", MAIN, BACKUP, Role.MAIN))
    assert _renamed("new", Role.MAIN, {"new", "x"}, items) is None
    assert _renamed("new", Role.MAIN, {"new"}, items) is None


def test_single_pair_may_change_name_and_addresses_together() -> None:
    # CNR 7.2: with one failover pair, rename and change addresses at once.
    items = _store(("old", MAIN, BACKUP, Role.MAIN))
    assert _renamed("new", Role.MAIN, {"new"}, items, backup=0x0A010009) == "old"
    # with several pairs configured, either the name or the addresses, not both
    assert _renamed("new", Role.MAIN, {"new", "x"}, items, backup=0x0A010009) is None


def test_store_without_identity_keys_does_not_migrate() -> None:
    assert _renamed("new", Role.MAIN, {"new"}, [(record.key("old"), _rec(Role.MAIN))]) is None


def test_identity_without_a_state_record_or_with_junk_is_skipped() -> None:
    items = [(record.peers_key("old"), record.pack_peers(MAIN, BACKUP))]
    assert _renamed("new", Role.MAIN, {"new"}, items) is None
    assert _renamed("new", Role.MAIN, {"new"}, items + [(record.key("old"), b"junk")]) is None
