"""LDAPv3 messages (RFC 4511) as bytes, with pyasn1 and pyasn1-modules' RFC 2251 types.

Pure: builds the requests cnrd sends (simple bind, unbind, search with an
optional RFC 2696 paged-results control, StartTLS, abandon), reads the
responses it expects (bind, search entry / reference / done, extended,
the Notice of Disconnection) and frames PDUs out of a TCP byte stream.
RFC 2251 and RFC 4511 encode these operations identically on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ
from pyasn1_modules import rfc2251

#: A PDU longer than this is refused: no client entry comes near it, and a
#: corrupt length must not make us buffer gigabytes.
MAX_PDU = 16 * 1024 * 1024

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"  # RFC 4511 §4.14.1
NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036"  # RFC 4511 §4.4.1

SCOPES = {"base": 0, "onelevel": 1, "subtree": 2}

#: RFC 4511 Appendix A result codes, with the cancel codes of RFC 3909.
RESULT_NAMES: dict[int, str] = {
    0: "success", 1: "operationsError", 2: "protocolError", 3: "timeLimitExceeded",
    4: "sizeLimitExceeded", 5: "compareFalse", 6: "compareTrue", 7: "authMethodNotSupported",
    8: "strongAuthRequired", 10: "referral", 11: "adminLimitExceeded",
    12: "unavailableCriticalExtension", 13: "confidentialityRequired", 14: "saslBindInProgress",
    16: "noSuchAttribute", 17: "undefinedAttributeType", 18: "inappropriateMatching",
    19: "constraintViolation", 20: "attributeOrValueExists", 21: "invalidAttributeSyntax",
    32: "noSuchObject", 33: "aliasProblem", 34: "invalidDNSyntax", 36: "aliasDereferencingProblem",
    48: "inappropriateAuthentication", 49: "invalidCredentials", 50: "insufficientAccessRights",
    51: "busy", 52: "unavailable", 53: "unwillingToPerform", 54: "loopDetect",
    64: "namingViolation", 65: "objectClassViolation", 66: "notAllowedOnNonLeaf",
    67: "notAllowedOnRDN", 68: "entryAlreadyExists", 69: "objectClassModsProhibited",
    71: "affectsMultipleDSAs", 80: "other", 118: "canceled", 119: "noSuchOperation",
    120: "tooLate", 121: "cannotCancel",
}


class ProtocolError(ValueError):
    """Bytes that are not a well-formed LDAP message."""


@dataclass(frozen=True)
class Result:
    """An LDAPResult: the outcome of an operation."""

    code: int
    matched_dn: str
    message: str

    @property
    def name(self) -> str:
        return RESULT_NAMES.get(self.code, "unknown")

    def describe(self) -> str:
        """One line for logs and errors, e.g. ``invalidCredentials (49): bad password``."""
        text = f"{self.name} ({self.code})"
        return f"{text}: {self.message}" if self.message else text


@dataclass(frozen=True)
class Entry:
    """A SearchResultEntry; attribute descriptions are lower-cased (LDAP compares them so)."""

    dn: str
    attributes: dict[str, list[bytes]] = field(default_factory=dict)

    def first(self, attribute: str) -> bytes | None:
        """The first value of ``attribute`` (any case), None when the entry lacks it."""
        values = self.attributes.get(attribute.lower())
        return values[0] if values else None


@dataclass(frozen=True)
class Message:
    """A decoded response.  ``op`` is the RFC 4511 protocolOp name, or ``unknown`` for others."""

    message_id: int
    op: str
    result: Result | None = None  # bindResponse, searchResDone, extendedResp
    entry: Entry | None = None  # searchResEntry
    cookie: bytes | None = None  # searchResDone: the paged-results cookie, None without the control
    response_name: str | None = None  # extendedResp
    response_value: bytes | None = None  # extendedResp
    urls: tuple[str, ...] = ()  # searchResRef
    tag: int = -1  # unknown: the application tag number

    @property
    def is_notice_of_disconnection(self) -> bool:
        """The server is closing the connection (RFC 4511 §4.4.1): unsolicited, messageID 0."""
        return self.message_id == 0 and self.op == "extendedResp"


# -- framing -----------------------------------------------------------------


def _length(buffer: bytes, pos: int) -> tuple[int, int] | None:
    """(content length, offset of the content) for the length octets at ``pos``; None if incomplete."""
    if pos >= len(buffer):
        return None
    first = buffer[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0:
        raise ProtocolError("indefinite length, which LDAP forbids (RFC 4511 §5.1)")
    if count > 4:
        raise ProtocolError(f"length of {count} octets: absurd for an LDAP message")
    if pos + 1 + count > len(buffer):
        return None
    return int.from_bytes(buffer[pos + 1: pos + 1 + count], "big"), pos + 1 + count


def split_pdus(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete LDAPMessage PDUs at the start of ``buffer``, and the bytes left over.

    Only the outer tag and length are read.  Raises :class:`ProtocolError`
    for bytes that cannot start an LDAPMessage or announce more than
    :data:`MAX_PDU` bytes: the stream cannot be resynchronised after that.
    """
    pdus: list[bytes] = []
    pos = 0
    while pos < len(buffer):
        if buffer[pos] != 0x30:
            raise ProtocolError(f"an LDAPMessage starts with a SEQUENCE (0x30), not 0x{buffer[pos]:02x}")
        header = _length(buffer, pos + 1)
        if header is None:
            break
        size, start = header
        if size > MAX_PDU:
            raise ProtocolError(f"a message of {size} bytes is above the {MAX_PDU}-byte bound")
        if start + size > len(buffer):
            break
        pdus.append(bytes(buffer[pos: start + size]))
        pos = start + size
    return pdus, bytes(buffer[pos:])


