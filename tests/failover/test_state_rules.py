"""CNR 7.2's failover state rules around restarts, the operator and renames, over FailoverSession.

Each case follows the seed ("Configuring DHCP Failover"): the safe period
counts from the start of COMMUNICATIONS-INTERRUPTED, also across a restart
("Using the Failover Safe Period to Move Servers into PARTNER-DOWN State");
setPartnerDown cannot name a time earlier than that start (same section);
a renamed pair keeps its failover state unless this server's role changed
("Changing Failover Pair Server Addresses").  Pure: sessions on an explicit
``now``, joined by the in-memory link of test_peer.
"""

from __future__ import annotations

from cnrd.config import loads
from cnrd.failover import record
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import S, Role
from cnrd.leases.model import LeaseFlag, LeaseState
from cnrd.leases.table import LeaseTable
from cnrd.text import ip_to_int
from tests.failover.test_peer import CONFIG
from tests.failover.test_recovery import MCLT, normal_pair

SAFE = 600
POLL_TIMEOUT = 6  # failover-poll-timeout of test_peer's pair


def persisted(side) -> dict:
    """What the side's store holds now: every value its session asked to persist, in order."""
    side.persisted.update(side.session.take_persist())
    return {k: v for k, v in side.persisted.items() if v is not None}


def interrupted_pair(extra: str = ""):
    """A pair in NORMAL whose link then drops at ``link.now``: both in COMMUNICATIONS-INTERRUPTED."""
    main, backup, link = normal_pair(extra)
    link.advance(3)
    link.drop()
    assert backup.session.state is S.COMMUNICATIONS_INTERRUPTED
    return main, backup, link


# -- safe period across a restart ------------------------------------------------------

