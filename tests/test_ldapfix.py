"""The slapd fixture itself (tests/ldapfix.py) against the real slapd and ldap-utils.

Skipped where slapd is not installed, except under CI=true where that fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.ldapfix import (
    ADMIN_DN,
    CLIENTS,
    DHCP_DN,
    DHCP_PASSWORD,
    Slapd,
    SlapdError,
    client_dn,
    client_ldif,
    missing_ldap_requirements,
)

MISSING = missing_ldap_requirements()
if MISSING and os.environ.get("CI") != "true":
    pytest.skip(f"slapd fixture needs: {', '.join(MISSING)}", allow_module_level=True)

DHCP = (DHCP_DN, DHCP_PASSWORD)


@pytest.fixture
def slapd(tmp_path: Path):
    with Slapd(tmp_path / "ldap") as s:
        yield s


def test_base_ldif_is_loaded_and_a_client_is_found_by_its_mac(slapd: Slapd) -> None:
    dns = {e["dn"][0] for e in slapd.search()}
    assert {"dc=cnrd,dc=test", CLIENTS, DHCP_DN} <= dns
    slapd.add(client_ldif("02:AA:00:00:00:01", "pc-1", "staff", "10.66.0.9"))
    slapd.add(client_ldif("02:aa:00:00:00:02", "pc-2", "guests"))
    found = slapd.search("(macAddress=02:aa:00:00:00:01)", CLIENTS, bind=DHCP)
    assert len(found) == 1
    entry = found[0]
    assert entry["dn"] == [client_dn("02:aa:00:00:00:01")]
    assert entry["cn"] == ["pc-1"]
    assert entry["description"] == ["staff"]
    assert entry["ipHostNumber"] == ["10.66.0.9"]
    # macAddress matching is case-insensitive (caseIgnoreIA5Match in nis.schema)
    assert [e["cn"] for e in slapd.search("(macAddress=02:AA:00:00:00:02)", bind=DHCP)] == [["pc-2"]]
    assert slapd.search("(macAddress=02:aa:00:00:00:03)", bind=DHCP) == []


def test_client_ldif_layout_and_action(slapd: Slapd) -> None:
    text = client_ldif("02:aa:00:00:00:05", "pc-5", None, action="exclude")
    assert "ipHost" not in text  # ipHost needs ipHostNumber: only with a reservation
    slapd.add(text)
    (entry,) = slapd.search("(macAddress=02:aa:00:00:00:05)")
    assert entry["ou"] == ["exclude"]
    assert "description" not in entry
    assert sorted(entry["objectClass"]) == ["device", "ieee802Device"]


def test_modify_and_delete(slapd: Slapd) -> None:
    mac = "02:aa:00:00:00:06"
    slapd.add(client_ldif(mac, "pc-6", "staff"))
    slapd.modify(client_dn(mac), "description", "guests")
    assert slapd.search(f"(macAddress={mac})")[0]["description"] == ["guests"]
    slapd.modify(client_dn(mac), "description", None)
    assert "description" not in slapd.search(f"(macAddress={mac})")[0]
    slapd.delete(client_dn(mac))
    assert slapd.search(f"(macAddress={mac})") == []


def test_dhcp_account_reads_only_and_passwords_are_checked(slapd: Slapd) -> None:
    assert slapd.can_bind(DHCP_DN, DHCP_PASSWORD)
    assert not slapd.can_bind(DHCP_DN, DHCP_PASSWORD + "x")
    # nobody but the admin reads the stored passwords
    (me,) = slapd.search("(cn=dhcp)", bind=DHCP)
    assert "userPassword" not in me
    cp = subprocess.run(
        ["ldapmodify", "-x", "-H", slapd.uri, "-D", DHCP_DN, "-w", DHCP_PASSWORD],
        input=f"dn: {CLIENTS}\nchangetype: modify\nreplace: description\ndescription: x\n-\n",
        capture_output=True, text=True, timeout=20,
    )
    assert cp.returncode == 50, cp.stderr  # insufficientAccessRights (RFC 4511)
    with pytest.raises(SlapdError):
        slapd.add(client_ldif("02:aa:00:00:00:07", "pc-7", "staff").replace("device\n", "nosuchclass\n", 1))


def test_stop_refuses_connections_and_start_keeps_the_data(slapd: Slapd) -> None:
    slapd.add(client_ldif("02:aa:00:00:00:08", "pc-8", "staff"))
    pid = slapd.pid
    assert pid is not None and slapd.running
    slapd.stop()
    assert not slapd.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    cp = subprocess.run(
        ["ldapsearch", "-x", "-H", slapd.uri, "-b", "", "-s", "base"],
        capture_output=True, text=True, timeout=20,
    )
    assert cp.returncode == 255, cp  # LDAP_SERVER_DOWN: nothing listens
    slapd.start()
    assert slapd.pid != pid
    assert [e["cn"] for e in slapd.search("(macAddress=02:aa:00:00:00:08)")] == [["pc-8"]]


def test_freeze_leaves_searches_unanswered_until_thaw(slapd: Slapd) -> None:
    slapd.freeze()
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            slapd._tool(["ldapsearch", "-x", "-H", slapd.uri, "-b", "", "-s", "base"], timeout=1.5)
    finally:
        slapd.thaw()
    assert slapd.search("(cn=dhcp)")


def test_sizelimit_stops_an_unpaged_search_but_not_a_paged_one(tmp_path: Path) -> None:
    with Slapd(tmp_path / "ldap", sizelimit=3) as s:
        s.add("\n".join(client_ldif(f"02:bb:00:00:00:{i:02x}", f"pc-{i}", "staff") for i in range(10)))
        argv = ["ldapsearch", "-x", "-LLL", "-H", s.uri, "-D", DHCP_DN, "-w", DHCP_PASSWORD,
                "-b", CLIENTS, "(objectClass=device)", "dn"]
        unpaged = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        assert unpaged.returncode == 4, unpaged  # sizeLimitExceeded
        paged = subprocess.run([*argv[:-2], "-E", "pr=2/noprompt", *argv[-2:]],
                               capture_output=True, text=True, timeout=20)
        assert paged.returncode == 0, paged
        assert paged.stdout.count("dn: macAddress=") == 10


def test_starttls_with_the_throwaway_ca(tmp_path: Path) -> None:
    with Slapd(tmp_path / "ldap", tls=True) as s:
        assert s.ca_file is not None and s.ca_file.exists()
        text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(s.cert_file)],
                              capture_output=True, text=True, timeout=20, check=True).stdout
        assert "IP Address:127.0.0.1" in text
        assert s.search("(cn=dhcp)", bind=DHCP, starttls=True)
        # a client that trusts another CA refuses the server's certificate
        other = tmp_path / "other-ca.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", str(tmp_path / "other-ca.key"), "-out", str(other), "-subj", "/CN=other CA"],
                       capture_output=True, timeout=60, check=True)
        env = {**os.environ, "LDAPCONF": os.devnull, "LDAPTLS_CACERT": str(other)}
        cp = subprocess.run(["ldapsearch", "-x", "-ZZ", "-H", s.uri, "-D", ADMIN_DN, "-w", s.admin_password,
                             "-b", "", "-s", "base"], capture_output=True, text=True, timeout=20, env=env)
        assert cp.returncode != 0 and "start_tls" in cp.stderr, cp
