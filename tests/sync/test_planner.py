"""cnrd.sync.planner against the seed: its example, Table 27-1 per object class, per-node keys.

The expectations are written from CNR 7.2's "Synchronizing Failover Pairs"
(the four functions and their example, Table 27-1, Table 27-2), not from
the planner's own table: :data:`SEED` below is the seed's table again.
"""

from __future__ import annotations

import copy

import pytest

from cnrd.config import loads
from cnrd.config.inifile import read_values
from cnrd.sync import OPERATIONS, Change, Values, apply, apply_values, differing_objects, plan, shareable
from cnrd.sync.table import NOT_APPLICABLE, PER_NODE, SERVER_KEYS, TABLE_27_1
from tests.sync.inis import ini, node

# -- the seed's example --------------------------------------------------------

# "On the main server Name1=A, Name2=C; on the backup server Name2=B, Name3=D."
MAIN = {"Name1": "A", "Name2": "C"}
BACKUP = {"Name2": "B", "Name3": "D"}
EXAMPLE_RESULT = {
    "no change": {"Name2": "B", "Name3": "D"},
    "ensure": {"Name1": "A", "Name2": "B", "Name3": "D"},
    "replace": {"Name1": "A", "Name2": "C", "Name3": "D"},
    "exact": {"Name1": "A", "Name2": "C"},
}


def _with(base: Values, kind: str, objects: dict[str, str], key: str) -> Values:
    out = copy.deepcopy(base)
    for name, value in objects.items():
        out[(kind, name)] = {key: value}
    return out


def _result(values: Values, kind: str, key: str) -> dict[str, str]:
    return {name: keys[key] for (k, name), keys in values.items() if k == kind and name is not None}


@pytest.mark.parametrize("operation, function", [("update", "replace"), ("complete", "replace"),
                                                 ("exact", "exact")])
def test_the_seeds_example_on_client_classes(operation: str, function: str) -> None:
    # Table 27-1: Client-Class is replace, replace, exact.
    src = _with(node("main", "10.98.0.1"), "client-class", MAIN, "selection-tags")
    tgt = _with(node("backup", "10.98.0.2"), "client-class", BACKUP, "selection-tags")
    changes = plan(src, tgt, pair="p", operation=operation)
    assert _result(apply_values(tgt, changes), "client-class", "selection-tags") == EXAMPLE_RESULT[function]
    text = apply(ini(tgt, comments=True), changes)
    loads(text)
    assert _result(read_values(text), "client-class", "selection-tags") == EXAMPLE_RESULT[function]
    assert {c.function for c in changes} == {function}


@pytest.mark.parametrize("operation, function", [("update", "ensure"), ("complete", "replace"),
                                                 ("exact", "exact")])
def test_the_seeds_example_on_a_policys_option_list(operation: str, function: str) -> None:
    # Policy option lists: ensure, replace, exact, "the option lists are
    # extracted to compare the list entries": Name1..3 are options here.
    names = {"Name1": "option.routers", "Name2": "option.domain-name", "Name3": "option.time-offset"}
    values = {"A": "10.1.0.1", "B": "b.example", "C": "c.example", "D": "3600"}

    def policy(entries: dict[str, str]) -> dict[str, str]:
        return {names[n]: values[v] for n, v in entries.items()}

    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    src[("policy", "default")] = {"lease-time": "1h", **policy(MAIN)}
    tgt[("policy", "default")] = {"lease-time": "1h", **policy(BACKUP)}
    changes = plan(src, tgt, pair="p", operation=operation)
    text = apply(ini(tgt), changes)
    loads(text)
    assert read_values(text)[("policy", "default")] == {"lease-time": "1h",
                                                        **policy(EXAMPLE_RESULT[function])}


def test_update_leaves_the_server_properties_alone_complete_and_exact_replace_them() -> None:
    # "All other properties: no change, replace, replace"; a property exists
    # with its default when unwritten, so replace also unsets it.
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    src[("server", None)].update({"max-dhcp-requests": "600", "safe-period": "1h"})
    tgt[("server", None)].update({"max-dhcp-requests": "700", "expiry-interval": "20"})
    assert plan(src, tgt, pair="p", operation="update") == []
    for operation in ("complete", "exact"):
        after = read_values(apply(ini(tgt), plan(src, tgt, pair="p", operation=operation)))[("server", None)]
        want = {**tgt[("server", None)], "max-dhcp-requests": "600", "safe-period": "1h"}
        del want["expiry-interval"]
        assert after == want