# -- requests ----------------------------------------------------------------


class _PagedValue(univ.Sequence):  # type: ignore[misc]
    """RFC 2696 realSearchControlValue."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("size", univ.Integer()),
        namedtype.NamedType("cookie", univ.OctetString()),
    )


class _AbandonMessage(univ.Sequence):  # type: ignore[misc]
    """An LDAPMessage carrying AbandonRequest ::= [APPLICATION 16] MessageID.

    pyasn1-modules declares AbandonRequest as a constructed LDAPResult,
    which is not what RFC 4511 §4.11 puts on the wire.
    """

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("messageID", rfc2251.MessageID()),
        namedtype.NamedType("abandonRequest", univ.Integer().subtype(
            implicitTag=tag.Tag(tag.tagClassApplication, tag.tagFormatSimple, 16))),
    )


def _encode(value: univ.Asn1Item) -> bytes:
    return bytes(encoder.encode(value))


def _message(message_id: int, op_name: str) -> tuple[rfc2251.LDAPMessage, univ.Asn1Item]:
    msg = rfc2251.LDAPMessage()
    msg["messageID"] = message_id
    op = msg["protocolOp"].getComponentByName(op_name)
    return msg, op


def paged_control(size: int, cookie: bytes) -> rfc2251.Control:
    """The RFC 2696 control asking for pages of ``size`` entries, non-critical.

    Non-critical: a server without paging answers with every entry and no
    cookie, which ends the paging loop as a last page would.
    """
    value = _PagedValue()
    value["size"] = size
    value["cookie"] = cookie
    control = rfc2251.Control()
    control["controlType"] = PAGED_RESULTS_OID
    control["criticality"] = False
    control["controlValue"] = encoder.encode(value)
    return control


def bind_request(message_id: int, name: str, password: bytes) -> bytes:
    """A simple BindRequest, LDAPv3; an empty name and password bind anonymously."""
    msg, op = _message(message_id, "bindRequest")
    op["version"] = 3
    op["name"] = name.encode()
    op["authentication"]["simple"] = password
    return _encode(msg)


class _UnbindMessage(univ.Sequence):  # type: ignore[misc]
    """An LDAPMessage carrying UnbindRequest ::= [APPLICATION 2] NULL.

    pyasn1-modules' UnbindRequest keeps SEQUENCE's constructed bit (0x62);
    RFC 4511 §4.3 has a primitive NULL (0x42).
    """

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("messageID", rfc2251.MessageID()),
        namedtype.NamedType("unbindRequest", univ.Null().subtype(
            implicitTag=tag.Tag(tag.tagClassApplication, tag.tagFormatSimple, 2))),
    )


def unbind_request(message_id: int) -> bytes:
    msg = _UnbindMessage()
    msg["messageID"] = message_id
    msg["unbindRequest"] = ""
    return _encode(msg)


def start_tls_request(message_id: int) -> bytes:
    """The StartTLS ExtendedRequest (RFC 4511 §4.14.1)."""
    msg, op = _message(message_id, "extendedReq")
    op["requestName"] = STARTTLS_OID
    return _encode(msg)


def abandon_request(message_id: int, abandoned: int) -> bytes:
    """An AbandonRequest for operation ``abandoned``; the server sends nothing back."""
    msg = _AbandonMessage()
    msg["messageID"] = message_id
    msg["abandonRequest"] = abandoned
    return _encode(msg)


def search_request(message_id: int, base: str, scope: str, filter_: rfc2251.Filter,
                   attributes: Sequence[str], *, size_limit: int = 0, time_limit: int = 0,
                   page_size: int | None = None, cookie: bytes = b"") -> bytes:
    """A SearchRequest, derefAliases never, typesOnly false; with the paged control when ``page_size``."""
    if scope not in SCOPES:
        raise ValueError(f"search scope {scope!r} is not one of {sorted(SCOPES)}")
    msg, op = _message(message_id, "searchRequest")
    op["baseObject"] = base.encode()
    op["scope"] = SCOPES[scope]
    op["derefAliases"] = 0
    op["sizeLimit"] = size_limit
    op["timeLimit"] = time_limit
    op["typesOnly"] = False
    op.setComponentByName("filter", filter_)
    names = op["attributes"]
    for i, attribute in enumerate(attributes):
        names[i] = attribute.encode()
    if page_size is not None:
        controls = msg["controls"]
        controls[0] = paged_control(page_size, cookie)
    return _encode(msg)


# -- responses ---------------------------------------------------------------

_KNOWN_OPS = {1: "bindResponse", 4: "searchResEntry", 5: "searchResDone", 19: "searchResRef",
              24: "extendedResp"}


def _op_tag(pdu: bytes) -> tuple[int, int]:
    """(messageID, application tag number of protocolOp), read by hand so unknown ops can be skipped."""
    header = _length(pdu, 1)
    if header is None or pdu[0] != 0x30:
        raise ProtocolError("truncated LDAPMessage")
    _, pos = header
    if pos >= len(pdu) or pdu[pos] != 0x02:
        raise ProtocolError("LDAPMessage without a messageID")
    id_header = _length(pdu, pos + 1)
    if id_header is None:
        raise ProtocolError("truncated messageID")
    id_len, id_start = id_header
    if id_len == 0 or id_start + id_len >= len(pdu):
        raise ProtocolError("truncated messageID")
    message_id = int.from_bytes(pdu[id_start: id_start + id_len], "big", signed=True)
    op = pdu[id_start + id_len]
    if op & 0xC0 != 0x40 or op & 0x1F == 0x1F:
        raise ProtocolError(f"protocolOp tag 0x{op:02x} is not an APPLICATION tag")
    return message_id, op & 0x1F


def _result(op: univ.Asn1Item) -> Result:
    return Result(int(op["resultCode"]), bytes(op["matchedDN"]).decode("utf-8", "replace"),
                  bytes(op["errorMessage"]).decode("utf-8", "replace"))


def _paged_cookie(msg: rfc2251.LDAPMessage) -> bytes | None:
    controls = msg.getComponentByName("controls")
    if not controls.isValue:
        return None
    for control in controls:
        if str(control["controlType"]) == PAGED_RESULTS_OID and control["controlValue"].isValue:
            value, _ = decoder.decode(bytes(control["controlValue"]), asn1Spec=_PagedValue())
            return bytes(value["cookie"])
    return None


def decode(pdu: bytes) -> Message:
    """One response PDU (from :func:`split_pdus`) as a :class:`Message`; ProtocolError if malformed."""
    message_id, number = _op_tag(pdu)
    name = _KNOWN_OPS.get(number)
    if name is None:
        return Message(message_id, "unknown", tag=number)
    try:
        msg, rest = decoder.decode(pdu, asn1Spec=rfc2251.LDAPMessage())
    except PyAsn1Error as e:
        raise ProtocolError(f"malformed {name}: {e}") from e
    if rest:
        raise ProtocolError(f"{len(rest)} bytes after the {name}")
    op = msg["protocolOp"].getComponent()
    if name == "searchResEntry":
        attributes: dict[str, list[bytes]] = {}
        for attribute in op["attributes"]:
            key = bytes(attribute["type"]).decode("utf-8", "replace").lower()
            attributes.setdefault(key, []).extend(bytes(v) for v in attribute["vals"])
        entry = Entry(bytes(op["objectName"]).decode("utf-8", "replace"), attributes)
        return Message(message_id, name, entry=entry)
    if name == "searchResRef":
        return Message(message_id, name, urls=tuple(bytes(u).decode("utf-8", "replace") for u in op))
    if name == "searchResDone":
        return Message(message_id, name, result=_result(op), cookie=_paged_cookie(msg))
    if name == "extendedResp":
        response_name = op["responseName"]
        response = op["response"]
        return Message(message_id, name, result=_result(op),
                       response_name=str(response_name) if response_name.isValue else None,
                       response_value=bytes(response) if response.isValue else None)
    return Message(message_id, name, result=_result(op))
