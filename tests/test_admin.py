"""The operations facade (cnrd.admin.Admin) over a real Runtime and real failover peers, no HTTP."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import struct

import pytest
from twisted.application import service

from cnrd.admin.commands import Admin, AdminError
from cnrd.app.build import add_failover
from cnrd.app.runtime import Runtime
from cnrd.config import load
from cnrd.dhcp.packet import ip_to_int
from cnrd.failover.states import S
from cnrd.leases.model import LeaseState
from cnrd.config.timespec import format_iso
from tests.adminkit import STANDALONE, T0, Server, pair
from tests.dhcp.helpers import IFACE
from tests.test_service import FakePort, run_now

UTC = datetime.timezone.utc


def refused(status, fn, *args):
    with pytest.raises(AdminError) as e:
        fn(*args)
    assert e.value.status == status, e.value.reason
    assert "\n" not in e.value.reason
    return e.value.reason


def result(d):
    """The value of an already-fired Deferred (commits run at once in these tests)."""
    out = []
    d.addBoth(out.append)
    assert out, "deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


@pytest.fixture
def server(tmp_path):
    return Server(tmp_path, STANDALONE)


@pytest.fixture
def admin(server):
    return Admin(server.dhcp, local_tz=UTC)


# -- status, start/stop, ready ----------------------------------------------------

def test_status_counts_what_the_server_did(server, admin):
    server.lease(1)
    st = admin.status()
    assert st["server"] == "test" and st["dhcp-enabled"] is True and st["leases"] == 1
    assert st["counters"]["received"] == {"DISCOVER": 1, "REQUEST": 1}
    assert st["counters"]["sent"] == {"OFFER": 1, "ACK": 1}
    assert st["commits"] >= 1


def test_stop_and_start_flip_answering_only(server, admin):
    assert admin.set_enabled(False) == {"dhcp-enabled": False}
    assert server.discover(1) is None
    assert server.dhcp.server.counters.drops["dhcp-disabled"] == 1
    assert admin.ready() == {"ready": False, "reason": "DHCP is disabled (dhcp start enables it)"}
    assert admin.set_enabled(True) == {"dhcp-enabled": True}
    assert server.discover(1) is not None
    assert admin.ready() == {"ready": True}


@pytest.mark.parametrize("state, ready", [
    (S.STARTUP, False), (S.RECOVER, False), (S.RECOVER_WAIT, False), (S.POTENTIAL_CONFLICT, False),
    (S.NORMAL, True), (S.COMMUNICATIONS_INTERRUPTED, True), (S.PARTNER_DOWN, True), (S.RECOVER_DONE, True),
])
def test_ready_follows_failover_state(tmp_path, state, ready):
    main, backup, wire = pair(tmp_path)
    admin = Admin(backup.dhcp)
    assert admin.ready() == {"ready": True, "pairs": {"examplepair": True}}  # a backup in NORMAL is ready
    backup.dhcp.sessions[0]._state = state  # forced: every state, however it is reached
    got = admin.ready()
    assert got["ready"] is ready and got["pairs"] == {"examplepair": ready}
    if not ready:
        assert got["reason"] == f"failover pair examplepair is in {backup.dhcp.sessions[0].status().label}"


# -- related servers and partner-down ------------------------------------------------

# A pair without main-api/backup-api: its configuration is not compared with the partner's.
NOT_CONFIGURED = {"status": "not-configured", "objects": [], "checked": None, "failed-since": None,
                  "reason": "main-api and backup-api are not set"}

def test_related_servers_normal_then_interrupted(tmp_path):
    main, backup, wire = pair(tmp_path)
    rs = Admin(main.dhcp).related_servers()["related-servers"]
    assert rs == [{
        "pair": "examplepair", "role": "main", "our-address": "10.1.0.1", "partner-address": "10.1.0.2",
        "state": "NORMAL", "partner-state": "NORMAL", "communication": "OK", "comm-interrupted-since": None,
        "last-contact": format_iso(T0), "state-since": format_iso(T0), "mclt": 60, "unacked-updates": 0,
        "clock-skew-seconds": 0, "config": NOT_CONFIGURED,
    }]
    wire.advance(5)
    wire.close()
    rs = Admin(backup.dhcp).related_servers()["related-servers"][0]
    assert rs["role"] == "backup" and rs["our-address"] == "10.1.0.2" and rs["partner-address"] == "10.1.0.1"
    assert rs["state"] == "COMMUNICATIONS-INTERRUPTED" and rs["communication"] == "INTERRUPTED"
    assert rs["comm-interrupted-since"] == format_iso(T0 + 5) and rs["last-contact"] is not None


def test_partner_down_refused_while_in_touch(tmp_path):
    main, backup, wire = pair(tmp_path)
    reason = refused(409, Admin(main.dhcp).partner_down, {"partner": "examplepair"})
    assert reason == "partner is in touch (state NORMAL)"
    assert main.dhcp.sessions[0].state is S.NORMAL


def _stored_state(server):
    raw = server.store.get_state("failover/examplepair/state")
    return S(raw[0]), struct.unpack("!q", raw[1:9])[0]


def test_partner_down_defaults_to_start_of_interruption_and_is_durable(tmp_path):
    main, backup, wire = pair(tmp_path)
    wire.advance(3)
    wire.close()
    wire.advance(100)
    admin = Admin(main.dhcp)
    out = result(admin.partner_down({"partner": "examplepair"}))
    assert out == {"pair": "examplepair", "state": "PARTNER-DOWN", "partner-down-since": format_iso(T0 + 3)}
    assert _stored_state(main) == (S.PARTNER_DOWN, T0 + 3)
    # again: nothing to do, the time stays
    assert result(admin.partner_down({"partner": "10.1.0.2", "time": "-1m"}))["partner-down-since"] == \
        format_iso(T0 + 3)


@pytest.mark.parametrize("text, since", [
    ("-1m", T0 + 3600 + 10 - 60),
    ("-1h", T0 + 10),
    ("Jan 15 09:00 2027", T0 + 3600),
    ("2027-01-15T08:30:00Z", T0 + 1800),
])
def test_partner_down_with_a_time_by_partner_address(tmp_path, text, since):
    main, backup, wire = pair(tmp_path)
    wire.close()
    backup.clock.advance(3600 + 10)
    out = result(Admin(backup.dhcp, local_tz=UTC).partner_down({"partner": "10.1.0.1", "time": text}))
    assert out["partner-down-since"] == format_iso(since)
    assert backup.dhcp.sessions[0].state is S.PARTNER_DOWN
    assert _stored_state(backup) == (S.PARTNER_DOWN, since)


@pytest.mark.parametrize("body, status", [
    ({"partner": "nosuch"}, 404),
    ({"partner": "10.9.9.9"}, 404),
    ({}, 400),
    ({"partner": 3}, 400),
    ({"partner": "examplepair", "time": "soon"}, 400),
    ({"partner": "examplepair", "time": "2099-01-01T00:00:00Z"}, 400),
    ({"partner": "examplepair", "time": 5}, 400),
    ({"partner": "examplepair", "when": "-3d"}, 400),
    (["examplepair"], 400),
])
def test_partner_down_bad_requests(tmp_path, body, status):
    main, backup, wire = pair(tmp_path)
    wire.close()
    refused(status, Admin(main.dhcp).partner_down, body)
    assert main.dhcp.sessions[0].state is S.COMMUNICATIONS_INTERRUPTED


@pytest.mark.parametrize("text", ["-3d", "-1h1s", "2027-01-15T07:59:59Z", "Jan 14 08:00 2027"])
def test_partner_down_earlier_than_comm_interrupted_is_refused(tmp_path, text):
    # CNR 7.2: the partner-down date cannot be earlier than start-of-communications-interrupted.
    main, backup, wire = pair(tmp_path)
    wire.close()  # at T0 = 2027-01-15T08:00:00Z
    backup.clock.advance(3600)
    reason = refused(409, Admin(backup.dhcp, local_tz=UTC).partner_down, {"partner": "10.1.0.1", "time": text})
    assert "earlier than the start of COMMUNICATIONS-INTERRUPTED" in reason and format_iso(T0) in reason
    assert backup.dhcp.sessions[0].state is S.COMMUNICATIONS_INTERRUPTED
    assert _stored_state(backup)[0] is not S.PARTNER_DOWN


def test_partner_down_after_a_restart_in_comm_interrupted_defaults_to_the_stored_start(tmp_path):
    main, backup, wire = pair(tmp_path)
    wire.advance(3)
    wire.close()
    wire.advance(2)  # commits the COMMUNICATIONS-INTERRUPTED record
    lost = T0 + 3
    assert _stored_state(backup) == (S.COMMUNICATIONS_INTERRUPTED, lost)
    backup.clock.advance(500)
    # The same server started again on its store (the process restarted).
    reborn = Runtime(load(str(backup.path)), backup.clock, store=backup.store, port_factory=FakePort,
                     interfaces=lambda c: [IFACE], commit_runner=run_now)
    add_failover(service.MultiService(), reborn, reborn.config, backup.clock, {"10.1.0.2"})
    reborn.startService()
    assert reborn.sessions[0].state is S.STARTUP
    admin = Admin(reborn, local_tz=UTC)
    refused(409, admin.partner_down, {"partner": "examplepair", "time": format_iso(lost - 1)})
    out = result(admin.partner_down({"partner": "examplepair"}))
    assert out["partner-down-since"] == format_iso(lost)
    assert _stored_state(backup) == (S.PARTNER_DOWN, lost)


def test_partner_down_on_a_standalone_server_is_404(admin):
    refused(404, admin.partner_down, {"partner": "10.1.0.2"})


# -- attributes ----------------------------------------------------------------------

def test_attributes_and_patch(server, admin):
    assert admin.attributes() == {"start-on-reboot": True, "failover-recover": None, "log-settings": [],
                                  "max-dhcp-requests": 500, "safe-period": 86400}
    out = admin.patch_attributes({"start-on-reboot": False, "log-settings": ["failover-detail", "default"],
                                  "max-dhcp-requests": 200, "safe-period": "2h",
                                  "failover-recover": "2027-01-14T00:00:00Z"})
    assert out == {"start-on-reboot": False, "failover-recover": "2027-01-14T00:00:00Z",
                   "log-settings": ["default", "failover-detail"], "max-dhcp-requests": 200, "safe-period": 7200}
    assert server.dhcp.config.server.start_on_reboot is False
    assert server.dhcp.server.enabled  # start-on-reboot is for the next start, not a stop
    assert server.port.max_batch == 200
    assert admin.unsaved[("server", "start-on-reboot")] == "false"
    assert admin.unsaved[("server", "log-settings")] == "default, failover-detail"
    assert admin.unsaved[("server", "failover-recover")] == "2027-01-14T00:00:00Z"


@pytest.mark.parametrize("value, expected", [
    ("-1h", format_iso(T0 - 3600)), (0, None), ("0", None), (None, None), (T0, format_iso(T0)),
    ("Jan 15 08:00 2027", format_iso(T0)),
])
def test_failover_recover_values(admin, value, expected):
    assert admin.patch_attributes({"failover-recover": value})["failover-recover"] == expected


@pytest.mark.parametrize("body", [
    {"nosuch": 1}, {"start-on-reboot": "maybe"}, {"start-on-reboot": 1}, {"max-dhcp-requests": 0},
    {"max-dhcp-requests": True}, {"max-dhcp-requests": 1.5}, {"log-settings": ["loud"]}, {"log-settings": 3},
    {"safe-period": -1}, {"failover-recover": "whenever"}, {"failover-recover": True}, {"failover-recover": 0.0},
    {"failover-recover": -5}, {"failover-recover": "2200-01-01T00:00:00Z"}, {"log-settings": [""]},
    {"log-settings": ["Default"]}, [], "x",
])
def test_bad_attributes_change_nothing(server, admin, body):
    before = server.dhcp.config
    refused(400, admin.patch_attributes, body)
    assert server.dhcp.config is before and not admin.unsaved


def test_unsetting_failover_recover_stops_its_warning(tmp_path):
    main, backup, wire = pair(tmp_path)
    peer = main.dhcp.sessions[0]
    peer.failover_recover = T0 - 100
    config = main.dhcp.config
    main.dhcp.reconfigure(dataclasses.replace(config, server=dataclasses.replace(config.server,
                                                                                 failover_recover=T0 - 100)))
    Admin(main.dhcp).patch_attributes({"failover-recover": 0})
    assert peer.failover_recover is None


def test_log_settings_reach_the_failover_detail_switch(tmp_path):
    main, backup, wire = pair(tmp_path)
    Admin(main.dhcp).patch_attributes({"log-settings": "failover-detail"})
    assert main.links[0].detail_on()
    Admin(main.dhcp).patch_attributes({"log-settings": []})
    assert not main.links[0].detail_on()


# -- failover pairs ------------------------------------------------------------------

def test_pair_object(tmp_path):
    main, backup, wire = pair(tmp_path)
    admin = Admin(main.dhcp)
    p = admin.pair("examplepair")
    assert p == {"name": "examplepair", "main": "10.1.0.1", "backup": "10.1.0.2", "failover": True, "mclt": 60,
                 "backup-pct": 10.0, "dynamic-bootp-backup-pct": None, "load-balancing": False,
                 "split": 128, "hba": None, "load-balance-max-seconds": 3,
                 "failover-poll-interval": 2, "failover-poll-timeout": 6, "use-safe-period": False,
                 "safe-period": 86400, "scopes": ["lan"], "max-unacked-updates": 100, "pending": {},
                 "state": "NORMAL", "config": NOT_CONFIGURED}
    assert admin.pairs() == {"failover-pairs": [p]}
    refused(404, admin.pair, "nosuch")


def test_patch_pair_applies_to_the_running_peer(tmp_path):
    main, backup, wire = pair(tmp_path)
    admin = Admin(main.dhcp)
    before = admin.scopes()["scopes"][0]["available-backup"]
    out = admin.patch_pair("examplepair", {"backup-pct": 20, "use-safe-period": True, "safe-period": "1h",
                                            "failover-poll-interval": 3, "dynamic-bootp-backup-pct": "5%"})
    assert out["backup-pct"] == 20.0 and out["use-safe-period"] is True and out["safe-period"] == 3600
    assert out["restart-required"] == [] and out["dynamic-bootp-backup-pct"] == 5.0
    peer = main.dhcp.sessions[0]
    assert peer.pair.backup_pct == 20.0 and peer.pair.use_safe_period and peer.pair.safe_period == 3600
    assert peer.status().in_touch  # nothing negotiated changed: the link stays
    wire.settle()
    # the main topped the backup's share up at once, and told the backup
    assert admin.scopes()["scopes"][0]["available-backup"] > before
    assert Admin(backup.dhcp).scopes()["scopes"][0]["available-backup"] == \
        admin.scopes()["scopes"][0]["available-backup"]
    assert admin.unsaved[("failover-pair examplepair", "backup-pct")] == "20"
    assert admin.unsaved[("failover-pair examplepair", "safe-period")] == "3600"


def test_patch_pair_mclt_renegotiates_the_link(tmp_path):
    main, backup, wire = pair(tmp_path)
    Admin(main.dhcp).patch_pair("examplepair", {"mclt": 120})
    assert main.dhcp.sessions[0].mclt == 120
    # the link was dropped; the backup (still at mclt 60) refuses the main's new CONNECT
    assert main.dhcp.sessions[0].state is S.COMMUNICATIONS_INTERRUPTED
    Admin(backup.dhcp).patch_pair("examplepair", {"mclt": 120})
    wire.connect()
    assert main.dhcp.sessions[0].state is S.NORMAL and backup.dhcp.sessions[0].state is S.NORMAL
    assert backup.dhcp.sessions[0].mclt == 120


def test_patch_pair_role_change_is_pending(tmp_path):
    main, backup, wire = pair(tmp_path)
    admin = Admin(main.dhcp)
    out = admin.patch_pair("examplepair", {"main": "10.1.0.2", "backup": "10.1.0.1"})
    assert out["restart-required"] == ["main", "backup"]
    assert out["main"] == "10.1.0.1"  # running values until the restart
    assert admin.pair("examplepair")["pending"] == {"main": "10.1.0.2", "backup": "10.1.0.1"}
    assert main.dhcp.sessions[0].role.value == "main"
    assert admin.unsaved[("failover-pair examplepair", "main")] == "10.1.0.2"
    # setting it back clears it
    out = admin.patch_pair("examplepair", {"main": "10.1.0.1", "backup": "10.1.0.2"})
    assert out["restart-required"] == [] and out["pending"] == {}
    assert admin.patch_pair("examplepair", {"failover": False})["restart-required"] == ["failover"]


@pytest.mark.parametrize("body", [
    {"failover-poll-timeout": 2}, {"failover-poll-interval": 6}, {"mclt": 10}, {"backup-pct": 101},
    {"backup-pct": "x"}, {"max-unacked-updates": 0}, {"scopes": ["lan"]}, {"name": "x"}, {"main": "10.1.0.2"},
    {"main": "300.1.1.1"}, {"main": 5}, {"load-balancing": "perhaps"}, {"bogus": 1}, [1],
])
def test_patch_pair_bad_values(tmp_path, body):
    main, backup, wire = pair(tmp_path)
    admin = Admin(main.dhcp)
    before = main.dhcp.config
    refused(400, admin.patch_pair, "examplepair", body)
    assert main.dhcp.config is before and not admin.pending and not admin.unsaved


def test_patch_unknown_pair(admin):
    refused(404, admin.patch_pair, "nosuch", {"mclt": 60})


# -- reload --------------------------------------------------------------------------

def test_reload_bad_config_is_400_and_changes_nothing(server, admin):
    before = server.dhcp.config
    server.write(server.text().replace("lease-time = 3600", "lease-time = soon"))
    reason = refused(400, admin.reload, None)
    assert "[policy default] lease-time" in reason and str(server.path) in reason
    assert server.dhcp.config is before


def test_reload_missing_file_is_400(server, admin):
    server.path.unlink()
    assert "cannot read file" in refused(400, admin.reload, {})


def test_reload_adds_a_scope_that_serves_at_once(server, admin):
    assert server.discover(1, giaddr="10.2.0.1") is None
    server.write(server.text() + "\n[scope second]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.19\n")
    out = admin.reload(None)
    assert out["applied"] == ["[scope second] added"] and out["restart-required"] == [] and out["warnings"] == []
    offer = server.discover(1, giaddr="10.2.0.1")
    assert offer is not None and ip_to_int("10.2.0.10") <= offer.yiaddr <= ip_to_int("10.2.0.19")
    assert [s["name"] for s in admin.scopes()["scopes"]] == ["lan", "second"]


def test_reload_changed_ranges_keep_leased_addresses_taken(server, admin):
    leased = {server.lease(n) for n in range(3)}
    server.write(server.text().replace("ranges = 10.1.0.100-10.1.0.149", "ranges = 10.1.0.100-10.1.0.104"))
    out = admin.reload(None)
    assert out["applied"] == ["[scope lan] ranges"]
    pool = server.dhcp.table.pools["lan"]
    assert pool.size == 5 and pool.free_count() == 2
    got = {server.lease(n) for n in range(10, 12)}
    assert not got & leased
    assert server.discover(20) is None  # the smaller pool is full
    assert admin.scopes()["scopes"][0] == {
        "name": "lan", "subnet": "10.1.0.0/24", "total": 5, "leased": 5, "available": 0, "available-main": 0,
        "available-backup": 0, "utilization-percent": 100.0}


def test_reload_shrunk_range_warns_about_leases_left_outside(server, admin):
    server.lease(1)
    server.write(server.text().replace("ranges = 10.1.0.100-10.1.0.149", "ranges = 10.1.0.120-10.1.0.149"))
    out = admin.reload(None)
    assert out["warnings"] == ["[scope lan] 1 leased addresses are outside the new ranges: "
                               "they keep renewing until released or expired"]


def test_reload_removing_a_scope_with_leases_needs_force(server, admin):
    server.write(server.text() + "\n[scope second]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.19\n")
    admin.reload(None)
    server.lease(1, giaddr="10.2.0.1")
    text = server.text().split("[scope second]")[0]
    server.write(text)
    before = server.dhcp.config
    assert refused(409, admin.reload, None) == \
        "scope second holds 1 leased addresses; reload with force to remove it anyway"
    assert server.dhcp.config is before
    refused(400, admin.reload, {"force": "please"})
    out = admin.reload({"force": True})
    assert out["applied"] == ["[scope second] removed"]
    assert out["warnings"] == ["[scope second] removed with 1 leased addresses: those clients cannot renew "
                               "and get new addresses"]
    assert "second" not in server.dhcp.server.scopes and "second" not in server.dhcp.table.pools


def test_reload_removing_an_empty_scope_needs_no_force(server, admin):
    server.write(server.text() + "\n[scope second]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.19\n")
    admin.reload(None)
    server.write(server.text().split("[scope second]")[0])
    assert admin.reload(None)["applied"] == ["[scope second] removed"]


def test_reload_removed_reservation_frees_its_address(server, admin):
    server.write(server.text() + "\n[reservation 10.1.0.100]\nhardware-address = 02:00:00:00:09:99\n")
    admin.reload(None)
    pool = server.dhcp.table.pools["lan"]
    assert pool.free_count() == 49
    assert server.lease(1) != ip_to_int("10.1.0.100")
    server.write(server.text().split("\n[reservation 10.1.0.100]")[0] + "\n")
    out = admin.reload(None)
    assert out["applied"] == ["[reservation 10.1.0.100] removed"]
    assert ip_to_int("10.1.0.100") not in server.dhcp.table.reserved
    assert pool.free_count() == 49  # 50 - one leased; the unreserved address is free again


def test_reload_server_settings_live_and_restart_required(server, admin):
    text = server.text()
    text = text.replace("max-dhcp-requests = 500", "max-dhcp-requests = 50\nlog-settings = incoming-packet-detail\n"
                        "start-on-reboot = false\nserver-port = 6767\nstats-interval = 5")
    text = text.replace(f"data-dir = {server.dir}", f"data-dir = {server.dir}/elsewhere")
    text = text.replace("interfaces = eth1", "interfaces = eth1, eth2")
    text = text.replace("listen = 127.0.0.1:0", "listen = 127.0.0.1:9999")
    server.write(text)
    out = admin.reload(None)
    assert sorted(out["applied"]) == ["[server] log-settings", "[server] max-dhcp-requests",
                                      "[server] start-on-reboot", "[server] stats-interval"]
    assert sorted(out["restart-required"]) == ["[api] listen", "[server] data-dir", "[server] interfaces",
                                               "[server] server-port"]
    s = server.dhcp.config.server
    assert s.max_dhcp_requests == 50 and s.log_settings == {"incoming-packet-detail"} and not s.start_on_reboot
    assert s.data_dir == str(server.dir) and s.server_port == 67 and s.interfaces == ("eth1",)
    assert server.dhcp.config.api.listen_port == 0
    assert server.port.max_batch == 50 and server.dhcp._stats.interval == 5
    # reported again on the next reload: still not applied
    assert sorted(admin.reload(None)["restart-required"]) == sorted(out["restart-required"])


def test_reload_policy_change_is_used_for_the_next_client(server, admin):
    server.write(server.text().replace("lease-time = 3600", "lease-time = 600"))
    assert admin.reload(None)["applied"] == ["[policy default] lease-time"]
    offer = server.discover(5)
    assert struct.unpack("!I", offer.options[51])[0] == 600


def test_reload_clients_and_classes(server, admin):
    server.write(server.text() + "\n[client-class blocked]\naction = exclude\n\n"
                 "[client 02:00:00:00:00:07]\nclient-class = blocked\n")
    out = admin.reload(None)
    assert sorted(out["applied"]) == ["[client 02:00:00:00:00:07] added", "[client-class blocked] added"]
    assert server.discover(7) is None
    assert server.dhcp.server.counters.drops["client-class-excluded"] == 1


def test_reload_pair_attributes_onto_running_peers(tmp_path):
    main, backup, wire = pair(tmp_path)
    text = main.text().replace("backup-pct = 10", "backup-pct = 30\nuse-safe-period = true\nsafe-period = 1h\n"
                               "max-unacked-updates = 50\nload-balancing = true")
    text = text.replace("failover-poll-interval = 2", "failover-poll-interval = 3")
    text = text.replace("failover-poll-timeout = 6", "failover-poll-timeout = 9")
    main.write(text)
    out = Admin(main.dhcp).reload(None)
    assert sorted(out["applied"]) == sorted(f"[failover-pair examplepair] {k}" for k in (
        "backup-pct", "load-balancing", "failover-poll-interval", "failover-poll-timeout", "use-safe-period",
        "safe-period", "max-unacked-updates"))
    assert out["restart-required"] == []
    assert out["warnings"] == ["[failover-pair examplepair] load-balancing, max-unacked-updates, "
                               "failover-poll-timeout changed: the link to the partner is re-established to "
                               "negotiate it (the partner's file must agree)"]
    p = main.dhcp.sessions[0].pair
    assert (p.backup_pct, p.use_safe_period, p.safe_period, p.max_unacked_updates, p.load_balancing,
            p.failover_poll_interval, p.failover_poll_timeout) == (30.0, True, 3600, 50, True, 3, 9)
    wire.connect()  # the main redials: the new values are in its CONNECT
    assert main.dhcp.sessions[0].state is S.NORMAL
    assert backup.dhcp.sessions[0].link.partner_max_unacked == 50


def test_reload_pair_identity_changes_need_a_restart(tmp_path):
    main, backup, wire = pair(tmp_path)
    text = main.text().replace("backup = 10.1.0.2", "backup = 10.1.0.3\nport = 6470")
    text += "\n[scope other]\nsubnet = 10.3.0.0/24\n\n[failover-pair second]\nmain = 10.3.0.1\n" \
            "backup = 10.3.0.2\nscopes = other\n"
    text = text.replace("[failover-pair examplepair]", "[failover-pair examplepair]\nscopes = lan")
    main.write(text)
    out = Admin(main.dhcp).reload(None)
    assert sorted(out["restart-required"]) == ["[failover-pair examplepair] backup",
                                               "[failover-pair examplepair] port",
                                               "[failover-pair examplepair] scopes",
                                               "[failover-pair second] added"]
    assert out["applied"] == ["[scope other] added"]
    pairs = main.dhcp.config.failover_pairs
    assert list(pairs) == ["examplepair"] and pairs["examplepair"].backup == ip_to_int("10.1.0.2")
    main.write(main.text().split("[failover-pair examplepair]")[0] + "\n[scope other]\nsubnet = 10.3.0.0/24\n")
    out = Admin(main.dhcp).reload(None)
    assert out["restart-required"] == ["[failover-pair examplepair] removed"]
    assert main.dhcp.sessions[0].state is S.NORMAL


def test_reload_new_scope_joins_a_server_wide_pair(tmp_path):
    main, backup, wire = pair(tmp_path)
    for s in (main, backup):
        s.write(s.text() + "\n[scope second]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.29\n")
        Admin(s.dhcp).reload(None)
    peer = main.dhcp.sessions[0]
    assert "second" in peer.exchange.scopes and main.dhcp.server.gates["second"] is peer.gate
    assert main.dhcp.table.pools["second"].failover
    # the backup answers nobody in NORMAL, in the new scope too
    assert backup.discover(1, giaddr="10.2.0.1") is None
    assert main.lease(1, giaddr="10.2.0.1")
    wire.settle()
    assert Admin(backup.dhcp).leases({"scope": ["second"], "state": ["leased"]})["leases"][0]["scope"] == "second"


def test_reload_replaces_unsaved_api_changes_and_says_so(server, admin):
    admin.patch_attributes({"max-dhcp-requests": 7})
    out = admin.reload(None)
    assert out["applied"] == ["[server] max-dhcp-requests"]
    assert out["warnings"] == ["changes made through the API and not saved were replaced by the file: "
                               "[server] max-dhcp-requests"]
    assert server.dhcp.config.server.max_dhcp_requests == 500 and not admin.unsaved


def test_reload_unchanged_file(server, admin):
    assert admin.reload(None) == {"reloaded": True, "applied": [], "restart-required": [], "warnings": []}


# -- leases and scopes ---------------------------------------------------------------

def test_lease_lookup(server, admin):
    address = server.lease(1)
    got = admin.lease("10.1.0.100")
    assert address == ip_to_int("10.1.0.100")
    assert got == {"address": "10.1.0.100", "state": "leased", "scope": "lan", "hardware-address": "02:00:00:00:00:01",
                   "client-id": None, "host-name": None, "start": format_iso(T0), "expires": format_iso(T0 + 3600),
                   "owner": None, "partner-time": None}
    assert admin.lease("10.1.0.149")["state"] == "available"
    assert admin.lease("10.1.0.50")["state"] == "reserved"
    assert "outside its ranges" in refused(404, admin.lease, "10.1.0.7")
    assert refused(404, admin.lease, "10.9.0.1") == "10.9.0.1 is not in any scope"
    for bad in ("10.1.0", "x", "10.1.0.300", ""):
        refused(400, admin.lease, bad)


def test_leases_paged_in_address_order(server, admin):
    addresses = [server.lease(n) for n in range(7)]
    assert addresses == sorted(addresses)
    seen, after, pages = [], None, 0
    while True:
        q = {"limit": ["3"]} | ({"after": [after]} if after else {})
        page = admin.leases(q)
        seen += [l["address"] for l in page["leases"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert pages == 3 and seen == [str(ipaddress.IPv4Address(a)) for a in addresses]
    assert admin.leases({})["next"] is None and len(admin.leases({})["leases"]) == 7


def test_leases_filters(server, admin):
    for n in range(3):
        server.lease(n)
    assert [l["address"] for l in admin.leases({"hardware-address": ["02:00:00:00:00:01"]})["leases"]] == \
        ["10.1.0.101"]
    assert len(admin.leases({"state": ["leased"], "scope": ["lan"]})["leases"]) == 3
    assert admin.leases({"state": ["expired"]})["leases"] == []
    assert admin.leases({"scope": ["nosuch"]})["leases"] == []


@pytest.mark.parametrize("query", [
    {"limit": ["0"]}, {"limit": ["1001"]}, {"limit": ["x"]}, {"after": ["10.1"]}, {"state": ["gone"]},
    {"hardware-address": ["zz"]}, {"sort": ["x"]}, {"limit": ["1", "2"]},
])
def test_leases_bad_queries(admin, query):
    refused(400, admin.leases, query)


def test_scopes_on_a_failover_pair_show_the_backup_share(tmp_path):
    main, backup, wire = pair(tmp_path)
    main.lease(1)
    wire.settle()
    for s in (main, backup):
        assert Admin(s.dhcp).scopes()["scopes"] == [{
            "name": "lan", "subnet": "10.1.0.0/24", "total": 50, "leased": 1, "available": 49,
            "available-main": 44, "available-backup": 5, "utilization-percent": 2.0}]
    backup_lease = next(a for a, l in main.dhcp.table.leases.items() if l.state is LeaseState.BACKUP)
    got = Admin(main.dhcp).lease(str(ipaddress.IPv4Address(backup_lease)))
    assert got["state"] == "backup" and got["owner"] == "backup"
    assert Admin(main.dhcp).lease("10.1.0.149")["owner"] == "main"


# -- save ----------------------------------------------------------------------------

def test_save_without_changes_writes_nothing(server, admin):
    before = server.text()
    assert admin.save() == {"saved": str(server.path), "changed": []}
    assert server.text() == before


def test_save_writes_api_changes_keeping_comments_and_order(tmp_path):
    main, backup, wire = pair(tmp_path)
    admin = Admin(main.dhcp)
    admin.patch_attributes({"start-on-reboot": False, "log-settings": ["failover-detail"],
                            "failover-recover": "2027-01-14T00:00:00Z"})
    admin.patch_pair("examplepair", {"backup-pct": 12.5, "main": "10.1.0.2", "backup": "10.1.0.1"})
    before = main.text()
    out = admin.save()
    assert out == {"saved": str(main.path), "changed": [
        "[failover-pair examplepair] backup", "[failover-pair examplepair] backup-pct",
        "[failover-pair examplepair] main", "[server] failover-recover", "[server] log-settings",
        "[server] start-on-reboot"]}
    text = main.text()
    assert "# keep this comment" in text and "# a test server" in text
    assert text.index("[server]") < text.index("[api]") < text.index("[failover-pair examplepair]")
    assert "backup-pct = 12.5" in text and "start-on-reboot = false" in text
    assert "failover-recover = 2027-01-14T00:00:00Z" in text and "log-settings = failover-detail" in text
    # only the changed lines differ
    assert len(set(text.splitlines()) - set(before.splitlines())) == 6
    assert not admin.unsaved and admin.pending  # the role change still waits for a restart
    # the file now says what runs, except the role change, which needs a restart
    out = admin.reload(None)
    assert out["applied"] == [] and sorted(out["restart-required"]) == [
        "[failover-pair examplepair] backup", "[failover-pair examplepair] main"]
    assert admin.pair("examplepair")["pending"] == {"main": "10.1.0.2", "backup": "10.1.0.1"}
    # unsetting removes the key
    admin.patch_attributes({"failover-recover": 0})
    admin.save()
    assert "failover-recover" not in main.text()


def test_save_refused_when_the_file_cannot_be_read_or_written(server, admin, monkeypatch):
    server.path.chmod(0o640)
    admin.patch_attributes({"max-dhcp-requests": 42})
    import cnrd.admin.commands

    def fail(path, text):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(cnrd.admin.commands, "_write_atomically", fail)
    assert refused(409, admin.save) == f"cannot write {server.path}: Read-only file system"
    assert admin.unsaved  # kept for another try
    monkeypatch.undo()
    server.path.rename(server.path.with_suffix(".gone"))
    assert refused(409, admin.save).startswith(f"cannot read {server.path}")
    server.path.with_suffix(".gone").rename(server.path)
    assert admin.save()["changed"] == ["[server] max-dhcp-requests"]
    assert "max-dhcp-requests = 42" in server.text()
    assert server.path.stat().st_mode & 0o777 == 0o640  # the file keeps its mode


def test_null_unsets_back_to_the_default_and_save_removes_the_key(tmp_path):
    main, backup, wire = pair(tmp_path)
    admin = Admin(main.dhcp)
    admin.patch_attributes({"max-dhcp-requests": 9, "log-settings": "default"})
    admin.patch_pair("examplepair", {"backup-pct": 20, "failover": False})
    admin.save()
    assert "max-dhcp-requests = 9" in main.text() and "backup-pct = 20" in main.text()
    out = admin.patch_attributes({"max-dhcp-requests": None, "log-settings": None})
    assert out["max-dhcp-requests"] == 500 and out["log-settings"] == []
    out = admin.patch_pair("examplepair", {"backup-pct": None, "failover": None})
    assert out["backup-pct"] == 10.0 and out["pending"] == {} and out["restart-required"] == []
    refused(400, admin.patch_pair, "examplepair", {"main": None})
    admin.save()
    text = main.text()
    assert "max-dhcp-requests" not in text and "log-settings" not in text
    assert "backup-pct" not in text and "failover =" not in text and "# keep this comment" in text
