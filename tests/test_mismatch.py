"""Configuration mismatch detection between failover partners (CNR 7.2's configuration mismatch trap).

The seed asks both servers of a pair to carry the same scopes, policies,
client-classes and clients, and names the trap "dhcp failover configuration
mismatch" for partners that do not.  Each server compares its own file with
the partner's sync view, as an Exact sync from the main to the backup would
see them; the trap fires once per episode, the gauge and the ``config``
field show it, an unreachable partner is "unknown" and an ISC dhcpd partner
"not comparable", never a mismatch.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from cnrd.admin.commands import Admin
from cnrd.admin.mismatch import CHECK_INTERVAL, RETRY_INTERVAL, ConfigChecks, MismatchPoller
from cnrd.admin.partner import PartnerError, values_json
from cnrd.app.build import partner_vendor
from cnrd.config.inifile import read_values
from cnrd.failover import wire as fwire
from cnrd.failover.link import Link
from cnrd.failover.session import VENDOR
from cnrd.failover.states import Role, S
from cnrd.ops.traps import CONFIG_MISMATCH, MAX_NAMED_OBJECTS, TrapDetector, differing_reason
from cnrd.sync.planner import shareable
from tests.adminkit import PAIR as PLAIN_PAIR
from tests.adminkit import STANDALONE, T0, TOKEN, Server, Wire
from tests.test_metrics import scrape, value
from tests.test_traps import captured, trap_lines

PAIR = "examplepair"
ISO_T0 = "2027-01-15T08:00:00Z"

# Both servers' file: the same policies, clients and pair; [server] differs
# (name, data-dir) as it must between two nodes.
SYNCED = STANDALONE + """
[policy office]
lease-time = 7200
option.routers = 10.1.0.1

[client 02:00:00:00:00:07]
policy = office

