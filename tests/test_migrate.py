"""cnrd-import's readers, planner and dhcpd.conf converter, from dhcpd.leases(5), Kea's memfile columns and dhcpd.conf(5).

The files under tests/data/migrate are written by hand from those formats;
tests/integration/test_migration.py reads files real servers wrote.
"""

from __future__ import annotations

import calendar
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnrd.config import loads
from cnrd.config.model import ConfigError
from cnrd.leases.model import Lease, LeaseState
from cnrd.migrate import cli
from cnrd.migrate.dhcpd_conf import ConvertOptions, convert_dhcpd_conf
from cnrd.migrate.isc_leases import parse_date, read_isc_leases
from cnrd.migrate.kea_csv import read_kea_csv
from cnrd.migrate.plan import plan_import
from cnrd.migrate.records import NEVER, ForeignLease, Malformed
from cnrd.text import ip_to_int

DATA = Path(__file__).parent / "data" / "migrate"
HOLD = """
import sys, time
from cnrd.leases.lmdb_store import LmdbLeaseStore
store = LmdbLeaseStore(sys.argv[1], readonly=True)
print("open", flush=True)
time.sleep(30)
"""
NOW = calendar.timegm((2030, 1, 2, 10, 30, 0))  # between the files' starts and ends


def target(data_dir: str = "/nonexistent") -> object:
    return loads((DATA / "target.ini").read_text().replace("@DATA@", data_dir))


def by_addr(leases: list[Lease]) -> dict[str, Lease]:
    from cnrd.text import int_to_ip
    return {int_to_ip(l.address): l for l in leases}


# -- dhcpd.leases ---------------------------------------------------------------

def test_isc_dates_utc_epoch_and_never():
    assert parse_date(["3", "2030/01/02", "10:00:00"]) == calendar.timegm((2030, 1, 2, 10, 0, 0))
    assert parse_date(["epoch", "1893574800"]) == 1893574800
    assert parse_date(["never"]) == NEVER
    for bad in (["3", "2030/13/02", "10:00:00"], ["3", "2030/01/02"], ["soon"]):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_isc_reader_keeps_every_block_in_file_order_and_reads_the_fields():
    recs = read_isc_leases((DATA / "dhcpd.leases").read_text())
    good = [r for r in recs if isinstance(r, ForeignLease)]
    bad = [r for r in recs if isinstance(r, Malformed)]
    assert [r.address for r in good][:3] == [ip_to_int("10.98.0.100"), ip_to_int("10.98.0.101"),
                                            ip_to_int("10.98.0.100")]
    assert [(b.text, b.reason) for b in bad] == [("10.98.0.105", "'3 2030/13/02 11:00:00' is not a date")]
    alpha = good[1]
    # uid "\001\002\000..." is octal-escaped bytes; the failover peer state block is not a lease
    assert alpha.client_id == b"\x01\x02\x00\x00\x00\x00\x02"
    assert alpha.hw == bytes.fromhex("020000000002") and alpha.htype == 1
    assert alpha.host_name == "alpha" and alpha.state == "active"
    assert alpha.end - alpha.start == 3600
    bravo = good[2]
    assert bravo.host_name == 'bravo, "the" host'  # escaped quote, and the on-expiry block passed over
    assert good[3].start == 1893574800 and good[3].state == "free"  # epoch dates with a comment after


def test_isc_broken_file_reports_where_it_broke():
    recs = read_isc_leases('lease 10.98.0.100 {\n  binding state active;\n  client-hostname "open\n')
    assert recs[-1] == Malformed(3, "a quoted string does not end")
    assert recs[0] == Malformed(1, "a '{' is never closed")  # the lease the string broke
    recs = read_isc_leases("lease 10.98.0.100 {\n  binding state active;\n")
    assert len(recs) == 1 and isinstance(recs[0], Malformed) and recs[0].line == 1
    recs = read_isc_leases("lease 10.98.0.300 { binding state active; }\n")
    assert isinstance(recs[0], Malformed) and recs[0].text == "10.98.0.300"