@pytest.mark.parametrize("operation", OPERATIONS)
def test_table_27_2_tuning_is_replaced_by_every_operation(operation: str) -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    src[("failover-pair", "p")].update({"failover-poll-interval": "50"})
    tgt[("failover-pair", "p")].update({"failover-poll-timeout": "40", "mclt": "90"})
    changes = plan(src, tgt, pair="p", operation=operation)
    text = apply(ini(tgt), changes)
    pair = loads(text).failover_pairs["p"]
    # The tuning keys as the source has them (timeout unset: its default),
    # so the pair loads (a timeout of 40 s would be below the interval).
    assert (pair.failover_poll_interval, pair.failover_poll_timeout) == (50, 60)
    assert pair.mclt == (90 if operation == "update" else 3600)


def test_a_client_deleted_on_the_main_goes_from_the_backup_only_with_exact() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    tgt[("client", "02:00:00:00:00:aa")] = {"host-name": "gone"}
    for operation in ("update", "complete"):
        assert plan(src, tgt, pair="p", operation=operation) == []
    changes = plan(src, tgt, pair="p", operation="exact")
    assert changes == [Change("client", "02:00:00:00:00:aa", None, "exact", "host-name = gone", None)]
    assert ("client", "02:00:00:00:00:aa") not in read_values(apply(ini(tgt), changes))


def test_clients_and_reservations_are_the_same_object_however_their_names_are_written() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    src[("client", "02:00:00:00:00:AA")] = {"host-name": "a"}
    tgt[("client", "0200.0000.00aa")] = {"host-name": "a"}
    assert plan(src, tgt, pair="p", operation="exact") == []
    src[("client", "02:00:00:00:00:AA")] = {"host-name": "b"}
    changes = plan(src, tgt, pair="p", operation="exact")
    assert [(c.name, c.prop, c.new) for c in changes] == [("0200.0000.00aa", "host-name", "b")]


def test_an_option_written_by_number_on_one_side_and_by_name_on_the_other_is_one_entry() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    src[("policy", "default")]["option.routers"] = "10.1.0.1"
    tgt[("policy", "default")]["option.3"] = "10.1.0.9"
    assert plan(src, tgt, pair="p", operation="update") == []  # ensure: the target has option 3
    for operation in ("complete", "exact"):
        text = apply(ini(tgt), plan(src, tgt, pair="p", operation=operation))
        assert loads(text).policies["default"].options == {3: bytes([10, 1, 0, 1])}


def test_exact_keeps_a_policy_a_scope_outside_the_pair_still_uses() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    tgt[("policy", "mine")] = {"lease-time": "2h"}
    tgt[("policy", "unused")] = {"lease-time": "3h"}
    tgt[("scope", "local")]["policy"] = "mine"
    changes = plan(src, tgt, pair="p", operation="exact")
    assert [(c.name, c.new) for c in changes] == [("unused", None)]
    loads(apply(ini(tgt), changes))


def test_a_target_without_the_pair_gets_it_from_complete_and_exact_not_from_update() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    del tgt[("failover-pair", "p")]
    assert not [c for c in plan(src, tgt, pair="p", operation="update") if c.object_class == "failover-pair"]
    for operation in ("complete", "exact"):
        text = apply(ini(tgt), plan(src, tgt, pair="p", operation=operation))
        assert read_values(text)[("failover-pair", "p")] == src[("failover-pair", "p")]


def test_bad_arguments_are_refused() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    with pytest.raises(ValueError, match="unknown operation"):
        plan(src, tgt, pair="p", operation="mirror")
    with pytest.raises(ValueError, match="no \\[failover-pair nope\\]"):
        plan(src, tgt, pair="nope")


# -- Table 27-1, class by class, operation by operation, presence by presence --

# The seed's Table 27-1 (and Table 27-2 for the pair's tuning), per probe;
# None: not synchronized by any operation (per-node, or outside the pair).
SEED: dict[str, tuple[str, str, str] | None] = {
    "server: all other properties": ("no change", "replace", "replace"),
    "server: per-node": None,
    "api": None,
    "pair: failover tuning (27-2)": ("replace", "replace", "replace"),
    "pair: all other properties": ("no change", "replace", "replace"),
    "policy: option list": ("ensure", "replace", "exact"),
    "policy: packet boot file": ("ensure", "replace", "exact"),
    "policy: all other properties": ("replace", "replace", "exact"),
    "policy": ("replace", "replace", "exact"),
    "client": ("replace", "replace", "exact"),
    "client-class": ("replace", "replace", "exact"),
    "scope of the pair": ("exact", "exact", "exact"),
    "scope option of the pair": ("exact", "exact", "exact"),
    "reservation in a scope of the pair": ("exact", "exact", "exact"),
    "reservation option in a scope of the pair": ("exact", "exact", "exact"),
    "scope outside the pair": None,
    "reservation outside the pair": None,
    "another pair": None,
}

