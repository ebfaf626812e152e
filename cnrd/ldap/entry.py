"""A directory entry as a client: the query-dictionary maps its attributes to client properties.

Pure.  The result is the same :class:`ClientConfig` a ``[client]`` section
gives, so the DHCP core treats an LDAP client exactly like a local one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cnrd.config.model import ClientConfig
from cnrd.ldap.messages import Entry

PROPERTIES = ("client-class", "host-name", "policy", "action", "reserved-address")


def _text(attribute: str, raw: bytes) -> str:
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"attribute {attribute} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"attribute {attribute} is empty")
    return value


def client_from_entry(entry: Entry, dictionary: Sequence[tuple[str, str]], hardware_address: bytes) -> ClientConfig:
    """The client ``entry`` describes; ValueError with the attribute and reason for an unusable value.

    Attributes the entry lacks leave their property unset; of several
    values the first is used.
    """
    values: dict[str, str | int] = {}
    for attribute, prop in dictionary:
        raw = entry.first(attribute)
        if raw is None:
            continue
        text = _text(attribute, raw)
        if prop == "action":
            if text.lower() != "exclude":
                raise ValueError(f"attribute {attribute} ({prop}) is {text!r}; the only action is 'exclude'")
            values[prop] = "exclude"
        elif prop == "reserved-address":
            try:
                values[prop] = int(ipaddress.IPv4Address(text))
            except ValueError:
                raise ValueError(f"attribute {attribute} ({prop}) is {text!r}, not a dotted IPv4 address") from None
        elif prop in PROPERTIES:
            values[prop] = text
        else:
            raise ValueError(f"query-dictionary maps {attribute} to {prop!r}, not one of {', '.join(PROPERTIES)}")

    def get(prop: str) -> str | None:
        value = values.get(prop)
        return value if isinstance(value, str) else None

    reserved = values.get("reserved-address")
    return ClientConfig(hardware_address=hardware_address, client_class=get("client-class"),
                        policy=get("policy"), host_name=get("host-name"), action=get("action"),
                        reserved_address=reserved if isinstance(reserved, int) else None)
