"""Tests for cnrd.config.inifile.set_values: in-place INI edits that keep the operator's text."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnrd.config import loads
from cnrd.config.loader import parse_ini
from cnrd.config.inifile import add_sections, read_values, remove_sections, section_id, set_values

ETC = Path(__file__).resolve().parent.parent / "etc"


def diff(before: str, after: str) -> list[str]:
    """The changed lines, as +/- lines without the unified-diff headers."""
    return [line.rstrip("\n") for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def parsed(text: str) -> dict[tuple[str, str | None], dict[str, str]]:
    """What the loader's INI layer reads: section identity -> key -> value."""
    parser = parse_ini(text, "<test>")
    out = {section_id(h): dict(parser.items(h)) for h in parser.sections()}
    # Two headers with one identity (cnrd.config refuses that file) would collapse here.
    assert len(out) == len(parser.sections()), parser.sections()
    return out


# -- examples ----------------------------------------------------------------


def test_no_changes_is_the_same_text() -> None:
    text = (ETC / "main.ini").read_text()
    assert set_values(text, {}) is text


def test_main_ini_edits_touch_only_their_lines() -> None:
    text = (ETC / "main.ini").read_text()
    new = set_values(text, {
        ("server", "max-dhcp-requests"): "600",
        ("server", "start-on-reboot"): "false",          # missing: after the last [server] key
        ("failover-pair examplepair", "mclt"): "1h",
        ("failover-pair examplepair", "backup-pct"): None,
        ("api", "listen"): "127.0.0.1:9000",              # [api] is only a comment: appended
    })
    assert diff(text, new) == [
        "-max-dhcp-requests = 500",
        "+max-dhcp-requests = 600",
        "+start-on-reboot = false",
        "-mclt = 30",
        "+mclt = 1h",
        "-backup-pct = 10",
        "+",
        "+[api]",
        "+listen = 127.0.0.1:9000",
    ]
    # The new key sits right after max-dhcp-requests, before the blank line
    # and the "# [api]" comments that introduce the next section.
    assert "max-dhcp-requests = 600\nstart-on-reboot = false\n\n# [api]: the admin" in new
    c = loads(new)
    assert c.server.max_dhcp_requests == 600 and c.server.start_on_reboot is False
    assert c.failover_pairs["examplepair"].mclt == 3600
    assert c.failover_pairs["examplepair"].backup_pct == 10.0  # the default again
    assert (c.api.listen_host, c.api.listen_port) == ("127.0.0.1", 9000)


def test_separator_spelling_case_and_inline_comment_are_kept() -> None:
    text = ("[server]\n"
            "Name=main\n"
            "data-dir:   /var/lib/x   # where leases live\n"
            "max-dhcp-requests\t=\t500 ; not a comment: ';' only starts full-line comments\n")
    new = set_values(text, {("server", "name"): "b", ("server", "data-dir"): "/srv/y",
                            ("server", "max-dhcp-requests"): "7"})
    assert new == ("[server]\n"
                   "Name=b\n"
                   "data-dir:   /srv/y   # where leases live\n"
                   "max-dhcp-requests\t=\t7\n")
    assert parsed(new)[("server", None)] == {"name": "b", "data-dir": "/srv/y", "max-dhcp-requests": "7"}


def test_a_new_key_copies_the_sections_style() -> None:
    text = "[server]\n  name=main\n  data-dir=/d\n\n[api]\nenabled: true\n"
    new = set_values(text, {("server", "interfaces"): "eth0", ("api", "listen"): "127.0.0.1:1"})
    assert new == "[server]\n  name=main\n  data-dir=/d\n  interfaces=eth0\n\n[api]\nenabled: true\nlisten: 127.0.0.1:1\n"


def test_aligned_separators_become_one_blank() -> None:
    text = "[failover-pair p]\nmain       = 10.0.0.1\nbackup     = 10.0.0.2\n"
    new = set_values(text, {("failover-pair p", "mclt"): "60"})
    assert new.endswith("backup     = 10.0.0.2\nmclt = 60\n")


