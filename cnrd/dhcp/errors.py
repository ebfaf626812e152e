"""The exception for undecodable DHCP input.

It lives in its own module so that :mod:`cnrd.dhcp.options` (which decodes
option values) and :mod:`cnrd.dhcp.packet` (which re-exports it as the public
name) can both raise it without importing each other.

Pure module: stdlib only.
"""

from __future__ import annotations


class MalformedPacket(ValueError):
    """Input that is not a valid DHCPv4/BOOTP packet, or a value that is not
    valid for its option (RFC 2131 §2, RFC 2132).

    The server drops such packets and counts them; ``reason`` is a short,
    log-friendly phrase (no packet bytes, so logging it cannot be abused);
    ``drop`` the name the drop is counted under (``counters.drops``).
    """

    def __init__(self, reason: str, drop: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.drop = drop
