"""Traps: CNR's failover SNMP traps, as log lines, metrics and a webhook.

Cisco Network Registrar's failover chapter (Table 27-4, "Detecting and
Handling Failures") names two SNMP traps for failover:

``other-server-not-responding`` ("SNMP trap: other server not responding")
    the server cannot communicate with its partner: it entered
    COMMUNICATIONS-INTERRUPTED, lost a working link, did not hear the partner
    after start-up, or the partner never completed the handshake;
``failover-configuration-mismatch`` ("SNMP trap: dhcp failover configuration mismatch")
    the partners' configurations disagree: a CONNECT refused (by either side)
    for the relationship name or roles, the MCLT, the hash bucket map, the
    protocol version, TLS or digests; or binding updates refused because the
    address is not in the receiver's relationship (mismatched scopes); or a
    comparison of the two servers' configurations (the partner's admin API
    sync view against ours, :mod:`cnrd.admin.mismatch`) found objects that differ.

:class:`TrapDetector` decides, in plain code, which core events are traps:
each fires once per episode, not once per packet or reconnection attempt.  An
episode ends when the partner is heard again (a completed handshake and
STATE: the peer's ``failover-comm-ok`` event); an episode of differing
configurations (:meth:`TrapDetector.compared`) ends at the first comparison
that finds none, whatever the link does.  Pure module: the adapter
that sends a trap out (a warning line in the log and, when ``[server]
trap-webhook`` is set, a JSON POST) is :mod:`cnrd.ops.webhook`.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cnrd.failover.wire import RejectReason
from cnrd.text import int_to_ip

NOT_RESPONDING = "other-server-not-responding"
CONFIG_MISMATCH = "failover-configuration-mismatch"
#: Every trap cnrd raises.
TRAPS = (NOT_RESPONDING, CONFIG_MISMATCH)

#: CONNECT reject reasons that mean the two configurations disagree (a wrong
#: clock, a duplicate connection or silence are not configuration).
MISMATCH_REASONS = frozenset({
    RejectReason.INVALID_MCLT, RejectReason.INVALID_PARTNER, RejectReason.HBA_CONFLICT,
    RejectReason.VERSION_MISMATCH, RejectReason.TLS_NOT_SUPPORTED, RejectReason.TLS_NOT_CONFIGURED,
    RejectReason.TLS_REQUIRED, RejectReason.DIGEST_NOT_SUPPORTED, RejectReason.DIGEST_NOT_CONFIGURED,
})
#: Binding update reject reasons that mean mismatched scopes.
SCOPE_MISMATCH_REASONS = frozenset({RejectReason.ILLEGAL_IP_ADDRESS})
#: Differing objects a comparison's trap (and its log line) names; the rest are counted.
MAX_NAMED_OBJECTS = 10


@dataclass(frozen=True)
class Trap:
    """One trap: its name, the failover pair, and what explains it."""

    name: str
    pair: str
    fields: dict[str, Any] = field(default_factory=dict)


def reject_name(reason: object) -> str:
    """The draft's name of a reject-reason code (``INVALID_MCLT``), or ``""``."""
    if not isinstance(reason, int):
        return ""
    try:
        return RejectReason(reason).name
    except ValueError:
        return ""


def _reject_fields(fields: Mapping[str, Any], by: str) -> dict[str, Any]:
    reason = fields.get("reason")
    name = reject_name(reason)
    out = {"reason": fields.get("message") or name or "rejected", "reject_reason": reason,
           "reject_reason_name": name, "rejected_by": by}
    if isinstance(fields.get("address"), int):
        out["address"] = int_to_ip(fields["address"])
    return out


def differing_reason(objects: Sequence[str]) -> str:
    """The trap's reason for a comparison that found ``objects`` differing: the first few and a count."""
    named = ", ".join(objects[:MAX_NAMED_OBJECTS])
    more = len(objects) - MAX_NAMED_OBJECTS
    tail = f" and {more} more" if more > 0 else ""
    word = "object" if len(objects) == 1 else "objects"
    return f"the partners' configurations differ in {len(objects)} {word}: {named}{tail}"