def test_isc_plan_counts_each_reason():
    leases, events, report = plan_import(read_isc_leases((DATA / "dhcpd.leases").read_text()), target(), {}, NOW)
    assert report.imported == 4 and report.leased == 3 and report.unavailable == 1
    assert report.superseded == 1
    assert report.counts() == {"malformed": 1, "outside-scope": 1, "not-leased": 2, "expired": 1,
                               "duplicate": 1, "reserved": 1}
    reasons = {s.address: s.reason for s in report.skipped}
    assert reasons == {"10.98.0.102": "not-leased", "10.98.0.103": "expired", "10.99.0.5": "outside-scope",
                       "10.98.0.105": "malformed", "10.98.0.107": "duplicate", "10.98.0.50": "reserved",
                       "10.98.0.120": "not-leased"}
    got = by_addr(leases)
    assert set(got) == {"10.98.0.100", "10.98.0.101", "10.98.0.104", "10.98.0.106"}
    # the later block of .100 is the one imported
    assert got["10.98.0.100"].host_name == 'bravo, "the" host'
    assert got["10.98.0.100"].state is LeaseState.LEASED and got["10.98.0.100"].scope == "lan"
    assert got["10.98.0.100"].hw == b"\x01" + bytes.fromhex("020000000001")
    assert got["10.98.0.101"].client_id == b"\x01\x02\x00\x00\x00\x00\x02"
    assert got["10.98.0.101"].expiration == calendar.timegm((2030, 1, 2, 11, 0, 0))
    assert got["10.98.0.106"].expiration == Lease.INFINITE
    assert got["10.98.0.104"].state is LeaseState.UNAVAILABLE and got["10.98.0.104"].expiration == NOW + 86400
    assert [e.what for e in events] == ["import"] * 4
    assert {e.address for e in events} == {l.address for l in leases}


def test_plan_never_overwrites_a_client_the_store_has():
    recs = read_isc_leases((DATA / "dhcpd.leases").read_text())
    held = Lease(ip_to_int("10.98.0.101"), LeaseState.LEASED, "lan", b"\x01" + bytes(6), None, NOW, NOW + 60)
    leases, _, report = plan_import(recs, target(), {held.address: held}, NOW)
    assert held.address not in {l.address for l in leases}
    assert [s.reason for s in report.skipped if s.address == "10.98.0.101"] == ["duplicate"]
    # a free record in the store is no obstacle
    free = Lease(ip_to_int("10.98.0.101"), LeaseState.AVAILABLE, "lan")
    leases, _, _ = plan_import(recs, target(), {free.address: free}, NOW)
    assert free.address in {l.address for l in leases}


def test_plan_imports_a_reserved_address_for_its_own_client():
    rec = ForeignLease(ip_to_int("10.98.0.50"), "active", bytes.fromhex("020000000050"), start=NOW - 10,
                       end=NOW + 100, line=1)
    leases, _, report = plan_import([rec], target(), {}, NOW)
    assert report.imported == 1 and leases[0].flags & leases[0].flags.RESERVED


# -- Kea CSV ---------------------------------------------------------------------

def test_kea_csv_columns_states_and_escapes():
    recs = read_kea_csv((DATA / "kea-leases4.csv").read_text())
    leases, _, report = plan_import(recs, target(), {}, NOW)
    assert report.imported == 3 and report.leased == 2 and report.unavailable == 1 and report.superseded == 1
    assert report.counts() == {"malformed": 2, "outside-scope": 1, "not-leased": 2, "expired": 1,
                               "duplicate": 0, "reserved": 0}
    got = by_addr(leases)
    assert got["10.98.0.100"].host_name == "bravo, host"  # &#x2c is Kea's escaped comma
    assert got["10.98.0.100"].client_id == bytes.fromhex("01020000000001")
    assert got["10.98.0.100"].cltt == 1893582000 - 3600  # expire - valid_lifetime
    assert got["10.98.0.102"].state is LeaseState.UNAVAILABLE  # state 1: declined
    assert got["10.98.0.106"].expiration == Lease.INFINITE
    # the row with valid_lifetime 0 deleted .101, so it is not leased
    assert {s.address: s.detail for s in report.skipped}["10.98.0.101"] == "state deleted"


def test_kea_csv_needs_its_header():
    assert isinstance(read_kea_csv("address,hwaddr\n10.98.0.1,02:00:00:00:00:01\n")[0], Malformed)
    assert read_kea_csv("") == []


# -- dhcpd.conf ------------------------------------------------------------------

