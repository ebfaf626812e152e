"""cnrd.ldap.messages, filter and entry: RFC 4511 encodings, RFC 4515 escaping and parsing, framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1_modules import rfc2251

from cnrd.ldap import filter as F
from cnrd.ldap import messages as M
from cnrd.ldap.entry import client_from_entry


def as_request(pdu: bytes) -> rfc2251.LDAPMessage:
    msg, rest = decoder.decode(pdu, asn1Spec=rfc2251.LDAPMessage())
    assert rest == b""
    return msg


def response(message_id: int, name: str, fill, controls=None) -> bytes:
    msg = rfc2251.LDAPMessage()
    msg["messageID"] = message_id
    fill(msg["protocolOp"].getComponentByName(name))
    if controls:
        for i, c in enumerate(controls):
            msg["controls"][i] = c
    return encoder.encode(msg)


def result_fields(code: int, matched: bytes = b"", text: bytes = b""):
    def fill(op):
        op["resultCode"] = code
        op["matchedDN"] = matched
        op["errorMessage"] = text
    return fill


# -- requests (RFC 4511 §4.2, 4.3, 4.5.1, 4.11, 4.14; RFC 2696) ---------------------------------


def test_simple_bind_request_fields():
    msg = as_request(M.bind_request(7, "cn=dhcp,dc=cnrd,dc=test", b"s3cret"))
    assert int(msg["messageID"]) == 7
    op = msg["protocolOp"]["bindRequest"]
    assert int(op["version"]) == 3 and bytes(op["name"]) == b"cn=dhcp,dc=cnrd,dc=test"
    assert bytes(op["authentication"]["simple"]) == b"s3cret"


def test_unbind_and_abandon_are_primitive_application_tags():
    # UnbindRequest ::= [APPLICATION 2] NULL; AbandonRequest ::= [APPLICATION 16] MessageID.
    assert M.unbind_request(2) == bytes.fromhex("30050201024200")
    assert M.abandon_request(4, 3) == bytes.fromhex("3006020104500103")


def test_starttls_request_names_the_oid():
    op = as_request(M.start_tls_request(1))["protocolOp"]["extendedReq"]
    assert bytes(op["requestName"]) == b"1.3.6.1.4.1.1466.20037"
    assert not op["requestValue"].isValue


def test_search_request_fields_and_paged_control():
    pdu = M.search_request(9, "ou=clients,dc=x", "onelevel", F.parse("(macAddress=aa:bb)"), ["cn", "description"],
                           size_limit=2, time_limit=3, page_size=50, cookie=b"\x01\x02")
    msg = as_request(pdu)
    op = msg["protocolOp"]["searchRequest"]
    assert bytes(op["baseObject"]) == b"ou=clients,dc=x"
    assert (int(op["scope"]), int(op["derefAliases"]), int(op["sizeLimit"]), int(op["timeLimit"])) == (1, 0, 2, 3)
    assert not bool(op["typesOnly"])
    assert [bytes(a) for a in op["attributes"]] == [b"cn", b"description"]
    eq = op["filter"]["equalityMatch"]
    assert (bytes(eq["attributeDesc"]), bytes(eq["assertionValue"])) == (b"macAddress", b"aa:bb")
    (control,) = list(msg["controls"])
    assert str(control["controlType"]) == "1.2.840.113556.1.4.319"
    value, _ = decoder.decode(bytes(control["controlValue"]))
    assert int(value[0]) == 50 and bytes(value[1]) == b"\x01\x02"


def test_search_without_paging_has_no_controls():
    msg = as_request(M.search_request(1, "", "base", F.parse("(objectClass=*)"), []))
    assert not msg["controls"].isValue


# -- responses ------------------------------------------------------------------------------------


def test_decode_bind_response():
    m = M.decode(response(1, "bindResponse", result_fields(49, text=b"bad")))
    assert (m.message_id, m.op) == (1, "bindResponse")
    assert m.result == M.Result(49, "", "bad") and m.result.describe() == "invalidCredentials (49): bad"


def test_decode_entry_lowercases_attribute_names():
    def fill(op):
        op["objectName"] = b"cn=x,dc=y"
        attrs = op["attributes"]
        a = attrs.getComponentByPosition(0)
        a["type"] = b"macAddress"
        a["vals"][0] = b"aa:bb"
        b = attrs.getComponentByPosition(1)
        b["type"] = b"CN"
        b["vals"][0] = b"one"
        b["vals"][1] = b"two"
    m = M.decode(response(3, "searchResEntry", fill))
    assert m.op == "searchResEntry" and m.entry is not None
    assert m.entry.dn == "cn=x,dc=y"
    assert m.entry.attributes == {"macaddress": [b"aa:bb"], "cn": [b"one", b"two"]}
    assert m.entry.first("CN") == b"one" and m.entry.first("ou") is None


def test_decode_reference_and_done_with_cookie():
    def ref(op):
        op[0] = b"ldap://other/dc=x"
    assert M.decode(response(3, "searchResRef", ref)).urls == ("ldap://other/dc=x",)
    done = M.decode(response(3, "searchResDone", result_fields(0), [M.paged_control(0, b"next")]))
    assert done.result is not None and done.result.code == 0 and done.cookie == b"next"
    assert M.decode(response(3, "searchResDone", result_fields(32))).cookie is None


def test_decode_extended_and_notice_of_disconnection():
    def fill(op):
        result_fields(52, text=b"shutting down")(op)
        op["responseName"] = b"1.3.6.1.4.1.1466.20036"
    m = M.decode(response(0, "extendedResp", fill))
    assert m.is_notice_of_disconnection and m.result is not None and m.result.name == "unavailable"
    assert m.response_name == M.NOTICE_OF_DISCONNECTION_OID
    ok = M.decode(response(1, "extendedResp", result_fields(0)))
    assert not ok.is_notice_of_disconnection and ok.response_name is None


def test_unknown_operation_is_reported_not_raised():
    # IntermediateResponse is [APPLICATION 25].
    m = M.decode(bytes.fromhex("30050201017900"))
    assert (m.message_id, m.op, m.tag) == (1, "unknown", 25)


def test_malformed_pdu_raises_protocol_error():
    with pytest.raises(M.ProtocolError):
        M.decode(bytes.fromhex("3003020101"))  # no protocolOp
    with pytest.raises(M.ProtocolError):
        M.decode(bytes.fromhex("300761050a01000400"))  # bindResponse missing errorMessage, bad id


# -- framing --------------------------------------------------------------------------------------


def test_split_pdus_long_form_and_leftover():
    big = M.search_request(1, "x" * 300, "base", F.parse("(a=b)"), [])
    assert big[1] == 0x82  # long-form length
    small = M.unbind_request(2)
    pdus, rest = M.split_pdus(big + small + small[:3])
    assert pdus == [big, small] and rest == small[:3]


def test_split_pdus_refuses_absurd_lengths_and_garbage():
    with pytest.raises(M.ProtocolError, match="bound"):
        M.split_pdus(b"\x30\x84\x10\x00\x00\x01")
    with pytest.raises(M.ProtocolError, match="indefinite"):
        M.split_pdus(b"\x30\x80")
    with pytest.raises(M.ProtocolError, match="0x05"):
        M.split_pdus(b"\x05\x00")


@given(st.lists(st.binary(max_size=400), min_size=1, max_size=6), st.data())
def test_split_pdus_any_chunking(values, data):
    pdus = [M.bind_request(i + 1, "cn=x", v) for i, v in enumerate(values)]
    stream = b"".join(pdus)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    got: list[bytes] = []
    buffer = b""
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        out, buffer = M.split_pdus(buffer + stream[a:b])
        got += out
    assert got == pdus and buffer == b""


# -- filters (RFC 4515) ---------------------------------------------------------------------------


def test_escape_rfc4515_examples():
    assert F.escape("Parens R Us (for all your parenthetical needs)") == \
        "Parens R Us \\28for all your parenthetical needs\\29"
    assert F.escape("*") == "\\2a" and F.escape("C:\\MyFile") == "C:\\5cMyFile"
    assert F.escape(b"\x00\x00\x00\x04") == "\\00\\00\\00\\04"
    assert F.escape("Lučić") == "Lu\\c4\\8di\\c4\\87"


@given(st.binary(max_size=64))
def test_escape_then_parse_round_trips(value):
    node = F.parse_tree(f"(cn={F.escape(value)})")
    assert node == F.Node("equalityMatch", "cn", value)


@given(st.text(max_size=40))
def test_render_never_changes_structure(lookup_id):
    node = F.parse_tree(F.escape(lookup_id).join(["(&(objectClass=ieee802Device)(macAddress=", "))"]))
    tree = F.render("(&(objectClass=ieee802Device)(macAddress=%s))", lookup_id)
    assert tree["and"][1]["equalityMatch"]["assertionValue"] == lookup_id.encode()
    assert [c.kind for c in node.children] == ["equalityMatch", "equalityMatch"]


def test_injection_attempt_stays_one_equality_match():
    tree = F.render("(macAddress=%s)", "*)(uid=*")
    assert tree.getName() == "equalityMatch"
    assert bytes(tree["equalityMatch"]["assertionValue"]) == b"*)(uid=*"


@pytest.mark.parametrize("text, kind", [
    ("(cn=*)", "present"), ("(cn>=a)", "greaterOrEqual"), ("(cn<=a)", "lessOrEqual"),
    ("(cn~=a)", "approxMatch"), ("(!(cn=a))", "not"), ("(|(cn=a)(sn=b))", "or"), ("(cn=a*b)", "substrings"),
])
def test_parse_kinds(text, kind):
    assert F.parse(text).getName() == kind


def test_parse_substrings_parts():
    assert F.parse_tree("(cn=a*b\\2a*c)").parts == (("initial", b"a"), ("any", b"b*"), ("final", b"c"))
    assert F.parse_tree("(cn=*x*)").parts == (("any", b"x"),)


@pytest.mark.parametrize("text, where", [
    ("(cn=a", "position 5"), ("cn=a)", "position 0"), ("(cn=a)x", "position 6"), ("(=a)", "position 1"),
    ("(cn=a\\zz)", "position 5"), ("(cn=(a))", "position 4"), ("(&)", "position 2"),
    ("(&(|(!(cn=a))))", "deeper"),
])
def test_malformed_filters_name_the_position(text, where):
    with pytest.raises(ValueError, match=where.replace("(", "\\(")):
        F.parse(text)


# -- entries --------------------------------------------------------------------------------------

DICT = (("cn", "host-name"), ("description", "client-class"), ("ipHostNumber", "reserved-address"),
        ("ou", "action"), ("businessCategory", "policy"))


def test_client_from_entry_maps_every_property():
    entry = M.Entry("x", {"cn": [b"pc-7"], "description": [b"staff", b"other"], "iphostnumber": [b"10.0.0.77"],
                          "ou": [b"Exclude"], "businesscategory": [b"gold"]})
    c = client_from_entry(entry, DICT, b"\x02\0\0\0\0\x07")
    assert (c.hardware_address, c.host_name, c.client_class, c.policy, c.action, c.reserved_address) == \
        (b"\x02\0\0\0\0\x07", "pc-7", "staff", "gold", "exclude", 0x0A00004D)


def test_client_from_entry_missing_attributes_are_unset():
    c = client_from_entry(M.Entry("x", {"cn": [b"pc"]}), DICT, b"\x01" * 6)
    assert (c.client_class, c.action, c.reserved_address) == (None, None, None)


@pytest.mark.parametrize("attrs, words", [
    ({"ou": [b"disable"]}, "only action"), ({"iphostnumber": [b"10.0.0"]}, "dotted IPv4"),
    ({"cn": [b"\xff"]}, "UTF-8"), ({"description": [b" "]}, "empty"),
])
def test_client_from_entry_unusable_values(attrs, words):
    with pytest.raises(ValueError, match=words):
        client_from_entry(M.Entry("x", attrs), DICT, b"\x01" * 6)
