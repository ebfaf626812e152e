"""Tests for cnrd.config: the INI loader and every validation rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnrd import config
from cnrd.config import ConfigError, Range, load, loads
from cnrd.config.listen import Listen

ETC = Path(__file__).resolve().parent.parent / "etc"
FILE = "etc/x.ini"

SEED = """\
[server]
name = main
interfaces = eth1
data-dir = /var/lib/cnrd/main
max-dhcp-requests = 500

[policy default]
lease-time = 3600
option.routers = 10.1.0.1
option.domain-name-servers = 10.1.0.1, 10.1.0.2

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.199
policy = default

[reservation 10.1.0.50]
hardware-address = 02:00:00:00:00:50
"""

PAIR = """
[failover-pair examplepair]
main = 10.98.0.1
backup = 10.98.0.2
failover = true
mclt = 30
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""

MINIMAL = """\
[server]
name = t
data-dir = /tmp/t
"""


def ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def error(text: str, section: str | None, key: str | None, *fragments: str) -> ConfigError:
    """Load ``text``, expect a ConfigError located at section/key, return it."""
    with pytest.raises(ConfigError) as info:
        loads(text, FILE)
    e = info.value
    msg = str(e)
    assert "\n" not in msg and "\r" not in msg
    assert msg.startswith(FILE + ":")
    assert (e.section, e.key) == (section, key), msg
    if section is not None:
        assert f"[{section}]" in msg
    if key is not None:
        assert f" {key}: " in msg
    for frag in fragments:
        assert frag in msg, msg
    return e


# --- loading what is valid ---------------------------------------------------

def test_seed_example_loads_with_right_values() -> None:
    c = loads(SEED, FILE)
    assert c.path == FILE
    assert c.server.name == "main"
    assert c.server.interfaces == ("eth1",)
    assert c.server.data_dir == "/var/lib/cnrd/main"
    assert c.server.max_dhcp_requests == 500
    assert c.server.server_port == 67 and c.server.client_port == 68
    assert c.api == config.ApiConfig()

    assert list(c.policies) == ["default"]
    pol = c.policies["default"]
    assert pol.lease_time == 3600
    assert pol.options[3] == bytes([10, 1, 0, 1])
    assert pol.options[6] == bytes([10, 1, 0, 1, 10, 1, 0, 2])
    assert list(pol.options) == [3, 6]  # file order

    lan = c.scopes["lan"]
    assert lan.network == 0x0A010000 and lan.prefix_len == 24
    assert lan.ranges == (Range(ip("10.1.0.100"), ip("10.1.0.199")),)
    assert lan.policy == "default"
    assert lan.dhcp and lan.enabled and not lan.bootp

    res = c.reservations[0x0A010032]
    assert res.address == ip("10.1.0.50")
    assert res.hardware_address == bytes([2, 0, 0, 0, 0, 0x50])
    assert res.client_id is None
    assert c.failover_pairs == {}


def test_failover_example_loads() -> None:
    c = loads(SEED + PAIR, FILE)
    p = c.failover_pairs["examplepair"]
    assert p.name == "examplepair"
    assert p.main == ip("10.98.0.1") and p.backup == ip("10.98.0.2")
    assert p.failover is True
    assert p.mclt == 30
    assert p.backup_pct == 10.0
    assert p.failover_poll_interval == 2 and p.failover_poll_timeout == 6
    assert p.scopes == ()
    assert p.port == 647 and p.max_unacked_updates == 100


def test_address_stored_as_host_order_int() -> None:
    c = loads(SEED, FILE)
    assert c.scopes["lan"].network == ip("10.1.0.0") == 0x0A010000


def test_default_policy_created_when_absent() -> None:
    c = loads(MINIMAL + "[scope s]\nsubnet = 10.0.0.0/8\n", FILE)
    assert c.policies["default"] == config.PolicyConfig(name="default")
    assert c.scopes["s"].policy == "default"
    assert c.scopes["s"].ranges == ()


