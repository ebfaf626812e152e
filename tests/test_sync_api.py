"""Failover pair sync over the admin API: Report and Run between two real APIs on 127.0.0.1.

Two in-process servers (tests/adminkit.py: real Runtimes and failover
sessions in NORMAL, each with its INI file in a temporary directory) play
main and backup; each has the production ApiService on an ephemeral port,
and their ``[failover-pair]`` sections name both APIs and a shared token
file, so every sync call crosses real HTTP both ways.

What the seed asks of "Synchronizing Failover Pairs": a Report lists the
change entries and changes nothing; a Run makes the target's configuration
the source's (Exact: a mirror image, the target's own objects removed, its
node identity kept), the target validates the result, writes its file with
its comments, reloads, and says what it applied; a refusal (wrong token,
invalid result, unreachable partner, a target changed since the Report)
changes nothing and the reason comes back.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from cnrd.admin.api import ApiService
from cnrd.admin.commands import Admin
from cnrd.app.ldap import LdapRegistry
from cnrd.config import ConfigError, loads
from cnrd.config.inifile import read_values
from cnrd.failover.states import S
from cnrd.ldap.errors import LdapError, LdapUnavailable
from cnrd.leases.model import Lease, LeaseState
from cnrd.sync.planner import shareable
from tests.adminkit import PAIR, T0, TOKEN, Server, Wire

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")

V1 = "/api/v1"

# The pair's section, identical on both servers but for where the APIs are
# (filled in once both listen) and which token file each uses.
PAIR_APIS = """main-api = http://127.0.0.1:{main_port}
backup-api = http://127.0.0.1:{backup_port}
api-token-file = {token_file}
"""

# What the main has that the backup lacks or has otherwise.
MAIN_EXTRA = """
[policy default]
lease-time = 7200
option.domain-name = main.example

[policy gold]
lease-time = 1d

[client-class vip]
policy = gold

[client 02:00:00:00:00:01]
client-class = vip
host-name = one
"""

BACKUP_EXTRA = """
# backup: this comment stays through every sync
[policy default]
# the backup's own lease time
lease-time = 3600

