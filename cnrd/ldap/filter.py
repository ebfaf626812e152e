"""RFC 4515 search filters: escaping values, and parsing text into the pyasn1 Filter.

Pure.  :func:`render` is how a client's lookup id enters a filter: the id
is escaped before the template is parsed, so no id can add, remove or
close a filter component.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyasn1.type import univ
from pyasn1_modules import rfc2251

#: pyasn1-modules unrolls the recursive Filter into three levels: an and,
#: or or not may appear at the outer two only.
_LEVELS = (rfc2251.Filter, rfc2251.Filter2, rfc2251.Filter3)
MAX_NESTING = len(_LEVELS) - 1

_ATTRIBUTE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.;")
_SIMPLE_OPS = {"=": "equalityMatch", "~=": "approxMatch", ">=": "greaterOrEqual", "<=": "lessOrEqual"}


def escape(value: str | bytes) -> str:
    """``value`` as an RFC 4515 assertion value (§3): ``*``, ``(``, ``)``, ``\\``, NUL,
    control characters and every non-ASCII octet become ``\\XX``.  A str is UTF-8 encoded first."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    out = []
    for octet in data:
        if octet < 0x20 or octet >= 0x7F or octet in b"*()\\":
            out.append(f"\\{octet:02x}")
        else:
            out.append(chr(octet))
    return "".join(out)


@dataclass(frozen=True)
class Node:
    """A parsed filter component, before it becomes the pyasn1 Filter.

    ``kind`` is ``and``, ``or``, ``not``, ``present``, ``substrings`` or one
    of the simple match names; ``parts`` holds a substring filter's
    (``initial``/``any``/``final``, value) pairs in order.
    """

    kind: str
    attribute: str = ""
    value: bytes = b""
    children: tuple[Node, ...] = ()
    parts: tuple[tuple[str, bytes], ...] = ()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"filter {self.text!r}: {what} at position {self.pos}")

    def expect(self, char: str) -> None:
        if self.pos >= len(self.text) or self.text[self.pos] != char:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"
            raise self.fail(f"expected {char!r}, found {found}")
        self.pos += 1

    def filter(self, depth: int) -> Node:
        self.expect("(")
        if self.pos >= len(self.text):
            raise self.fail("unterminated filter")
        char = self.text[self.pos]
        if char in "&|":
            if depth >= MAX_NESTING:
                raise self.fail(f"and/or nested deeper than {MAX_NESTING} levels")
            self.pos += 1
            children = []
            while self.pos < len(self.text) and self.text[self.pos] == "(":
                children.append(self.filter(depth + 1))
            if not children:
                raise self.fail("an and/or needs at least one filter")
            node = Node("and" if char == "&" else "or", children=tuple(children))
        elif char == "!":
            if depth >= MAX_NESTING:
                raise self.fail(f"not nested deeper than {MAX_NESTING} levels")
            self.pos += 1
            node = Node("not", children=(self.filter(depth + 1),))
        else:
            node = self.item()
        self.expect(")")
        return node

    def attribute(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _ATTRIBUTE_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected an attribute description")
        return self.text[start:self.pos]

    def value(self) -> bytes:
        """An assertion value up to the next unescaped ``*`` or ``)``, with ``\\XX`` undone."""
        out = bytearray()
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in "*)":
                break
            if char in "(\x00":
                raise self.fail(f"{char!r} must be escaped in a value")
            if char == "\\":
                pair = self.text[self.pos + 1: self.pos + 3]
                if len(pair) != 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
                    raise self.fail("a backslash must be followed by two hex digits")
                out.append(int(pair, 16))
                self.pos += 3
                continue
            out += char.encode("utf-8")
            self.pos += 1
        return bytes(out)

    def item(self) -> Node:
        attribute = self.attribute()
        if self.text.startswith(":", self.pos):
            raise self.fail("extensible match is not supported")
        for op in ("~=", ">=", "<="):
            if self.text.startswith(op, self.pos):
                self.pos += 2
                value = self.value()
                if self.text.startswith("*", self.pos):
                    raise self.fail("'*' must be escaped in a value")
                return Node(_SIMPLE_OPS[op], attribute, value)
        self.expect("=")
        pieces = [self.value()]
        while self.text.startswith("*", self.pos):
            self.pos += 1
            pieces.append(self.value())
        if len(pieces) == 1:
            return Node("equalityMatch", attribute, pieces[0])
        if len(pieces) == 2 and pieces == [b"", b""]:
            return Node("present", attribute)
        parts: list[tuple[str, bytes]] = []
        if pieces[0]:
            parts.append(("initial", pieces[0]))
        for middle in pieces[1:-1]:
            if not middle:
                raise self.fail("empty substring between two '*'")
            parts.append(("any", middle))
        if pieces[-1]:
            parts.append(("final", pieces[-1]))
        return Node("substrings", attribute, parts=tuple(parts))


def parse_tree(text: str) -> Node:
    """``text`` (one RFC 4515 filter) as a :class:`Node`; ValueError naming the position otherwise."""
    parser = _Parser(text.strip())
    node = parser.filter(0)
    if parser.pos != len(parser.text):
        raise parser.fail("text after the filter")
    return node


def _fill(target: univ.Choice, node: Node) -> None:
    if node.kind in ("and", "or"):
        items = target.getComponentByName(node.kind)
        for i, child in enumerate(node.children):
            _fill(items.getComponentByPosition(i), child)
    elif node.kind == "not":
        _fill(target.getComponentByName("not"), node.children[0])
    elif node.kind == "present":
        target.setComponentByName("present", node.attribute.encode())
    elif node.kind == "substrings":
        substrings = target.getComponentByName("substrings")
        substrings["type"] = node.attribute.encode()
        for i, (name, value) in enumerate(node.parts):
            substrings["substrings"].getComponentByPosition(i).setComponentByName(name, value)
    else:
        assertion = target.getComponentByName(node.kind)
        assertion["attributeDesc"] = node.attribute.encode()
        assertion["assertionValue"] = node.value


def to_asn1(node: Node) -> rfc2251.Filter:
    """The pyasn1 Filter for a parsed filter."""
    result = rfc2251.Filter()
    _fill(result, node)
    return result


def parse(text: str) -> rfc2251.Filter:
    """``text`` as the pyasn1 Filter of a SearchRequest; ValueError naming the position if malformed."""
    return to_asn1(parse_tree(text))


def render(template: str, lookup_id: str | bytes) -> rfc2251.Filter:
    """``template`` with every ``%s`` replaced by the escaped ``lookup_id``, parsed."""
    return parse(template.replace("%s", escape(lookup_id)))
