"""The failover state table against the draft/ISC rows and the captured sequences."""

import pytest

from cnrd.failover.states import (
    S, Role, Service, on_comm_fail, on_partner_down_command, on_partner_state,
    on_recover_wait_done, on_safe_period, on_upddone, service, startup,
)


def nxt(state, partner, **kw):
    t = on_partner_state(state, partner, **kw)
    return t.new if t else state


def test_startup_remembers_previous_or_recover():
    assert startup(None) == (S.STARTUP, S.RECOVER)
    assert startup(S.NORMAL) == (S.STARTUP, S.NORMAL)
    # STARTUP ends without the partner: the previous state's communication-failure result
    assert on_comm_fail(S.NORMAL).new is S.COMMUNICATIONS_INTERRUPTED
    assert on_comm_fail(S.PARTNER_DOWN) is None


def test_normal_and_communications_interrupted_round_trip():
    assert on_comm_fail(S.NORMAL).new is S.COMMUNICATIONS_INTERRUPTED
    # the restarted partner says NORMAL (STARTUP flag) -> both back to NORMAL
    assert nxt(S.COMMUNICATIONS_INTERRUPTED, S.NORMAL, partner_startup=True) is S.NORMAL
    assert nxt(S.COMMUNICATIONS_INTERRUPTED, S.COMMUNICATIONS_INTERRUPTED) is S.NORMAL
    assert nxt(S.NORMAL, S.COMMUNICATIONS_INTERRUPTED) is S.NORMAL
    assert on_comm_fail(S.COMMUNICATIONS_INTERRUPTED) is None


def test_amnesic_partner_and_recovery():
    # the survivor in COMM-INT sees RECOVER -> PARTNER-DOWN
    assert nxt(S.COMMUNICATIONS_INTERRUPTED, S.RECOVER, partner_startup=True) is S.PARTNER_DOWN
    # the recovering server, UPDDONE received within MCLT of its start -> RECOVER-WAIT
    assert on_upddone(S.RECOVER, Role.BACKUP, wait_needed=True, partner=S.PARTNER_DOWN).new is S.RECOVER_WAIT
    assert on_recover_wait_done(S.RECOVER_WAIT).new is S.RECOVER_DONE
    assert nxt(S.PARTNER_DOWN, S.RECOVER_DONE) is S.NORMAL
    assert nxt(S.RECOVER_DONE, S.NORMAL) is S.NORMAL


def test_fresh_pair_both_recover_then_recover_done():
    assert on_upddone(S.RECOVER, Role.MAIN, wait_needed=True, partner=S.RECOVER).new is S.RECOVER_DONE
    assert nxt(S.RECOVER_DONE, S.RECOVER_DONE) is S.NORMAL


def test_potential_conflict():
    assert nxt(S.PARTNER_DOWN, S.COMMUNICATIONS_INTERRUPTED) is S.POTENTIAL_CONFLICT
    assert nxt(S.COMMUNICATIONS_INTERRUPTED, S.PARTNER_DOWN) is S.POTENTIAL_CONFLICT
    assert on_upddone(S.POTENTIAL_CONFLICT, Role.MAIN, wait_needed=False, partner=S.POTENTIAL_CONFLICT).new is S.CONFLICT_DONE
    assert on_upddone(S.POTENTIAL_CONFLICT, Role.BACKUP, wait_needed=False, partner=S.POTENTIAL_CONFLICT) is None
    assert on_upddone(S.POTENTIAL_CONFLICT, Role.BACKUP, wait_needed=False, partner=S.CONFLICT_DONE).new is S.NORMAL
    assert nxt(S.CONFLICT_DONE, S.NORMAL) is S.NORMAL
    assert on_comm_fail(S.POTENTIAL_CONFLICT).new is S.RESOLUTION_INTERRUPTED
    assert nxt(S.RESOLUTION_INTERRUPTED, S.COMMUNICATIONS_INTERRUPTED) is S.POTENTIAL_CONFLICT


def test_partner_down_ignores_startup_flagged_state():
    assert nxt(S.PARTNER_DOWN, S.NORMAL, partner_startup=True) is S.PARTNER_DOWN
    assert nxt(S.PARTNER_DOWN, S.RECOVER) is S.PARTNER_DOWN


def test_operator_partner_down_refused_while_in_touch():
    assert on_partner_down_command(S.COMMUNICATIONS_INTERRUPTED, in_touch=True) is None
    assert on_partner_down_command(S.COMMUNICATIONS_INTERRUPTED, in_touch=False).new is S.PARTNER_DOWN
    assert on_partner_down_command(S.NORMAL, in_touch=False) is None
    assert on_safe_period(S.COMMUNICATIONS_INTERRUPTED).new is S.PARTNER_DOWN
    assert on_safe_period(S.NORMAL) is None


@pytest.mark.parametrize("state, svc", [
    (S.NORMAL, Service.BALANCED), (S.COMMUNICATIONS_INTERRUPTED, Service.OWN_POOL),
    (S.PARTNER_DOWN, Service.ALL), (S.RECOVER, Service.NONE), (S.RECOVER_WAIT, Service.NONE),
    (S.POTENTIAL_CONFLICT, Service.NONE), (S.STARTUP, Service.NONE), (S.RECOVER_DONE, Service.NONE),
])
def test_service_by_state(state, svc):
    assert service(state) is svc


def test_every_table_entry_targets_a_real_state():
    for state in S:
        for partner in S:
            t = on_partner_state(state, partner)
            assert t is None or t.new in S