def test_every_key_parses() -> None:
    text = """\
[server]
name = full
interfaces = eth1, eth2 eth3
data-dir = /d
max-dhcp-requests = 100000
server-port = 0
client-port = 6868
server-identifier = 10.1.0.1
log-settings = default, failover-detail json
start-on-reboot = off
failover-recover = 2024-05-01T00:00:00Z
safe-period = 1d
use-safe-period = yes
max-dhcp-responses = 4000
expiry-interval = 1m
lease-db-size = 512M
event-history = 0
gc-freeze-interval = 30s
gc-full-interval = 0

[api]
listen = [::1]:9000
token-file = /etc/cnrd/token
enabled = no

[policy short]
lease-time = 1h30m
offer-timeout = 2m
unavailable-timeout = 1w
grace-period = 0
allow-client-lease-time = disabled

[scope a]
subnet = 10.1.0.0/24
ranges = 10.1.0.20 - 10.1.0.29, 10.1.0.10-10.1.0.19 10.1.0.5
policy = short
allocate-first-available = yes
bootp = enabled
dynamic-bootp = 1
dhcp = true
backup-pct = 25%
dynamic-bootp-backup-pct = 12.5
failover-backup-allocation-boundary = 10.1.0.15
selection-tags = red, blue
enabled = on

[scope b]
subnet = 10.2.0.0/24

[reservation 10.1.0.200]
client-id = 01:02:03:04
host-name = printer

[client-class lab]
policy = short
selection-tags = red
action = exclude

[client 02:00:00:00:00:99]
client-class = lab
policy = short
host-name = pc
action = exclude

[failover-pair p1]
main = 10.98.0.1
backup = 10.98.0.2
failover = false
mclt = 1h
backup-pct = 50
dynamic-bootp-backup-pct = 5
load-balancing = true
failover-poll-interval = 15s
failover-poll-timeout = 1m
use-safe-period = yes
safe-period = 2h
scopes = a
failover-main-server = 10.98.1.1
failover-backup-server = 10.98.1.2
max-unacked-updates = 1000
port = 8647

[failover-pair p2]
main = 10.98.0.1
backup = 10.98.0.3
scopes = b
"""
    c = loads(text, FILE)
    s = c.server
    assert s.interfaces == ("eth1", "eth2", "eth3")
    assert s.server_port == 0 and s.client_port == 6868
    assert s.server_identifier == ip("10.1.0.1")
    assert s.log_settings == {"default", "failover-detail", "json"}
    assert s.start_on_reboot is False
    assert s.failover_recover == 1714521600
    assert s.safe_period == 86400 and s.expiry_interval == 60
    assert s.lease_db_size == 512 << 20 and s.event_history == 0
    assert (s.gc_freeze_interval, s.gc_full_interval) == (30, 0)
    # host:port is the older form of an endpoint description: tcp6 for an IPv6 host.
    assert c.api == config.ApiConfig(Listen("tcp6:9000:interface=\\:\\:1", "tcp6", "::1", 9000),
                                     "/etc/cnrd/token", enabled=False)
    pol = c.policies["short"]
    assert (pol.lease_time, pol.offer_timeout, pol.unavailable_timeout, pol.grace_period) == \
        (5400, 120, 604800, 0)
    assert pol.allow_client_lease_time is False and pol.options == {}
    assert "default" in c.policies
    a = c.scopes["a"]
    assert a.ranges == (Range(ip("10.1.0.5"), ip("10.1.0.5")),
                        Range(ip("10.1.0.10"), ip("10.1.0.19")),
                        Range(ip("10.1.0.20"), ip("10.1.0.29")))
    assert a.allocate_first_available and a.bootp and a.dynamic_bootp and a.dhcp and a.enabled
    assert a.backup_pct == 25.0 and a.dynamic_bootp_backup_pct == 12.5
    assert a.failover_backup_allocation_boundary == ip("10.1.0.15")
    assert a.selection_tags == {"red", "blue"}
    assert c.reservations[ip("10.1.0.200")].client_id == b"\x01\x02\x03\x04"
    assert c.reservations[ip("10.1.0.200")].host_name == "printer"
    assert c.client_classes["lab"] == config.ClientClassConfig("lab", "short", frozenset({"red"}), "exclude")
    mac = bytes([2, 0, 0, 0, 0, 0x99])
    assert c.clients[mac] == config.ClientConfig(mac, "lab", "short", "pc", "exclude")
    p = c.failover_pairs["p1"]
    assert p.failover is False and p.mclt == 3600 and p.backup_pct == 50.0
    assert p.dynamic_bootp_backup_pct == 5.0 and p.load_balancing and p.use_safe_period
    assert (p.failover_poll_interval, p.failover_poll_timeout, p.safe_period) == (15, 60, 7200)
    assert p.scopes == ("a",)
    assert p.failover_main_server == ip("10.98.1.1") and p.failover_backup_server == ip("10.98.1.2")
    assert p.max_unacked_updates == 1000 and p.port == 8647
    assert s.use_safe_period and s.max_dhcp_responses == 4000
    # p2 sets neither safe-period key: [server]'s apply
    assert (c.failover_pairs["p2"].use_safe_period, c.failover_pairs["p2"].safe_period) == (True, 86400)