# probe -> (section, key or None for the whole object, source value, target value).
PROBES: dict[str, tuple[tuple[str, str | None], str | None, dict[str, str] | str, dict[str, str] | str]] = {
    "server: all other properties": (("server", None), "max-dhcp-requests", "600", "700"),
    "server: per-node": (("server", None), "log-settings", "failover-detail", "default"),
    "api": (("api", None), "enabled", "false", "true"),
    "pair: failover tuning (27-2)": (("failover-pair", "p"), "failover-poll-interval", "5", "7"),
    "pair: all other properties": (("failover-pair", "p"), "mclt", "60", "90"),
    "policy: option list": (("policy", "default"), "option.routers", "10.1.0.1", "10.1.0.2"),
    "policy: packet boot file": (("policy", "default"), "packet-file-name", "pxelinux.0", "grubx64.efi"),
    "policy: all other properties": (("policy", "default"), "grace-period", "60", "90"),
    "policy": (("policy", "gold"), None, {"lease-time": "1h"}, {"lease-time": "2h"}),
    "client": (("client", "02:00:00:00:00:01"), None, {"host-name": "a"}, {"action": "exclude"}),
    "client-class": (("client-class", "cc"), None, {"action": "exclude"}, {"selection-tags": "x"}),
    "scope of the pair": (("scope", "lan2"), None, {"subnet": "10.2.0.0/24", "ranges": "10.2.0.10-10.2.0.20"},
                          {"subnet": "10.2.0.0/24", "ranges": "10.2.0.30"}),
    "scope option of the pair": (("scope", "lan"), "option.routers", "10.1.0.1", "10.1.0.2"),
    "reservation option in a scope of the pair": (("reservation", "10.1.0.60"), "option.routers",
                                                  "10.1.0.1", "10.1.0.2"),
    "reservation in a scope of the pair": (("reservation", "10.1.0.50"), None,
                                           {"hardware-address": "02:00:00:00:00:50"},
                                           {"hardware-address": "02:00:00:00:00:51"}),
    "scope outside the pair": (("scope", "local2"), None, {"subnet": "10.5.0.0/24"},
                               {"subnet": "10.5.0.0/24", "ranges": "10.5.0.9"}),
    "reservation outside the pair": (("reservation", "10.3.0.9"), None, {"hardware-address": "02:00:00:00:00:09"},
                                     {"client-id": "01:02"}),
    "another pair": (("failover-pair", "q"), "mclt", "60", "90"),
}

PRESENCE = ("only on source", "only on target", "equal", "different")


def _outcome(function: str | None, presence: str, whole: bool) -> str:
    """What the target holds afterwards: "source", "target" or "absent" (the seed's definitions).

    Whole objects and option-list entries are items of a collection (the
    seed's Name1..Name3); a property is always there, with its default when
    unwritten, so replacing it with the source's unset value unsets it.
    """
    if presence == "equal" or function is None or function == "no change":
        return "absent" if presence == "only on source" else "target"
    if presence == "only on source":
        return "source"  # ensure, replace and exact all add what the target lacks
    if presence == "only on target":
        if whole:
            return "absent" if function == "exact" else "target"
        return "absent"  # replaced by the source's unset value
    return "target" if function == "ensure" else "source"


def _case(probe: str, presence: str) -> tuple[Values, Values]:
    sid, key, s, t = PROBES[probe]
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    if presence == "equal":
        t = s
    if sid == ("reservation", "10.1.0.60"):
        # The reservation is on both sides; only its option differs.
        for side in (src, tgt):
            side[sid] = {"hardware-address": "02:00:00:00:00:60"}
    for side, value, present in ((src, s, presence != "only on target"), (tgt, t, presence != "only on source")):
        if not present:
            if key is not None:
                side[sid].pop(key, None)
            continue
        if key is None:
            assert isinstance(value, dict)
            side[sid] = dict(value)
        else:
            assert isinstance(value, str)
            side.setdefault(sid, {})[key] = value
        if sid == ("scope", "lan2"):
            side[("failover-pair", "p")]["scopes"] = "lan, lan2"

    return src, tgt


def sid_kind(probe: str) -> str:
    return PROBES[probe][0][0]


def _probe_value(values: Values, probe: str) -> object:
    sid, key, _, _ = PROBES[probe]
    keys = values.get(sid)
    if keys is None:
        return None
    return keys if key is None else keys.get(key)