[client 02:00:00:00:00:02]
host-name = two-only-on-the-backup
"""


def _ini(extra: str) -> str:
    # STANDALONE's [policy default] is replaced by the extra one.
    base = PAIR.replace("[policy default]\nlease-time = 3600\n", "")
    return base + extra


class Client:
    """Plain HTTP requests to one API; answers are (status, JSON)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    async def call(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> tuple[int, Any]:
        headers = Headers({"Authorization": [f"Bearer {token}"]})
        producer = None
        if body is not None:
            headers.addRawHeader("Content-Type", "application/json")
            producer = FileBodyProducer(BytesIO(json.dumps(body).encode()))
        resp = await self.agent.request(method.encode(), (self.base + V1 + path).encode(), headers, producer)
        return resp.code, json.loads(await readBody(resp))


class Pair:
    """A main and a backup in NORMAL, each with its API listening and the pair's APIs configured."""

    def __init__(self, tmp: Path, main_extra: str = MAIN_EXTRA, backup_extra: str = BACKUP_EXTRA, *,
                 ldap: Any = lambda: None) -> None:
        clock = Clock()
        clock.advance(T0)
        self.tmp = tmp
        self.token_file = tmp / "sync-token"
        self.token_file.write_text(TOKEN + "\n")
        self.main = Server(tmp, _ini(main_extra), name="main", clock=clock, host="10.1.0.1", ldap=ldap())
        self.backup = Server(tmp, _ini(backup_extra), name="backup", clock=clock, host="10.1.0.2", ldap=ldap())
        self.wire = Wire(self.main, self.backup)
        self.wire.connect()
        self.apis: list[ApiService] = []
        ports = []
        for server in (self.main, self.backup):
            api = ApiService(server.dhcp.config, reactor, Admin(server.dhcp))
            api.startService()
            self.apis.append(api)
            ports.append(api.port.getHost().port)
        self.ports = ports
        self.main_api = Client(f"http://127.0.0.1:{ports[0]}")
        self.backup_api = Client(f"http://127.0.0.1:{ports[1]}")
        for server in (self.main, self.backup):
            self.set_apis(server, self.token_file)
        assert self.main.dhcp.sessions[0].state is S.NORMAL

    def set_apis(self, server: Server, token_file: Path, ports: list[int] | None = None) -> None:
        """Write the pair's API keys into ``server``'s file and reload it, as an operator would."""
        main_port, backup_port = ports or self.ports
        apis = PAIR_APIS.format(main_port=main_port, backup_port=backup_port, token_file=token_file)
        text = server.text()
        head = "[failover-pair examplepair]\n"
        if "main-api" in text:
            text = text[:text.index("main-api")] + text[text.index("api-token-file"):].split("\n", 1)[1]
        server.write(text.replace(head, head + apis))
        api = self.apis[0 if server is self.main else 1]
        api.admin.reload(None)

    async def stop(self) -> None:
        for api in self.apis:
            if api.running:
                await api.stopService()


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    yield p
    pytest_twisted.blockon(defer.ensureDeferred(p.stop()))


def _shareable(server: Server) -> dict:
    return shareable(read_values(server.text()))


def _find(changes: list[dict], cls: str, name: str, prop: str | None) -> dict:
    found = [c for c in changes if (c["class"], c["name"], c["property"]) == (cls, name, prop)]
    assert len(found) == 1, (cls, name, prop, changes)
    return found[0]


# -- sync-view ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sync_view_is_the_servers_role_name_and_shareable_values(pair) -> None:
    status, view = await pair.backup_api.call("GET", "/failover-pairs/examplepair/sync-view")
    assert status == 200
    assert (view["pair"], view["role"], view["server"]) == ("examplepair", "backup", "backup")
    sections = {(v["type"], v["name"]): v["keys"] for v in view["values"]}
    assert sections[("policy", "default")] == {"lease-time": "3600"}
    assert sections[("client", "02:00:00:00:00:02")] == {"host-name": "two-only-on-the-backup"}
    # The node's identity is not in the view: no [api], no server name or data-dir.
    assert ("api", None) not in sections
    assert not {"name", "data-dir", "interfaces"} & set(sections.get(("server", None), {}))
    status, view = await pair.main_api.call("GET", "/failover-pairs/examplepair/sync-view")
    assert (status, view["role"], view["server"]) == (200, "main", "main")
    status, answer = await pair.main_api.call("GET", "/failover-pairs/nosuchpair/sync-view")
    assert status == 404 and "nosuchpair" in answer["error"]


# -- Report ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_report_lists_the_changes_and_changes_nothing(pair) -> None:
    before = (pair.main.text(), pair.backup.text())
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "exact"})
    assert status == 200, r
    assert (r["pair"], r["operation"], r["direction"], r["run"]) == ("examplepair", "exact", "main-to-backup", False)
    assert (r["source"], r["target"]) == ("main", "backup")
    changes = r["changes"]
    assert _find(changes, "policy", "default", "lease-time")["old"] == "3600"
    assert _find(changes, "policy", "default", "lease-time")["new"] == "7200"
    # Exact: the main's own objects added, the backup's own removed.
    added = _find(changes, "client", "02:00:00:00:00:01", None)
    assert added["old"] is None and "client-class = vip" in added["new"]
    removed = _find(changes, "client", "02:00:00:00:00:02", None)
    assert removed["new"] is None and "two-only-on-the-backup" in removed["old"]
    assert _find(changes, "policy", "gold", None)["old"] is None
    assert _find(changes, "client-class", "vip", None)["old"] is None
    assert {c["function"] for c in changes} == {"exact"}
    assert "client 02:00:00:00:00:02" in r["objects"]
    assert (r["applied"], r["restart-required"]) == ([], [])
    assert (pair.main.text(), pair.backup.text()) == before

    # Update: a client only on the backup stays (only Exact deletes it, as the seed notes).
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "update"})
    assert status == 200
    assert not [c for c in r["changes"] if c["name"] == "02:00:00:00:00:02"]
    assert _find(r["changes"], "client", "02:00:00:00:00:01", None)["function"] == "replace"

    # The same Report asked of the backup: the backup fetches the main's view.
    status, r2 = await pair.backup_api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "update"})
    assert status == 200 and r2["changes"] == r["changes"]
    assert (r2["source"], r2["target"]) == ("main", "backup")
    assert (pair.main.text(), pair.backup.text()) == before


