"""The lexical syntax ISC dhcpd's files share (dhcpd.conf and dhcpd.leases).

Words, quoted strings (with ISC's backslash escapes: ``\\"``, ``\\\\``,
``\\t``, ``\\n``, ``\\r`` and three octal digits), the punctuation
``; { } , =`` and ``#`` comments to the end of the line.  A string token's
value keeps each byte as one character (latin-1), so a ``uid`` written as a
string gives back its exact bytes.

Pure module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SyntaxProblem", "Token", "block", "statement", "tokens"]

_PUNCT = frozenset(";{},=")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}


class SyntaxProblem(ValueError):
    """Text ISC's grammar does not allow, with the line it is on."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is ``word``, ``string`` or the punctuation itself."""

    kind: str
    value: str
    line: int

    def is_(self, kind: str, value: str | None = None) -> bool:
        return self.kind == kind and (value is None or self.value.lower() == value)


def tokens(text: str) -> Iterator[Token]:
    """The tokens of ``text``; an unterminated string is a :class:`SyntaxProblem`."""
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in _PUNCT:
            yield Token(c, c, line)
            i += 1
        elif c == '"':
            start_line, out = line, []
            i += 1
            while True:
                if i >= n:
                    raise SyntaxProblem(start_line, "a quoted string does not end")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    octal = text[i + 1 : i + 4]
                    if len(octal) == 3 and all(ch in "01234567" for ch in octal):
                        out.append(chr(int(octal, 8) & 0xFF))
                        i += 4
                        continue
                    out.append(_ESCAPES.get(nxt, nxt))
                    i += 2
                    continue
                if c == "\n":
                    line += 1
                out.append(c)
                i += 1
            yield Token("string", "".join(out), start_line)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _PUNCT and text[i] not in '"#':
                i += 1
            yield Token("word", text[start:i], line)


def statement(toks: list[Token], i: int) -> tuple[list[Token], int]:
    """The tokens of the simple statement at ``i`` (without its ``;``), and where the next one starts."""
    out: list[Token] = []
    while i < len(toks):
        t = toks[i]
        if t.kind == ";":
            return out, i + 1
        if t.kind in "{}":
            raise SyntaxProblem(t.line, f"expected ';' before {t.value!r}")
        out.append(t)
        i += 1
    raise SyntaxProblem(toks[-1].line if toks else 0, "the file ends inside a statement")


def block(toks: list[Token], i: int) -> tuple[list[Token], int]:
    """The tokens inside the ``{ ... }`` that opens at ``i``, and where the tokens after its ``}`` start."""
    if i >= len(toks) or toks[i].kind != "{":
        raise SyntaxProblem(toks[i].line if i < len(toks) else 0, "expected '{'")
    depth, j = 0, i
    while j < len(toks):
        k = toks[j].kind
        if k == "{":
            depth += 1
        elif k == "}":
            depth -= 1
            if depth == 0:
                return toks[i + 1 : j], j + 1
        j += 1
    raise SyntaxProblem(toks[i].line, "a '{' is never closed")