@pytest.mark.parametrize("presence", PRESENCE)
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("probe", list(PROBES))
def test_table_27_1(probe: str, operation: str, presence: str) -> None:
    src, tgt = _case(probe, presence)
    src_text, tgt_text = ini(src), ini(tgt, comments=True)
    loads(src_text), loads(tgt_text)
    functions = SEED[probe]
    function = functions[OPERATIONS.index(operation)] if functions else None
    key = PROBES[probe][1]
    # A policy's options and boot file properties are collection entries; a
    # scope's or reservation's are properties of an object synchronized exactly.
    entry = key is not None and sid_kind(probe) == "policy" and key.startswith(("option.", "packet-"))
    expected = _outcome(function, presence, key is None or entry)
    changes = plan(read_values(src_text), read_values(tgt_text), pair="p", operation=operation)
    text = apply(tgt_text, changes)
    loads(text)  # the result is a configuration cnrd runs
    got = _probe_value(read_values(text), probe)
    want = {"source": _probe_value(src, probe), "target": _probe_value(tgt, probe), "absent": None}[expected]
    assert got == want, (expected, changes)
    assert _probe_value(apply_values(read_values(tgt_text), changes), probe) == want
    touched = [c for c in changes if (c.object_class, c.name or None) == PROBES[probe][0]
               and (PROBES[probe][1] is None or c.prop == PROBES[probe][1])]
    assert bool(touched) == (expected != "target" and want != _probe_value(tgt, probe)), changes
    if touched and function is not None:
        assert {c.function for c in touched} == {function}
    # Every comment of the target is still there, but those of a removed section.
    removed = {c.header for c in changes if c.prop is None and c.new is None}
    for line in tgt_text.splitlines():
        if line.startswith("#") and not any(line.endswith(f" {h}") for h in removed):
            assert line in text.splitlines()


# -- the table's own coverage ----------------------------------------------------


def test_every_server_key_is_classified_and_the_issues_identity_keys_are_per_node() -> None:
    from dataclasses import fields

    from cnrd.config.model import ServerConfig

    assert set(SERVER_KEYS) == {f.name.replace("_", "-") for f in fields(ServerConfig)}
    server_per_node = PER_NODE["server"]
    assert server_per_node is not None
    assert {"name", "interfaces", "data-dir", "server-identifier", "log-settings", "failover-recover",
            "trap-webhook", "server-port", "client-port", "lease-db-size"} <= server_per_node
    assert PER_NODE["api"] is None


def test_every_section_type_the_loader_knows_has_a_place_in_the_table() -> None:
    from cnrd.config import loader

    planned = {"server", "failover-pair", "policy", "client", "client-class", "scope", "reservation", "ldap"}
    assert set(loader._SECTION_TYPES) == planned | {"api"}
    assert set(TABLE_27_1) == {"server-tuning", "server-other", "policy-options", "policy-bootfile",
                               "policy-other", "client", "client-class", "scopes", "ldap"}
    assert "Policy: Packet Boot File Properties" not in NOT_APPLICABLE
    for row in ("VPN", "Key", "Extensions", "Extension Point", "DHCP Listener Configuration",
                "DNS Update Configuration", "Trap Configuration"):
        assert row in NOT_APPLICABLE


@pytest.mark.parametrize("operation", OPERATIONS)
def test_exact_and_every_operation_leave_a_nodes_own_keys_alone(operation: str) -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    for key, kind in SERVER_KEYS.items():
        if kind == "per-node" and key not in src[("server", None)]:
            src[("server", None)][key] = "x"  # only compared, never loaded
    src[("server", None)]["some-future-key"] = "1"
    changes = plan(src, tgt, pair="p", operation=operation)
    assert not [c for c in changes if c.object_class in ("server", "api")]
    assert shareable(src)[("server", None)] == {}
    assert ("api", None) not in shareable(src)


def test_changes_round_trip_through_json_and_name_their_objects() -> None:
    src, tgt = node("main", "10.98.0.1"), node("backup", "10.98.0.2")
    src[("client", "02:00:00:00:00:01")] = {"host-name": "a"}
    tgt[("policy", "default")]["grace-period"] = "60"
    tgt[("client-class", "x")] = {}
    changes = plan(src, tgt, pair="p", operation="exact")
    assert [Change.from_json(c.as_json()) for c in changes] == changes
    assert set(changes[0].as_json()) == {"class", "name", "property", "function", "old", "new"}
    assert differing_objects(changes) == ["policy default", "client-class x", "client 02:00:00:00:00:01"]
    with pytest.raises(ValueError):
        Change.from_json({"class": "vpn", "name": "v", "property": None, "function": "exact",
                          "old": None, "new": ""})