@pytest.mark.parametrize("text,seconds", [
    ("0", 0), ("45", 45), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400),
    ("1w", 604800), ("1h30m", 5400), ("1d 2h", 93600), ("10M", 600),
])
def test_duration_forms(text: str, seconds: int) -> None:
    c = loads(MINIMAL + f"[policy default]\ngrace-period = {text}\n", FILE)
    assert c.policies["default"].grace_period == seconds


@pytest.mark.parametrize("text,value", [("1234", 1234), ("0", None),
                                        ("2024-05-01T02:00:00+02:00", 1714521600),
                                        ("2024-05-01 00:00:00", 1714521600)])
def test_failover_recover_forms(text: str, value: int | None) -> None:
    assert loads(MINIMAL + f"failover-recover = {text}\n", FILE).server.failover_recover == value


@pytest.mark.parametrize("text,value", [("1048576", 1 << 20), ("64M", 64 << 20),
                                        ("2G", 2 << 30), ("4096k", 4 << 20), ("1GB", 1 << 30)])
def test_lease_db_size_suffixes(text: str, value: int) -> None:
    assert loads(MINIMAL + f"lease-db-size = {text}\n", FILE).server.lease_db_size == value


def test_relay_only_server_may_have_no_interfaces() -> None:
    assert loads(MINIMAL + "interfaces =\n", FILE).server.interfaces == ()


def test_comments_and_percent_are_literal() -> None:
    c = loads(MINIMAL + "# a comment\n; another\n[scope s]  \nsubnet = 10.0.0.0/8  # inline\n"
              "[policy default]\noption.domain-name = 100%.example\n", FILE)
    assert c.scopes["s"].network == ip("10.0.0.0")
    assert c.policies["default"].options[15] == b"100%.example"


@pytest.mark.parametrize("name", ["standalone.ini", "main.ini", "backup.ini"])
def test_shipped_files_load(name: str) -> None:
    c = load(str(ETC / name))
    assert c.server.name == name.removesuffix(".ini")
    assert c.server.data_dir == f"/var/lib/cnrd/{c.server.name}"
    assert c.policies["default"].options[3] == bytes([10, 1, 0, 1])
    assert c.scopes["lan"].ranges == (Range(ip("10.1.0.100"), ip("10.1.0.199")),)
    assert ip("10.1.0.50") in c.reservations
    if name == "standalone.ini":
        assert c.failover_pairs == {}
    else:
        assert c.failover_pairs["examplepair"].mclt == 30


def test_main_and_backup_differ_only_in_server_section() -> None:
    main = loads((ETC / "main.ini").read_text(), "main")
    backup = loads((ETC / "backup.ini").read_text(), "backup")
    for attr in ("api", "policies", "scopes", "reservations", "clients",
                 "client_classes", "failover_pairs"):
        assert getattr(main, attr) == getattr(backup, attr), attr
    assert main.server.name == "main" and backup.server.name == "backup"


