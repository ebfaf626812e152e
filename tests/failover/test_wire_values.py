"""Message.values(): a binding's fields read in one pass, as the typed attributes read them.

[D] is draft-ietf-dhc-failover-12: §6.2 (an option appears once per
message), §6.3 (in a batched BNDUPD/BNDACK each binding opens with its
assigned-IP-address), §12 (the options' sizes).
"""

from __future__ import annotations

import struct

import pytest

from cnrd.failover import wire as w
from cnrd.failover.wire import FailoverWireError, Message, MessageType, Option

ADDR = struct.pack("!I", 0x0A000005)


def _frame(mtype: int, options: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("!HH", c, len(v)) + v for c, v in options)
    return struct.pack("!HBBII", 12 + len(body), mtype, 12, 1000, 7) + body


def test_validated_bndupd_values_are_the_typed_fields() -> None:
    msg = w.decode(w.encode(w.bndupd(9, 1000, assigned_address=0x0A000005, binding_status=2,
                                     client_hw=b"\x01\x00\x11\x22\x33\x44\x55", cltt=900,
                                     lease_expiration=4600, potential_expiration=4630,
                                     start_time_of_state=900)))
    v = msg.values()
    assert v[Option.ASSIGNED_IP_ADDRESS] == ADDR
    assert v[Option.BINDING_STATUS] == b"\x02"
    assert int.from_bytes(v[Option.LEASE_EXPIRATION_TIME], "big") == msg.lease_expiration == 4600
    assert int.from_bytes(v[Option.POTENTIAL_EXPIRATION_TIME], "big") == msg.potential_expiration == 4630
    assert v[Option.CLIENT_HARDWARE_ADDRESS] == msg.client_hw
    assert Option.CLIENT_IDENTIFIER not in v


def test_unbatched_first_occurrence_wins_around_the_address() -> None:
    # One address, a binding option before it and again after: the typed
    # attribute reads the first (what ISC reads); values() must agree.
    frame = _frame(MessageType.BNDUPD, [(Option.CLIENT_LAST_TRANSACTION_TIME, struct.pack("!I", 111)),
                                        (Option.ASSIGNED_IP_ADDRESS, ADDR), (Option.BINDING_STATUS, b"\x03"),
                                        (Option.CLIENT_LAST_TRANSACTION_TIME, struct.pack("!I", 222))])
    msg = w.decode(frame)
    assert msg.cltt == 111
    assert msg.values()[Option.CLIENT_LAST_TRANSACTION_TIME] == struct.pack("!I", 111)
    assert msg.values()[Option.BINDING_STATUS] == b"\x03"


def test_options_the_type_does_not_use_are_left_out() -> None:
    frame = _frame(MessageType.BNDACK, [(Option.ASSIGNED_IP_ADDRESS, ADDR), (Option.MCLT, struct.pack("!I", 5)),
                                        (999, b"x")])
    v = w.decode(frame).values()
    assert set(v) == {Option.ASSIGNED_IP_ADDRESS}


def test_batched_values_are_the_first_binding() -> None:
    second = struct.pack("!I", 0x0A000006)
    frame = _frame(MessageType.BNDACK, [(Option.ASSIGNED_IP_ADDRESS, ADDR), (Option.REJECT_REASON, b"\x0f"),
                                        (Option.ASSIGNED_IP_ADDRESS, second)])
    msg = w.decode(frame)
    assert msg.values()[Option.ASSIGNED_IP_ADDRESS] == ADDR
    assert msg.values()[Option.REJECT_REASON] == b"\x0f"
    assert [b.values()[Option.ASSIGNED_IP_ADDRESS] for b in msg.bindings()] == [ADDR, second]
    assert Option.REJECT_REASON not in msg.bindings()[1].values()


def test_unvalidated_wrong_size_is_fatal_as_for_the_typed_attribute() -> None:
    msg = Message(MessageType.BNDUPD, 1, 0, [(Option.ASSIGNED_IP_ADDRESS, b"\x0a\x00\x00"),
                                             (Option.BINDING_STATUS, b"\x02")])
    with pytest.raises(FailoverWireError) as e:
        msg.values()
    assert e.value.fatal
