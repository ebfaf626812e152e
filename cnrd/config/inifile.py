"""Edit an INI configuration in place, keeping everything an operator wrote.

``cnrctl save`` (``POST /api/v1/save``) writes the settings changed through
the API back into the file ``twistd cnrd --config`` reads.  Rewriting the
file from the parsed configuration would lose its comments, blank lines, key
order, spelling and alignment, so :func:`set_values` changes only the lines
of the keys it is asked to change and leaves every other byte alone.

Lines are classified exactly as :func:`cnrd.config.loader.parse_ini` (configparser
with ``empty_lines_in_values=False`` and ``inline_comment_prefixes=("#",)``)
reads them, so what this module edits is what the loader sees:

* a line whose first non-blank character is ``#`` or ``;`` is a comment;
* ``#`` at the start of a line or after a blank starts an inline comment
  (``;`` does not: ``a = x ; y`` is the value ``x ; y``);
* a blank or comment line ends a value; a line indented deeper than the
  key line before it continues that key's value;
* ``[HEADER]`` opens a section; ``key = value``, ``key=value`` and
  ``key: value`` are options; keys are case-insensitive.

Sections are found by what the loader identifies them by: the type (case
folded) and the name, blanks round them ignored, so the change
``("failover-pair examplepair", "mclt")`` finds ``[failover-pair  examplepair]``.

Where things go:

* a changed key keeps its line: indentation, the key as written, the
  spacing round ``=``, and an inline comment after the value stay; its
  continuation lines (the old value's tail) are removed;
* a deleted key (value ``None``) loses its line and continuation lines; a
  comment above it stays (it may describe more than that key);
* a key the section lacks goes right after the section's last key (and its
  continuation lines), before the blank and comment lines that usually
  introduce the next section; in a section with no keys, right after the
  header.  It is written in the section's style (indentation and spacing
  round the delimiter of the key before it);
* a section the file lacks is appended at the end, after a blank line.

:func:`remove_sections` and :func:`add_sections` take whole sections out
and put new ones in (failover pair synchronization adds and removes
objects); see their docstrings for which comments go with a section.

Pure module: text in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["add_sections", "read_values", "remove_sections", "section_id", "set_values"]

# The regular expressions configparser uses (RawConfigParser.SECTCRE and
# OPTCRE with the default delimiters '=' and ':').
_SECT_RE = re.compile(r"\[(?P<header>.+)\]")
_OPT_RE = re.compile(r"(?P<option>.*?)(?P<sep>\s*(?P<vi>=|:)\s*)(?P<value>.*)$")
_NONSPACE_RE = re.compile(r"\S")
_COMMENT_PREFIXES = ("#", ";")
_INLINE_COMMENT = "#"
_DEFAULT_SEP = " = "


@dataclass
class _Line:
    """One physical line of the file and what the loader makes of it."""

    text: str  # as in the file, line ending included
    kind: str  # "blank", "comment", "header", "option", "continuation", "bad"
    section: int | None = None  # index into the file's sections, None before the first
    key: str | None = None  # option and continuation lines: the key, lower case
    indent: int = 0


def section_id(header: str) -> tuple[str, str | None]:
    """How cnrd.config tells sections apart: (type in lower case, name or None), blanks ignored."""
    parts = header.split(None, 1)
    return (parts[0].lower() if parts else "", parts[1].strip() if len(parts) > 1 else None)


def _split_lines(text: str) -> list[str]:
    # configparser reads through io.StringIO, which breaks lines at "\n"
    # only; str.splitlines would also break at \r, \x0b, \x1c, \u2028 ...
    # and so disagree with the loader about where a line ends.
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _comment_start(line: str) -> int | None:
    """Where the loader's comment starts in ``line`` (0: the whole line), or None."""
    if line.strip().startswith(_COMMENT_PREFIXES):
        return 0
    return _inline_comment_start(line)


def _inline_comment_start(line: str) -> int | None:
    """Where an inline comment starts: a '#' first in the line or after a blank."""
    index = -1
    while True:
        index = line.find(_INLINE_COMMENT, index + 1)
        if index == -1:
            return None
        if index == 0 or line[index - 1].isspace():
            return index


