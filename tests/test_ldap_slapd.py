"""cnrd.ldap against a real OpenLDAP slapd on 127.0.0.1 (tests/ldapfix.py): bind, lookups, paging, StartTLS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from cnrd.config.model import LdapConfig
from cnrd.ldap.client import LdapClient, LdapError, LdapUnavailable, check_bind
from cnrd.ldap.entry import client_from_entry
from tests.ldapfix import CLIENTS, DHCP_DN, DHCP_PASSWORD, Slapd, client_ldif, missing_ldap_requirements

DICTIONARY = (("cn", "host-name"), ("description", "client-class"),
              ("ipHostNumber", "reserved-address"), ("ou", "action"))

_missing = missing_ldap_requirements()
pytestmark = pytest.mark.skipif(bool(_missing) and os.environ.get("CI") != "true",
                                reason=f"slapd not installed: {_missing}")


def server_for(slapd: Slapd, **changes: object) -> LdapConfig:
    fields: dict[str, object] = dict(
        name="ldap1", hostname=slapd.host, port=slapd.port, search_path=CLIENTS,
        query_dictionary=DICTIONARY, username=DHCP_DN, password=DHCP_PASSWORD.encode(), timeout=5.0)
    fields.update(changes)
    return LdapConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def slapd(tmp_path: Path):
    with Slapd(tmp_path / "slapd") as s:
        s.add(client_ldif("02:00:00:00:00:07", "pc-7", "staff", "10.0.0.77"))
        yield s


async def wait_bound(client: LdapClient, states: list[tuple[bool, str]]) -> None:
    from twisted.internet.task import deferLater
    for _ in range(200):  # at most ~10 s
        if states:
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("the client reported no state within 10 s")


@pytest_twisted.ensureDeferred
async def test_bind_lookup_found_and_not_found(slapd: Slapd) -> None:
    states: list[tuple[bool, str]] = []
    client = LdapClient(reactor, [server_for(slapd)], on_state=lambda up, why: states.append((up, why)))
    client.start()
    try:
        await wait_bound(client, states)
        assert states == [(True, "ldap1")] and client.connected
        entry = await client.lookup("02:00:00:00:00:07")
        assert entry is not None and entry.dn.lower() == f"macaddress=02:00:00:00:00:07,{CLIENTS}".lower()
        client_config = client_from_entry(entry, DICTIONARY, bytes.fromhex("020000000007"))
        assert (client_config.host_name, client_config.client_class) == ("pc-7", "staff")
        assert client_config.reserved_address == (10 << 24) | 77
        assert await client.lookup("02:00:00:00:00:08") is None
        # A lookup id that tries to widen the filter finds nothing instead of every client.
        assert await client.lookup("*") is None
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_bad_password_is_invalid_credentials(slapd: Slapd) -> None:
    with pytest.raises(LdapError) as caught:
        await check_bind(reactor, server_for(slapd, password=b"wrong"), 5.0)
    assert caught.value.code == 49
    assert "invalidCredentials (49)" in caught.value.reason and "\n" not in caught.value.reason
    await check_bind(reactor, server_for(slapd), 5.0)  # the right password binds


@pytest_twisted.ensureDeferred
async def test_nothing_listening_is_unavailable(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        server = LdapConfig(name="gone", hostname="127.0.0.1", port=port, search_path=CLIENTS,
                            query_dictionary=DICTIONARY, timeout=3.0)
        with pytest.raises(LdapUnavailable) as caught:
            await check_bind(reactor, server, 3.0)
    assert "gone" in caught.value.reason


@pytest_twisted.ensureDeferred
async def test_paged_search_returns_every_entry(tmp_path: Path) -> None:
    with Slapd(tmp_path / "slapd", sizelimit=5) as slapd:
        macs = [f"02:00:00:00:01:{i:02x}" for i in range(23)]
        slapd.add("\n".join(client_ldif(mac, f"pc-{i}", "staff") for i, mac in enumerate(macs)))
        states: list[tuple[bool, str]] = []
        client = LdapClient(reactor, [server_for(slapd)], on_state=lambda up, why: states.append((up, why)))
        client.start()
        try:
            await wait_bound(client, states)
            # Unpaged, slapd stops at its size limit: paging is what gets them all.
            with pytest.raises(LdapError) as caught:
                await client.search(CLIENTS, "onelevel", "(objectClass=ieee802Device)", ["macAddress"], timeout=10)
            assert caught.value.code == 4
            entries = await client.search(CLIENTS, "onelevel", "(objectClass=ieee802Device)", ["macAddress"],
                                          page_size=4, timeout=10)
            assert sorted(e.attributes["macaddress"][0].decode() for e in entries) == macs
        finally:
            await client.stop()


@pytest_twisted.ensureDeferred
async def test_starttls_bind_and_lookup(tmp_path: Path) -> None:
    with Slapd(tmp_path / "slapd", tls=True) as slapd:
        slapd.add(client_ldif("02:00:00:00:00:09", "pc-9", "lab"))
        assert slapd.ca_file is not None
        server = server_for(slapd, use_ssl="starttls", ca_file=str(slapd.ca_file))
        await check_bind(reactor, server, 5.0)
        states: list[tuple[bool, str]] = []
        client = LdapClient(reactor, [server], on_state=lambda up, why: states.append((up, why)))
        client.start()
        try:
            await wait_bound(client, states)
            assert states == [(True, "ldap1")]
            entry = await client.lookup("02:00:00:00:00:09")
            assert entry is not None and entry.first("description") == b"lab"
        finally:
            await client.stop()
        # A CA that did not sign slapd's certificate is refused.
        other = tmp_path / "other-ca.pem"
        other.write_bytes(_self_signed(tmp_path))
        with pytest.raises(LdapError):
            await check_bind(reactor, server_for(slapd, use_ssl="starttls", ca_file=str(other)), 5.0)


def _self_signed(tmp_path: Path) -> bytes:
    import subprocess
    key, crt = tmp_path / "o.key", tmp_path / "o.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=other-ca"], check=True, capture_output=True, timeout=60)
    return crt.read_bytes()


async def wait_for(check, what: str, seconds: float = 10.0) -> None:
    from twisted.internet.task import deferLater
    for _ in range(int(seconds / 0.05)):  # bounded
        if check():
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"not within {seconds} s: {what}")


@pytest_twisted.ensureDeferred
async def test_slapd_stopped_then_restarted(slapd: Slapd) -> None:
    states: list[tuple[bool, str]] = []
    client = LdapClient(reactor, [server_for(slapd)], on_state=lambda up, why: states.append((up, why)),
                        backoff=(0.1, 0.4))
    client.start()
    try:
        await wait_bound(client, states)
        slapd.stop()
        await wait_for(lambda: states[-1][0] is False, "the loss reported")
        with pytest.raises(LdapUnavailable):
            await client.lookup("02:00:00:00:00:07")
        slapd.start()
        await wait_for(lambda: states[-1] == (True, "ldap1"), "bound again")
        entry = await client.lookup("02:00:00:00:00:07")
        assert entry is not None and entry.first("cn") == b"pc-7"
        assert [up for up, _ in states] == [True, False, True]  # on changes only, however many retries
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_frozen_slapd_times_out_then_answers_again(slapd: Slapd) -> None:
    from cnrd.ldap.client import LdapTimeout
    states: list[tuple[bool, str]] = []
    client = LdapClient(reactor, [server_for(slapd, timeout=0.5)], on_state=lambda up, why: states.append((up, why)))
    client.start()
    try:
        await wait_bound(client, states)
        slapd.freeze()
        try:
            with pytest.raises(LdapTimeout):
                await client.lookup("02:00:00:00:00:07")
            assert client.outstanding == 0  # the timed-out search gave its slot back
        finally:
            slapd.thaw()
        entry = await client.lookup("02:00:00:00:00:07")
        assert entry is not None and entry.first("cn") == b"pc-7"
    finally:
        await client.stop()


@pytest_twisted.ensureDeferred
async def test_fallback_server_then_back_to_the_preferred(tmp_path: Path) -> None:
    preferred = Slapd(tmp_path / "a")  # configured, not started yet: nothing listens on its port
    with Slapd(tmp_path / "b") as fallback:
        fallback.add(client_ldif("02:00:00:00:00:07", "from-b", "staff"))
        servers = [server_for(preferred, name="a", preference=1), server_for(fallback, name="b", preference=2)]
        states: list[tuple[bool, str]] = []
        client = LdapClient(reactor, servers, on_state=lambda up, why: states.append((up, why)), backoff=(0.1, 0.5))
        client.start()
        try:
            await wait_bound(client, states)
            assert states == [(True, "b")]
            assert (await client.lookup("02:00:00:00:00:07")).first("cn") == b"from-b"  # type: ignore[union-attr]
            with preferred:
                preferred.add(client_ldif("02:00:00:00:00:07", "from-a", "staff"))
                await wait_for(lambda: states[-1] == (True, "a"), "back on the preferred server")
                assert (await client.lookup("02:00:00:00:00:07")).first("cn") == b"from-a"  # type: ignore
        finally:
            await client.stop()