def classify(event: str, fields: Mapping[str, Any]) -> Trap | None:
    """The trap a core event (``DhcpServer``/``Peer`` log event) stands for, if any; no episode logic."""
    pair = fields.get("pair")
    if not isinstance(pair, str):
        return None
    if event == "failover-state" and fields.get("to") == "COMMUNICATIONS-INTERRUPTED":
        return Trap(NOT_RESPONDING, pair, {"reason": str(fields.get("reason", "")),
                                           "state": "COMMUNICATIONS-INTERRUPTED"})
    if event == "failover-comm-lost":
        return Trap(NOT_RESPONDING, pair, {"reason": "communication lost"})
    if event == "failover-partner-not-heard":
        return Trap(NOT_RESPONDING, pair, {"reason": f"partner not heard in {fields.get('seconds')} s after start-up"})
    if event == "failover-handshake-timeout":
        return Trap(NOT_RESPONDING, pair, {"reason": "the partner did not complete the handshake"})
    reason = fields.get("reason")
    if event in ("failover-reject", "failover-rejected", "failover-disconnect") and reason in MISMATCH_REASONS:
        return Trap(CONFIG_MISMATCH, pair, _reject_fields(fields, "local" if event == "failover-reject" else "partner"))
    if event in ("failover-bndack-reject", "failover-bndupd-reject") and reason in SCOPE_MISMATCH_REASONS:
        by = "partner" if event == "failover-bndack-reject" else "local"
        return Trap(CONFIG_MISMATCH, pair, _reject_fields(fields, by))
    return None


class TrapDetector:
    """Which core events raise a trap, once per episode per pair; counts them for metrics.

    Pure: feed it every event (:meth:`observe`), in order.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()  # (trap, pair) -> traps raised
        self._silent: set[str] = set()  # pairs in a not-responding episode
        #: pair -> the trap that started its current configuration-mismatch episode.
        self.mismatch: dict[str, Trap] = {}
        #: pair -> the trap that started its current episode of differing
        #: configurations (found by comparing them, not by a refusal).
        self.differing: dict[str, Trap] = {}

    def observe(self, event: str, fields: Mapping[str, Any]) -> Trap | None:
        """The trap to raise for this event, or None (not a trap, or its episode already raised one)."""
        if event == "failover-comm-ok":
            # Handshake done and the partner's STATE heard: both episodes are over.
            pair = fields.get("pair")
            if isinstance(pair, str):
                self._silent.discard(pair)
                self.mismatch.pop(pair, None)
            return None
        trap = classify(event, fields)
        if trap is None:
            return None
        if trap.name == NOT_RESPONDING:
            if trap.pair in self._silent:
                return None
            self._silent.add(trap.pair)
        else:
            if trap.pair in self.mismatch:
                return None
            self.mismatch[trap.pair] = trap
        self.counts[(trap.name, trap.pair)] += 1
        return trap

    def compared(self, pair: str, objects: Sequence[str]) -> Trap | None:
        """The trap for a comparison of the partners' configurations that found ``objects`` differing.

        None when nothing differs (which ends the episode) or when this
        episode already raised its trap.  Separate from the refusals'
        episodes: a refused handshake says nothing about policies or
        clients, and hearing the partner again does not make them equal.
        """
        if not objects:
            self.differing.pop(pair, None)
            return None
        if pair in self.differing:
            return None
        trap = Trap(CONFIG_MISMATCH, pair, {
            "reason": differing_reason(objects), "detected_by": "comparison",
            "objects": list(objects[:MAX_NAMED_OBJECTS]), "object_count": len(objects)})
        self.differing[pair] = trap
        self.counts[(trap.name, pair)] += 1
        return trap

    def not_compared(self, pair: str) -> None:
        """The pair's configurations are no longer compared (an ISC partner, comparison turned off): no episode."""
        self.differing.pop(pair, None)

    def config_mismatch(self, pair: str) -> bool:
        """True from a configuration-mismatch trap until it is over.

        A refusal's episode lasts until the partner is next heard; a
        comparison's until a comparison finds the configurations equal.
        """
        return pair in self.mismatch or pair in self.differing


def iso_utc(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC, whole seconds: ``2026-11-28T07:30:00Z``."""
    return datetime.datetime.fromtimestamp(int(t), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload(trap: Trap, server: str, now: float) -> dict[str, Any]:
    """The webhook's JSON object for ``trap``: event, pair, server, time, then the trap's fields."""
    out: dict[str, Any] = {"event": trap.name, "pair": trap.pair, "server": server, "time": iso_utc(now)}
    for key, value in trap.fields.items():
        out.setdefault(key, value)
    return out


def safe_url(url: str) -> str:
    """``url`` for a log line: scheme, host, port and path, without credentials or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"
