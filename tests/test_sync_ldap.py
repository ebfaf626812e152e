"""Pair sync and the configuration comparison for the LDAP client registry.

Written from CNR 7.2's Table 27-1: "LDAP Remote Server: ensure, replace,
exact" and the server-level "Client-Class Properties: replace, replace,
replace"; and from its checklist, "If you use LDAP, direct the partner
servers to the same LDAP server", which the configuration comparison
checks.
"""

from __future__ import annotations

import pytest

from cnrd.admin.mismatch import ConfigChecks
from cnrd.config import loads
from cnrd.config.inifile import read_values
from cnrd.failover.states import Role
from cnrd.ops.traps import CONFIG_MISMATCH, TrapDetector
from cnrd.sync import Change, Values, apply, differing_objects, plan, shareable
from cnrd.sync.table import SERVER_KEYS, TABLE_27_1
from tests.sync.inis import ini, node

# The seed's rows, again (not read from cnrd.sync.table).
LDAP_ROW = {"update": "ensure", "complete": "replace", "exact": "exact"}
CLIENT_CLASS_PROPERTIES = {"update": "replace", "complete": "replace", "exact": "replace"}

DIR = {"hostname": "10.9.0.1", "search-path": "ou=clients,dc=cnrd,dc=test",
       "query-dictionary": "businessCategory=client-class, cn=host-name"}
DIR_ELSEWHERE = {"hostname": "10.9.0.7", "search-path": "ou=clients,dc=cnrd,dc=test",
                 "query-dictionary": "businessCategory=client-class", "timeout": "5"}
SPARE = {"hostname": "10.9.0.2", "preference": "2", "search-path": "dc=cnrd,dc=test",
         "query-dictionary": "businessCategory=client-class"}
NEW_SERVER_KEYS = ("client-class", "client-class-lookup-id", "client-lookup-id", "client-cache-ttl",
                   "client-cache-count", "client-lookup-failure")


def _pair(src_ldap: dict[str, dict[str, str]], tgt_ldap: dict[str, dict[str, str]]) -> tuple[Values, Values]:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    for name, keys in src_ldap.items():
        src[("ldap", name)] = dict(keys)
    for name, keys in tgt_ldap.items():
        tgt[("ldap", name)] = dict(keys)
    return src, tgt


def _synced(src: Values, tgt: Values, operation: str) -> tuple[list[Change], dict[str, dict[str, str]]]:
    """The plan, and the target's [ldap] sections after it is applied to the text (which must load)."""
    changes = plan(src, tgt, pair="p", operation=operation)
    text = apply(ini(tgt, comments=True), changes)
    loads(text)
    after = {name: keys for (kind, name), keys in read_values(text).items() if kind == "ldap" and name}
    return changes, after


def test_the_table_has_the_seeds_ldap_remote_server_row() -> None:
    row = TABLE_27_1["ldap"]
    assert row.seed == "LDAP Remote Server"
    assert {op: row.function(op) for op in LDAP_ROW} == LDAP_ROW
    assert "[ldap NAME]" in row.cnrd
    assert {op: TABLE_27_1["server-tuning"].function(op) for op in CLIENT_CLASS_PROPERTIES} == \
        CLIENT_CLASS_PROPERTIES
    for key in NEW_SERVER_KEYS:
        assert SERVER_KEYS[key] == "client-class"


@pytest.mark.parametrize("operation", ["update", "complete", "exact"])
def test_a_missing_ldap_server_is_added_by_every_operation(operation: str) -> None:
    src, tgt = _pair({"dir": DIR}, {})
    changes, after = _synced(src, tgt, operation)
    assert after == {"dir": DIR}
    assert [(c.object_class, c.name, c.prop, c.function, c.old) for c in changes] == [
        ("ldap", "dir", None, LDAP_ROW[operation], None)]


def test_update_ensures_an_existing_ldap_server_is_kept_as_it_is() -> None:
    src, tgt = _pair({"dir": DIR}, {"dir": DIR_ELSEWHERE, "spare": SPARE})
    changes, after = _synced(src, tgt, "update")
    assert changes == []
    assert after == {"dir": DIR_ELSEWHERE, "spare": SPARE}


def test_complete_replaces_an_existing_ldap_server_and_keeps_the_targets_own() -> None:
    src, tgt = _pair({"dir": DIR}, {"dir": DIR_ELSEWHERE, "spare": SPARE})
    changes, after = _synced(src, tgt, "complete")
    # The source's values, and a key the source leaves to its default (timeout) unset.
    assert after == {"dir": DIR, "spare": SPARE}
    assert {(c.prop, c.old, c.new) for c in changes} == {
        ("hostname", "10.9.0.7", "10.9.0.1"),
        ("query-dictionary", "businessCategory=client-class", "businessCategory=client-class, cn=host-name"),
        ("timeout", "5", None)}
    assert {c.function for c in changes} == {"replace"}