# --- errors: file level ------------------------------------------------------

def test_unreadable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigError) as info:
        load(missing)
    msg = str(info.value)
    assert msg.startswith(missing + ": cannot read file") and "\n" not in msg


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_permissions(tmp_path: Path) -> None:
    p = tmp_path / "secret.ini"
    p.write_text(SEED)
    p.chmod(0)
    with pytest.raises(ConfigError, match="cannot read file"):
        load(str(p))


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load(str(tmp_path))


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.ini"
    p.write_bytes(SEED.encode() + b"[client-class caf\xe9]\n")
    with pytest.raises(ConfigError, match=r"line 19: not valid UTF-8"):
        load(str(p))


def test_load_reads_a_file(tmp_path: Path) -> None:
    p = tmp_path / "ok.ini"
    p.write_text(SEED)
    assert load(str(p)).path == str(p)


def test_duplicate_section() -> None:
    error(SEED + "\n[scope lan]\nsubnet = 10.3.0.0/24\n", "scope lan", None,
          "line 20: duplicate section")


def test_duplicate_section_with_different_spacing() -> None:
    error(SEED + "\n[scope  lan]\nsubnet = 10.3.0.0/24\n", "scope  lan", None, "duplicate section")


def test_duplicate_key() -> None:
    error(MINIMAL + "name = again\n", "server", "name", "line 4: duplicate key")


def test_missing_section_header() -> None:
    error("name = x\n" + MINIMAL, None, None, "line 1:", "outside any [section]")


def test_unparseable_line() -> None:
    error(MINIMAL + "just words\n", None, None, "line 4: cannot parse 'just words' (expected key = value)")


def test_empty_section_header() -> None:
    error(MINIMAL + "[ ]\n", " ", None, "empty section header")


def test_default_section_is_not_special() -> None:
    error(MINIMAL + "[DEFAULT]\nlease-time = 5\n", "DEFAULT", None, "unknown section type")


def test_missing_server_section() -> None:
    error("[scope s]\nsubnet = 10.0.0.0/8\n", "server", None, "missing")


# --- errors: names and keys --------------------------------------------------

def test_unknown_section_type() -> None:
    error(SEED + "[scpoe wan]\nsubnet = 10.2.0.0/24\n", "scpoe wan", None,
          "unknown section type 'scpoe'", "did you mean 'scope'")


def test_section_needs_name() -> None:
    error(SEED + "[scope]\nsubnet = 10.2.0.0/24\n", "scope", None, "name is required")


def test_server_takes_no_name() -> None:
    error("[server main]\nname = x\ndata-dir = /d\n", "server main", None, "takes no name")


def test_unknown_key() -> None:
    error(SEED.replace("lease-time = 3600", "lease-tmie = 3600"), "policy default", "lease-tmie",
          "unknown key", "did you mean 'lease-time'")


def test_underscore_key_is_unknown() -> None:
    error(MINIMAL + "max_dhcp_requests = 5\n", "server", "max_dhcp_requests",
          "did you mean 'max-dhcp-requests'")


def test_missing_required_key() -> None:
    error("[server]\nname = x\n", "server", "data-dir", "required")


def test_missing_subnet() -> None:
    error(MINIMAL + "[scope s]\nranges = 10.0.0.5\n", "scope s", "subnet", "required")


def test_failover_pair_requires_backup() -> None:
    error(SEED + "[failover-pair p]\nmain = 10.98.0.1\n", "failover-pair p", "backup", "required")


# --- errors: values ----------------------------------------------------------

def test_bad_address() -> None:
    error(MINIMAL + "server-identifier = 10.1.0.256\n", "server", "server-identifier",
          "bad IPv4 address '10.1.0.256'")


def test_bad_address_in_range() -> None:
    error(SEED.replace("10.1.0.100-10.1.0.199", "10.1.0.100-10.1.0.x"), "scope lan", "ranges",
          "bad IPv4 address '10.1.0.x'")