def _content(line: str) -> str:
    """The part of a line the loader parses: comment removed, blanks stripped."""
    return line[:_comment_start(line)].strip()


def _classify(lines: list[str]) -> tuple[list[_Line], list[str]]:
    """Each line's role, and the section headers in file order (configparser's _read, mirrored)."""
    out: list[_Line] = []
    headers: list[str] = []
    section: int | None = None
    optname: str | None = None
    indent_level = 0
    for text in lines:
        value = _content(text)
        if not value:
            # A blank or comment line ends a value (empty_lines_in_values=False).
            indent_level = 1 << 62
            out.append(_Line(text, "blank" if not text.strip() else "comment", section))
            continue
        first = _NONSPACE_RE.search(text)
        indent = first.start() if first else 0
        if section is not None and optname and indent > indent_level:
            out.append(_Line(text, "continuation", section, optname, indent))
            continue
        indent_level = indent
        m = _SECT_RE.match(value)
        if m:
            headers.append(m.group("header"))
            section = len(headers) - 1
            optname = None
            out.append(_Line(text, "header", section, None, indent))
            continue
        m = _OPT_RE.match(value) if section is not None else None
        if m and m.group("option"):
            optname = m.group("option").rstrip().lower()
            out.append(_Line(text, "option", section, optname, indent))
        else:
            # Not something the loader accepts (it will say so); left as it is.
            if m:
                optname = ""
            out.append(_Line(text, "bad", section, None, indent))
    return out, headers


def _ending(text: str) -> str:
    return "\r\n" if text.endswith("\r\n") else "\n"


def _option_parts(text: str) -> tuple[int, int, str]:
    """(start, end) of the value in an option line, and the separator as written."""
    comment = _comment_start(text)
    body = text[:comment] if comment is not None else text.rstrip("\r\n")
    lead = len(body) - len(body.lstrip())
    stripped = body.strip()
    m = _OPT_RE.match(stripped)
    assert m is not None  # only called for option lines
    return lead + m.start("value"), lead + m.end("value"), m.group("sep")


def _style(sep: str) -> str:
    """A separator for a new key, in the style of an existing one: ' = ', '=', ': ' ..."""
    m = re.fullmatch(r"(\s*)([=:])(\s*)", sep)
    if m is None:
        return _DEFAULT_SEP
    before, delim, after = m.groups()
    # One blank where there were several (they aligned columns that a new
    # key would not line up with anyway); "key =" with an empty value has
    # no blank after the '=' but wants one for a value.
    before = before[:1]
    after = after[:1] or before
    return before + delim + after


def _check(header: str, key: str, value: str | None) -> str | None:
    """The value to write, stripped; ValueError for anything that would not read back the same."""
    where = f"[{header}] {key}"
    if not header.strip() or any(c in header for c in "\r\n[]") or _comment_start(header) is not None:
        raise ValueError(f"{where}: bad section header {header!r}")
    if (not key.strip() or key != key.strip() or any(c in key for c in "\r\n=:[")
            or key.startswith(_COMMENT_PREFIXES) or _comment_start(key) is not None):
        raise ValueError(f"{where}: bad key {key!r}")
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{where}: value must be a str or None, not {type(value).__name__}")
    v = value.strip()  # the loader strips values anyway
    if "\n" in v or "\r" in v:
        raise ValueError(f"{where}: a value must be one line")
    # After "key = " a value is never first in its line, so only an inline
    # '#' can cut it short (';x' is a fine value).
    if _inline_comment_start(v) is not None:
        raise ValueError(f"{where}: {v!r} would be read as a comment")
    return v