@pytest_twisted.ensureDeferred
async def test_report_backup_to_main_swaps_source_and_target(pair) -> None:
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync",
                                         {"operation": "exact", "direction": "backup-to-main"})
    assert status == 200
    assert (r["source"], r["target"]) == ("backup", "main")
    lease_time = _find(r["changes"], "policy", "default", "lease-time")
    assert (lease_time["old"], lease_time["new"]) == ("7200", "3600")
    assert _find(r["changes"], "client", "02:00:00:00:00:01", None)["new"] is None


@pytest.mark.parametrize("body, fragment", [
    ({"operation": "mirror"}, "operation must be one of update, complete, exact"),
    ({"direction": "sideways"}, "direction must be one of main-to-backup, backup-to-main"),
    ({"run": "maybe"}, "maybe"),
    ({"frob": 1}, "frob"),
])
@pytest_twisted.ensureDeferred
async def test_bad_sync_bodies_are_400(pair, body, fragment) -> None:
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync", body)
    assert status == 400 and fragment in r["error"], r


# -- Run ------------------------------------------------------------------------


@pytest.mark.parametrize("ask", ["main", "backup"])
@pytest_twisted.ensureDeferred
async def test_run_exact_makes_the_backup_a_mirror_and_keeps_its_comments(pair, ask) -> None:
    # Asked of the main, the backup applies through its sync-apply; asked
    # of the backup, it applies locally.
    api = pair.main_api if ask == "main" else pair.backup_api
    main_before = pair.main.text()
    backup_server = pair.backup.text().split("[api]")[0]
    status, r = await api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "exact", "run": True})
    assert status == 200, r
    assert r["run"] is True and r["changes"]
    assert "[policy default] lease-time" in r["applied"]
    assert "[client 02:00:00:00:00:02] removed" in r["applied"]
    assert r["restart-required"] == []
    # The target's file now has the source's shareable values ...
    assert _shareable(pair.backup) == _shareable(pair.main)
    text = pair.backup.text()
    # ... its comments, and its own identity: [server] (name, data-dir) as it was.
    assert "# backup: this comment stays through every sync\n" in text
    assert "# keep this comment\n" in text
    assert text.startswith(backup_server)
    assert pair.main.text() == main_before
    # The backup runs with it (reloaded, no restart).
    config = pair.backup.dhcp.config
    assert config.policies["default"].lease_time == 7200
    assert set(config.clients) == {bytes.fromhex("020000000001")}
    assert config.server.name == "backup"
    assert pair.backup.dhcp.sessions[0].state is S.NORMAL
    # A Report now finds nothing, and a second Run has nothing to do.
    status, again = await api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "exact"})
    assert (status, again["changes"]) == (200, [])
    status, again = await api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "exact", "run": True})
    assert (status, again["changes"], again["applied"]) == (200, [], [])
    assert loads(pair.backup.text(), "backup.ini").server.name == "backup"


@pytest_twisted.ensureDeferred
async def test_run_backup_to_main_asked_of_the_main_applies_locally(pair) -> None:
    backup_before = pair.backup.text()
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync",
                                         {"operation": "exact", "direction": "backup-to-main", "run": True})
    assert status == 200, r
    assert (r["source"], r["target"]) == ("backup", "main")
    assert _shareable(pair.main) == _shareable(pair.backup)
    assert pair.main.dhcp.config.policies["default"].lease_time == 3600
    assert pair.backup.text() == backup_before


# -- refusals change nothing ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_wrong_token_changes_nothing_and_says_why(pair, tmp_path) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    pair.set_apis(pair.main, wrong)
    before = (pair.main.text(), pair.backup.text())
    backup_bytes = pair.backup.path.read_bytes()
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync",
                                         {"operation": "exact", "run": True})
    # The partner's refusal (RFC 6750's 401 for a wrong token) is relayed with its status.
    assert status == 401, r
    assert r["error"] == f"partner http://127.0.0.1:{pair.ports[1]} refused: wrong API token"
    assert pair.backup.path.read_bytes() == backup_bytes
    assert (pair.main.text(), pair.backup.text()) == before
    assert pair.backup.dhcp.config.policies["default"].lease_time == 3600