def test_bad_mask() -> None:
    error(SEED.replace("10.1.0.0/24", "10.1.0.0/33"), "scope lan", "subnet", "bad subnet '10.1.0.0/33'")


def test_subnet_needs_prefix() -> None:
    error(SEED.replace("10.1.0.0/24", "10.1.0.0"), "scope lan", "subnet", "bad subnet")


def test_subnet_host_bits() -> None:
    error(SEED.replace("10.1.0.0/24", "10.1.0.1/24"), "scope lan", "subnet",
          "10.1.0.1/24 has host bits set (the subnet is 10.1.0.0/24)")


def test_range_outside_subnet() -> None:
    e = error(SEED.replace("10.1.0.100-10.1.0.199", "10.2.0.1-10.2.0.5"), "scope lan", "ranges")
    assert str(e) == "etc/x.ini: [scope lan] ranges: 10.2.0.1-10.2.0.5 is outside subnet 10.1.0.0/24"


def test_range_straddles_subnet() -> None:
    error(SEED.replace("10.1.0.100-10.1.0.199", "10.1.0.100-10.1.1.5"), "scope lan", "ranges",
          "outside subnet")


def test_range_includes_network_or_broadcast() -> None:
    error(SEED.replace("10.1.0.100-10.1.0.199", "10.1.0.0-10.1.0.9"), "scope lan", "ranges",
          "network address 10.1.0.0")
    error(SEED.replace("10.1.0.100-10.1.0.199", "10.1.0.255"), "scope lan", "ranges",
          "broadcast address 10.1.0.255")


def test_range_backwards() -> None:
    error(SEED.replace("10.1.0.100-10.1.0.199", "10.1.0.199-10.1.0.100"), "scope lan", "ranges",
          "backwards")


def test_overlapping_ranges_within_scope() -> None:
    error(SEED.replace("10.1.0.100-10.1.0.199", "10.1.0.100-10.1.0.199, 10.1.0.150-10.1.0.160"),
          "scope lan", "ranges", "10.1.0.150-10.1.0.160 overlaps 10.1.0.100-10.1.0.199")


def test_overlapping_ranges_across_scopes() -> None:
    error(SEED + "[scope lan2]\nsubnet = 10.1.0.0/24\nranges = 10.1.0.199-10.1.0.220\n",
          "scope lan2", "ranges", "10.1.0.199-10.1.0.220 overlaps 10.1.0.100-10.1.0.199 of scope lan")


def test_scopes_may_share_a_subnet() -> None:
    c = loads(SEED + "[scope lan2]\nsubnet = 10.1.0.0/24\nranges = 10.1.0.200-10.1.0.220\n", FILE)
    assert len(c.scopes) == 2


def test_reservation_outside_every_scope() -> None:
    e = error(SEED + "[reservation 10.9.0.5]\nhardware-address = 02:00:00:00:00:05\n",
              "reservation 10.9.0.5", None)
    assert e.reason == "10.9.0.5 is not inside any scope's subnet"


def test_reservation_bad_address() -> None:
    error(SEED + "[reservation 10.1.0]\nhardware-address = 02:00:00:00:00:05\n",
          "reservation 10.1.0", None, "bad IPv4 address")


def test_reservation_needs_exactly_one_identity() -> None:
    error(SEED + "[reservation 10.1.0.51]\nhost-name = x\n", "reservation 10.1.0.51",
          "hardware-address", "required")
    error(SEED + "[reservation 10.1.0.51]\nhardware-address = 02:00:00:00:00:51\nclient-id = 0102\n",
          "reservation 10.1.0.51", "client-id", "not both")


def test_two_reservations_for_same_client() -> None:
    error(SEED + "[reservation 10.1.0.51]\nhardware-address = 02:00:00:00:00:50\n",
          "reservation 10.1.0.51", "hardware-address", "already has reservation 10.1.0.50")
    twice = "[reservation 10.1.0.60]\nclient-id = 01:aa\n[reservation 10.1.0.61]\nclient-id = 01aa\n"
    error(SEED + twice, "reservation 10.1.0.61", "client-id", "already has reservation 10.1.0.60")