def read_values(text: str) -> dict[tuple[str, str | None], dict[str, str]]:
    """Section id -> key -> value as the loader reads them, but tolerant of mistakes elsewhere.

    For a program that needs a few settings from a file that may not load
    as a whole (``cnrctl`` finding the API of a server whose file is being
    edited): bad lines are skipped, and of duplicated sections or keys the
    first counts.  Values are the loader's text (continuation lines joined
    with newlines), not validated.
    """
    lines, headers = _classify(_split_lines(text))
    ids = [section_id(h) for h in headers]
    out: dict[tuple[str, str | None], dict[str, str]] = {}
    first: dict[tuple[str, str | None], int] = {}
    for i, sid in enumerate(ids):
        first.setdefault(sid, i)
        out.setdefault(sid, {})
    current: list[str] | None = None
    values: dict[tuple[int, str], list[str]] = {}
    for line in lines:
        if line.kind == "option" and line.section is not None and line.key:
            start, end, _ = _option_parts(line.text)
            current = values.setdefault((line.section, line.key), [line.text[start:end]]) \
                if (line.section, line.key) not in values else None
        elif line.kind == "continuation":
            if current is not None:
                current.append(_content(line.text))
        elif line.kind == "header":
            current = None
    for (sec, key), parts in values.items():
        if first[ids[sec]] == sec:
            out[ids[sec]][key] = "\n".join(parts).rstrip()
    return out


def set_values(text: str, changes: dict[tuple[str, str], str | None]) -> str:
    """``text`` with ``changes`` applied: (section header, key) -> new value, None deletes the key.

    The header is written as inside the brackets (``"server"``,
    ``"failover-pair examplepair"``); it matches the file's section with the
    same type and name however the file spaces it.  Keys match case
    insensitively.  Everything not changed stays byte for byte, including
    line endings; see the module docstring for where new keys go.  With no
    changes the text comes back unchanged.

    Raises ValueError for a header, key or value that could not be read
    back as given (a newline, or a ``#`` the loader would take for a comment).
    """
    if not changes:
        return text
    wanted: dict[tuple[tuple[str, str | None], str], tuple[str, str, str | None]] = {}
    for (header, key), value in changes.items():
        v = _check(header, key, value)
        wanted[(section_id(header), key.lower())] = (header, key, v)

    lines, headers = _classify(_split_lines(text))
    ids = [section_id(h) for h in headers]
    first_of: dict[tuple[str, str | None], int] = {}
    for i, sid in enumerate(ids):
        first_of.setdefault(sid, i)

    done: set[tuple[tuple[str, str | None], str]] = set()
    out: list[str] = []
    # Per section index: position in ``out`` after its last key (or its
    # header), where missing keys go; and the separator/indent to copy.
    insert_at: dict[int, int] = {}
    style: dict[int, tuple[str, str]] = {}  # section -> (indent text, separator)
    any_sep = None
    dropping = False  # inside the continuation lines of a changed/deleted key
    for line in lines:
        sec = line.section
        if line.kind == "continuation" and dropping:
            continue
        dropping = False
        if line.kind == "header" and sec is not None:
            out.append(line.text)
            insert_at[sec] = len(out)
            continue
        if line.kind == "option" and sec is not None:
            start, end, sep = _option_parts(line.text)
            indent = line.text[:line.indent]
            style[sec] = (indent, _style(sep))
            any_sep = any_sep or _style(sep)
            change = (ids[sec], line.key or "")
            if change in wanted:
                done.add(change)
                _, _, value = wanted[change]
                dropping = True
                if value is None:
                    continue
                head = line.text[:start]
                if start == end and value and not head[-1:].isspace() and re.search(r"\s[=:]$", head):
                    head += " "  # "key =" with no value: "key = new", not "key =new"
                out.append(head + value + line.text[end:])
            else:
                out.append(line.text)
            insert_at[sec] = len(out)
            continue
        if line.kind == "continuation" and sec is not None:
            out.append(line.text)
            insert_at[sec] = len(out)
            continue
        out.append(line.text)

    # Keys missing from sections the file has, in the order given.
    missing_in: dict[int, list[str]] = {}
    new_sections: dict[tuple[str, str | None], tuple[str, list[tuple[str, str]]]] = {}
    for change, (header, key, value) in wanted.items():
        if change in done or value is None:
            continue
        sid = change[0]
        if sid in first_of:
            sec = first_of[sid]
            indent, sep = style.get(sec, ("", any_sep or _DEFAULT_SEP))
            missing_in.setdefault(sec, []).append(f"{indent}{key}{sep}{value}".rstrip())
        else:
            new_sections.setdefault(sid, (header, []))[1].append((key, value))

    eol = _ending(lines[0].text) if lines else "\n"
    # Insert from the bottom up so earlier positions stay valid.
    for sec in sorted(missing_in, key=lambda s: insert_at[s], reverse=True):
        at = insert_at[sec]
        if at > 0 and not out[at - 1].endswith("\n"):
            out[at - 1] += eol  # the file ended without a newline
        out[at:at] = [entry + eol for entry in missing_in[sec]]

    if new_sections:
        if out and not out[-1].endswith("\n"):
            out[-1] += eol
        if out and out[-1].strip():
            out.append(eol)
        sep = any_sep or _DEFAULT_SEP
        first = True
        for header, entries in new_sections.values():
            if not first:
                out.append(eol)
            first = False
            out.append(f"[{header}]{eol}")
            out.extend(f"{key}{sep}{value}".rstrip() + eol for key, value in entries)
    return "".join(out)