def test_continuation_lines_are_replaced_or_deleted_with_their_key() -> None:
    text = ("[server]\n"
            "name = a\n"
            "interfaces = eth0,\n"
            "    eth1,\n"
            "\teth2\n"
            "log-settings = failover-detail\n"
            "   default\n"
            "data-dir = /d\n")
    new = set_values(text, {("server", "interfaces"): "eth9", ("server", "log-settings"): None})
    assert new == "[server]\nname = a\ninterfaces = eth9\ndata-dir = /d\n"


def test_a_new_key_goes_after_the_last_keys_continuation_lines() -> None:
    text = "[scope lan]\nsubnet = 10.1.0.0/24\nranges = 10.1.0.10-10.1.0.20,\n  10.1.0.30\n# next\n[policy p]\n"
    new = set_values(text, {("scope lan", "policy"): "p"})
    assert new == ("[scope lan]\nsubnet = 10.1.0.0/24\nranges = 10.1.0.10-10.1.0.20,\n  10.1.0.30\n"
                   "policy = p\n# next\n[policy p]\n")


def test_a_section_without_keys_gets_the_key_after_its_header() -> None:
    text = "[server]\nname = a\ndata-dir = /d\n\n[api]\n# listen = 127.0.0.1:8067\n\n[policy default]\n"
    new = set_values(text, {("api", "enabled"): "false"})
    assert new == "[server]\nname = a\ndata-dir = /d\n\n[api]\nenabled = false\n# listen = 127.0.0.1:8067\n\n[policy default]\n"


def test_section_headers_match_by_type_and_name_whatever_the_spacing() -> None:
    text = "[ server ]\nname = a\n\n[Failover-Pair   examplepair]\nmclt = 30\n"
    new = set_values(text, {("server", "name"): "b", ("failover-pair examplepair", "mclt"): "60",
                            ("failover-pair  examplepair ", "backup-pct"): "20"})
    assert new == "[ server ]\nname = b\n\n[Failover-Pair   examplepair]\nmclt = 60\nbackup-pct = 20\n"


def test_names_are_case_sensitive() -> None:
    text = "[scope Lan]\nsubnet = 10.0.0.0/8\n"
    new = set_values(text, {("scope lan", "subnet"): "10.1.0.0/16"})
    assert new == text + "\n[scope lan]\nsubnet = 10.1.0.0/16\n"


def test_crlf_and_a_missing_final_newline() -> None:
    text = "[server]\r\nname = a\r\n\r\n[api]\r\nenabled = true"
    new = set_values(text, {("api", "listen"): "127.0.0.1:2", ("server", "name"): "b",
                            ("policy default", "lease-time"): "60"})
    assert new == ("[server]\r\nname = b\r\n\r\n[api]\r\nenabled = true\r\nlisten = 127.0.0.1:2\r\n"
                   "\r\n[policy default]\r\nlease-time = 60\r\n")


def test_an_empty_value_gets_its_blank() -> None:
    text = "[server]\nname = a\ntoken =\n"
    assert set_values(text, {("server", "token"): "x"}) == "[server]\nname = a\ntoken = x\n"


def test_deleting_what_is_not_there_changes_nothing() -> None:
    text = "[server]\nname = a\n"
    assert set_values(text, {("server", "log-settings"): None, ("api", "listen"): None}) == text


def test_new_sections_come_in_the_order_given_after_a_blank_line() -> None:
    new = set_values("[server]\nname = a", {("api", "listen"): "127.0.0.1:1", ("policy p", "lease-time"): "1h",
                                           ("api", "enabled"): "true"})
    assert new == ("[server]\nname = a\n\n[api]\nlisten = 127.0.0.1:1\nenabled = true\n\n"
                   "[policy p]\nlease-time = 1h\n")


def test_only_the_first_of_duplicate_keys_sections_gets_new_keys_but_all_are_changed() -> None:
    # Such a file does not load (strict); set_values still does something sensible.
    text = "[a]\nk = 1\n[b]\n[a]\nk = 2\n"
    assert set_values(text, {("a", "k"): "3", ("a", "n"): "4"}) == "[a]\nk = 3\nn = 4\n[b]\n[a]\nk = 3\n"