def test_bad_hardware_address() -> None:
    error(SEED.replace("02:00:00:00:00:50", "02:00:zz"), "reservation 10.1.0.50",
          "hardware-address", "'02:00:zz'")


def test_bad_client_id() -> None:
    error(SEED + "[reservation 10.1.0.51]\nclient-id = xyz\n", "reservation 10.1.0.51",
          "client-id", "bad hex")


@pytest.mark.parametrize("text", ["-5", "5x", "1.5h", "h", "", "1h-30m"])
def test_bad_duration(text: str) -> None:
    error(SEED.replace("lease-time = 3600", f"lease-time = {text}"), "policy default",
          "lease-time", f"bad duration '{text}'")


def test_bad_gc_interval() -> None:
    error(SEED.replace("name = main\n", "name = main\ngc-freeze-interval = often\n"), "server",
          "gc-freeze-interval", "bad duration 'often'")


def test_mclt_floor() -> None:
    error(SEED + PAIR.replace("mclt = 30", "mclt = 29"), "failover-pair examplepair", "mclt",
          "too short")


@pytest.mark.parametrize("text", ["maybe", "2", "", "truee"])
def test_bad_bool(text: str) -> None:
    error(SEED + PAIR.replace("failover = true", f"failover = {text}"),
          "failover-pair examplepair", "failover", f"bad boolean '{text}'")


def test_bad_int_and_range() -> None:
    error(SEED.replace("max-dhcp-requests = 500", "max-dhcp-requests = 0"), "server",
          "max-dhcp-requests", "out of range (1..100000)")
    error(SEED.replace("max-dhcp-requests = 500", "max-dhcp-requests = lots"), "server",
          "max-dhcp-requests", "bad integer 'lots'")
    error(MINIMAL + "client-port = 70000\n", "server", "client-port", "out of range")


def test_bad_percent() -> None:
    error(SEED + PAIR.replace("backup-pct = 10", "backup-pct = 101"),
          "failover-pair examplepair", "backup-pct", "out of range (0..100)")
    error(SEED.replace("policy = default", "policy = default\nbackup-pct = nan"), "scope lan",
          "backup-pct", "out of range")


def test_bad_size() -> None:
    error(MINIMAL + "lease-db-size = 4Q\n", "server", "lease-db-size", "bad size '4Q'")
    error(MINIMAL + "lease-db-size = 10K\n", "server", "lease-db-size", "too small")
    error(MINIMAL + "lease-db-size = 99999999T\n", "server", "lease-db-size", "too large")


def test_bad_time() -> None:
    error(MINIMAL + "failover-recover = yesterday\n", "server", "failover-recover", "bad time")


def test_bad_log_setting() -> None:
    error(MINIMAL + "log-settings = default, failover-detial\n", "server", "log-settings",
          "did you mean 'failover-detail'")


def test_no_success_messages_is_a_log_setting() -> None:
    # CNR 7.2's name for hiding the lines of successful exchanges.
    cfg = loads(MINIMAL + "log-settings = no-success-messages\n")
    assert cfg.server.log_settings == frozenset({"no-success-messages"})


def test_bad_api_listen() -> None:
    error(MINIMAL + "[api]\nlisten = 8067\n", "api", "listen", "host:port")
    error(MINIMAL + "[api]\nlisten = localhost:http\n", "api", "listen", "bad integer")


def test_unknown_policy_reference() -> None:
    error(SEED.replace("policy = default", "policy = defualt"), "scope lan", "policy",
          "unknown policy 'defualt'", "did you mean 'default'")


def test_unknown_client_class_and_policy_on_client() -> None:
    error(SEED + "[client 02:00:00:00:00:01]\nclient-class = nope\n",
          "client 02:00:00:00:00:01", "client-class", "unknown client-class 'nope'")
    error(SEED + "[client 02:00:00:00:00:01]\npolicy = nope\n",
          "client 02:00:00:00:00:01", "policy", "unknown policy 'nope'")
    error(SEED + "[client-class c]\npolicy = nope\n", "client-class c", "policy", "unknown policy")