def test_restart_in_comm_interrupted_reaches_partner_down_safe_period_after_the_loss():
    main, backup, link = interrupted_pair(f"use-safe-period = true\nsafe-period = {SAFE}\n")
    lost = link.now
    link.advance(SAFE // 2)
    reborn = backup.restart(link.now)
    assert reborn.session.state is S.STARTUP
    assert reborn.session.interrupted_since == lost  # read back from the record's start time of state
    now = link.now
    # Partner not heard after the restart: back to COMMUNICATIONS-INTERRUPTED,
    # counting from the loss, not from the restart.
    while now < lost + SAFE - 1:
        now += 1
        reborn.session.tick(now)
        assert reborn.session.state in (S.STARTUP, S.COMMUNICATIONS_INTERRUPTED), now
    assert reborn.session.state is S.COMMUNICATIONS_INTERRUPTED
    reborn.session.tick(lost + SAFE)
    assert reborn.session.state is S.PARTNER_DOWN
    assert reborn.session.stos == lost + SAFE


def test_restart_in_comm_interrupted_without_use_safe_period_stays_interrupted():
    main, backup, link = interrupted_pair(f"use-safe-period = false\nsafe-period = {SAFE}\n")
    lost = link.now
    reborn = backup.restart(link.now + 10)
    for now in range(link.now + 11, lost + 3 * SAFE, 7):
        reborn.session.tick(now)
    assert reborn.session.state is S.COMMUNICATIONS_INTERRUPTED
    assert reborn.session.interrupted_since == lost


def test_restart_after_the_safe_period_ran_out_goes_partner_down_once_the_partner_is_not_heard():
    main, backup, link = interrupted_pair(f"use-safe-period = true\nsafe-period = {SAFE}\n")
    lost = link.now
    # Down for longer than the safe period before it had run out while up.
    reborn = backup.restart(lost + 2 * SAFE)
    reborn.session.tick(lost + 2 * SAFE + POLL_TIMEOUT - 1)
    assert reborn.session.state is S.STARTUP  # still listening for the partner
    reborn.session.tick(lost + 2 * SAFE + POLL_TIMEOUT)
    assert reborn.session.state is S.PARTNER_DOWN


def test_server_level_safe_period_applies_to_a_pair_without_its_own():
    # [server] carries both keys; the pair section sets neither.
    text = CONFIG.format(name="backup").replace("data-dir = /nonexistent",
                                                f"data-dir = /nonexistent\nuse-safe-period = true\n"
                                                f"safe-period = {SAFE}")
    pair = loads(text).failover_pairs["examplepair"]
    assert (pair.use_safe_period, pair.safe_period) == (True, SAFE)
    session = FailoverSession(pair, Role.BACKUP, LeaseTable(), ["lan"], now=0)
    session.tick(POLL_TIMEOUT)
    assert session.state is S.RECOVER  # never talked: no safe period to count
    stored = record.pack(record.StateRecord(S.COMMUNICATIONS_INTERRUPTED, 1000, S.NORMAL, 500, MCLT,
                                            S.NORMAL, True, record.role_code(Role.BACKUP)))
    session = FailoverSession(pair, Role.BACKUP, LeaseTable(), ["lan"], now=1100, stored_state=stored)
    session.tick(1100 + POLL_TIMEOUT)
    assert session.state is S.COMMUNICATIONS_INTERRUPTED
    session.tick(1000 + SAFE - 1)
    assert session.state is S.COMMUNICATIONS_INTERRUPTED
    session.tick(1000 + SAFE)
    assert session.state is S.PARTNER_DOWN


# -- setPartnerDown's earliest time ------------------------------------------------------

def test_partner_down_earlier_than_comm_interrupted_is_refused_with_the_reason():
    main, backup, link = interrupted_pair()
    lost = link.now
    link.advance(100)
    reason = backup.session.partner_down_refusal(lost - 1)
    assert reason is not None and "earlier than the start of COMMUNICATIONS-INTERRUPTED" in reason
    assert "\n" not in reason
    assert not backup.session.set_partner_down(link.now, since=lost - 1)
    assert backup.session.state is S.COMMUNICATIONS_INTERRUPTED
    # the start itself, and anything after it, is accepted
    assert backup.session.partner_down_refusal(lost) is None
    assert backup.session.set_partner_down(link.now, since=lost)
    assert (backup.session.state, backup.session.stos) == (S.PARTNER_DOWN, lost)


def test_partner_down_time_bound_survives_a_restart_in_comm_interrupted():
    main, backup, link = interrupted_pair()
    lost = link.now
    reborn = backup.restart(link.now + 50)
    # Still in STARTUP (the command is allowed there): the bound is the stored start.
    assert reborn.session.state is S.STARTUP
    assert reborn.session.partner_down_refusal(lost - 60) is not None
    assert reborn.session.set_partner_down(link.now + 50, since=lost + 10)
    assert (reborn.session.state, reborn.session.stos) == (S.PARTNER_DOWN, lost + 10)


def test_partner_down_refusals_still_cover_touch_and_state():
    main, backup, link = normal_pair()
    assert backup.session.partner_down_refusal(link.now) == "partner is in touch (state NORMAL)"
    link.drop()
    link.advance(1)
    assert backup.session.set_partner_down(link.now)
    assert backup.session.partner_down_refusal() == \
        "failover pair examplepair cannot go PARTNER-DOWN from PARTNER-DOWN"


# -- renamed pairs and role changes ----------------------------------------------------------

def renamed(config_text: str, new: str) -> str:
    return config_text.replace("[failover-pair examplepair]", f"[failover-pair {new}]")


def test_renamed_pair_with_the_same_roles_keeps_its_normal_history():
    main, backup, link = normal_pair()
    link.advance(3)
    store = persisted(backup)
    assert record.unpack(store[record.key("examplepair")]).state is S.NORMAL
    assert record.unpack_peers(store[record.peers_key("examplepair")]) == \
        (ip_to_int("10.1.0.1"), ip_to_int("10.1.0.2"))
    config = loads(renamed(CONFIG.format(name="backup"), "newname"))
    pair = config.failover_pairs["newname"]
    items = sorted(store.items())
    records = {"examplepair": store[record.key("examplepair")]}
    old = record.renamed_from("newname", main=pair.main, backup=pair.backup, role=Role.BACKUP,
                              configured=set(config.failover_pairs), stored=items)
    assert old == "examplepair"
    # The session built from the old name's record starts where the old one was.
    session = FailoverSession(pair, Role.BACKUP, LeaseTable(), ["lan"], now=link.now + 5,
                              stored_state=records[old], stored_queue=[ip_to_int("10.1.0.140")],
                              renamed_from_keys=[k for k, _ in items])
    assert (session.state, session.previous, session.talked) == (S.STARTUP, S.NORMAL, True)
    assert not session.discarded_queue
    out = session.take_persist()
    assert record.unpack(out[record.key("newname")]).previous is S.NORMAL
    assert list(session.updates.pending) == [ip_to_int("10.1.0.140")]  # the queue is not under a name
    assert out[record.peers_key("newname")] == store[record.peers_key("examplepair")]
    for k in store:
        assert out[k] is None  # every key of the old name goes in the same commit


def test_role_change_still_discards_the_state_and_the_queue():
    main, backup, link = normal_pair()
    link.advance(3)
    store = persisted(backup)
    # The same server is now the main of the pair (CNR: a role change discards the state).
    pair = loads(CONFIG.format(name="main")).failover_pairs["examplepair"]
    table = LeaseTable()
    flagged = ip_to_int("10.1.0.150")
    table.update(flagged, durable=False, state=LeaseState.LEASED, scope="lan", flags=LeaseFlag.UPDATE_PENDING)
    session = FailoverSession(pair, Role.MAIN, table, ["lan"], now=link.now + 5,
                              stored_state=store[record.key("examplepair")], stored_queue=[1, 2])
    assert session.discarded_queue
    assert (session.state, session.previous, session.talked) == (S.STARTUP, S.RECOVER, False)
    assert session.updates.pending == {}
    # The old relationship's pending flags are cleared, and written with the first commit.
    assert table.get(flagged).flags == LeaseFlag.NONE
    assert [lease.address for lease in table.take_dirty()[0]] == [flagged]
    # and a renamed pair whose role changed does not adopt the old name's state
    items = sorted(store.items())
    assert record.renamed_from("newname", main=pair.main, backup=pair.backup, role=Role.MAIN,
                               configured={"newname"}, stored=items) is None