@pytest.mark.parametrize("change, fragment", [
    ((("server", "name"), "a\nb"), "one line"),
    ((("server", "name"), "a\rb"), "one line"),
    ((("server", "name"), "#x"), "comment"),
    ((("server", "name"), "a #x"), "comment"),
    ((("server", "na=me"), "x"), "bad key"),
    ((("server", " name"), "x"), "bad key"),
    ((("server", ""), "x"), "bad key"),
    ((("server", "#name"), "x"), "bad key"),
    ((("", "name"), "x"), "bad section"),
    ((("scope a #b", "name"), "x"), "bad section"),
    ((("scope [a]", "name"), "x"), "bad section"),
])
def test_what_would_not_read_back_is_refused(change, fragment) -> None:
    (key, value) = change
    with pytest.raises(ValueError, match=fragment):
        set_values("[server]\nname = a\n", {key: value})


def test_values_are_stripped_and_may_hold_hash_semicolon_and_delimiters() -> None:
    new = set_values("[policy p]\n", {("policy p", "option.x"): "  a#b;c=d:e ; f  "})
    assert parsed(new)[("policy", "p")] == {"option.x": "a#b;c=d:e ; f"}


# -- properties: any text ----------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_any_text_without_changes_is_byte_identical(text: str) -> None:
    assert set_values(text, {}) == text


INI_CHARS = st.sampled_from(list("[]=:#; \t\r\nabcKX01-.") + ["\u2028", "\x0c"])


@given(st.lists(INI_CHARS, max_size=200).map("".join),
       st.sampled_from(["a", "a b", "server"]), st.sampled_from(["k", "x", "name"]),
       st.one_of(st.none(), st.sampled_from(["v", "1 2", ""])))
def test_any_text_that_reads_reads_back_with_the_change(text: str, header: str, key: str,
                                                         value: str | None) -> None:
    try:
        parser = parse_ini(text, "<test>")
    except Exception:
        parser = None
    assume(parser is not None and len({section_id(h) for h in parser.sections()}) == len(parser.sections()))
    before = parsed(text)
    assert read_values(text) == before
    new = set_values(text, {(header, key): value})
    after = parsed(new)
    expected = {s: dict(kv) for s, kv in before.items()}
    sid = section_id(header)
    if value is None:
        expected.get(sid, {}).pop(key, None)
    else:
        expected.setdefault(sid, {})[key] = value
    assert after == expected


# -- properties: generated INI files --------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=8).filter(
    lambda w: w[0].isalpha())
VALUE_CHARS = "abcxyz0189.,:=/;%[]#-_ "


def _value_ok(v: str) -> bool:
    # A value as the loader can hold it: stripped, and no '#' it would cut at.
    return v == v.strip() and not any(c == "#" and (i == 0 or v[i - 1].isspace()) for i, c in enumerate(v))


VALUE = st.text(alphabet=VALUE_CHARS, max_size=12).filter(_value_ok)
# A continuation line is never empty and never starts like a comment (either would end the value).
LINE_VALUE = VALUE.filter(lambda v: bool(v) and not v.startswith(("#", ";")))
SEPARATORS = [" = ", "=", ": ", ":", "\t=\t", "  =  ", " :"]
COMMENTS = ["# a comment", "; another", "  # indented", "#", "\t; x = y", "# [fake] = header"]


Owner = tuple[tuple[str, str | None], str] | None  # (section id, key) of an option's lines


