"""Client classes from a real OpenLDAP slapd, served through the real ``twistd cnrd`` to ISC dhclient.

    cli (one veth per client) ── br0 10.71.0.1/24 in srv ── cnrd
                                 slapd on 127.0.0.1:389 in srv (tests/ldapfix.py)

The seed's client-class feature with CNR's "LDAP remote server": with
``[server] client-class = true`` a client without a ``[client]`` section is
looked up in the directory by its MAC (``(macAddress=%s)`` under
ou=clients), and the entry it finds is used exactly as a ``[client]``
section: ``description`` names its client-class (whose policy gives the
options and whose selection tags pick the scope), ``ipHostNumber`` its
reserved address, ``cn`` its host name (tests/data/ldap/README).

Classes with different policies: staff (routers 10.71.0.2, domain-name
staff.example, scope tag "staff": addresses .100-.149), guests (routers
10.71.0.3, domain-name guests.example, tag "guests": .150-.199) and visitors
(routers 10.71.0.4, domain-name visitors.example, no tag: any scope); a
client the directory does not know gets the scope's default policy (routers
10.71.0.1, domain-name lan.example).  An entry's reserved address must lie
in a scope's range (docs/configuration.md), unlike a ``[reservation]``.

What is checked is what the client got: the address dhclient reports bound
and the options in its lease file (the last lease block written).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Lab, Netns, dhclient, dhclient_renew, wait_for
from tests.ldapfix import CLIENTS, DHCP_DN, Slapd, client_dn, client_ldif, missing_ldap_requirements

SERVER_IP = "10.71.0.1"
API = "http://127.0.0.1:8067"
TTL = 2  # client-cache-ttl, seconds: short so a changed entry is asked again soon
RESERVED = "10.71.0.120"  # in staffnet's range: an entry's reservation outside every range is refused

CONFIG = """
[server]
name = ldaptest
interfaces = {iface}
data-dir = @DATA@
client-class = true
client-lookup-id = mac
client-cache-ttl = {ttl}s
client-lookup-failure = default

[api]
listen = 127.0.0.1:8067
token-file = {token}

[policy default]
lease-time = 3600
option.routers = 10.71.0.1
option.domain-name = lan.example

[policy staff]
lease-time = 3600
option.routers = 10.71.0.2
option.domain-name = staff.example

[policy guests]
lease-time = 3600
option.routers = 10.71.0.3
option.domain-name = guests.example

[client-class staff]
policy = staff
selection-tags = staff

[client-class guests]
policy = guests
selection-tags = guests

[policy visitors]
lease-time = 3600
option.routers = 10.71.0.4
option.domain-name = visitors.example

[client-class visitors]
policy = visitors

[scope staffnet]
subnet = 10.71.0.0/24
ranges = 10.71.0.100-10.71.0.149
selection-tags = staff

[scope guestnet]
subnet = 10.71.0.0/24
ranges = 10.71.0.150-10.71.0.199
selection-tags = guests

[ldap dir]
hostname = 127.0.0.1
port = {port}
username = {bind_dn}
password-file = {password_file}
search-path = {base}
search-scope = onelevel
search-filter = (macAddress=%s)
query-dictionary = description=client-class, cn=host-name, ipHostNumber=reserved-address, ou=action
timeout = 2s
{tls}"""


# -- reading what the client and the server say ------------------------------------------------

def lease_options(ns: Netns, iface: str) -> dict[str, str]:
    """The options of the last lease block dhclient wrote to its lease file (``option NAME VALUE;``)."""
    text = ns.lab.path(f"dhclient-{ns.role}-{iface}.leases").read_text()
    blocks = re.findall(r"^lease \{\n(.*?)^\}", text, re.M | re.S)
    assert blocks, f"no lease in dhclient's lease file:\n{text}"
    return {m.group(1): m.group(2).strip('"')
            for m in re.finditer(r"^\s*option (\S+) (.*);$", blocks[-1], re.M)}


def http(ns: Netns, method: str, path: str, token: str | None = None, body: str | None = None) -> tuple[int, str]:
    """One request to the server's admin API from inside its namespace: (status, body)."""
    argv = ["curl", "-s", "--max-time", "10", "-X", method, "-w", "\n%{http_code}"]
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data", body]
    out = ns.run(*argv, API + path, timeout=20).stdout
    text, _, code = out.rpartition("\n")
    return int(code), text