[failover-pair examplepair]
main = 10.1.0.1
backup = 10.1.0.2
mclt = 60
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
main-api = http://10.1.0.1:8067
backup-api = http://10.1.0.2:8067
api-token-file = @TOKEN@
"""


def values(text: str) -> dict[tuple[str, str | None], dict[str, str]]:
    return read_values(text.replace("{name}", "n").replace("{data}", "/tmp/n").replace("@TOKEN@", "/tmp/t"))


# -- the trap's episode and its words ------------------------------------------------
def test_trap_reason_names_the_first_ten_objects_and_counts_them():
    objects = [f"client 02:00:00:00:00:{i:02x}" for i in range(12)]
    reason = differing_reason(objects)
    assert MAX_NAMED_OBJECTS == 10
    assert "12 objects" in reason and "and 2 more" in reason
    assert all(o in reason for o in objects[:10]) and not any(o in reason for o in objects[10:])
    assert differing_reason(["policy default"]).endswith("differ in 1 object: policy default")


def test_comparison_episode_is_once_until_a_comparison_finds_none():
    d = TrapDetector()
    assert d.compared(PAIR, []) is None and not d.config_mismatch(PAIR)
    trap = d.compared(PAIR, ["policy default"])
    assert trap is not None and trap.name == CONFIG_MISMATCH
    assert trap.fields["objects"] == ["policy default"] and trap.fields["object_count"] == 1
    assert trap.fields["detected_by"] == "comparison"
    assert d.compared(PAIR, ["policy default", "client 02:00:00:00:00:07"]) is None  # same episode
    # Hearing the partner again ends a refusal's episode, not this one.
    d.observe("failover-comm-ok", {"pair": PAIR})
    assert d.config_mismatch(PAIR)
    assert d.compared(PAIR, []) is None and not d.config_mismatch(PAIR)
    assert d.compared(PAIR, ["policy default"]) is not None  # a new episode
    assert d.counts[(CONFIG_MISMATCH, PAIR)] == 2


# -- the pure comparison ---------------------------------------------------------------
OTHER_ROUTER = SYNCED.replace("option.routers = 10.1.0.1", "option.routers = 10.1.0.254")
EXTRA_CLIENT = OTHER_ROUTER + "\n[client 02:00:00:00:00:08]\npolicy = office\n"


def test_match_then_mismatch_raises_one_trap_and_a_match_ends_it():
    traps = TrapDetector()
    checks = ConfigChecks(traps)
    main_node = values(SYNCED)
    # The backup's per-node keys differ: never a difference.
    backup_node = read_values(SYNCED.replace("{name}", "other").replace("{data}", "/srv/other")
                              .replace("@TOKEN@", "/tmp/t"))
    assert checks.compared(PAIR, Role.MAIN, main_node, backup_node, T0) is None
    pair = SYNCED_PAIR
    assert checks.status(pair) == {"status": "match", "objects": [], "checked": ISO_T0,
                                   "failed-since": None, "reason": None}

    trap = checks.compared(PAIR, Role.MAIN, main_node, values(OTHER_ROUTER), T0 + 60)
    assert trap is not None and trap.name == CONFIG_MISMATCH and trap.fields["objects"] == ["policy office"]
    assert traps.config_mismatch(PAIR)
    assert checks.status(pair)["status"] == "mismatch" and checks.status(pair)["objects"] == ["policy office"]

    # Still different (and more so): the same episode, no new trap; the objects follow.
    assert checks.compared(PAIR, Role.MAIN, main_node, values(EXTRA_CLIENT), T0 + 120) is None
    assert sorted(checks.status(pair)["objects"]) == ["client 02:00:00:00:00:08", "policy office"]
    assert traps.counts[(CONFIG_MISMATCH, PAIR)] == 1

    assert checks.compared(PAIR, Role.MAIN, main_node, main_node, T0 + 180) is None
    assert checks.status(pair)["status"] == "match" and not traps.config_mismatch(PAIR)
    assert checks.compared(PAIR, Role.MAIN, main_node, values(OTHER_ROUTER), T0 + 240) is not None
    assert traps.counts[(CONFIG_MISMATCH, PAIR)] == 2


def test_both_sides_list_the_same_objects():
    main_node, backup_node = values(SYNCED), values(EXTRA_CLIENT)
    on_main, on_backup = ConfigChecks(TrapDetector()), ConfigChecks(TrapDetector())
    on_main.compared(PAIR, Role.MAIN, main_node, backup_node, T0)
    on_backup.compared(PAIR, Role.BACKUP, backup_node, main_node, T0)
    objects = on_main.status(SYNCED_PAIR)["objects"]
    # A client only on the backup differs: Exact from the main removes it.
    assert sorted(objects) == ["client 02:00:00:00:00:08", "policy office"]
    assert on_backup.status(SYNCED_PAIR)["objects"] == objects


def test_a_failed_fetch_is_unknown_keeps_the_objects_and_raises_nothing():
    traps = TrapDetector()
    checks = ConfigChecks(traps)
    checks.fetch_failed(PAIR, "cannot reach partner", T0)  # never compared
    st = checks.status(SYNCED_PAIR)
    assert st["status"] == "unknown" and st["failed-since"] == ISO_T0 and st["reason"] == "cannot reach partner"
    assert not traps.config_mismatch(PAIR) and not traps.counts

    checks.compared(PAIR, Role.MAIN, values(SYNCED), values(OTHER_ROUTER), T0 + 60)
    checks.fetch_failed(PAIR, "timeout", T0 + 120)
    checks.fetch_failed(PAIR, "timeout again", T0 + 180)
    st = checks.status(SYNCED_PAIR)
    assert st["status"] == "unknown" and st["objects"] == ["policy office"]
    assert st["failed-since"] == "2027-01-15T08:02:00Z" and st["reason"] == "timeout again"
    assert st["checked"] == "2027-01-15T08:01:00Z"  # the last comparison
    assert traps.counts[(CONFIG_MISMATCH, PAIR)] == 1 and traps.config_mismatch(PAIR)  # not over, not new


def test_an_isc_partner_is_not_comparable_and_never_a_mismatch():
    traps = TrapDetector()
    checks = ConfigChecks(traps)
    checks.compared(PAIR, Role.MAIN, values(SYNCED), values(OTHER_ROUTER), T0)
    checks.not_comparable(PAIR, "isc-4.4.3-P1", T0 + 60)
    st = checks.status(SYNCED_PAIR)
    assert st["status"] == "not-comparable" and st["objects"] == [] and "isc-4.4.3-P1" in st["reason"]
    assert not traps.config_mismatch(PAIR)


def test_a_pair_without_the_apis_is_not_configured():
    plain = _pair_config(PLAIN_PAIR)
    assert ConfigChecks(TrapDetector()).status(plain)["status"] == "not-configured"
    assert ConfigChecks(TrapDetector()).status(SYNCED_PAIR)["status"] == "unknown"  # not compared yet


def _pair_config(text: str) -> Any:
    from cnrd.config import loads
    return loads(text.replace("{name}", "n").replace("{data}", "/tmp/n").replace("@TOKEN@", "/tmp/t")
                 ).failover_pairs[PAIR]


SYNCED_PAIR = _pair_config(SYNCED)


# -- the partner's vendor class, kept by the link ------------------------------------------
def test_link_keeps_the_partners_vendor_class():
    link = Link(T0, 60)
    assert link.partner_vendor is None
    isc = fwire.connect(0, T0, relationship_name=PAIR, max_unacked=10, receive_timer=60,
                        vendor_class="isc-4.4.3-P1", mclt=60, hba=bytes(32))
    assert link.accept(isc, role=Role.BACKUP, name=PAIR, mclt=60, receive_timer=60, now=T0) is None
    assert link.partner_vendor == "isc-4.4.3-P1"
    ack = fwire.connectack(1, T0, relationship_name=PAIR, vendor_class=None)
    other = Link(T0, 60)
    assert other.accept(ack, role=Role.MAIN, name=PAIR, mclt=60, receive_timer=60, now=T0) is None
    assert other.partner_vendor == ""


# -- the poller on a running pair ------------------------------------------------------------
class Views:
    """The partner's sync view as its API would give it, read from its file; or a failure."""

    def __init__(self, servers: dict[str, tuple[Server, Role]]) -> None:
        self.servers = servers
        self.calls: list[tuple[str, str | None, str]] = []
        self.fail: PartnerError | None = None

    def __call__(self, url: str, token: str | None, pair: str) -> defer.Deferred[dict[str, Any]]:
        self.calls.append((url, token, pair))
        if self.fail is not None:
            return defer.fail(self.fail)
        server, role = self.servers[url]
        return defer.succeed({"pair": pair, "role": role.value, "server": server.dhcp.config.server.name,
                              "values": values_json(shareable(read_values(server.text())))})