@st.composite
def ini_files(draw: st.DrawFn):
    """(text, model: section id -> key -> value lines, canonical headers, [(line, owner)]), formatted at random."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    n = draw(st.integers(0, 4))
    kinds = draw(st.lists(WORD, min_size=n, max_size=n))
    names = draw(st.lists(st.one_of(st.none(), WORD), min_size=n, max_size=n))
    model: dict[tuple[str, str | None], dict[str, list[str]]] = {}
    headers: list[str] = []
    out: list[tuple[str, Owner]] = []
    for kind, name in zip(kinds, names):
        sid = (kind, name)
        if sid in model:
            continue
        model[sid] = {}
        headers.append(kind if name is None else f"{kind} {name}")
        for _ in range(draw(st.integers(0, 2))):
            out.append((draw(st.sampled_from(COMMENTS + [""])), None))
        pad = draw(st.sampled_from(["", " ", "  "]))
        gap = draw(st.sampled_from([" ", "   ", "\t"]))
        written_kind = draw(st.sampled_from([kind, kind.upper()]))
        header = written_kind if name is None else f"{written_kind}{gap}{name}"
        tail = draw(st.sampled_from(["", "  # header comment"]))
        out.append((f"[{pad}{header}{pad}]{tail}", None))
        indent = draw(st.sampled_from(["", " ", "  "]))
        sep = draw(st.sampled_from(SEPARATORS))
        keys = draw(st.lists(WORD, max_size=5, unique_by=str.lower))
        for key in keys:
            first = draw(VALUE)
            more = draw(st.lists(LINE_VALUE, max_size=2))
            model[sid][key.lower()] = [first, *more]
            owner = (sid, key.lower())
            written = draw(st.sampled_from([key, key.upper()]))
            comment = draw(st.sampled_from(["", "   # inline", "\t#x"]))
            line = f"{indent}{written}{sep}{first}"
            out.append(((line.rstrip() if not first else line) + (comment if first or more else ""), owner))
            for cont in more:
                out.append((f"{indent}{draw(st.sampled_from(['  ', chr(9), '    ']))}{cont}", owner))
            if draw(st.integers(0, 4)) == 0:
                out.append((draw(st.sampled_from(COMMENTS + [""])), None))
    text = eol.join(line for line, _ in out) + draw(st.sampled_from([eol, ""]))
    return text, model, headers, out


@st.composite
def files_and_changes(draw: st.DrawFn):
    text, model, headers, lines = draw(ini_files())
    changes: dict[tuple[str, str], str | None] = {}
    existing = [(h, k) for h in headers for k in model[section_id(h)]]
    for h, k in draw(st.lists(st.sampled_from(existing), unique=True)) if existing else []:
        # The change names the section in canonical spelling, whatever the file's.
        changes[(h, k)] = draw(st.one_of(st.none(), VALUE))
    for _ in range(draw(st.integers(0, 3))):
        h = draw(st.one_of(st.sampled_from(headers), WORD)) if headers else draw(WORD)
        changes[(h, draw(WORD).lower())] = draw(st.one_of(st.none(), VALUE))
    return text, model, changes, lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files_and_changes())
def test_generated_files_read_back_with_exactly_the_changes(case) -> None:
    text, model, changes, lines = case
    before = parsed(text)
    assert before == {s: {k: "\n".join(v).rstrip() for k, v in kv.items()} for s, kv in model.items()}
    assert read_values(text) == before
    new = set_values(text, changes)
    expected = {s: dict(kv) for s, kv in before.items()}
    for (header, key), value in changes.items():
        sid = section_id(header)
        if value is None:
            expected.get(sid, {}).pop(key, None)
        else:
            expected.setdefault(sid, {})[key] = value
    assert parsed(new) == expected
    # Every line that is not about a changed key is still there, byte for byte, in order.
    changed = {(section_id(h), k) for h, k in changes}
    kept = iter(new.replace("\r\n", "\n").split("\n"))
    for line, owner in lines:
        if owner not in changed:
            assert any(line == other for other in kept), f"line {line!r} lost"


# -- property: valid cnrd configurations through cnrd.config.loads ----------------

BOOL_WORDS = ["true", "false", "yes", "no", "on", "off", "enabled", "disabled", "1", "0", "TRUE", "Off"]
LOG_FLAGS = ["default", "failover-detail", "no-failover-conflict", "no-failover-activity", "json"]


def durations(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).flatmap(lambda s: st.sampled_from(
        [str(s)] + ([f"{s // 60}m"] if s % 60 == 0 else []) + ([f"{s // 3600}h"] if s % 3600 == 0 else [])
        + ([f"{s // 60}m{s % 60}s"] if s > 60 and s % 60 else [])))


SETTABLE: dict[tuple[str, str], st.SearchStrategy[str | None]] = {
    ("server", "max-dhcp-requests"): st.integers(1, 100000).map(str),
    ("server", "start-on-reboot"): st.one_of(st.none(), st.sampled_from(BOOL_WORDS)),
    ("server", "log-settings"): st.one_of(st.none(), st.lists(st.sampled_from(LOG_FLAGS), min_size=1, unique=True)
                                          .map(", ".join)),
    ("server", "failover-recover"): st.one_of(st.none(), st.just("0"), st.integers(1, 2 ** 31).map(str),
                                              st.just("2026-11-28T07:30:00Z")),
    ("server", "safe-period"): st.one_of(st.none(), durations(0, 10 ** 6)),
    ("server", "interfaces"): st.one_of(st.none(), st.lists(st.sampled_from(["eth0", "eth1", "br0"]), max_size=3,
                                                            unique=True).map(" ".join)),
    ("api", "listen"): st.one_of(st.none(), st.integers(0, 65535).map(lambda p: f"127.0.0.1:{p}")),
    ("api", "enabled"): st.one_of(st.none(), st.sampled_from(BOOL_WORDS)),
    ("policy default", "lease-time"): st.one_of(st.none(), durations(1, 10 ** 7)),
    ("failover-pair examplepair", "mclt"): st.one_of(st.none(), durations(30, 10 ** 5)),
    ("failover-pair examplepair", "backup-pct"): st.one_of(st.none(), st.integers(0, 100).map(str),
                                                           st.just("12.5%")),
    ("failover-pair examplepair", "use-safe-period"): st.one_of(st.none(), st.sampled_from(BOOL_WORDS)),
    ("failover-pair examplepair", "max-unacked-updates"): st.one_of(st.none(), st.integers(1, 1000).map(str)),
    ("failover-pair examplepair", "scopes"): st.one_of(st.none(), st.just("lan")),
}


@st.composite
def cnrd_files(draw: st.DrawFn):
    """(text, model) for a valid cnrd configuration, formatted at random."""
    model: dict[str, dict[str, list[str]]] = {
        "server": {"name": ["main"], "data-dir": ["/var/lib/cnrd/main"]},
        "policy default": {"lease-time": ["3600"], "option.routers": ["10.1.0.1"]},
        "scope lan": {"subnet": ["10.1.0.0/24"], "ranges": ["10.1.0.100-10.1.0.150,", "10.1.0.160"]},
        "failover-pair examplepair": {"main": ["10.98.0.1"], "backup": ["10.98.0.2"],
                                      "failover-poll-interval": ["2"], "failover-poll-timeout": ["6"]},
    }
    if draw(st.booleans()):
        model["api"] = {"listen": ["127.0.0.1:8067"]}
    for (header, key), values in SETTABLE.items():
        if header in model and draw(st.booleans()):
            value = draw(values)
            if value is not None:
                words = value.split(" ")
                # Lists may span continuation lines.
                if key in ("log-settings", "interfaces") and len(words) > 1 and draw(st.booleans()):
                    model[header][key] = [words[0], *words[1:]]
                else:
                    model[header][key] = [value]
    order = draw(st.permutations(list(model)))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    out = ["# generated cnrd configuration"]
    for header in order:
        out.append(draw(st.sampled_from(["", "# ---", "; section"])))
        kind, _, name = header.partition(" ")
        gap = draw(st.sampled_from([" ", "  ", "\t"]))
        out.append(f"[{kind}{gap}{name}]" if name else f"[{kind}]")
        sep = draw(st.sampled_from(SEPARATORS))
        keys = draw(st.permutations(list(model[header])))
        for key in keys:
            lines = model[header][key]
            comment = draw(st.sampled_from(["", "  # why", " \t# (see docs)"]))
            out.append(f"{key}{sep}{lines[0]}{comment}")
            out.extend(f"    {more}" for more in lines[1:])
            if draw(st.integers(0, 3)) == 0:
                out.append(draw(st.sampled_from(["", "# note", ";note"])))
    return eol.join(out) + eol, model


def canonical(model: dict[str, dict[str, list[str]]]) -> str:
    return "".join(f"[{h}]\n" + "".join(f"{k} = {' '.join(v)}\n" for k, v in kv.items()) + "\n"
                   for h, kv in model.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cnrd_files(), st.data())
def test_cnrd_configs_load_with_the_changed_values_and_nothing_else(case, data) -> None:
    text, model = case
    assert loads(text) == loads(canonical(model))
    keys = data.draw(st.lists(st.sampled_from(sorted(SETTABLE)), unique=True, max_size=6))
    changes = {key: data.draw(SETTABLE[key]) for key in keys}
    expected = {h: {k: list(v) for k, v in kv.items()} for h, kv in model.items()}
    for (header, key), value in changes.items():
        if value is None:
            expected.get(header, {}).pop(key, None)
        else:
            expected.setdefault(header, {})[key] = [value]
    new = set_values(text, changes)
    assert loads(new) == loads(canonical(expected))
    assert set_values(text, {}) == text


def test_read_values_skips_what_the_loader_would_refuse() -> None:
    text = "junk\n[server]\nname = a\nno delimiter\n  x = 1\n[api]\nlisten=1:2 # c\n[ api ]\nlisten=3\nname=b\n"
    # As configparser: the indented line after the bad one continues "name".
    assert read_values(text) == {("server", None): {"name": "a\nx = 1"}, ("api", None): {"listen": "1:2"}}


# -- whole sections: remove_sections and add_sections -------------------------

SECTIONS = """\
# preamble of the file