def test_exact_also_removes_an_ldap_server_the_source_lacks() -> None:
    src, tgt = _pair({"dir": DIR}, {"dir": DIR_ELSEWHERE, "spare": SPARE})
    changes, after = _synced(src, tgt, "exact")
    assert after == {"dir": DIR}
    removed = [c for c in changes if c.prop is None]
    assert [(c.name, c.function, c.new) for c in removed] == [("spare", "exact", None)]
    assert removed[0].old is not None and "hostname = 10.9.0.2" in removed[0].old


@pytest.mark.parametrize("operation", ["update", "complete", "exact"])
def test_a_second_run_finds_nothing(operation: str) -> None:
    src, tgt = _pair({"dir": DIR, "spare": SPARE}, {"dir": DIR_ELSEWHERE, "old": SPARE | {"preference": "3"}})
    tgt[("server", None)]["client-lookup-id"] = "client-id"
    changes = plan(src, tgt, pair="p", operation=operation)
    assert changes
    again = read_values(apply(ini(tgt), changes))
    assert plan(src, again, pair="p", operation=operation) == []


@pytest.mark.parametrize("operation", ["update", "complete", "exact"])
def test_the_client_class_server_keys_are_replaced_by_every_operation(operation: str) -> None:
    # Table 27-1, DHCP Server "Client-Class Properties": replace, replace, replace,
    # while the server's other properties are left alone by Update.
    src, tgt = _pair({}, {})
    src[("server", None)].update({"client-lookup-id": "client-id", "client-class-lookup-id": "option 77",
                                  "client-cache-ttl": "30", "max-dhcp-requests": "600"})
    tgt[("server", None)].update({"client-cache-count": "50", "client-lookup-failure": "drop"})
    changes = plan(src, tgt, pair="p", operation=operation)
    server = loads(apply(ini(tgt), changes)).server
    assert (server.client_lookup_id, server.client_class_lookup_id, server.client_cache_ttl,
            server.client_cache_count, server.client_lookup_failure) == (
        "client-id", ("option", 77), 30, 10000, "default")
    assert server.max_dhcp_requests == (500 if operation == "update" else 600)
    assert {c.function for c in changes if c.prop in NEW_SERVER_KEYS} == {CLIENT_CLASS_PROPERTIES[operation]}


def test_the_client_class_keys_are_shared_not_per_node() -> None:
    src, _ = _pair({}, {})
    src[("server", None)].update({key: "x" for key in NEW_SERVER_KEYS})
    assert set(NEW_SERVER_KEYS) <= set(shareable(src)[("server", None)])


def test_an_ldap_change_round_trips_through_json() -> None:
    src, tgt = _pair({"dir": DIR}, {"spare": SPARE})
    changes = plan(src, tgt, pair="p", operation="exact")
    assert [Change.from_json(c.as_json()) for c in changes] == changes
    assert differing_objects(changes) == ["ldap dir", "ldap spare"]


# -- the configuration comparison ---------------------------------------------------


def test_partners_with_different_ldap_servers_mismatch_and_the_same_ones_match() -> None:
    traps = TrapDetector()
    checks = ConfigChecks(traps)
    same_main, same_backup = _pair({"dir": DIR}, {"dir": DIR})
    assert checks.compared("p", Role.MAIN, same_main, same_backup, 1000) is None
    assert checks.checks["p"].status == "match" and checks.checks["p"].objects == []

    main, backup = _pair({"dir": DIR}, {"dir": DIR_ELSEWHERE})
    trap = checks.compared("p", Role.MAIN, main, backup, 1060)
    assert trap is not None and trap.name == CONFIG_MISMATCH
    assert checks.checks["p"].status == "mismatch" and checks.checks["p"].objects == ["ldap dir"]

    # Seen from the backup, the same objects.
    on_backup = ConfigChecks(TrapDetector())
    on_backup.compared("p", Role.BACKUP, backup, main, 1060)
    assert on_backup.checks["p"].objects == ["ldap dir"]

    # An LDAP server only one partner names is a difference too.
    main, backup = _pair({"dir": DIR}, {"dir": DIR, "spare": SPARE})
    checks.compared("p", Role.MAIN, main, backup, 1120)
    assert checks.checks["p"].objects == ["ldap spare"]


def test_partners_that_look_clients_up_by_different_keys_mismatch() -> None:
    checks = ConfigChecks(TrapDetector())
    main, backup = _pair({"dir": DIR}, {"dir": DIR})
    backup[("server", None)]["client-lookup-id"] = "client-id"
    checks.compared("p", Role.MAIN, main, backup, 1000)
    assert checks.checks["p"].objects == ["server"]
