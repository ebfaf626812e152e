"""The value of client-request-options and client-reply-options ([D] §12.7, §12.8).

Both carry the DHCP magic cookie 99.130.83.99 followed by DHCP options in
their RFC 2132 form (code, length, value; pad 0 skipped; end 255 stops).
The main sends the client's relay-agent-information (82), host name (12)
and vendor class (60) this way, so that the backup can answer
DHCPLEASEQUERY for the main's clients while the main is down.  ISC dhcpd
4.4 parses both options as opaque bytes and never looks inside (nor sends
them), so they are safe to send to it.

Pure module: stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MAGIC_COOKIE", "ClientOptionsError", "decode_client_options", "encode_client_options"]

MAGIC_COOKIE = b"\x63\x82\x53\x63"
_PAD, _END = 0, 255


class ClientOptionsError(ValueError):
    """A client-request-options or client-reply-options value that is not cookie + DHCP options."""


def encode_client_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """Cookie + ``options`` (code, value) in the given order; empty values are left out.

    A value longer than 255 bytes does not fit one DHCP option and is left
    out whole: a cut relay-agent-information would be worse than none, and
    the BNDUPD carrying it must stay within a failover message's 2048 bytes.
    """
    out = bytearray(MAGIC_COOKIE)
    for code, value in options:
        if not 1 <= code <= 254:
            raise ValueError(f"DHCP option code {code} cannot be carried")
        if not value or len(value) > 255:
            continue
        out += bytes((code, len(value))) + value
    return bytes(out)


def decode_client_options(value: bytes) -> dict[int, bytes]:
    """The DHCP options in a client-request/reply-options value, by code.

    Repeated codes are joined in order (RFC 3396 long options).  Raises
    :class:`ClientOptionsError` when the cookie is missing or an option runs
    past the end.
    """
    if value[:4] != MAGIC_COOKIE:
        raise ClientOptionsError("no DHCP magic cookie")
    found: dict[int, bytes] = {}
    i, end = 4, len(value)
    while i < end:
        code = value[i]
        if code == _PAD:
            i += 1
            continue
        if code == _END:
            break
        if i + 1 >= end:
            raise ClientOptionsError(f"option {code} has no length")
        length = value[i + 1]
        if i + 2 + length > end:
            raise ClientOptionsError(f"option {code} runs past the end")
        found[code] = found.get(code, b"") + value[i + 2 : i + 2 + length]
        i += 2 + length
    return found
