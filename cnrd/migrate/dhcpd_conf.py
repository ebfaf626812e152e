"""The subset of a dhcpd.conf operators use most, converted to a cnrd INI.

Converted: ``subnet`` (with ``range``, also inside ``pool`` and
``shared-network``), ``option`` statements (global, subnet, host),
``default-lease-time``, ``filename``, ``next-server``, ``server-name``,
``authoritative``, ``server-identifier``, ``host`` declarations with
``hardware ethernet`` (or ``uid`` / ``option dhcp-client-identifier``) and a
``fixed-address``, and ``failover peer`` into ``[failover-pair]``.  Every
statement that is not converted appears as a ``# not converted (line N)``
comment in the section it would belong to, with the reason, so the operator
sees what to do by hand.  The result is meant to load with cnrd's loader as
it is (the CLI checks that before writing it).

Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnrd.config.values import InvalidValue, parse_policy_option
from cnrd.migrate.isc_leases import parse_hex_bytes
from cnrd.migrate.iscsyntax import SyntaxProblem, Token, block, tokens
from cnrd.text import int_to_ip, ip_to_int

__all__ = ["ConvertOptions", "convert_dhcpd_conf"]


@dataclass(frozen=True)
class ConvertOptions:
    """What the INI needs that a dhcpd.conf does not say."""

    name: str = "cnrd"
    data_dir: str = "/var/lib/cnrd"
    interfaces: tuple[str, ...] = ()
    source: str = "dhcpd.conf"


@dataclass
class _Section:
    header: str
    keys: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def set(self, key: str, value: str) -> None:
        self.keys = [(k, v) for k, v in self.keys if k != key] + [(key, value)]

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.keys)

    def render(self) -> str:
        lines = [f"[{self.header}]"] + [f"{k} = {v}" for k, v in self.keys] + self.notes
        return "\n".join(lines)


@dataclass
class _Scope:
    section: _Section
    network: int
    prefix: int
    ranges: list[str] = field(default_factory=list)
    policy: _Section | None = None
    peer: str | None = None


def _text(st: list[Token]) -> str:
    return " ".join(f'"{t.value}"' if t.kind == "string" else t.value for t in st)


def _prefix_of(mask: int) -> int:
    prefix = mask.bit_count()
    if mask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise ValueError(f"{int_to_ip(mask)} is not a contiguous netmask")
    return prefix


def _items(body: list[Token]) -> list[tuple[list[Token], list[Token] | None]]:
    """A block body as (statement words, nested block body or None) pairs."""
    out: list[tuple[list[Token], list[Token] | None]] = []
    i, head = 0, list[Token]()
    while i < len(body):
        t = body[i]
        if t.kind == ";":
            out.append((head, None))
            head, i = [], i + 1
        elif t.kind == "{":
            inner, i = block(body, i)
            out.append((head, inner))
            head = []
        elif t.kind == "}":
            raise SyntaxProblem(t.line, "a '}' without its '{'")
        else:
            head.append(t)
            i += 1
    if head:
        raise SyntaxProblem(head[0].line, "a statement is not ended by ';'")
    return out


def _note(section: _Section, st: list[Token], why: str) -> None:
    line = st[0].line if st else 0
    section.notes.append(f"# not converted (line {line}): {_text(st)}; -- {why}")


class _Converter:
    def __init__(self, opts: ConvertOptions) -> None:
        self.opts = opts
        self.server = _Section("server")
        self.server.set("name", opts.name)
        self.server.set("interfaces", ", ".join(opts.interfaces))
        self.server.set("data-dir", opts.data_dir)
        self.default = _Section("policy default")
        self.scopes: list[_Scope] = []
        self.reservations: list[_Section] = []
        self.pairs: dict[str, _Section] = {}
        self.pair_notes: list[str] = []

    # -- options and lease parameters, wherever they stand --------------------
    def _option(self, target: _Section, st: list[Token], scope: _Scope | None = None) -> None:
        words = [t.value for t in st]
        if len(st) < 3:
            _note(target, st, "not an option value")
            return
        name = words[1].lower()
        if len(st) > 2 and st[2].is_("word", "code"):
            _note(target, st, "option definitions have no cnrd equivalent")
            return
        # A list (addresses, or quoted names for domain-search) is comma separated in both files.
        value = ", ".join(t.value for t in st[2:] if t.kind != ",")
        if name == "subnet-mask" and scope is not None:
            try:
                if _prefix_of(ip_to_int(value)) == scope.prefix:
                    target.notes.append(f"# line {st[0].line}: option subnet-mask is the scope's netmask, "
                                        "which cnrd sends itself")
                    return
            except ValueError:
                pass
        try:
            parse_policy_option(name, value)
        except InvalidValue as e:
            _note(target, st, str(e))
            return
        target.set(f"option.{name}", value)

    def _lease_param(self, target: _Section, st: list[Token]) -> bool:
        """Policy statements (lease time, boot file); True when ``st`` was one of them."""
        key = st[0].value.lower()
        arg = st[1].value if len(st) == 2 else None
        if key in ("default-lease-time", "filename", "next-server", "server-name") and arg is None:
            _note(target, st, "expected one value")
            return True
        if key == "default-lease-time" and arg is not None:
            target.set("lease-time", arg)
        elif key == "filename" and arg is not None:
            target.set("packet-file-name", arg)
        elif key == "next-server" and arg is not None:
            try:
                ip_to_int(arg)
            except ValueError:
                _note(target, st, "cnrd needs an address here, not a name")
                return True
            target.set("packet-siaddr", arg)
        elif key == "server-name" and arg is not None:
            target.set("packet-server-name", arg)
        elif key in ("max-lease-time", "min-lease-time"):
            _note(target, st, "cnrd grants the policy's lease-time (allow-client-lease-time lets a client ask "
                              "for less)")
        else:
            return False
        return True

    # -- declarations ------------------------------------------------------
    def top(self, items: list[tuple[list[Token], list[Token] | None]], where: _Section) -> None:
        for st, body in items:
            if not st:
                continue
            key = st[0].value.lower()
            if body is not None:
                if key == "subnet":
                    self.subnet(st, body)
                elif key == "shared-network":
                    where.notes.append(f"# line {st[0].line}: shared-network {_text(st[1:])}: its subnets "
                                       "became scopes of their own (cnrd selects a scope by the subnet)")
                    self.top(_items(body), where)
                elif key == "group":
                    self.top(_items(body), where)
                elif key == "host":
                    self.host(st, body)
                elif key == "failover" and len(st) >= 3 and st[1].is_("word", "peer"):
                    self.failover(st, body)
                else:
                    _note(where, st, "no cnrd equivalent was made for this block")
            elif key == "option":
                self._option(self.default, st)
            elif self._lease_param(self.default, st):
                pass
            elif key == "authoritative" and len(st) == 1:
                self.server.set("authoritative", "true")
            elif key == "not" and len(st) == 2 and st[1].is_("word", "authoritative"):
                self.server.set("authoritative", "false")
            elif key == "server-identifier" and len(st) == 2:
                try:
                    ip_to_int(st[1].value)
                    self.server.set("server-identifier", st[1].value)
                except ValueError:
                    _note(self.server, st, "cnrd needs an address here, not a name")
            else:
                _note(where, st, "no cnrd equivalent")

    def subnet(self, st: list[Token], body: list[Token]) -> None:
        if len(st) != 4 or not st[2].is_("word", "netmask"):
            _note(self.server, st, "expected 'subnet ADDRESS netmask MASK'")
            return
        try:
            network, prefix = ip_to_int(st[1].value), _prefix_of(ip_to_int(st[3].value))
        except ValueError as e:
            _note(self.server, st, str(e))
            return
        name = f"net-{st[1].value}-{prefix}"
        scope = _Scope(_Section(f"scope {name}"), network, prefix)
        scope.section.set("subnet", f"{st[1].value}/{prefix}")
        self.scopes.append(scope)
        self._subnet_body(scope, _items(body))
        if scope.ranges:
            scope.section.keys.insert(1, ("ranges", ", ".join(scope.ranges)))
        if scope.policy is not None:
            scope.section.set("policy", scope.policy.header.split(" ", 1)[1])

    def _subnet_body(self, scope: _Scope, items: list[tuple[list[Token], list[Token] | None]]) -> None:
        sec = scope.section
        for st, body in items:
            if not st:
                continue
            key = st[0].value.lower()
            if body is not None:
                if key == "pool":
                    self._subnet_body(scope, _items(body))
                elif key == "host":
                    self.host(st, body)
                elif key == "group":
                    self._subnet_body(scope, _items(body))
                else:
                    _note(sec, st, "no cnrd equivalent was made for this block")
            elif key == "range":
                words = [t.value for t in st[1:]]
                if words and words[0].lower() == "dynamic-bootp":
                    sec.set("bootp", "true")
                    sec.set("dynamic-bootp", "true")
                    words = words[1:]
                if len(words) not in (1, 2):
                    _note(sec, st, "expected 'range FIRST [LAST]'")
                    continue
                scope.ranges.append("-".join(words) if len(words) == 2 else words[0])
            elif key == "option":
                self._option(sec, st, scope)
            elif key == "failover" and len(st) == 3 and st[1].is_("word", "peer"):
                scope.peer = st[2].value
            elif key in ("default-lease-time", "filename", "next-server", "server-name", "max-lease-time",
                         "min-lease-time"):
                if scope.policy is None:
                    scope.policy = _Section(f"policy {sec.header.split(' ', 1)[1]}")
                    # A subnet's policy starts from the global one, as dhcpd's scoping does.
                    scope.policy.keys = [(k, v) for k, v in self.default.keys if not k.startswith("option.")]
                self._lease_param(scope.policy, st)
            elif key in ("allow", "deny", "ignore") and len(st) >= 2 and st[1].value.lower() in ("bootp",):
                if key == "allow":
                    sec.set("bootp", "true")
                else:
                    sec.set("bootp", "false")
            elif key == "authoritative":
                self.server.set("authoritative", "true")
                sec.notes.append(f"# line {st[0].line}: authoritative in a subnet: made server-wide")
            else:
                _note(sec, st, "no cnrd equivalent")

    def host(self, st: list[Token], body: list[Token]) -> None:
        name = st[1].value if len(st) > 1 else "?"
        res = _Section("")
        address: str | None = None
        for hs, inner in _items(body):
            if not hs:
                continue
            key = hs[0].value.lower()
            if inner is not None:
                _note(res, hs, "no cnrd equivalent")
            elif key == "hardware" and len(hs) == 3:
                if hs[1].value.lower() != "ethernet":
                    _note(res, hs, "cnrd reserves by Ethernet hardware address or client-id")
                else:
                    res.set("hardware-address", hs[2].value)
            elif key == "fixed-address":
                addrs = [t.value for t in hs[1:] if t.kind != ","]
                try:
                    ip_to_int(addrs[0])
                except (ValueError, IndexError):
                    _note(res, hs, "cnrd needs an address here, not a name")
                    continue
                address = addrs[0]
                if len(addrs) > 1:
                    _note(res, hs, f"one address per reservation: {address} kept")
            elif key == "uid" and len(hs) == 2:
                raw = hs[1].value.encode("latin-1") if hs[1].kind == "string" else parse_hex_bytes(hs[1].value)
                res.set("client-id", raw.hex(":"))
            elif key == "option" and len(hs) >= 3 and hs[1].value.lower() == "dhcp-client-identifier":
                raw = hs[2].value.encode("latin-1") if hs[2].kind == "string" else parse_hex_bytes(hs[2].value)
                res.set("client-id", raw.hex(":"))
            elif key == "option" and len(hs) == 3 and hs[1].value.lower() == "host-name":
                res.set("host-name", hs[2].value)
            elif key == "option":
                self._option(res, hs)
            else:
                _note(res, hs, "no cnrd equivalent")
        if res.has("client-id") and res.has("hardware-address"):
            # cnrd reserves by one of the two; a client that sends option 61 is known by it.
            res.keys = [(k, v) for k, v in res.keys if k != "hardware-address"]
            res.notes.append(f"# host {name}: reserved by its client-id; its hardware address was dropped")
        if address is None or not (res.has("hardware-address") or res.has("client-id")):
            self.server.notes.append(f"# not converted (line {st[0].line}): host {name}: cnrd reservations need "
                                     "a fixed-address and a hardware ethernet or client identifier")
            self.server.notes += res.notes
            return
        res.header = f"reservation {address}"
        res.notes.insert(0, f"# host {name}")
        self.reservations.append(res)

    def failover(self, st: list[Token], body: list[Token]) -> None:
        name = st[2].value
        if len(st) > 3 and st[3].is_("word", "state"):
            return
        sec = _Section(f"failover-pair {name}")
        role: str | None = None
        me = peer = None
        ports: dict[str, str] = {}
        for fs, inner in _items(body):
            if not fs:
                continue
            words = [t.value.lower() for t in fs]
            if inner is not None:
                _note(sec, fs, "no cnrd equivalent")
            elif words in (["primary"], ["secondary"]):
                role = words[0]
            elif words[0] == "address" and len(fs) == 2:
                me = fs[1].value
            elif words[:2] == ["peer", "address"] and len(fs) == 3:
                peer = fs[2].value
            elif words[0] == "port" and len(fs) == 2:
                ports["me"] = fs[1].value
            elif words[:2] == ["peer", "port"] and len(fs) == 3:
                ports["peer"] = fs[2].value
            elif words[0] == "mclt" and len(fs) == 2:
                sec.set("mclt", fs[1].value)
            elif words[0] == "split" and len(fs) == 2:
                split = int(fs[1].value) if fs[1].value.isdigit() else -1
                if split in (0, 256):
                    sec.set("load-balancing", "false")
                    sec.notes.append(f"# line {fs[0].line}: split {split}: one server answers every client, "
                                     "so no load balancing")
                elif 0 < split < 256:
                    sec.set("load-balancing", "true")
                    sec.set("split", str(split))
                else:
                    _note(sec, fs, "split must be 0..256")
            elif words[0] == "hba" and len(fs) == 2:
                sec.set("load-balancing", "true")
                sec.set("hba", fs[1].value.replace(":", ""))
            elif words[0] == "max-response-delay" and len(fs) == 2 and fs[1].value.isdigit():
                delay = max(2, int(fs[1].value))
                sec.set("failover-poll-timeout", str(delay))
                sec.set("failover-poll-interval", str(max(1, min(10, delay // 3))))
            elif words[0] == "max-unacked-updates" and len(fs) == 2:
                sec.set("max-unacked-updates", fs[1].value)
            elif words[:3] == ["load", "balance", "max"] and len(fs) == 5:
                sec.set("load-balance-max-seconds", fs[4].value)
            else:
                _note(sec, fs, "no cnrd equivalent")
        if role is None or me is None or peer is None:
            self.pair_notes.append(f"# not converted (line {st[0].line}): failover peer {name}: it needs "
                                   "primary/secondary, address and peer address")
            return
        main, backup = (me, peer) if role == "primary" else (peer, me)
        sec.keys[:0] = [("main", main), ("backup", backup)]
        sec.notes.insert(0, f"# dhcpd's {role} ({me}) is this file's {'main' if role == 'primary' else 'backup'}")
        port = ports.get("me") or ports.get("peer")
        if port:
            sec.set("port", port)
        if ports.get("me") and ports.get("peer") and ports["me"] != ports["peer"]:
            sec.notes.append(f"# port {ports['me']} and peer port {ports['peer']} differ: cnrd uses one port "
                             f"for both servers ({port})")
        if not sec.has("mclt") and role == "secondary":
            sec.notes.append("# mclt is set on dhcpd's primary only: copy its value here")
        if not sec.has("load-balancing"):
            sec.set("load-balancing", "false")
        # dhcpd keeps the free addresses balanced between the two servers
        # (max-lease-misbalance): half each is the closest cnrd share.
        sec.set("backup-pct", "50")
        self.pairs[name] = sec

    def render(self) -> str:
        for name, sec in self.pairs.items():
            mine = [s for s in self.scopes if s.peer == name]
            if mine and len(mine) != len(self.scopes):
                sec.set("scopes", ", ".join(s.section.header.split(" ", 1)[1] for s in mine))
        for s in self.scopes:
            if s.peer is not None and s.peer not in self.pairs:
                s.section.notes.append(f"# its pool names failover peer {s.peer}, which was not converted")
        subnets = [(s.network, s.prefix) for s in self.scopes]
        kept = []
        for res in self.reservations:
            addr = ip_to_int(res.header.split(" ", 1)[1])
            if any(addr >> (32 - p) == n >> (32 - p) for n, p in subnets):
                kept.append(res)
            else:
                self.server.notes.append(f"# not converted: [{res.header}] is in no converted subnet")
        out = [f"# Converted from {self.opts.source} by cnrd-import config.  Read every",
               "# 'not converted' comment: those statements need a decision by hand.", "",
               self.server.render(), "", self.default.render()]
        for s in self.scopes:
            if s.policy is not None:
                out += ["", s.policy.render()]
            out += ["", s.section.render()]
        for r in kept:
            out += ["", r.render()]
        for sec in self.pairs.values():
            out += ["", sec.render()]
        if self.pair_notes:
            out += [""] + self.pair_notes
        return "\n".join(out) + "\n"


def convert_dhcpd_conf(text: str, opts: ConvertOptions | None = None) -> str:
    """The INI for a dhcpd.conf text; a ValueError names the line of text it cannot parse."""
    conv = _Converter(opts or ConvertOptions())
    try:
        conv.top(_items(list(tokens(text))), conv.server)
    except SyntaxProblem as e:
        raise ValueError(str(e)) from None
    return conv.render()