def test_dhcpd_conf_converts_and_loads():
    ini = convert_dhcpd_conf((DATA / "dhcpd.conf").read_text(),
                             ConvertOptions(name="m", data_dir="/var/lib/cnrd", interfaces=("eth1",)))
    config = loads(ini)
    lan = config.scopes["net-10.98.0.0-24"]
    assert (lan.network, lan.prefix_len) == (ip_to_int("10.98.0.0"), 24)
    assert [(r.first, r.last) for r in lan.ranges] == [(ip_to_int("10.98.0.100"), ip_to_int("10.98.0.149"))]
    assert lan.options[3] == bytes([10, 98, 0, 1])
    default = config.policies["default"]
    assert default.lease_time == 3600 and default.options[15] == b"example.com"
    assert default.options[6] == bytes([10, 98, 0, 1, 10, 98, 0, 2])
    office = config.scopes["net-10.97.0.0-24"]
    pxe = config.policies[office.policy]
    assert pxe.lease_time == 600 and pxe.packet_file_name == "pxelinux.0"
    assert pxe.packet_siaddr == ip_to_int("10.97.0.7")
    assert config.reservations[ip_to_int("10.98.0.50")].hardware_address == bytes.fromhex("020000000050")
    assert config.reservations[ip_to_int("10.98.0.50")].host_name == "printer"
    assert config.reservations[ip_to_int("10.97.0.5")].client_id == b"\x01\x02\x03"
    pair = config.failover_pairs["examplepair"]
    assert (pair.main, pair.backup) == (ip_to_int("10.98.0.1"), ip_to_int("10.98.0.2"))
    assert pair.mclt == 1800 and pair.load_balancing and pair.split == 128 and pair.port == 647
    assert pair.max_unacked_updates == 10 and pair.failover_poll_timeout == 30
    assert pair.scopes == ("net-10.98.0.0-24",)  # only the subnet whose pool names the peer
    assert config.server.authoritative is True
    for left in ("ddns-update-style", "max-lease-time 7200", "ntp.example.com", "if option vendor-class",
                 "printer2.example.com", "192.0.2.9"):
        assert any(left in line and line.startswith("# not converted") for line in ini.splitlines()), left


def test_dhcpd_conf_secondary_becomes_the_backup_side():
    conf = """failover peer "p" { secondary; address 10.1.0.2; peer address 10.1.0.1; split 256; }
subnet 10.1.0.0 netmask 255.255.255.0 { pool { failover peer "p"; range 10.1.0.10 10.1.0.20; } }"""
    ini = convert_dhcpd_conf(conf)
    pair = loads(ini).failover_pairs["p"]
    assert (pair.main, pair.backup) == (ip_to_int("10.1.0.1"), ip_to_int("10.1.0.2"))
    assert not pair.load_balancing and pair.scopes == ()
    assert "mclt is set on dhcpd's primary only" in ini


def test_dhcpd_conf_option_lists_of_names():
    ini = convert_dhcpd_conf('option domain-search "a.example", "b.example";\n'
                             'subnet 10.1.0.0 netmask 255.255.255.0 { range 10.1.0.5 10.1.0.9; }')
    assert loads(ini).policies["default"].options[119] == b"\x01a\x07example\x00\x01b\x07example\x00"


def test_dhcpd_conf_syntax_error_names_the_line():
    with pytest.raises(ValueError, match="line 2"):
        convert_dhcpd_conf('subnet 10.1.0.0 netmask 255.255.255.0 {\n range 10.1.0.5 10.1.0.9\n}')


# -- the command -----------------------------------------------------------------

def test_cli_imports_into_a_stopped_store_and_refuses_an_open_one(tmp_path, capsys):
    data = tmp_path / "data"
    ini = tmp_path / "t.ini"
    ini.write_text((DATA / "target.ini").read_text().replace("@DATA@", str(data)))
    kea = tmp_path / "k.csv"
    # times relative to now, so the rows are current whenever the test runs
    now = int(time.time())
    kea.write_text("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n"
                   f"10.98.0.110,02:00:00:00:00:10,,3600,{now + 3000},1,0,0,h,0\n"
                   f"10.98.0.111,02:00:00:00:00:11,,3600,{now - 10},1,0,0,,0\n")
    assert cli.main(["leases", "--config", str(ini), "--kea", str(kea), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["imported"] == 1 and out["skipped"]["expired"] == 1
    # Another process with the store open (as the server has it): the POSIX
    # lock LMDB holds is per process, so it must be another one.
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(data)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert cli.store_holder(str(data)) == holder.pid
        assert cli.main(["leases", "--config", str(ini), "--kea", str(kea)]) == 1
        assert f"is open in process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert cli.store_holder(str(data)) is None
    from cnrd.leases.journal import JournaledStore
    js = JournaledStore(str(data), readonly=True)
    try:
        leases = list(js.load())
    finally:
        js.close()
    assert [(l.address, l.state, l.host_name) for l in leases] == [(ip_to_int("10.98.0.110"), LeaseState.LEASED, "h")]
    # again: the store has that client now
    assert cli.main(["leases", "--config", str(ini), "--kea", str(kea), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["imported"] == 0 and again["skipped"]["duplicate"] == 1


def test_cli_config_writes_a_loadable_ini(tmp_path):
    out = tmp_path / "c.ini"
    assert cli.main(["config", str(DATA / "dhcpd.conf"), "-o", str(out), "--name", "x",
                     "--data-dir", str(tmp_path / "d")]) == 0
    assert loads(out.read_text()).server.name == "x"
    with pytest.raises(ConfigError):
        loads(out.read_text().replace("subnet = 10.98.0.0/24", "subnet = 10.98.0.1/24"))
