"""Addresses and hardware addresses as text, and the "did you mean" hint.

One home for conversions every layer needs: the config loader, the DHCP
core's log fields, the failover adapter's detail lines, the admin API and
cnrctl all show IPv4 addresses (kept as host-order ints everywhere inside
cnrd) and hardware addresses the same way.

Pure module.
"""

from __future__ import annotations

import difflib
import socket
import struct
from collections.abc import Iterable

_U32 = struct.Struct("!I")


def ip_to_int(text: str) -> int:
    """Dotted quad to a host-order int.

    Strict (inet_pton, unlike inet_aton, refuses '10.1', leading zeros and
    spaces).  Raises ValueError.
    """
    try:
        value: int = _U32.unpack(socket.inet_pton(socket.AF_INET, text))[0]
    except (OSError, TypeError):
        raise ValueError(f"{text!r} is not an IPv4 address") from None
    return value


def netmask(prefix_len: int) -> int:
    """The IPv4 netmask of a prefix length 0..32, as an integer."""
    return (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF


def int_to_ip(n: int) -> str:
    """Host-order int to dotted quad.  Raises ValueError out of range."""
    try:
        return socket.inet_ntoa(_U32.pack(n))
    except struct.error:
        raise ValueError(f"{n!r} is not an IPv4 address") from None


def ip_text(n: int | None) -> str | None:
    """:func:`int_to_ip`, with None for None (an unset address in JSON)."""
    return None if n is None else int_to_ip(n)


def hw_text(hw: bytes) -> str:
    """Colon-separated lower-case hex: ``00:11:22:aa:bb:cc``."""
    return ":".join(f"{b:02x}" for b in hw)


def suggest(word: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` hint for a misspelt name, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