@pytest_twisted.ensureDeferred
async def test_an_invalid_result_is_422_and_changes_nothing(pair) -> None:
    # The main's file was edited with a mistake and not reloaded: its value
    # reaches the Report, and the backup refuses to load the result.
    pair.main.write(pair.main.text().replace("lease-time = 1d", "lease-time = forever"))
    backup_bytes = pair.backup.path.read_bytes()
    line = f"{pair.backup.path}: [policy gold] lease-time: bad duration 'forever'"
    for ask, prefix in ((pair.main_api, f"partner http://127.0.0.1:{pair.ports[1]} refused: "),
                        (pair.backup_api, "")):
        status, r = await ask.call("POST", "/failover-pairs/examplepair/sync", {"operation": "exact", "run": True})
        assert (status, r["error"]) == (422, prefix + line)
        assert pair.backup.path.read_bytes() == backup_bytes
    assert pair.backup.dhcp.config.policies["default"].lease_time == 3600
    assert not [p for p in pair.backup.dir.iterdir() if p.name.startswith(".cnrd-save-")]


@pytest_twisted.ensureDeferred
async def test_an_unreachable_partner_is_502(pair) -> None:
    await pair.apis[1].stopService()
    backup_bytes = pair.backup.path.read_bytes()
    main_bytes = pair.main.path.read_bytes()
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync",
                                         {"operation": "exact", "run": True})
    assert status == 502, r
    assert r["error"].startswith(f"cannot reach partner http://127.0.0.1:{pair.ports[1]}: ")
    assert "refused" in r["error"]
    assert (pair.main.path.read_bytes(), pair.backup.path.read_bytes()) == (main_bytes, backup_bytes)


@pytest_twisted.ensureDeferred
async def test_a_stale_report_cannot_clobber_later_edits(pair) -> None:
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync", {"operation": "exact"})
    assert status == 200
    # Someone edits the backup after the Report ...
    pair.backup.write(pair.backup.text().replace("lease-time = 3600", "lease-time = 1800"))
    edited = pair.backup.path.read_bytes()
    body = {"operation": "exact", "direction": "main-to-backup", "changes": r["changes"]}
    status, answer = await pair.backup_api.call("POST", "/failover-pairs/examplepair/sync-apply", body)
    assert status == 409
    assert answer["error"] == ("target changed since the report: [policy default] lease-time is '1800', "
                               "the report had '3600'")
    assert pair.backup.path.read_bytes() == edited
    # ... or adds an object the Report would add.
    pair.backup.write(pair.backup.text() + "\n[policy gold]\nlease-time = 2h\n")
    body["changes"] = [c for c in r["changes"] if c["class"] == "policy" and c["name"] == "gold"]
    status, answer = await pair.backup_api.call("POST", "/failover-pairs/examplepair/sync-apply", body)
    assert (status, answer["error"]) == (409, "target changed since the report: [policy gold] exists now")


@pytest_twisted.ensureDeferred
async def test_sync_apply_refuses_the_source_and_malformed_changes(pair) -> None:
    main_bytes = pair.main.path.read_bytes()
    body = {"operation": "exact", "direction": "main-to-backup", "changes": []}
    status, r = await pair.main_api.call("POST", "/failover-pairs/examplepair/sync-apply", body)
    assert status == 409 and "the source of main-to-backup, not its target" in r["error"]
    status, r = await pair.backup_api.call("POST", "/failover-pairs/examplepair/sync-apply",
                                           {**body, "changes": [{"class": "policy"}]})
    assert status == 400 and r["error"].startswith("malformed change")
    status, r = await pair.backup_api.call("POST", "/failover-pairs/examplepair/sync-apply",
                                           {**body, "changes": "all"})
    assert status == 400
    # The server's identity is never changed through a sync, whoever asks.
    backup_bytes = pair.backup.path.read_bytes()
    for change, where in (
            ({"class": "server", "name": "", "property": "name", "old": "backup", "new": "main"}, "[server] name"),
            ({"class": "server", "name": "", "property": "data-dir", "old": None, "new": "/x"}, "[server] data-dir"),
            ({"class": "server", "name": "", "property": "Server-Port", "old": None, "new": "6767"},
             "[server] server-port")):
        status, r = await pair.backup_api.call("POST", "/failover-pairs/examplepair/sync-apply",
                                               {**body, "changes": [{**change, "function": "exact"}]})
        assert (status, r["error"]) == (400, f"{where} belongs to this server alone; no sync changes it"), r
    assert pair.backup.path.read_bytes() == backup_bytes
    assert pair.main.path.read_bytes() == main_bytes