def remove_sections(text: str, headers: list[str]) -> str:
    """``text`` without the sections named by ``headers`` (matched like :func:`set_values`).

    A section goes with its keys and the comments between them, with the
    comment lines right above its header (they describe it) and with the
    blank lines that separated it from the next section.  Comment lines
    right above the next header stay: they describe that section.  Every
    other line stays byte for byte; a header the file lacks changes nothing.
    """
    gone = {section_id(h) for h in headers}
    lines, section_headers = _classify(_split_lines(text))
    ids = [section_id(h) for h in section_headers]
    starts = [i for i, line in enumerate(lines) if line.kind == "header"]
    drop = [False] * len(lines)
    for n, start in enumerate(starts):
        if ids[n] not in gone:
            continue
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        a = start
        while a > 0 and lines[a - 1].kind == "comment" and not drop[a - 1]:
            a -= 1
        k = end
        while k - 1 > start and lines[k - 1].kind == "comment":
            k -= 1
        if k == len(lines):
            # The last section: the blank lines before it separated it from
            # the one above, which now ends the file.
            while a > 0 and lines[a - 1].kind == "blank" and not drop[a - 1]:
                a -= 1
        elif a == 0:
            # The first lines of the file: no blank line should lead it now.
            while k < end and lines[k].kind == "blank":
                k += 1
        for i in range(a, k):
            drop[i] = True
    if not any(drop):
        return text
    return "".join(line.text for line, d in zip(lines, drop) if not d)


def add_sections(text: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """``text`` with the new ``sections`` ([header, [(key, value), ...]]) appended, in order.

    Each is written after a blank line, keys in the order given, in the
    file's style of separator; a section may have no keys.  Everything
    already there stays byte for byte.  Raises ValueError for a section the
    file already has, or a header, key or value that would not read back.
    """
    if not sections:
        return text
    lines, headers = _classify(_split_lines(text))
    have = {section_id(h) for h in headers}
    any_sep = None
    for line in lines:
        if line.kind == "option":
            any_sep = _style(_option_parts(line.text)[2])
            break
    sep = any_sep or _DEFAULT_SEP
    eol = _ending(lines[0].text) if lines else "\n"
    out = [line.text for line in lines]
    for header, entries in sections:
        sid = section_id(header)
        if sid in have:
            raise ValueError(f"[{header}] is already in the file")
        have.add(sid)
        checked = [(key, _check(header, key, value)) for key, value in entries]
        if not checked:
            _check(header, "x", None)  # the header alone must be valid too
        if out and not out[-1].endswith("\n"):
            out[-1] += eol
        if out and out[-1].strip():
            out.append(eol)
        out.append(f"[{header.strip()}]{eol}")
        out.extend(f"{key}{sep}{value}".rstrip() + eol for key, value in checked)
    return "".join(out)
