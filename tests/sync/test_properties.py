"""Properties of the planner over generated pairs of configurations (hypothesis).

Both sides are drawn from one universe (scope NAME always has subnet
10.N.0.0/24, a reservation's MAC follows from its address) so that what is
generated loads; each side then differs at random in which objects it has
and in their keys.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnrd.config import loads
from cnrd.config.inifile import read_values
from cnrd.sync import OPERATIONS, Values, apply, apply_values, plan
from cnrd.sync.table import PER_NODE
from tests.sync.inis import ini

SCOPES = {"s1": 1, "s2": 2, "s3": 3}
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02", "0200.0000.0003")


@st.composite
def node(draw: st.DrawFn, name: str, address: str) -> Values:
    v: Values = {}
    server = {"name": name, "data-dir": f"/var/lib/{name}", "interfaces": f"eth-{name}"}
    for key, choices in (("log-settings", ["default", "failover-detail"]), ("max-dhcp-requests", ["500", "900"]),
                         ("safe-period", ["1h", "2h"]), ("expiry-interval", ["10", "20"]),
                         ("lease-journal", ["true", "false"])):
        if draw(st.booleans()):
            server[key] = draw(st.sampled_from(choices))
    v[("server", None)] = server
    if draw(st.booleans()):
        v[("api", None)] = {"listen": f"{address}:8067"}
    policies = draw(st.lists(st.sampled_from(["default", "gold", "silver"]), unique=True))
    for p in policies:
        keys: dict[str, str] = {}
        if draw(st.booleans()):
            keys["lease-time"] = draw(st.sampled_from(["1h", "2h"]))
        if draw(st.booleans()):
            keys["grace-period"] = draw(st.sampled_from(["60", "90"]))
        routers = draw(st.sampled_from([None, "option.routers", "option.3"]))
        if routers:
            keys[routers] = draw(st.sampled_from(["10.1.0.1", "10.1.0.2"]))
        if draw(st.booleans()):
            keys["option.domain-name"] = draw(st.sampled_from(["a.example", "b.example"]))
        v[("policy", p)] = keys
    refs = [None, *policies]
    classes = draw(st.lists(st.sampled_from(["c1", "c2"]), unique=True))
    for c in classes:
        keys = {}
        if (pol := draw(st.sampled_from(refs))) is not None:
            keys["policy"] = pol
        if draw(st.booleans()):
            keys["action"] = "exclude"
        v[("client-class", c)] = keys
    for mac in draw(st.lists(st.sampled_from(MACS), unique=True)):
        keys = {}
        if (cc := draw(st.sampled_from([None, *classes]))) is not None:
            keys["client-class"] = cc
        if draw(st.booleans()):
            keys["host-name"] = draw(st.sampled_from(["a", "b"]))
        v[("client", mac)] = keys
    scopes = draw(st.lists(st.sampled_from(sorted(SCOPES)), unique=True))
    for s in scopes:
        n = SCOPES[s]
        keys = {"subnet": f"10.{n}.0.0/24"}
        if draw(st.booleans()):
            keys["ranges"] = draw(st.sampled_from([f"10.{n}.0.10-10.{n}.0.20", f"10.{n}.0.30"]))
        if (pol := draw(st.sampled_from(refs))) is not None:
            keys["policy"] = pol
        v[("scope", s)] = keys
        for host in draw(st.lists(st.sampled_from([5, 6]), unique=True)):
            v[("reservation", f"10.{n}.0.{host}")] = {"hardware-address": f"02:00:00:00:{n:02x}:{host:02x}"}
    if draw(st.booleans()):
        # Another relationship of this node, with a scope of its own.
        v[("scope", "qs")] = {"subnet": "10.9.0.0/24", "ranges": "10.9.0.10-10.9.0.20"}
        v[("failover-pair", "q")] = {"main": "10.97.0.1", "backup": address, "scopes": "qs"}
        listed = draw(st.lists(st.sampled_from(scopes), unique=True, min_size=1)) if scopes else ["qs"]
    else:
        listed = draw(st.lists(st.sampled_from(scopes), unique=True)) if scopes else []
    pair = {"main": "10.98.0.1", "backup": "10.98.0.2"}
    if listed != ["qs"]:
        if listed:
            pair["scopes"] = ", ".join(listed)
        for key, choices in (("mclt", ["60", "90"]), ("failover-poll-interval", ["5", "50"]),
                             ("failover-poll-timeout", ["40", "100"])):
            if draw(st.booleans()):
                pair[key] = draw(st.sampled_from(choices))
        v[("failover-pair", "p")] = pair
    return v


def _loads(values: Values) -> bool:
    try:
        loads(ini(values))
    except Exception:
        return False
    return True


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Values, Values]:
    src = draw(node("main", "10.98.0.1").filter(lambda v: ("failover-pair", "p") in v).filter(_loads))
    # A target with another relationship needs the pair's scopes listed: an
    # empty list (every scope) would take that relationship's scopes too.
    tgt = draw(node("backup", "10.98.0.2").filter(_loads).filter(
        lambda v: ("failover-pair", "q") not in v or "scopes" in src[("failover-pair", "p")]))
    return src, tgt


def _own(values: Values) -> dict[object, object]:
    """A node's own configuration: [api] and the per-node [server] keys."""
    per_node = PER_NODE["server"]
    assert per_node is not None
    return {"api": values.get(("api", None)),
            "server": {k: v for k, v in values[("server", None)].items() if k in per_node}}


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                          HealthCheck.too_slow])


@SETTINGS
@given(pairs(), st.sampled_from(OPERATIONS))
def test_any_operation_gives_a_file_that_loads_keeps_its_own_keys_and_is_stable(
        case: tuple[Values, Values], operation: str) -> None:
    src, tgt = case
    text = ini(tgt, comments=True)
    changes = plan(src, read_values(text), pair="p", operation=operation)
    result = apply(text, changes)
    loads(result)
    after = read_values(result)
    assert after == apply_values(read_values(text), changes)
    assert _own(after) == _own(tgt)
    # Running the same operation again finds nothing more to do.
    assert plan(src, after, pair="p", operation=operation) == []
    # No operation touches another relationship.
    assert after.get(("failover-pair", "q")) == tgt.get(("failover-pair", "q"))


@SETTINGS
@given(pairs())
def test_after_exact_report_shows_nothing_and_update_or_complete_change_nothing(
        case: tuple[Values, Values]) -> None:
    src, tgt = case
    after = read_values(apply(ini(tgt), plan(src, tgt, pair="p", operation="exact")))
    for operation in OPERATIONS:
        assert plan(src, after, pair="p", operation=operation) == []