@pytest_twisted.ensureDeferred
async def test_a_reload_refusal_puts_the_file_back(tmp_path) -> None:
    # The backup's scope "guest" is in the pair and holds a lease; Exact
    # removes it, the reload refuses (409) and the file is as it was.
    guest = "\n[scope guest]\nsubnet = 10.3.0.0/24\nranges = 10.3.0.100-10.3.0.110\n"
    p = Pair(tmp_path, MAIN_EXTRA, BACKUP_EXTRA + guest)
    try:
        # A client's lease in guest, as the backup's store would give it at start.
        table = p.backup.dhcp.table
        table.load([Lease(0x0A030064, LeaseState.LEASED, "guest", hw=b"\x01\x02\x00\x00\x00\x00\x77",
                          start=T0, expiration=T0 + 3600)], T0)
        assert [a for a, l in table.leases.items() if l.scope == "guest" and l.state is LeaseState.LEASED]
        before = p.backup.path.read_bytes()
        status, r = await p.main_api.call("POST", "/failover-pairs/examplepair/sync",
                                          {"operation": "exact", "run": True})
        assert status == 409 and "scope guest holds 1 leased addresses" in r["error"], r
        assert p.backup.path.read_bytes() == before
    finally:
        await p.stop()


class _NoLdap:
    """An LDAP client that never connects (the bind check is what these tests watch)."""

    def __init__(self, reactor: Any, servers: Any, on_state: Any) -> None:
        self.server = None

    def start(self) -> None:
        pass

    def stop(self) -> Any:
        return defer.succeed(None)

    def lookup(self, lookup_id: str) -> Any:
        return defer.fail(LdapUnavailable(0, "not connected"))


@pytest_twisted.ensureDeferred
async def test_synced_ldap_credentials_the_directory_rejects_put_the_file_back(tmp_path) -> None:
    # Update ensures the main's [ldap dir] on the backup; the backup binds
    # with it before its reload applies anything, is refused, and restores.
    binds: list[str] = []

    def reject(reactor: Any, server: Any, timeout: float) -> Any:
        binds.append(server.name)
        return defer.fail(LdapError(49, "invalidCredentials (49)"))

    ldap = "\n[ldap dir]\nhostname = 127.0.0.1\nsearch-path = dc=cnrd,dc=test\nquery-dictionary = cn=host-name\n"
    p = Pair(tmp_path, MAIN_EXTRA + ldap, BACKUP_EXTRA,
             ldap=lambda: LdapRegistry(reactor, client_factory=_NoLdap, bind_check=reject))
    try:
        before = p.backup.path.read_bytes()
        status, r = await p.main_api.call("POST", "/failover-pairs/examplepair/sync",
                                          {"operation": "update", "run": True})
        assert status == 400 and "[ldap dir]" in r["error"] and "invalidCredentials" in r["error"], r
        assert binds == ["dir"]
        assert p.backup.path.read_bytes() == before
        assert "dir" not in p.backup.dhcp.config.ldap
    finally:
        await p.stop()


# -- not configured, and the configuration keys ---------------------------------


@pytest_twisted.ensureDeferred
async def test_a_pair_without_apis_is_not_configured_for_sync(tmp_path) -> None:
    server = Server(tmp_path, PAIR, name="main", host="10.1.0.1")
    api = ApiService(server.dhcp.config, reactor, Admin(server.dhcp))
    api.startService()
    try:
        client = Client(f"http://127.0.0.1:{api.port.getHost().port}")
        status, r = await client.call("POST", "/failover-pairs/examplepair/sync", {})
        assert status == 409
        assert r["error"] == ("failover pair examplepair: sync is not configured "
                              "(set main-api, backup-api and api-token-file in its section)")
    finally:
        await api.stopService()


