"""The main's pool split: how much each scope's backup gets, and which addresses.

From CNR 7.2, "Setting Backup Percentages" (backup-pct, the scope's over the
pair's, 50 % with load balancing), "BOOTP Backup Percentage"
(dynamic-bootp-backup-pct for dynamic-BOOTP scopes, set on the main,
ignored on the backup, unset meaning backup-pct) and "Setting Backup
Allocation Boundaries" (the backup's addresses from below the boundary
downward, the midpoint by default, allocate-first-available required).
"""

from __future__ import annotations

import dataclasses

import pytest

from cnrd.config import ConfigError, FailoverPairConfig, Range, ScopeConfig, loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import DhcpServer
from cnrd.failover import pool, wire
from cnrd.failover.gate import Gate
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import S, Role
from cnrd.leases.model import LeaseState
from cnrd.leases.table import LeaseTable, Pool
from tests.dhcp.helpers import BCAST, IFACE, mac, request
from tests.failover.test_peer import Link

NOW = 1_800_000_000

PAIR = FailoverPairConfig(name="p", main=1, backup=2)


def scope(**kw) -> ScopeConfig:
    return ScopeConfig(name="s", network=ip_to_int("10.1.0.0"), prefix_len=24,
                       ranges=(Range(ip_to_int("10.1.0.100"), ip_to_int("10.1.0.199")),), policy="default", **kw)


# -- how much -------------------------------------------------------------------


def test_dynamic_bootp_scope_takes_dynamic_bootp_backup_pct_over_backup_pct():
    pair = dataclasses.replace(PAIR, backup_pct=10.0, dynamic_bootp_backup_pct=30.0)
    boot = scope(bootp=True, dynamic_bootp=True, backup_pct=20.0)
    assert pool.scope_pct(boot, pair) == 30.0
    assert pool.scope_pct(dataclasses.replace(boot, dynamic_bootp_backup_pct=40.0), pair) == 40.0


def test_dynamic_bootp_backup_pct_unset_falls_back_to_the_scopes_then_the_pairs_backup_pct():
    boot = scope(bootp=True, dynamic_bootp=True)
    assert pool.scope_pct(dataclasses.replace(boot, backup_pct=20.0), PAIR) == 20.0
    assert pool.scope_pct(boot, PAIR) is None  # the pair's backup-pct
    assert pool.shares(["s"], backup_pct=PAIR.backup_pct, load_balancing=False, scope_pct={}) == {"s": 10.0}


def test_dynamic_bootp_backup_pct_does_nothing_for_a_scope_without_dynamic_bootp():
    pair = dataclasses.replace(PAIR, dynamic_bootp_backup_pct=30.0)
    assert pool.scope_pct(scope(bootp=True, dynamic_bootp_backup_pct=40.0), pair) is None
    assert pool.scope_pct(scope(backup_pct=5.0), pair) == 5.0


def test_load_balancing_fixes_every_share_at_half():
    assert pool.shares(["a", "b"], backup_pct=10.0, load_balancing=True, scope_pct={"a": 30.0}) == \
        {"a": 50.0, "b": 50.0}


def test_rebalance_moves_the_share_of_available_addresses_and_only_tops_up():
    table = LeaseTable()
    table.add_pool(Pool("s", [Range(100, 199)], False))
    assert pool.rebalance(table, {"s": 30.0}, NOW) == 30
    assert table.pools["s"].backup_count() == 30
    assert pool.rebalance(table, {"s": 30.0}, NOW) == 0


# -- which addresses ---------------------------------------------------------------


def first_available_table(boundary=None) -> LeaseTable:
    table = LeaseTable()
    table.add_pool(Pool("s", [Range(100, 199)], True))
    table.pools["s"].backup_boundary = boundary
    return table


def backup_addresses(table) -> list[int]:
    return sorted(a for a, lease in table.leases.items() if lease.state is LeaseState.BACKUP)


def test_split_takes_the_backups_share_from_just_below_the_midpoint_downward():
    table = first_available_table()  # 100..199: halfway is 150
    pool.rebalance(table, {"s": 10.0}, NOW)
    assert backup_addresses(table) == list(range(140, 150))
    assert table.allocate("s", b"client") == 100  # clients still start at the bottom


def test_split_below_a_configured_boundary_then_above_it_when_none_is_left_below():
    table = first_available_table(boundary=180)
    pool.rebalance(table, {"s": 10.0}, NOW)
    assert backup_addresses(table) == list(range(170, 180))
    table = first_available_table(boundary=102)
    for key in (b"a", b"b"):  # clients hold 100 and 101, all there is below the boundary
        table.update(table.allocate("s", key), durable=True, state=LeaseState.LEASED, scope="s", hw=key)
    pool.rebalance(table, {"s": 10.0}, NOW)
    # None below: from the lowest available address up (10 % of 98).
    assert backup_addresses(table) == list(range(102, 111))


# -- the keys in the file ------------------------------------------------------------

SCOPE_FILE = """
[server]
name = t
data-dir = /nonexistent

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.199
{extra}
"""