def metric(ns: Netns, name: str, label: str | None = None) -> float:
    """The value of series ``name`` (with ``label``, e.g. ``result="found"``) in /metrics; fails if absent.

    Without ``label`` the metric must have exactly one series.
    """
    status, text = http(ns, "GET", "/metrics")
    assert status == 200, text[:2000]
    labels = r"\{" + re.escape(label) + r"\}" if label else r"(?:\{[^}]*\})?"
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}{labels} (\S+)$", text, re.M)]
    assert len(values) == 1, f"expected one {name}{{{label or ''}}} series in /metrics, found {values}:\n" + \
        "\n".join(line for line in text.splitlines() if line.startswith(name))
    return values[0]


def ready(ns: Netns, token: str) -> tuple[int, dict]:
    status, text = http(ns, "GET", "/api/v1/ready", token)
    return status, json.loads(text)


# -- the lab ------------------------------------------------------------------------------------

class Net:
    """The server's namespace with its bridge, slapd and cnrd, and the clients' namespace."""

    def __init__(self, lab: Lab, *, tls: bool = False, ca_file: Path | None = None) -> None:
        """``tls``: slapd offers StartTLS and cnrd must use it, checking the certificate
        against ``ca_file`` (default: the CA that signed slapd's)."""
        missing = missing_ldap_requirements()
        if missing:  # never a skip: scripts/setup installs them, CI must have them
            pytest.fail(f"the LDAP integration test needs {', '.join(missing)} (scripts/setup installs them)",
                        pytrace=False)
        self.lab = lab
        self.srv = lab.netns("srv")
        self.br = lab.bridge(self.srv, "br0", addr=f"{SERVER_IP}/24")
        self.cli = lab.netns("cli")
        self.token = secrets.token_urlsafe(24)
        token_file = lab.path("api-token")
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        self.slapd = Slapd(lab.path("ldap"), host="127.0.0.1", port=389, netns=self.srv, tls=tls)
        tls_keys = ""
        if tls:
            self.slapd.configure()  # makes the certificates now: the config names the CA file
            tls_keys = f"use-ssl = starttls\nca-file = {ca_file or self.slapd.ca_file}\n"
        self.password_file = lab.path("ldap-password")
        self.slapd.write_password_file(self.password_file)
        self.server = CnrdProcess(self.srv, CONFIG.format(
            iface=self.br, ttl=TTL, token=token_file, port=self.slapd.port, bind_dn=DHCP_DN,
            password_file=self.password_file, base=CLIENTS, tls=tls_keys,
        ))

    def client_if(self) -> str:
        _, ifname = self.lab.link(self.srv, self.cli, a_bridge=self.br)
        return ifname


@pytest.fixture
def net(lab: Lab):
    n = Net(lab)
    try:
        yield n
    finally:
        n.slapd.stop()  # by its PID; the lab would too, this keeps the order clear


def started(n: Net, *entries: str) -> Net:
    n.slapd.start()
    for ldif in entries:
        n.slapd.add(ldif)
    n.server.start()
    return n


def wait_ldap_state(n: Net, state: str, timeout: float = 15, reason: str | None = None) -> dict:
    """Poll /ready (bounded) until its ldap state is ``state`` (with a reason matching
    the regex ``reason``, when given); the last answer.

    A server that has not tried the directory yet is degraded too ("not connected
    yet"): a test of why the connection failed waits for that reason.
    """
    last: dict = {}

    def reached() -> bool:
        nonlocal last
        status, last = ready(n.srv, n.token)
        assert status == 200, (status, last)  # LDAP down is degraded, never unready
        ldap = last.get("ldap", {})
        return ldap.get("state") == state and (
            reason is None or re.search(reason, ldap.get("reason", ""), re.I) is not None)

    wait_for(reached, timeout, interval=0.2, what=f"/ready to report ldap {state} (last: {last})")
    return last


# -- the cases ----------------------------------------------------------------------------------