def _pair_config(extra: str) -> Any:
    return loads(PAIR.format(name="t", data="/tmp/t") + extra, "t.ini").failover_pairs["examplepair"]


def test_the_pair_api_keys_load() -> None:
    pair = _pair_config("main-api = https://dhcp-a.example:8067/\nbackup-api = http://10.1.0.2:8067\n"
                        "api-token-file = /etc/cnrd/sync-token\n")
    assert (pair.main_api, pair.backup_api, pair.api_token_file) == \
        ("https://dhcp-a.example:8067", "http://10.1.0.2:8067", "/etc/cnrd/sync-token")
    assert _pair_config("").main_api is None


@pytest.mark.parametrize("extra, fragment", [
    ("main-api = http://10.1.0.1:8067\n", "backup-api: required with main-api"),
    ("main-api = http://a:1\nbackup-api = http://b:2\n", "api-token-file: required with main-api"),
    ("api-token-file = /t\n", "main-api: required with api-token-file"),
    ("main-api = http://10.1.0.1\nbackup-api = http://b:2\napi-token-file = /t\n", "give the API's port"),
    ("main-api = http://10.1.0.1:8067/api/v1\nbackup-api = http://b:2\napi-token-file = /t\n",
     "only scheme, host and port"),
    ("main-api = ftp://10.1.0.1:8067\nbackup-api = http://b:2\napi-token-file = /t\n", "use http:// or https://"),
    ("main-api = http://a:1\nbackup-api = http://a:1/\napi-token-file = /t\n", "backup-api: http://a:1 is also main-api"),
])
def test_bad_pair_api_keys_are_one_line_errors(extra, fragment) -> None:
    with pytest.raises(ConfigError) as e:
        _pair_config(extra)
    assert "[failover-pair examplepair]" in str(e.value) and fragment in str(e.value)


def test_an_unreadable_sync_token_file_stops_the_start(tmp_path) -> None:
    server = Server(tmp_path, PAIR.replace(
        "[failover-pair examplepair]\n",
        "[failover-pair examplepair]\nmain-api = http://127.0.0.1:1\nbackup-api = http://127.0.0.1:2\n"
        f"api-token-file = {tmp_path}/missing\n"), name="t")
    api = ApiService(server.dhcp.config, reactor, Admin(server.dhcp))
    with pytest.raises(ConfigError) as e:
        api.prepare()
    assert str(e.value) == (f"{server.path}: [failover-pair examplepair] api-token-file: "
                            f"cannot read {tmp_path}/missing: No such file or directory")
    (tmp_path / "missing").write_text("  \n")
    api.token = None
    with pytest.raises(ConfigError) as e:
        api.prepare()
    assert str(e.value).endswith(f"api-token-file: {tmp_path}/missing is empty")


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/failover-pairs/examplepair/sync-view", None),
    ("POST", "/failover-pairs/examplepair/sync", {"operation": "exact", "run": True}),
    ("POST", "/failover-pairs/examplepair/sync-apply", {"direction": "main-to-backup", "changes": []}),
])
@pytest_twisted.ensureDeferred
async def test_the_sync_routes_need_the_apis_token(pair, method, path, body) -> None:
    backup_bytes = pair.backup.path.read_bytes()
    status, r = await pair.backup_api.call(method, path, body, token="wrong")
    assert (status, r) == (401, {"error": "wrong API token"})
    assert pair.backup.path.read_bytes() == backup_bytes


def test_a_partner_that_never_answers_is_502_after_the_timeout() -> None:
    from twisted.internet.testing import MemoryReactorClock

    from cnrd.admin.partner import PartnerApi, PartnerError

    fake = MemoryReactorClock()  # connections are recorded, never made
    d = PartnerApi(fake, "http://10.98.0.2:8067/", "t", timeout=10).sync_view("examplepair")
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert [c[1] for c in fake.tcpClients] == [8067]  # (its resolver answers 127.0.0.1 for every name)
    fake.advance(9)
    assert not failures and not d.called
    fake.advance(1)
    assert len(failures) == 1 and isinstance(failures[0].value, PartnerError)
    assert (failures[0].value.status, failures[0].value.reason) == \
        (502, "partner http://10.98.0.2:8067 did not answer within 10 s")
