"""The failover pair synchronization planner: what Update, Complete or Exact would change.

CNR 7.2's "Synchronizing Failover Pairs" copies DHCP configuration from one
partner (the source: the main, or the backup when synchronizing backup to
main) to the other (the target).  cnrd keeps each server's configuration in
its INI file, so :func:`plan` compares two files' values (as
:func:`cnrd.config.inifile.read_values` reads them) and returns the change
entries the operation makes, and :func:`apply` edits the target's INI text
with them, keeping its comments.  Which function (ensure, replace, exact)
applies to what is Table 27-1, in :mod:`cnrd.sync.table`.

How the seed's four functions act here:

* on a collection of named objects (policies, clients, client-classes,
  LDAP remote servers, the pair's scopes and reservations) they act as the seed's example says
  (source Name1=A, Name2=C; target Name2=B, Name3=D): *no change* leaves
  Name2=B, Name3=D; *ensure* adds the missing object (Name1=A, Name2=B,
  Name3=D); *replace* also makes an object on both sides the source's
  (Name1=A, Name2=C, Name3=D); *exact* also removes the target's own
  (Name1=A, Name2=C);
* on an object's properties (the keys of ``[server]``, of the pair's
  section, of a policy): a key is a property with a value whether it is
  written or left to its default, so *replace* and *exact* give the target
  the source's value, removing the key where the source leaves it unset;
* on a policy's option list the seed's exception holds: entries are
  compared one by one (by option code): *ensure* adds the options the target
  lacks, *replace* also gives the target the source's value of each option
  the source sets and keeps the target's other options, *exact* makes the
  list the source's.  A policy's packet boot file properties (siaddr, file
  and sname, which a policy may leave unset) are treated the same way, key
  by key.

Values are compared as text with continuation lines joined by a blank
(lists read the same either way); an option's order in the file is not
compared.  Per-node keys (:data:`cnrd.sync.table.PER_NODE`) are dropped from
both sides first, so no operation copies or compares them.

Pure module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cnrd.config import inifile
from cnrd.config.values import InvalidValue, parse_hw_address, parse_ipv4, parse_list, parse_subnet
from cnrd.dhcp.options import OPTIONS_BY_NAME
from cnrd.sync.table import OPERATIONS, PAIR_TUNING, PER_NODE, POLICY_BOOT_FILE, SERVER_KEYS, TABLE_27_1
from cnrd.text import hw_text, int_to_ip, netmask

__all__ = [
    "OPERATIONS",
    "Change",
    "Values",
    "apply",
    "apply_values",
    "differing_objects",
    "plan",
    "shareable",
]

Values = dict[tuple[str, str | None], dict[str, str]]
SectionId = tuple[str, str | None]

FUNCTIONS = ("ensure", "replace", "exact")
# Report order: the server, the pair, then what scopes and clients refer to
# before what refers to it.
_CLASS_ORDER = ("server", "failover-pair", "ldap", "policy", "client-class", "client", "scope", "reservation")
_OPTION_PREFIX = "option."
_NUMERIC_OPTION = re.compile(r"^(?:option-)?(\d{1,3})$")


@dataclass(frozen=True)
class Change:
    """One change entry of a synchronization report: an object's property, or a whole object.

    ``prop`` is None when the whole object is added (``new`` is its keys as
    INI lines, ``key = value``, one a line) or removed (``new`` is None and
    ``old`` its keys).  For a property, ``old``/``new`` None means the key
    is absent (the default) before/after.
    """

    object_class: str
    name: str
    prop: str | None
    function: str
    old: str | None
    new: str | None

    def as_json(self) -> dict[str, object]:
        """The entry as the API shows it."""
        return {"class": self.object_class, "name": self.name, "property": self.prop,
                "function": self.function, "old": self.old, "new": self.new}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Change:
        """An entry from :meth:`as_json`'s form; ValueError for anything else."""
        if not isinstance(d, dict):
            raise ValueError("a change must be an object")

        def text(key: str, optional: bool) -> str | None:
            v = d.get(key)
            if v is None and optional and key in d:
                return None
            if not isinstance(v, str):
                raise ValueError(f"change {key!r} must be {'a string or null' if optional else 'a string'}")
            return v

        object_class = text("class", False)
        name = text("name", False)
        function = text("function", False)
        assert object_class is not None and name is not None and function is not None
        if object_class not in _CLASS_ORDER:
            raise ValueError(f"unknown class {object_class!r}")
        if function not in FUNCTIONS:
            raise ValueError(f"unknown function {function!r}")
        change = cls(object_class, name, text("property", True), function,
                     text("old", True), text("new", True))
        if change.prop is None and change.new is None and change.old is None:
            raise ValueError("a whole-object change needs old (removed) or new (added)")
        return change

    @property
    def header(self) -> str:
        """The INI section header the change applies to."""
        return self.object_class if not self.name else f"{self.object_class} {self.name}"