def test_boundary_without_allocate_first_available_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as e:
        loads(SCOPE_FILE.format(extra="failover-backup-allocation-boundary = 10.1.0.150"), "cnrd.ini")
    assert str(e.value).startswith("cnrd.ini: [scope lan] failover-backup-allocation-boundary: ")
    assert "allocate-first-available" in str(e.value) and "\n" not in str(e.value)


def test_boundary_with_allocate_first_available_reaches_the_pool():
    text = SCOPE_FILE.format(extra="allocate-first-available = true\n"
                                   "failover-backup-allocation-boundary = 10.1.0.150")
    config = loads(text)
    assert config.scopes["lan"].failover_backup_allocation_boundary == ip_to_int("10.1.0.150")
    server = DhcpServer(config, LeaseTable())
    assert server.table.pools["lan"].boundary() == ip_to_int("10.1.0.150")


@pytest.mark.parametrize("zero", ["0", "0.0.0.0"])
def test_boundary_zero_is_unset(zero):
    config = loads(SCOPE_FILE.format(extra=f"failover-backup-allocation-boundary = {zero}"))
    assert config.scopes["lan"].failover_backup_allocation_boundary is None


def test_boundary_outside_the_subnet_is_refused():
    with pytest.raises(ConfigError, match=r"\[scope lan\] failover-backup-allocation-boundary: .*outside"):
        loads(SCOPE_FILE.format(extra="allocate-first-available = true\n"
                                      "failover-backup-allocation-boundary = 10.2.0.1"))


# -- a main and a backup with different files ------------------------------------------------

PAIR_FILE = """
[server]
name = {name}
interfaces = eth1
data-dir = /nonexistent

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149
allocate-first-available = true

[scope boot]
subnet = 10.1.0.0/24
ranges = 10.1.0.200-10.1.0.219
bootp = true
dynamic-bootp = true
dhcp = false
backup-pct = 20

[failover-pair examplepair]
main = 10.1.0.1
backup = 10.1.0.2
mclt = 60
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
{extra}
"""


class Side:
    """One server as the composition root builds it, for the in-memory Link."""

    def __init__(self, role: Role, extra: str) -> None:
        self.config = loads(PAIR_FILE.format(name=role.value, extra=extra))
        self.table = LeaseTable()
        self.server = DhcpServer(self.config, self.table)
        self.server.set_interfaces([IFACE])
        for p in self.table.pools.values():
            p.failover = True
        pair = self.config.failover_pairs["examplepair"]
        pct = {name: v for name, sc in self.config.scopes.items() if (v := pool.scope_pct(sc, pair)) is not None}
        self.session = FailoverSession(pair, role, self.table, ["lan", "boot"], now=NOW, scope_pct=pct)
        self.table.listeners.append(self.session.lease_changed)
        for name in ("lan", "boot"):
            self.server.gates[name] = self.session.gate
        self.framer = wire.Framer()
        self.persisted: dict = {}
        self.wire_log: list = []

    def backup_in(self, scope: str) -> list[int]:
        return sorted(a for a, lease in self.table.leases.items()
                      if lease.state is LeaseState.BACKUP and lease.scope == scope)


def normal_pair(main_extra: str, backup_extra: str):
    main, backup = Side(Role.MAIN, main_extra), Side(Role.BACKUP, backup_extra)
    Link(main, backup, NOW).connect()
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    return main, backup


def test_main_splits_a_dynamic_bootp_scope_by_its_dynamic_bootp_backup_pct():
    main, backup = normal_pair("dynamic-bootp-backup-pct = 40", "dynamic-bootp-backup-pct = 40")
    assert len(main.backup_in("boot")) == 8  # 40 % of 20, over the scope's backup-pct of 20 %
    assert len(main.backup_in("lan")) == 5  # 10 % of 50: not a dynamic-BOOTP scope
    assert backup.backup_in("boot") == main.backup_in("boot")


def test_dynamic_bootp_backup_pct_set_on_the_backup_is_ignored():
    main, backup = normal_pair("", "dynamic-bootp-backup-pct = 50")
    # Unset on the main: the scope's backup-pct, 20 % of 20.
    assert len(main.backup_in("boot")) == 4
    assert backup.backup_in("boot") == main.backup_in("boot")


def test_pair_split_of_a_first_available_scope_keeps_the_backups_share_below_the_midpoint():
    main, backup = normal_pair("", "")
    share = [ip_to_int(f"10.1.0.{i}") for i in range(120, 125)]  # 100..149: halfway is 125
    assert main.backup_in("lan") == share and backup.backup_in("lan") == share
    offer = main.server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    assert offer.packet.yiaddr == ip_to_int("10.1.0.100")


def test_gate_never_answers_any_for_a_dynamic_bootp_scope():
    @dataclasses.dataclass
    class View:
        state: S = S.PARTNER_DOWN
        role: Role = Role.BACKUP
        stos: int = NOW - 100
        mclt: int = 60
        hba: bytes = b""
        max_secs: int = 3

    gate = Gate(View())
    assert gate.admit("new", b"k", 0, NOW) == (True, "any", "")
    assert gate.admit("dynamic-bootp", b"k", 0, NOW) == (True, "backup", "")
    main = Gate(View(role=Role.MAIN))
    assert main.admit("dynamic-bootp", b"k", 0, NOW) == (True, "main", "")
