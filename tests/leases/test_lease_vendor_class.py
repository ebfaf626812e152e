"""A lease's vendor class (option 60) in the store: version 2 records, version 1 still read.

The failover main sends the client's vendor class to its partner, so the
lease keeps it across restarts; a record without one keeps the version-1
layout so older servers can read the store.
"""

from __future__ import annotations

import struct

from cnrd.leases.model import Lease, LeaseState

T0 = 1_800_000_000
AGENT = b"\x01\x05eth17\x02\x06\x02\xaa\xbb\xcc\xdd\xee"
VENDOR = b"MSFT 5.0"


def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, n])


def test_vendor_class_survives_the_store_and_old_records_still_load():
    lease = Lease(0x0A010064, state=LeaseState.LEASED, scope="lan", hw=b"\x01" + mac(1), expiration=T0 + 10,
                  cltt=T0, relay_info=AGENT, host_name="h", vendor_class=VENDOR)
    assert lease.pack()[0] == 2
    assert Lease.unpack(lease.pack()) == lease
    plain = Lease(0x0A010064, state=LeaseState.LEASED, scope="lan", hw=b"\x01" + mac(1), relay_info=AGENT)
    # A lease without a vendor class is written in the version-1 layout, readable by older servers.
    assert plain.pack()[0] == 1
    assert Lease.unpack(plain.pack()) == plain
    # A version-1 record built by hand from its layout loads with no vendor class.
    hw = b"\x01" + mac(1)
    v1 = struct.pack("!BIBIqqqqqIBB", 1, 0x0A010064, 2, 0, T0, T0 + 10, T0, 0, 0, 3, len(hw), 255) \
        + b"lan" + hw + struct.pack("!HH", 1, len(AGENT)) + b"h" + AGENT
    old = Lease.unpack(v1)
    assert (old.relay_info, old.host_name, old.vendor_class, old.expiration) == (AGENT, "h", b"", T0 + 10)