def test_bad_client_action() -> None:
    error(SEED + "[client 02:00:00:00:00:01]\naction = exlude\n",
          "client 02:00:00:00:00:01", "action", "did you mean 'exclude'")


def test_bad_client_mac() -> None:
    error(SEED + "[client bogus]\naction = exclude\n", "client bogus", None, "'bogus'")


def test_bad_option_value() -> None:
    error(SEED.replace("option.routers = 10.1.0.1", "option.routers = 10.1.0.300"),
          "policy default", "option.routers", "10.1.0.300")


def test_unknown_option_name() -> None:
    error(SEED + "[policy p]\noption.no-such-option = 1\n", "policy p", "option.no-such-option",
          "no-such-option")


def test_option_set_twice() -> None:
    error(SEED.replace("option.routers = 10.1.0.1", "option.routers = 10.1.0.1\noption.3 = 10.1.0.9"),
          "policy default", "option.3", "already set by option.routers")


def test_server_managed_option_refused() -> None:
    error(SEED + "[policy p]\noption.dhcp-lease-time = 60\n", "policy p", "option.dhcp-lease-time",
          "set lease-time instead")


def test_dynamic_bootp_requires_bootp() -> None:
    error(SEED.replace("policy = default", "policy = default\ndynamic-bootp = true"),
          "scope lan", "dynamic-bootp", "requires bootp")


def test_allocation_boundary_inside_subnet() -> None:
    error(SEED.replace("policy = default", "policy = default\n"
                       "failover-backup-allocation-boundary = 10.2.0.1"),
          "scope lan", "failover-backup-allocation-boundary", "outside subnet")


def test_failover_main_equals_backup() -> None:
    error(SEED + PAIR.replace("10.98.0.2", "10.98.0.1"), "failover-pair examplepair", "backup",
          "also the main server")


def test_failover_poll_timeout_must_exceed_interval() -> None:
    error(SEED + PAIR.replace("failover-poll-timeout = 6", "failover-poll-timeout = 2"),
          "failover-pair examplepair", "failover-poll-timeout", "must be longer")


def test_failover_unknown_scope() -> None:
    error(SEED + PAIR + "scopes = lna\n", "failover-pair examplepair", "scopes",
          "unknown scope 'lna'", "did you mean 'lan'")


def test_scope_in_two_pairs() -> None:
    second = PAIR.replace("examplepair", "other")
    error(SEED + PAIR + second, "failover-pair other", "scopes",
          "scope lan is already in failover-pair examplepair")
    # Disjoint scope lists are fine.
    extra = "[scope b]\nsubnet = 10.2.0.0/24\n"
    c = loads(SEED + extra + PAIR + "scopes = lan\n" + second + "scopes = b\n", FILE)
    assert set(c.failover_pairs) == {"examplepair", "other"}


def test_max_unacked_updates_bounds() -> None:
    error(SEED + PAIR + "max-unacked-updates = 1001\n", "failover-pair examplepair",
          "max-unacked-updates", "out of range (1..1000)")


def test_continuation_line_only_for_lists() -> None:
    error(MINIMAL + "server-identifier = 10.1.0.1\n  10.1.0.2\n", "server", "server-identifier",
          "continues on the next line ('10.1.0.2')")
    c = loads(SEED.replace("10.1.0.1, 10.1.0.2", "10.1.0.1,\n    10.1.0.2")
              .replace("10.1.0.100-10.1.0.199", "10.1.0.100-10.1.0.149,\n  10.1.0.150-10.1.0.199"), FILE)
    assert c.policies["default"].options[6] == bytes([10, 1, 0, 1, 10, 1, 0, 2])
    assert len(c.scopes["lan"].ranges) == 2


def test_error_str_is_one_line() -> None:
    e = ConfigError("f.ini", "scope a", "ranges", "two\nlines")
    assert str(e) == "f.ini: [scope a] ranges: two\\nlines"
    assert str(ConfigError("f.ini", None, None, "x")) == "f.ini: x"