def synced_pair(tmp_path, main_text: str = SYNCED, backup_text: str = SYNCED):
    from twisted.internet.task import Clock
    token = tmp_path / "pair-token"
    token.write_text(TOKEN + "\n")
    clock = Clock()
    clock.advance(T0)
    main = Server(tmp_path, main_text.replace("@TOKEN@", str(token)), name="main", clock=clock, host="10.1.0.1")
    backup = Server(tmp_path, backup_text.replace("@TOKEN@", str(token)), name="backup", clock=clock,
                    host="10.1.0.2")
    wire = Wire(main, backup)
    wire.connect()
    views = Views({"http://10.1.0.1:8067": (main, Role.MAIN), "http://10.1.0.2:8067": (backup, Role.BACKUP)})
    return main, backup, wire, views


def poller_for(server: Server, views: Views, vendor: Any = None) -> MismatchPoller:
    rt = server.dhcp
    poller = MismatchPoller(server.clock, rt, rt.traps, notify=rt.notifier.notify,
                            partner_vendor=vendor or (lambda name: partner_vendor(rt, name)), fetch=views)
    poller.startService()
    return poller


def test_poller_compares_at_normal_and_every_minute_and_shows_it_everywhere(tmp_path):
    main, backup, wire, views = synced_pair(tmp_path)
    assert main.dhcp.sessions[0].state is S.NORMAL
    assert partner_vendor(main.dhcp, PAIR) == VENDOR  # from the backup's CONNECTACK
    assert partner_vendor(backup.dhcp, PAIR) == VENDOR  # from the main's CONNECT
    poller = poller_for(main, views)
    admin = Admin(main.dhcp, config_check=poller.status)
    with captured() as events:
        wire.advance(1)  # the link is in NORMAL: compared at once
        assert views.calls == [("http://10.1.0.2:8067", TOKEN, PAIR)]
        assert admin.related_servers()["related-servers"][0]["config"]["status"] == "match"
        wire.advance(int(CHECK_INTERVAL) - 2)
        assert len(views.calls) == 1  # not before the minute is up

        backup.write(backup.text().replace("option.routers = 10.1.0.1", "option.routers = 10.1.0.254"))
        wire.advance(2)
        assert len(views.calls) == 2
        config = admin.related_servers()["related-servers"][0]["config"]
        assert config["status"] == "mismatch" and config["objects"] == ["policy office"]
        assert admin.pair(PAIR)["config"] == config
        assert value(scrape(main.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 1
        assert value(scrape(main.dhcp), "cnrd_traps_total", trap=CONFIG_MISMATCH, pair=PAIR) == 1

        wire.advance(int(CHECK_INTERVAL))  # still different: compared, no new trap
        assert len(views.calls) == 3
        traps = trap_lines(events)
        assert len(traps) == 1 and traps[0]["trap"] == CONFIG_MISMATCH
        assert "policy office" in traps[0]["reason"] and "1 object" in traps[0]["reason"]

        views.fail = PartnerError(502, "cannot reach partner http://10.1.0.2:8067")
        wire.advance(int(CHECK_INTERVAL))
        config = admin.related_servers()["related-servers"][0]["config"]
        assert config["status"] == "unknown" and config["objects"] == ["policy office"]
        assert config["failed-since"] is not None and "cannot reach" in config["reason"]
        assert len(trap_lines(events)) == 1
        # A failed fetch is tried again sooner than a minute; the failure's start stays.
        wire.advance(int(RETRY_INTERVAL) - 1)
        assert len(views.calls) == 4
        wire.advance(1)
        assert len(views.calls) == 5
        assert admin.related_servers()["related-servers"][0]["config"]["failed-since"] == config["failed-since"]

        views.fail = None
        backup.write(backup.text().replace("option.routers = 10.1.0.254", "option.routers = 10.1.0.1"))
        wire.advance(int(RETRY_INTERVAL))
        assert admin.related_servers()["related-servers"][0]["config"]["status"] == "match"
        assert value(scrape(main.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 0
    assert len(views.calls) == 6 and len(trap_lines(events)) == 1
    poller.stopService()


def test_both_servers_raise_the_trap_and_a_reload_compares_at_once(tmp_path):
    main, backup, wire, views = synced_pair(tmp_path, backup_text=EXTRA_CLIENT)
    pollers = [poller_for(main, views), poller_for(backup, views)]
    with captured() as events:
        wire.advance(1)
    by_server = {t["server"]: t for t in trap_lines(events)}
    assert sorted(by_server) == ["backup", "main"]
    assert by_server["main"]["objects"] == by_server["backup"]["objects"]
    for server in (main, backup):
        assert value(scrape(server.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 1
    # The backup takes the main's file (as a sync Run would) and reloads: it
    # compares again at the next tick, not a minute later.
    backup.write(main.text().replace("name = main", "name = backup").replace(str(main.dir), str(backup.dir)))
    calls = len(views.calls)
    Admin(backup.dhcp).reload(None)
    wire.advance(1)
    assert len(views.calls) == calls + 1
    assert pollers[1].status(backup.dhcp.config.failover_pairs[PAIR])["status"] == "match"
    assert value(scrape(backup.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 0
    assert value(scrape(main.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 1  # until its next look
    for p in pollers:
        p.stopService()


def test_poller_never_asks_an_isc_partner(tmp_path):
    main, _, wire, views = synced_pair(tmp_path, backup_text=EXTRA_CLIENT)
    poller = poller_for(main, views, vendor=lambda name: "isc-4.4.3-P1")
    with captured() as events:
        wire.advance(int(CHECK_INTERVAL) + 1)
    assert views.calls == [] and trap_lines(events) == []
    config = Admin(main.dhcp, config_check=poller.status).related_servers()["related-servers"][0]["config"]
    assert config["status"] == "not-comparable"
    assert value(scrape(main.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 0
    poller.stopService()


def test_poller_leaves_a_pair_without_apis_alone(tmp_path):
    main, _, wire, views = synced_pair(tmp_path, main_text=PLAIN_PAIR, backup_text=PLAIN_PAIR)
    poller = poller_for(main, views)
    wire.advance(int(CHECK_INTERVAL) + 1)
    assert views.calls == []
    for admin in (Admin(main.dhcp, config_check=poller.status), Admin(main.dhcp)):
        assert admin.related_servers()["related-servers"][0]["config"]["status"] == "not-configured"
        assert admin.pair(PAIR)["config"]["status"] == "not-configured"
    poller.stopService()


@pytest.mark.parametrize("answer", [{"values": "nope"}, {"role": "main", "values": []}])
def test_a_bad_answer_is_unknown_not_a_mismatch(tmp_path, answer):
    main, _, wire, _ = synced_pair(tmp_path)
    calls = []

    def fetch(url, token, pair):
        calls.append(url)
        return defer.succeed(answer)

    rt = main.dhcp
    poller = MismatchPoller(main.clock, rt, rt.traps, notify=rt.notifier.notify,
                            partner_vendor=lambda name: VENDOR, fetch=fetch)
    poller.startService()
    wire.advance(1)
    assert calls and poller.status(rt.config.failover_pairs[PAIR])["status"] == "unknown"
    assert not rt.traps.config_mismatch(PAIR)
    poller.stopService()


def test_recheck_compares_at_the_next_tick(tmp_path):
    main, _, wire, views = synced_pair(tmp_path)
    poller = poller_for(main, views)
    wire.advance(2)
    calls = len(views.calls)
    wire.advance(2)
    assert len(views.calls) == calls  # nothing due
    poller.recheck(PAIR)
    wire.advance(1)
    assert len(views.calls) == calls + 1
    poller.stopService()


# -- through the partner's real admin API -----------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_both_servers_compare_through_the_partners_real_api(tmp_path):
    from twisted.internet import reactor

    from tests.test_sync_api import Pair

    p = Pair(tmp_path)  # the main's and the backup's files differ (tests/test_sync_api.py)
    try:
        found = {}
        for server, role in ((p.main, Role.MAIN), (p.backup, Role.BACKUP)):
            rt = server.dhcp
            poller = MismatchPoller(reactor, rt, rt.traps, notify=rt.notifier.notify,
                                    partner_vendor=lambda name: partner_vendor(rt, name))
            pair = rt.config.failover_pairs[PAIR]
            with captured() as events:
                await poller.check(pair, role)
            st = poller.status(pair)
            assert st["status"] == "mismatch", st
            assert [t["server"] for t in trap_lines(events)] == [role.value]
            found[role] = st["objects"]
        assert found[Role.MAIN] == found[Role.BACKUP]
        assert {"policy default", "policy gold", "client-class vip", "client 02:00:00:00:00:01",
                "client 02:00:00:00:00:02"} <= set(found[Role.MAIN])

        # The partner refuses a wrong token: unknown, with the partner's reason; no new trap.
        wrong = tmp_path / "wrong-token"
        wrong.write_text("not-the-token\n")
        p.set_apis(p.main, wrong)
        rt = p.main.dhcp
        poller = MismatchPoller(reactor, rt, rt.traps, notify=rt.notifier.notify,
                                partner_vendor=lambda name: VENDOR)
        pair = rt.config.failover_pairs[PAIR]
        with captured() as events:
            await poller.check(pair, Role.MAIN)
        st = poller.status(pair)
        assert st["status"] == "unknown" and "refused" in st["reason"], st
        assert trap_lines(events) == []
    finally:
        await p.stop()