def test_classes_from_ldap_reach_dhclient(net: Net) -> None:
    """(a) Entries pick class, options, scope and reserved address; an unknown client gets the defaults."""
    n = net
    ifs = {name: n.client_if() for name in ("reserved", "staff", "guest", "stranger")}
    macs = {name: n.cli.mac(i) for name, i in ifs.items()}
    started(
        n,
        client_ldif(macs["reserved"], "printer-1", "staff", RESERVED),
        client_ldif(macs["staff"], "laptop-2", "staff"),
        client_ldif(macs["guest"], "phone-3", "guests"),
    )
    # the directory holds what the test wrote, seen as cnrd's account sees it
    assert len(n.slapd.search("(objectClass=ieee802Device)", CLIENTS, bind=(DHCP_DN, n.slapd.dhcp_password))) == 3

    got = {name: dhclient(n.cli, i) for name, i in ifs.items()}
    opts = {name: lease_options(n.cli, i) for name, i in ifs.items()}

    assert got["reserved"].address == RESERVED
    assert (opts["reserved"]["routers"], opts["reserved"]["domain-name"]) == ("10.71.0.2", "staff.example")

    staff = int(got["staff"].address.rsplit(".", 1)[1])
    assert 100 <= staff <= 149, got["staff"].address  # the staff tag's scope
    assert (opts["staff"]["routers"], opts["staff"]["domain-name"]) == ("10.71.0.2", "staff.example")

    guest = int(got["guest"].address.rsplit(".", 1)[1])
    assert 150 <= guest <= 199, got["guest"].address  # the guests tag's scope
    assert (opts["guest"]["routers"], opts["guest"]["domain-name"]) == ("10.71.0.3", "guests.example")

    # not in the directory: no class, the default policy
    assert (opts["stranger"]["routers"], opts["stranger"]["domain-name"]) == ("10.71.0.1", "lan.example")

    leased = n.server.leased()
    assert leased[RESERVED] == macs["reserved"]
    assert leased[got["guest"].address] == macs["guest"]
    # the host name the entry's cn gives comes back to the client too
    assert opts["reserved"].get("host-name") == "printer-1", opts["reserved"]
    status, body = ready(n.srv, n.token)
    assert status == 200 and body["ldap"]["state"] == "up", body
    assert metric(n.srv, "cnrd_ldap_up") == 1
    assert metric(n.srv, "cnrd_ldap_lookups_total", 'result="found"') >= 3
    assert metric(n.srv, "cnrd_ldap_lookups_total", 'result="not-found"') >= 1


def test_changed_entry_is_seen_after_the_cache_ttl(net: Net) -> None:
    """(b) The entry's class changes; past client-cache-ttl the next renewal gets the new class's options."""
    n = net
    iface = n.client_if()
    mac = n.cli.mac(iface)
    started(n, client_ldif(mac, "printer-1", "staff", RESERVED))
    first = dhclient(n.cli, iface)
    assert first.address == RESERVED
    assert lease_options(n.cli, iface)["domain-name"] == "staff.example"

    # visitors has no selection tag, so the reserved address in staffnet stays the client's
    n.slapd.modify(client_dn(mac), "description", "visitors")
    assert n.slapd.search(f"(macAddress={mac})")[0]["description"] == ["visitors"]
    found = metric(n.srv, "cnrd_ldap_lookups_total", 'result="found"')
    time.sleep(TTL + 0.5)  # past the TTL: the cached entry is stale, so cnrd must ask again
    again = dhclient_renew(n.cli, iface)
    assert metric(n.srv, "cnrd_ldap_lookups_total", 'result="found"') > found  # it did ask
    assert again.address == RESERVED
    opts = lease_options(n.cli, iface)
    assert (opts["routers"], opts["domain-name"]) == ("10.71.0.4", "visitors.example"), opts


def test_slapd_down_cached_clients_served_and_degraded(net: Net) -> None:
    """(c) slapd stops: a cached client still renews with its class, /ready degraded (200), cnrd_ldap_up 0."""
    n = net
    iface = n.client_if()
    mac = n.cli.mac(iface)
    started(n, client_ldif(mac, "laptop-2", "staff"))
    first = dhclient(n.cli, iface)
    assert lease_options(n.cli, iface)["domain-name"] == "staff.example"
    assert wait_ldap_state(n, "up")["ldap"]["state"] == "up"
    assert metric(n.srv, "cnrd_ldap_up") == 1

    n.slapd.stop()
    assert not n.slapd.running
    body = wait_ldap_state(n, "degraded")
    assert body["ready"] is True, body
    assert metric(n.srv, "cnrd_ldap_up") == 0
    stale = metric(n.srv, "cnrd_client_registry_requests_total", 'outcome="stale"')
    time.sleep(TTL + 0.5)  # the entry is now stale and the directory unreachable: the stale entry serves
    again = dhclient_renew(n.cli, iface)
    assert metric(n.srv, "cnrd_client_registry_requests_total", 'outcome="stale"') > stale
    assert again.address == first.address
    assert lease_options(n.cli, iface)["domain-name"] == "staff.example"
    # one log line for the episode, however many reconnects and lookups failed during it
    down_lines = [line for line in n.server.log().splitlines()
                  if re.search(r"LDAP.*(unavailable|unreachable|down|lost)", line)]
    assert len(down_lines) == 1, "expected one log line for the outage:\n" + n.server.log()[-4000:]

    n.slapd.start()
    assert wait_ldap_state(n, "up", timeout=30)["ldap"]["state"] == "up"
    assert metric(n.srv, "cnrd_ldap_up") == 1