# int() raises ValueError for numbers of more than 4300 digits
# (sys.int_max_str_digits) and for digits like '²', which str.isdigit() accepts
# and int() refuses; the loader must turn both into a ConfigError.
@pytest.mark.parametrize("key, text", [
    ("lease-time", "1" * 5000),           # parse_duration, plain seconds
    ("lease-time", "2" * 5000 + "s"),     # parse_duration, with units
    ("lease-time", "\u00b2"),             # '²'
    ("offer-timeout", "1h" + "3" * 4400 + "m"),
])
def test_huge_or_odd_digit_durations_are_config_errors(key: str, text: str) -> None:
    e = error(SEED.replace("lease-time = 3600", f"{key} = {text}"), "policy default", key)
    assert len(str(e)) < 200  # the 5000 digits are not echoed back


@pytest.mark.parametrize("key, text", [
    ("max-dhcp-requests", "9" * 5000),                      # parse_int
    ("lease-db-size", "9" * 5000 + "M"),                    # parse_size
    ("failover-recover", "1" * 5000),                       # parse_time
    ("failover-recover", "\u00b2"),
])
def test_huge_or_odd_digit_server_values_are_config_errors(key: str, text: str) -> None:
    text_ = SEED.replace("max-dhcp-requests = 500", f"{key} = {text}")
    error(text_, "server", key)


# --- safe period: [server] values are the defaults of every pair -------------------

def _pair_config(server_extra: str, pair_extra: str) -> config.Config:
    text = SEED.replace("max-dhcp-requests = 500", "max-dhcp-requests = 500\n" + server_extra) + PAIR + pair_extra
    return loads(text, FILE)


def test_pair_without_its_own_safe_period_takes_the_servers() -> None:
    # CNR 7.2: use-safe-period on the pair, safe-period a DHCP server attribute.
    c = _pair_config("use-safe-period = true\nsafe-period = 12h", "")
    p = c.failover_pairs["examplepair"]
    assert (c.server.use_safe_period, c.server.safe_period) == (True, 43200)
    assert (p.use_safe_period, p.safe_period) == (True, 43200)


def test_pair_values_win_over_the_servers() -> None:
    c = _pair_config("use-safe-period = true\nsafe-period = 12h", "use-safe-period = false\nsafe-period = 1h\n")
    p = c.failover_pairs["examplepair"]
    assert (p.use_safe_period, p.safe_period) == (False, 3600)
    c = _pair_config("safe-period = 12h", "use-safe-period = on\n")
    p = c.failover_pairs["examplepair"]
    assert (p.use_safe_period, p.safe_period) == (True, 43200)


def test_safe_period_defaults_when_nobody_sets_it() -> None:
    c = _pair_config("", "")
    p = c.failover_pairs["examplepair"]
    assert (c.server.use_safe_period, c.server.safe_period) == (False, 86400)
    assert (p.use_safe_period, p.safe_period) == (False, 86400)


def test_bad_server_safe_period_keys() -> None:
    error(_text_with_server("use-safe-period = sometimes"), "server", "use-safe-period", "sometimes")
    error(_text_with_server("safe-period = -5"), "server", "safe-period")


# --- max-dhcp-responses ---------------------------------------------------------------

def _text_with_server(line: str) -> str:
    return SEED.replace("max-dhcp-requests = 500", "max-dhcp-requests = 500\n" + line)


def test_max_dhcp_responses_unset_and_set() -> None:
    assert loads(SEED, FILE).server.max_dhcp_responses is None
    assert loads(_text_with_server("max-dhcp-responses = 3000"), FILE).server.max_dhcp_responses == 3000


@pytest.mark.parametrize("value, fragment", [("0", "out of range"), ("400001", "out of range"),
                                             ("plenty", "bad integer 'plenty'")])
def test_bad_max_dhcp_responses(value: str, fragment: str) -> None:
    error(_text_with_server(f"max-dhcp-responses = {value}"), "server", "max-dhcp-responses", fragment)