def shareable(values: Values) -> Values:
    """``values`` without what belongs to one node only (:data:`~cnrd.sync.table.PER_NODE`).

    A ``[server]`` key the table does not know is dropped too: a key added to
    cnrd later is not copied to a partner before someone decides it may be.
    """
    out: Values = {}
    for sid, keys in values.items():
        kind = sid[0]
        if kind in PER_NODE and PER_NODE[kind] is None:
            continue
        if kind == "server":
            out[sid] = {k: v for k, v in keys.items() if SERVER_KEYS.get(k) in ("other", "client-class")}
        else:
            out[sid] = dict(keys)
    return out


def _norm(value: str) -> str:
    return " ".join(part.strip() for part in value.split("\n")).strip()


def _normalized(values: Values) -> Values:
    return {sid: {k: _norm(v) for k, v in keys.items()} for sid, keys in shareable(values).items()}


def _object_text(keys: dict[str, str]) -> str:
    return "\n".join(f"{k} = {v}".rstrip() for k, v in keys.items())


def _canonical(kind: str, name: str | None) -> str:
    """The identity of a named object: clients by MAC, reservations by address, others by name."""
    if name is None:
        return ""
    try:
        if kind == "client":
            return hw_text(parse_hw_address(name))
        if kind == "reservation":
            return int_to_ip(parse_ipv4(name))
    except InvalidValue:
        pass
    return name


def _option_code(key: str) -> str:
    """An option entry's identity: its code when the name is known, else the key."""
    name = key[len(_OPTION_PREFIX):].strip().lower()
    spec = OPTIONS_BY_NAME.get(name)
    if spec is not None:
        return str(spec.code)
    m = _NUMERIC_OPTION.match(name)
    return str(int(m.group(1))) if m else key


