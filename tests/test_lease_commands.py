"""Lease commands and the lease history through :class:`cnrd.admin.commands.Admin`, on a Clock.

The real Runtime with a memory store (tests/adminkit.py); for failover two
of them joined by the in-memory link, so binding updates are the protocol's.
Expectations come from the seed and draft-ietf-dhc-failover-12: an address
an operator frees is RESET until the partner acknowledges it (§5.11), a
change the partner sent is the partner's, and an operator's is "operator".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from cnrd.admin.commands import Admin, AdminError
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.leases.model import LeaseState
from tests.adminkit import PAIR, STANDALONE, T0, Server, pair
from tests.dhcp.helpers import mac, request
from tests.test_service import Rx

ONE = STANDALONE.replace("ranges = 10.1.0.100-10.1.0.149", "ranges = 10.1.0.100-10.1.0.100")
ADDR = "10.1.0.100"


def result(d: Any) -> Any:
    """The value of a Deferred that has fired (commits run at once here)."""
    assert isinstance(d, Deferred)
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the command's Deferred has not fired"
    if isinstance(out[0], Exception) or hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def release(server: Server, n: int, address: int) -> None:
    server.port.on_batch([Rx(request(M.RELEASE, mac(n), ciaddr=address).serialize(),
                             src_ip="10.1.0.100", src_port=68, dst_ip="10.1.0.1")], 0)


def q(**kw: str) -> dict[str, list[str]]:
    return {k.replace("_", "-"): [v] for k, v in kw.items()}


def hw(n: int) -> str:
    return ":".join(f"{b:02x}" for b in mac(n))


def test_three_holders_with_times_and_sources(tmp_path: Path) -> None:
    s = Server(tmp_path, ONE)
    admin = Admin(s.dhcp)
    assert s.lease(1) == ip_to_int(ADDR)
    s.clock.advance(60)
    release(s, 1, ip_to_int(ADDR))
    s.clock.advance(60)
    assert s.lease(2) == ip_to_int(ADDR)
    s.clock.advance(60)
    done = result(admin.lease_commands.force_available(ADDR))
    assert done == {"address": ADDR, "was": "leased", "state": "available", "failover": False}
    s.clock.advance(60)
    assert s.lease(3) == ip_to_int(ADDR)
    h = admin.lease_commands.address_history(ADDR, {})
    leased = [e for e in h["history"] if e["state"] == "leased" and e["event"] == "ack"]
    assert [e["hardware-address"] for e in leased] == [hw(1), hw(2), hw(3)]
    assert [e["time"] for e in leased] == ["2027-01-15T08:00:00Z", "2027-01-15T08:02:00Z", "2027-01-15T08:04:00Z"]
    assert {e["source"] for e in leased} == {"dhcp"}
    assert {e["server"] for e in leased} == {"test"}  # no failover pair: the [server] name
    events = [(e["event"], e["source"]) for e in h["history"]]
    assert ("release", "dhcp") in events and ("force-available", "operator") in events
    # Who had it two minutes in?  Client 2 (leased at 08:02, forced free at 08:03).
    at = admin.lease_commands.address_history(ADDR, q(at="2027-01-15T08:02:30Z"))
    assert at["holder"]["hardware-address"] == hw(2)
    at = admin.lease_commands.address_history(ADDR, q(at="2027-01-15T08:03:30Z"))
    assert at["holder"] is None and at["history"][0]["event"] == "force-available"
    at = admin.lease_commands.address_history(ADDR, q(at="2020-01-01T00:00:00Z"))
    assert at["holder"] is None and at["history"] == []


def test_history_pages_and_filters(tmp_path: Path) -> None:
    s = Server(tmp_path, STANDALONE)
    admin = Admin(s.dhcp).lease_commands
    for n in range(1, 8):
        s.lease(n)
        s.clock.advance(10)
    every = admin.history({})["history"]
    assert len(every) == 7 and all(e["event"] == "ack" for e in every)
    seen: list[str] = []
    cursor: dict[str, list[str]] = {}
    for _ in range(10):
        page = admin.history({**q(limit="3"), **cursor})
        assert len(page["history"]) <= 3
        seen += [e["hardware-address"] for e in page["history"]]
        if page["next"] is None:
            break
        cursor = q(cursor=page["next"])
    assert seen == [hw(n) for n in range(1, 8)]
    mine = admin.history(q(hardware_address=hw(4)))["history"]
    assert len(mine) == 1 and mine[0]["address"] == every[3]["address"]
    window = admin.history(q(since=str(T0 + 20), until=str(T0 + 40)))["history"]
    assert [e["hardware-address"] for e in window] == [hw(3), hw(4), hw(5)]
    newest = admin.history(q(order="newest", limit="2"))["history"]
    assert [e["hardware-address"] for e in newest] == [hw(7), hw(6)]


@pytest.mark.parametrize("query, fragment", [
    ({"bogus": ["1"]}, "unknown query parameter"),
    ({"limit": ["0"]}, "limit must be"),
    ({"since": ["yesterday-ish"]}, "since"),
    ({"cursor": ["12"]}, "bad cursor"),
    ({"since": ["2027-01-02T00:00:00Z"], "until": ["2027-01-01T00:00:00Z"]}, "is after until"),
    ({"hardware-address": ["zz"]}, ""),
    ({"order": ["sideways"]}, "order"),
])
def test_history_refuses_bad_queries(tmp_path: Path, query: dict[str, list[str]], fragment: str) -> None:
    admin = Admin(Server(tmp_path, STANDALONE).dhcp).lease_commands
    with pytest.raises(AdminError) as e:
        admin.history(query)
    assert e.value.status == 400 and fragment in e.value.reason


def test_at_goes_alone_and_address_must_parse(tmp_path: Path) -> None:
    admin = Admin(Server(tmp_path, STANDALONE).dhcp).lease_commands
    with pytest.raises(AdminError) as e:
        admin.address_history(ADDR, q(at="-1h", since="-2h"))
    assert e.value.status == 400
    with pytest.raises(AdminError) as e:
        admin.address_history("10.1.0", {})
    assert e.value.status == 400


def test_force_available_refusals(tmp_path: Path) -> None:
    s = Server(tmp_path, STANDALONE)
    admin = Admin(s.dhcp).lease_commands
    with pytest.raises(AdminError) as e:
        admin.force_available("10.1.0.120")  # never used: available already
    assert e.value.status == 409 and "available already" in e.value.reason
    with pytest.raises(AdminError) as e:
        admin.force_available("10.1.0.50")  # the reservation's
    assert e.value.status == 409 and "reservation" in e.value.reason
    with pytest.raises(AdminError) as e:
        admin.delete("10.1.0.121")
    assert e.value.status == 404


def test_delete_forgets_the_client_but_the_history_keeps_it(tmp_path: Path) -> None:
    s = Server(tmp_path, STANDALONE)
    admin = Admin(s.dhcp)
    address = s.lease(5)
    text = "10.1.0." + str(address & 255)
    out = result(admin.lease_commands.delete(text))
    assert out["was"] == "leased" and out["state"] == "available"
    lease = s.dhcp.table.get(address)
    assert lease is not None and lease.hw == b"" and lease.client_id is None and lease.host_name == ""
    assert admin.lease(text)["hardware-address"] is None
    h = admin.lease_commands.address_history(text, {})["history"]
    assert [(e["event"], e["source"], e["hardware-address"]) for e in h] == [
        ("ack", "dhcp", hw(5)), ("delete", "operator", None)]
    # The store has both events durably.
    assert [e.what for _, e in s.store.events()] == ["ack", "delete"]


def test_force_available_with_failover_reaches_the_partner_and_waits_for_its_ack(tmp_path: Path) -> None:
    main, backup, wire = pair(tmp_path, PAIR)
    admin = Admin(main.dhcp)
    address = main.lease(7)
    text = "10.1.0." + str(address & 255)
    wire.settle()
    assert backup.dhcp.table.get(address).state is LeaseState.LEASED
    # Cut off: the change is RESET here and no client may have it (the partner still thinks it bound).
    wire.close()
    out = result(admin.lease_commands.force_available(text))
    assert out == {"address": text, "was": "leased", "state": "reset", "failover": True}
    assert main.dhcp.table.get(address).state is LeaseState.RESET
    assert backup.dhcp.table.get(address).state is LeaseState.LEASED
    assert not main.dhcp.table.pool_of(address).reusable(LeaseState.RESET)
    # Back in touch: the update goes over, the backup takes it, the main frees it on the ack.
    wire.connect()
    wire.advance(3)
    assert backup.dhcp.table.get(address).state is LeaseState.AVAILABLE
    assert main.dhcp.table.get(address).state is LeaseState.AVAILABLE
    ours = Admin(main.dhcp).lease_commands.address_history(text, {})["history"]
    assert [(e["event"], e["source"], e["server"]) for e in ours] == [
        ("ack", "dhcp", "10.1.0.1"), ("force-available", "operator", "10.1.0.1")]
    theirs = Admin(backup.dhcp).lease_commands.address_history(text, {})["history"]
    assert [(e["state"], e["source"], e["server"]) for e in theirs] == [
        ("leased", "partner", "10.1.0.1"), ("available", "partner", "10.1.0.1")]
