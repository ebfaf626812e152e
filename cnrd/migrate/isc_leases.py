"""ISC dhcpd 4.x's lease file (dhcpd.leases(5)) read into foreign leases.

The file is append-only: a later ``lease`` block for an address replaces an
earlier one, so every block is returned in file order and the planner keeps
the last.  Blocks other than ``lease`` (``failover peer ... state``,
``host``, ``class``, ``server-duid`` ...) are passed over.  Inside a lease
the statements read are ``starts``, ``ends``, ``cltt``, ``binding state``,
``hardware``, ``uid``, ``client-hostname`` and the old ``abandoned``; the
others (``tstp``, ``tsfp``, ``set``, ``on`` ...) are ignored.  Dates are
``W YYYY/MM/DD HH:MM:SS`` in UTC, ``epoch N`` (``db-time-format local``) or
``never``.

Pure module.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator

from cnrd.migrate.iscsyntax import SyntaxProblem, Token, block, tokens
from cnrd.migrate.records import NEVER, ForeignLease, Malformed
from cnrd.text import ip_to_int

__all__ = ["HARDWARE_TYPES", "parse_date", "parse_hex_bytes", "read_isc_leases"]

#: dhcpd's hardware type names and their ARP hardware type numbers (RFC 1700).
HARDWARE_TYPES = {"ethernet": 1, "token-ring": 6, "fddi": 8, "infiniband": 32}


def parse_date(words: list[str]) -> int:
    """Epoch seconds of an ISC date (the words after ``starts``, ``ends`` ...); NEVER for ``never``."""
    if words == ["never"]:
        return NEVER
    if len(words) == 2 and words[0] == "epoch" and words[1].isdigit():
        return int(words[1])
    if len(words) == 3 and words[0].isdigit():
        try:
            y, mo, d = (int(x) for x in words[1].split("/"))
            h, mi, s = (int(x) for x in words[2].split(":"))
        except ValueError:
            raise ValueError(f"{' '.join(words)!r} is not a date") from None
        if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s <= 60):
            raise ValueError(f"{' '.join(words)!r} is not a date")
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    raise ValueError(f"{' '.join(words)!r} is not a date")


def parse_hex_bytes(text: str) -> bytes:
    """``01:02:0a`` (ISC writes single digits too: ``1:2:a``) as bytes."""
    try:
        return bytes(int(part, 16) for part in text.split(":")) if text else b""
    except ValueError:
        raise ValueError(f"{text!r} is not colon-separated hex") from None


def _statements(body: list[Token]) -> Iterator[list[Token]]:
    """The simple statements of a block body; nested blocks (``on expiry { }``) are passed over."""
    i, head = 0, list[Token]()
    while i < len(body):
        t = body[i]
        if t.kind == ";":
            yield head
            head, i = [], i + 1
        elif t.kind == "{":
            _, i = block(body, i)
            head = []
        else:
            head.append(t)
            i += 1
    if head:
        raise SyntaxProblem(head[0].line, "a statement is not ended by ';'")


def _lease(address: int, body: list[Token], line: int) -> ForeignLease:
    dates: dict[str, int] = {}
    state, hw, htype, host = "", b"", 1, ""
    cid: bytes | None = None
    for st in _statements(body):
        if not st:
            continue
        words = [t.value for t in st]
        key = words[0].lower()
        if key in ("starts", "ends", "cltt"):
            dates[key] = parse_date(words[1:])
        elif key == "binding" and len(words) == 3 and words[1].lower() == "state":
            state = words[2].lower()
        elif key == "abandoned" and len(words) == 1:
            state = "abandoned"
        elif key == "hardware":
            if len(words) != 3 or words[1].lower() not in HARDWARE_TYPES:
                raise ValueError(f"line {st[0].line}: 'hardware {' '.join(words[1:])}' is not understood")
            htype, hw = HARDWARE_TYPES[words[1].lower()], parse_hex_bytes(words[2])
        elif key == "uid" and len(st) == 2:
            cid = st[1].value.encode("latin-1") if st[1].kind == "string" else parse_hex_bytes(st[1].value)
        elif key == "client-hostname" and len(st) == 2 and st[1].kind == "string":
            host = st[1].value.encode("latin-1").decode("utf-8", "replace")
    if not state:
        # dhcpd 2.x wrote no binding state: a lease with an end in it is one.
        state = "active" if dates.get("ends") else "free"
    starts = dates.get("starts", 0)
    return ForeignLease(address=address, state=state, hw=hw, htype=htype, client_id=cid or None,
                        start=starts, end=dates.get("ends", 0), cltt=dates.get("cltt", starts),
                        host_name=host, line=line)


def read_isc_leases(text: str) -> list[ForeignLease | Malformed]:
    """Every ``lease`` block of a dhcpd.leases text, in file order.

    A block that cannot be read is a :class:`Malformed` naming its line; one
    whose braces do not match ends the reading with a Malformed (nothing
    after it can be placed).
    """
    out: list[ForeignLease | Malformed] = []
    try:
        toks = list(tokens(text))
    except SyntaxProblem as e:
        # Read what comes before the broken string; the rest cannot be placed.
        cut = "\n".join(text.splitlines()[: e.line - 1])
        return read_isc_leases(cut) + [Malformed(e.line, e.reason)] if cut != text else [Malformed(e.line, e.reason)]
    i = 0
    while i < len(toks):
        head: list[Token] = []
        while i < len(toks) and toks[i].kind not in (";", "{", "}"):
            head.append(toks[i])
            i += 1
        if i >= len(toks):
            if head:
                out.append(Malformed(head[0].line, "the file ends inside a statement"))
            break
        if toks[i].kind == "}":
            out.append(Malformed(toks[i].line, "a '}' without its '{'"))
            i += 1
            continue
        if toks[i].kind == ";":
            i += 1
            continue
        line = head[0].line if head else toks[i].line
        try:
            body, i = block(toks, i)
        except SyntaxProblem as e:
            out.append(Malformed(e.line, e.reason))
            break
        if not head or head[0].value.lower() != "lease":
            continue
        addr_text = head[1].value if len(head) > 1 else ""
        try:
            if len(head) != 2:
                raise ValueError("expected 'lease ADDRESS {'")
            out.append(_lease(ip_to_int(addr_text), body, line))
        except (ValueError, SyntaxProblem) as e:
            out.append(Malformed(line, str(e), addr_text))
    return out