# the server
[server]
name = a

# the first client
[client 02:00:00:00:00:01]
# why it is excluded
action = exclude
# action = none   (an old setting, kept in the comment)

# the second client
[client  02:00:00:00:00:02]
host-name = b

# footer
"""


def test_a_removed_section_takes_its_keys_its_comments_and_its_separating_blank_line() -> None:
    new = remove_sections(SECTIONS, ["client 02:00:00:00:00:01"])
    assert diff(SECTIONS, new) == [
        "-# the first client",
        "-[client 02:00:00:00:00:01]",
        "-# why it is excluded",
        "-action = exclude",
        "-# action = none   (an old setting, kept in the comment)",
        "-",
    ]
    assert ("client", "02:00:00:00:00:01") not in parsed(new)


def test_a_section_is_found_however_its_header_is_spaced_and_the_last_one_leaves_no_blank_behind() -> None:
    new = remove_sections(SECTIONS, ["client 02:00:00:00:00:02"])
    assert new == SECTIONS.replace("\n# the second client\n[client  02:00:00:00:00:02]\nhost-name = b\n", "")
    assert remove_sections("[a]\nk = 1\n\n[b]\nk = 2", ["b"]) == "[a]\nk = 1\n"
    assert remove_sections("[a]\nk = 1\n\n# b\n[b]\nk = 2\n", ["a"]) == "# b\n[b]\nk = 2\n"


def test_removing_what_is_not_there_is_the_same_text() -> None:
    assert remove_sections(SECTIONS, ["client 02:00:00:00:00:09", "api"]) is SECTIONS
    assert remove_sections(SECTIONS, []) is SECTIONS


def test_new_sections_are_appended_in_the_files_style_and_may_have_no_keys() -> None:
    text = "[server]\r\nname=a"
    new = add_sections(text, [("client 02:00:00:00:00:03", []), ("policy p", [("lease-time", "1h"),
                                                                             ("option.routers", "10.0.0.1")])])
    assert new == ("[server]\r\nname=a\r\n\r\n[client 02:00:00:00:00:03]\r\n\r\n"
                   "[policy p]\r\nlease-time=1h\r\noption.routers=10.0.0.1\r\n")
    assert parsed(new)[("policy", "p")] == {"lease-time": "1h", "option.routers": "10.0.0.1"}
    assert add_sections(text, []) is text


@pytest.mark.parametrize("sections, fragment", [
    ([("server", [])], "already"),
    ([("policy p", [("lease-time", "a #b")])], "comment"),
    ([("policy p", [("lease-time", "1h")]), ("policy  p", [])], "already"),
    ([("scope [x]", [])], "bad section"),
])
def test_adding_what_would_not_read_back_is_refused(sections, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        add_sections("[server]\nname = a\n", sections)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["a", "b 1", "b 2", "c"]), unique=True, min_size=1, max_size=4),
       st.data())
def test_removing_any_sections_leaves_the_others_and_their_comments(names, data) -> None:
    text = "".join(f"# about {n}\n[{n}]\n# inside {n}\nk = {n}\n\n" for n in names)
    gone = data.draw(st.lists(st.sampled_from(names), unique=True))
    new = remove_sections(text, gone)
    assert parsed(new) == {section_id(n): {"k": n} for n in names if n not in gone}
    for n in names:
        assert (f"# about {n}\n[{n}]\n# inside {n}\n" in new) == (n not in gone)
    assert "\n\n\n" not in new and not new.startswith("\n")