def test_reload_with_a_wrong_password_is_refused(net: Net) -> None:
    """(d) A reload whose password file no longer binds answers 4xx naming the bind failure, logged once."""
    n = net
    started(n)
    assert n.slapd.can_bind(DHCP_DN, n.slapd.dhcp_password)
    assert not n.slapd.can_bind(DHCP_DN, "not-the-password")
    log_before = len(n.server.log().splitlines())

    n.slapd.write_password_file(n.password_file, "not-the-password")
    status, body = http(n.srv, "POST", "/api/v1/dhcp/reload", n.token, "{}")
    assert 400 <= status < 500, (status, body)
    assert re.search(r"bind", body, re.I) and re.search(r"invalid ?credentials|\b49\b", body, re.I), body
    new_lines = n.server.log().splitlines()[log_before:]
    # Not a bare 49: the access log line's timestamp has one at minute or second 49.
    bind_lines = [line for line in new_lines if re.search(r"invalid ?credentials|\(49\)", line, re.I)]
    assert len(bind_lines) == 1, "expected one clear log line:\n" + "\n".join(new_lines)
    assert "dir" in bind_lines[0], bind_lines[0]
    assert n.server.proc is not None and n.server.proc.poll() is None

    # the right password again: the reload is accepted, the server was never restarted
    n.slapd.write_password_file(n.password_file)
    status, body = http(n.srv, "POST", "/api/v1/dhcp/reload", n.token, "{}")
    assert status == 200, (status, body)


def test_starttls_with_the_directory_ca(lab: Lab) -> None:
    """(e) use-ssl = starttls: cnrd checks slapd's certificate against ca-file, then looks clients up over TLS."""
    n = Net(lab, tls=True)
    try:
        iface = n.client_if()
        started(n, client_ldif(n.cli.mac(iface), "laptop-5", "guests"))
        # slapd answers StartTLS with a certificate the fixture's CA signed
        assert n.slapd.search("(cn=dhcp)", bind=(DHCP_DN, n.slapd.dhcp_password), starttls=True)
        lease = dhclient(n.cli, iface)
        assert 150 <= int(lease.address.rsplit(".", 1)[1]) <= 199, lease.address
        assert lease_options(n.cli, iface)["domain-name"] == "guests.example"
        assert wait_ldap_state(n, "up")["ldap"]["state"] == "up"
    finally:
        n.slapd.stop()


def test_starttls_refuses_a_certificate_from_another_ca(lab: Lab) -> None:
    """(e) A certificate the configured CA did not sign: degraded with the reason, clients get the defaults."""
    other = lab.path("other-ca")
    other.mkdir()
    ca = other / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(other / "ca.key"), "-out", str(ca), "-subj", "/CN=not the directory's CA"],
                   capture_output=True, timeout=60, check=True)
    n = Net(lab, tls=True, ca_file=ca)
    try:
        iface = n.client_if()
        started(n, client_ldif(n.cli.mac(iface), "laptop-6", "guests"))
        body = wait_ldap_state(n, "degraded", reason=r"certificate|tls|verif")
        assert re.search(r"certificate|tls|verif", body["ldap"].get("reason", ""), re.I), body
        assert metric(n.srv, "cnrd_ldap_up") == 0
        # client-lookup-failure = default: answered without its class rather than dropped
        lease = dhclient(n.cli, iface)
        assert lease_options(n.cli, iface)["domain-name"] == "lan.example", lease
    finally:
        n.slapd.stop()