class _Planner:
    """One plan: the normalized values of both sides and the changes found so far."""

    def __init__(self, source: Values, target: Values, pair: str, operation: str) -> None:
        self.src = _normalized(source)
        self.tgt = _normalized(target)
        self.pair = pair
        self.operation = operation
        self.changes: list[Change] = []

    def fn(self, row: str) -> str:
        return TABLE_27_1[row].function(self.operation)

    def emit(self, kind: str, name: str, prop: str | None, function: str,
             old: str | None, new: str | None) -> None:
        if old != new:
            self.changes.append(Change(kind, name, prop, function, old, new))

    def objects(self, values: Values, kind: str) -> dict[str, tuple[str, dict[str, str]]]:
        """Identity -> (name as written, keys) of ``values``' sections of ``kind``."""
        out: dict[str, tuple[str, dict[str, str]]] = {}
        for (k, name), keys in values.items():
            if k == kind and name is not None:
                out.setdefault(_canonical(kind, name), (name, keys))
        return out

    # -- properties --------------------------------------------------------

    def properties(self, kind: str, name: str, src: dict[str, str], tgt: dict[str, str],
                   keys: Iterable[str], function: str) -> None:
        """Give the target's ``keys`` the source's values (replace and exact)."""
        if function == "no change":
            return
        if function == "ensure":
            # Every property exists on both sides (with its default when
            # unwritten), so ensuring an existing object's properties is no change.
            return
        for key in sorted(set(keys)):
            self.emit(kind, name, key, function, tgt.get(key), src.get(key))

    def server(self) -> None:
        src = self.src.get(("server", None), {})
        tgt = self.tgt.get(("server", None), {})
        keys = set(src) | set(tgt)
        client_class = {k for k in keys if SERVER_KEYS.get(k) == "client-class"}
        self.properties("server", "", src, tgt, client_class, self.fn("server-tuning"))
        self.properties("server", "", src, tgt, keys - client_class, self.fn("server-other"))

    def pair_section(self) -> None:
        sid = ("failover-pair", self.pair)
        src, tgt = self.src[sid], self.tgt.get(sid)
        if tgt is None:
            # The target does not know the pair: Update leaves it so (a pair
            # section with only its tuning keys would not load); Complete and
            # Exact give it the source's.
            fn = self.fn("server-other")
            if fn != "no change":
                self.emit("failover-pair", self.pair, None, fn, None, _object_text(src))
            return
        keys = set(src) | set(tgt)
        self.properties("failover-pair", self.pair, src, tgt, keys & PAIR_TUNING, self.fn("server-tuning"))
        self.properties("failover-pair", self.pair, src, tgt, keys & {"scopes"}, self.fn("scopes"))
        self.properties("failover-pair", self.pair, src, tgt, keys - PAIR_TUNING - {"scopes"},
                        self.fn("server-other"))

    # -- named objects -----------------------------------------------------

    def named(self, kind: str, function: str, src_objects: dict[str, tuple[str, dict[str, str]]],
              tgt_objects: dict[str, tuple[str, dict[str, str]]]) -> None:
        """The seed's functions on a collection of named objects, whole objects compared."""
        for ident in sorted(set(src_objects) | set(tgt_objects)):
            if ident not in tgt_objects:
                name, keys = src_objects[ident]
                self.emit(kind, name, None, function, None, _object_text(keys))
            elif ident not in src_objects:
                name, keys = tgt_objects[ident]
                if function == "exact":
                    self.changes.append(Change(kind, name, None, function, _object_text(keys), None))
            elif function != "ensure":
                name, tgt = tgt_objects[ident]
                src = src_objects[ident][1]
                self.properties(kind, name, src, tgt, set(src) | set(tgt), function)

    def policies(self) -> None:
        src_objects = self.objects(self.src, "policy")
        tgt_objects = self.objects(self.tgt, "policy")
        other_fn, options_fn = self.fn("policy-other"), self.fn("policy-options")
        boot_fn = self.fn("policy-bootfile")
        for ident in sorted(set(src_objects) | set(tgt_objects)):
            if ident not in tgt_objects:
                name, keys = src_objects[ident]
                self.emit("policy", name, None, other_fn, None, _object_text(keys))
            elif ident not in src_objects:
                name, keys = tgt_objects[ident]
                if other_fn == "exact":
                    self.changes.append(Change("policy", name, None, other_fn, _object_text(keys), None))
            else:
                name, tgt = tgt_objects[ident]
                src = src_objects[ident][1]
                plain = {k for k in set(src) | set(tgt)
                         if not k.startswith(_OPTION_PREFIX) and k not in POLICY_BOOT_FILE}
                self.properties("policy", name, src, tgt, plain, other_fn)
                self.options(name, src, tgt, options_fn)
                self.boot_file(name, src, tgt, boot_fn)

    def options(self, name: str, src: dict[str, str], tgt: dict[str, str], function: str) -> None:
        """A policy's option list, entry by entry (the seed's exception to replace)."""
        src_opts = {_option_code(k): k for k in src if k.startswith(_OPTION_PREFIX)}
        tgt_opts = {_option_code(k): k for k in tgt if k.startswith(_OPTION_PREFIX)}
        for code in sorted(set(src_opts) | set(tgt_opts)):
            skey, tkey = src_opts.get(code), tgt_opts.get(code)
            if skey is None:
                assert tkey is not None
                if function == "exact":
                    self.emit("policy", name, tkey, function, tgt[tkey], None)
            elif tkey is None:
                self.emit("policy", name, skey, function, None, src[skey])
            elif function != "ensure":
                if skey == tkey:
                    self.emit("policy", name, skey, function, tgt[tkey], src[skey])
                else:
                    # One option written under two names (option.3, option.routers):
                    # the target takes the source's spelling so the two read alike.
                    self.emit("policy", name, tkey, function, tgt[tkey], None)
                    self.emit("policy", name, skey, function, None, src[skey])

    def boot_file(self, name: str, src: dict[str, str], tgt: dict[str, str], function: str) -> None:
        """A policy's packet boot file properties, key by key as its option list."""
        for key in sorted(POLICY_BOOT_FILE & (set(src) | set(tgt))):
            if key not in src:
                if function == "exact":
                    self.emit("policy", name, key, function, tgt[key], None)
            elif key not in tgt or function != "ensure":
                self.emit("policy", name, key, function, tgt.get(key), src[key])

    # -- the pair's scopes ------------------------------------------------

    def pair_scopes(self, values: Values) -> set[str]:
        """Names of the scopes of the pair in ``values``: its list, or every scope when empty."""
        section = values.get(("failover-pair", self.pair))
        if section is None:
            return set()
        listed = parse_list(section.get("scopes", ""))
        every = {name for (kind, name) in values if kind == "scope" and name is not None}
        return set(listed) & every if listed else every

    def subnets(self, values: Values, scopes: set[str]) -> list[tuple[int, int]]:
        out = []
        for name in scopes:
            try:
                network, prefix = parse_subnet(values[("scope", name)].get("subnet", ""))
            except InvalidValue:
                continue
            out.append((network, netmask(prefix)))
        return out

    def scopes(self) -> None:
        fn = self.fn("scopes")
        src_names, tgt_names = self.pair_scopes(self.src), self.pair_scopes(self.tgt)
        src_all, tgt_all = self.objects(self.src, "scope"), self.objects(self.tgt, "scope")
        if ("failover-pair", self.pair) in self.tgt or self.fn("server-other") != "no change":
            # The target's pair takes the source's scopes list, so the
            # scopes of the target that list takes in are the pair's too.
            listed = parse_list(self.src[("failover-pair", self.pair)].get("scopes", ""))
            tgt_names |= set(listed) & set(tgt_all) if listed else set(tgt_all)
        self.named("scope", fn, {n: src_all[n] for n in src_names},
                   {n: tgt_all[n] for n in tgt_names | (src_names & set(tgt_all))})
        # A source reservation is the pair's when it is in one of the source's
        # pair scopes; a target one also when in a scope the target's pair
        # had (that scope goes, and its reservations with it).
        src_nets = self.subnets(self.src, src_names)
        tgt_nets = src_nets + self.subnets(self.tgt, tgt_names)

        def in_pair(objects: dict[str, tuple[str, dict[str, str]]],
                    nets: list[tuple[int, int]]) -> dict[str, tuple[str, dict[str, str]]]:
            out = {}
            for ident, item in objects.items():
                try:
                    address = parse_ipv4(ident)
                except InvalidValue:
                    continue
                if any(address & mask == network for network, mask in nets):
                    out[ident] = item
            return out

        self.named("reservation", fn, in_pair(self.objects(self.src, "reservation"), src_nets),
                   in_pair(self.objects(self.tgt, "reservation"), tgt_nets))

    # -- the whole plan ----------------------------------------------------

    def run(self) -> list[Change]:
        self.server()
        self.pair_section()
        self.named("ldap", self.fn("ldap"), self.objects(self.src, "ldap"), self.objects(self.tgt, "ldap"))
        self.policies()
        self.named("client-class", self.fn("client-class"), self.objects(self.src, "client-class"),
                   self.objects(self.tgt, "client-class"))
        self.named("client", self.fn("client"), self.objects(self.src, "client"),
                   self.objects(self.tgt, "client"))
        self.scopes()
        self.keep_referenced()
        order = {kind: i for i, kind in enumerate(_CLASS_ORDER)}
        return sorted(self.changes, key=lambda c: (order[c.object_class], c.name, c.prop or ""))

    def keep_referenced(self) -> None:
        """Exact leaves a policy or client-class the target still uses (a scope outside the pair)."""
        while True:
            after = apply_values(self.tgt, self.changes)
            used: set[SectionId] = set()
            for (kind, _), keys in after.items():
                if kind in ("scope", "client", "client-class") and "policy" in keys:
                    used.add(("policy", keys["policy"]))
                if kind == "client" and "client-class" in keys:
                    used.add(("client-class", keys["client-class"]))
            kept = [c for c in self.changes
                    if not (c.prop is None and c.new is None and (c.object_class, c.name) in used)]
            if len(kept) == len(self.changes):
                return
            self.changes = kept


