"""Issue 18 item 6: an address comes back the moment its lease, hold or offer runs out.

RFC 2131 §4.3.1 lets the server offer "a new address allocated from the
server's pool of available addresses"; an address whose lease has run out
(and, in CNR, whose policy's grace-period has passed) is available again,
so the next request after that moment may get it — not only a request after
the next expiry sweep.  The same goes for an address a client DECLINEd once
the policy's unavailable-timeout has passed, and for an OFFER the client
never took up once offer-timeout has passed.  These tests drive the server
core with a fake clock and never call the sweep (``DhcpServer.expire``).

With failover (draft-ietf-dhc-failover-12 §5.2.1, CNR 7.2 "Configuring DHCP
Failover"), an expired lease goes to EXPIRED and the partner must acknowledge
it before the address is free for another client.
"""

from __future__ import annotations

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.failover import wire
from cnrd.failover.states import S
from cnrd.leases.model import LeaseState, client_key
from tests.dhcp.helpers import BCAST, SERVER_IP, mac, make_server, request, u32

NOW = 1_000_000
ONLY = ip_to_int("10.1.0.100")


def config(*, lease_time: int = 3, grace: int = 0, offer_timeout: int = 120, unavailable: int = 86400) -> str:
    return f"""
[server]
name = test
interfaces = eth1
data-dir = /nonexistent

[policy default]
lease-time = {lease_time}
grace-period = {grace}
offer-timeout = {offer_timeout}
unavailable-timeout = {unavailable}

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.100
policy = default
"""


def dora(server, hw, now):
    offer = server.handle(request(M.DISCOVER, hw), BCAST, now)
    assert offer is not None and offer.packet.message_type == M.OFFER
    yi = offer.packet.yiaddr
    ack = server.handle(request(M.REQUEST, hw, o50=u32(yi), o54=u32(SERVER_IP)), BCAST, now)
    assert ack is not None and ack.packet.message_type == M.ACK
    return ack


def discover(server, hw, now):
    return server.handle(request(M.DISCOVER, hw), BCAST, now)


def test_one_address_range_goes_to_a_second_client_4s_after_the_first_ack():
    """The issue's scenario: lease-time 3, grace-period 0, one address; no sweep runs."""
    server, _ = make_server(config(lease_time=3, grace=0))
    ack = dora(server, mac(1), NOW)
    assert ack.packet.yiaddr == ONLY and ack.packet.options[51] == u32(3)
    server.table.take_dirty()  # the first client's lease is committed
    told: list[tuple[int, LeaseState, str]] = []
    server.table.listeners.append(lambda lease, what: told.append((lease.address, lease.state, what)))
    offer = discover(server, mac(2), NOW + 4)
    assert offer is not None and offer.packet.message_type == M.OFFER
    assert offer.packet.yiaddr == ONLY
    assert server.counters.drops["no-address-available"] == 0
    # The expiry is a durable change like the sweep's: committed with this
    # batch and told to the listeners (failover turns it into a BNDUPD).
    assert told == [(ONLY, LeaseState.EXPIRED, "expire")]
    leases, events = server.table.take_dirty()
    assert [(e.address, e.what) for e in events] == [(ONLY, "expire")]
    assert [lease.address for lease in leases] == [ONLY]
    assert server.table.get(ONLY).key == client_key(None, b"\x01" + mac(2))


def test_not_before_the_lease_runs_out():
    server, _ = make_server(config(lease_time=3, grace=0))
    dora(server, mac(1), NOW)
    assert discover(server, mac(2), NOW + 2) is None
    assert server.counters.drops["no-address-available"] == 1
    assert server.table.get(ONLY).state is LeaseState.LEASED
    # At the expiration second itself the lease has run out.
    offer = discover(server, mac(2), NOW + 3)
    assert offer is not None and offer.packet.yiaddr == ONLY


def test_grace_period_keeps_the_address_for_its_client_until_it_ends():
    server, _ = make_server(config(lease_time=3, grace=5))
    dora(server, mac(1), NOW)
    assert discover(server, mac(2), NOW + 4) is None
    # Run out, but still its client's during the grace period.
    assert server.table.get(ONLY).state is LeaseState.EXPIRED
    assert discover(server, mac(2), NOW + 7) is None
    assert server.counters.drops["no-address-available"] == 2
    back = discover(server, mac(1), NOW + 7)
    assert back is not None and back.packet.yiaddr == ONLY