def plan(source: Values, target: Values, *, pair: str, operation: str = "update") -> list[Change]:
    """The changes ``operation`` makes to ``target`` from ``source`` for failover pair ``pair``.

    ``source`` and ``target`` are :func:`cnrd.config.inifile.read_values`
    results (whole or :func:`shareable`); the direction is the caller's
    choice of which is which.  No change ever names a per-node key.
    Raises ValueError for an unknown operation or a source without the pair.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}")
    if ("failover-pair", pair) not in source:
        raise ValueError(f"the source has no [failover-pair {pair}]")
    return _Planner(source, target, pair, operation).run()


def _object_keys(text: str) -> dict[str, str]:
    return inifile.read_values("[x]\n" + text).get(("x", None), {})


def apply_values(values: Values, changes: Sequence[Change]) -> Values:
    """``values`` as they are after ``changes`` (what :func:`apply` does to the text)."""
    out = {sid: dict(keys) for sid, keys in values.items()}
    for c in changes:
        sid = inifile.section_id(c.header)
        if c.prop is None:
            if c.new is None:
                out.pop(sid, None)
            else:
                out[sid] = _object_keys(c.new)
        elif c.new is None:
            out.get(sid, {}).pop(c.prop.lower(), None)
        else:
            out.setdefault(sid, {})[c.prop.lower()] = c.new
    return out


def apply(target_text: str, changes: Sequence[Change]) -> str:
    """``target_text`` edited by ``changes``: comments and untouched lines kept, sections added or removed.

    Raises ValueError when a change cannot be written (a value the INI
    format would not read back, a section added that is already there).
    """
    removed = [c.header for c in changes if c.prop is None and c.new is None]
    text = inifile.remove_sections(target_text, removed)
    edits: dict[tuple[str, str], str | None] = {
        (c.header, c.prop): c.new for c in changes if c.prop is not None}
    text = inifile.set_values(text, edits)
    added = [(c.header, list(_object_keys(c.new).items()))
             for c in changes if c.prop is None and c.new is not None]
    return inifile.add_sections(text, added)


def differing_objects(changes: Sequence[Change]) -> list[str]:
    """The objects ``changes`` touch, once each in order: ``"server"``, ``"policy default"`` ..."""
    seen: dict[str, None] = {}
    for c in changes:
        seen.setdefault(c.header, None)
    return list(seen)