def test_after_the_grace_period_another_client_gets_it():
    server, _ = make_server(config(lease_time=3, grace=5))
    dora(server, mac(1), NOW)
    assert discover(server, mac(2), NOW + 7) is None
    offer = discover(server, mac(2), NOW + 3 + 5)
    assert offer is not None and offer.packet.yiaddr == ONLY


def test_declined_address_offered_again_after_unavailable_timeout():
    server, _ = make_server(config(lease_time=3600, unavailable=3))
    ack = dora(server, mac(1), NOW)
    server.handle(request(M.DECLINE, mac(1), o50=u32(ack.packet.yiaddr), o54=u32(SERVER_IP)), BCAST, NOW)
    assert server.table.get(ONLY).state is LeaseState.UNAVAILABLE
    assert discover(server, mac(2), NOW + 2) is None
    offer = discover(server, mac(2), NOW + 3)
    assert offer is not None and offer.packet.yiaddr == ONLY
    _, events = server.table.take_dirty()
    assert [e.what for e in events if e.address == ONLY][-1:] == ["available"]


def test_an_offer_never_taken_up_goes_to_another_client_after_offer_timeout():
    server, _ = make_server(config(lease_time=3600, offer_timeout=2))
    first = discover(server, mac(1), NOW)
    assert first is not None and first.packet.yiaddr == ONLY
    assert discover(server, mac(2), NOW + 1) is None
    offer = discover(server, mac(2), NOW + 2)
    assert offer is not None and offer.packet.yiaddr == ONLY


def test_nothing_due_leaves_the_table_alone():
    server, _ = make_server(config(lease_time=3600))
    dora(server, mac(1), NOW)
    server.table.take_dirty()
    assert not server.table.due(NOW + 10)
    assert discover(server, mac(2), NOW + 10) is None
    assert server.table.get(ONLY).state is LeaseState.LEASED
    assert server.table.take_dirty() == ([], [])


# -- failover ---------------------------------------------------------------


def test_failover_expired_lease_is_free_for_others_only_after_the_partner_acks():
    from tests.failover.test_recovery import Clients, normal_pair

    main, backup, link = normal_pair()
    clients = Clients()
    addr = clients.dora(main, 1, link.now)
    assert addr is not None
    link.settle()
    lease = main.table.get(addr)
    other = client_key(None, b"\x01" + mac(2))
    at = lease.expiration
    # The next request after the expiration moves the lease on, with no sweep.
    main.server.handle(request(M.DISCOVER, mac(2)), BCAST, at)
    assert main.table.get(addr).state is LeaseState.EXPIRED
    # Not yet acknowledged: only its own client may have it.
    assert not main.table.is_available(addr, other)
    sent_before = len(main.wire_log)
    link.now = at
    link.settle()
    updates = [m for m in main.wire_log[sent_before:] if m.type == wire.MessageType.BNDUPD]
    assert updates, "the expiry must reach the partner as a binding update"
    assert backup.table.get(addr).state in (LeaseState.EXPIRED, LeaseState.AVAILABLE)
    assert main.table.get(addr).state is LeaseState.AVAILABLE
    assert main.table.is_available(addr, other)


def test_failover_expired_lease_stays_held_while_the_partner_is_out_of_touch():
    from tests.failover.test_recovery import Clients, normal_pair

    main, _, link = normal_pair()
    clients = Clients()
    addr = clients.dora(main, 1, link.now)
    assert addr is not None
    link.settle()
    link.drop()
    assert main.session.state is S.COMMUNICATIONS_INTERRUPTED
    at = main.table.get(addr).expiration
    main.server.handle(request(M.DISCOVER, mac(2)), BCAST, at + 1)
    assert main.table.get(addr).state is LeaseState.EXPIRED
    assert not main.table.is_available(addr, client_key(None, b"\x01" + mac(2)))
    assert not main.table.is_available(addr, client_key(None, b"\x01" + mac(2)), owner="any")
