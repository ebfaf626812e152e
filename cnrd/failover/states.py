"""The failover server-state machine (draft-ietf-dhc-failover-12 §9), as a table.

The state is persisted, sent in STATE messages and compared with the spec,
so it is an enum with explicit transition tables rather than a framework
machine: each table below is one row group of the draft's §9.2 figure as
ISC dhcpd 4.4 implements it (where the two differ, ISC wins, since an ISC
server must be able to sit on the other side).

Inputs are the events a failover session sees: communication established or
lost, a partner STATE, an operator's partner-down, the safe period running
out, an UPDDONE, the RECOVER-WAIT timer.  Outputs are the next state; what a
state obliges the server to do (send UPDREQALL, refuse clients ...) is
asked of :func:`service` and the session.

Pure module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cnrd.failover.wire import ServerState as S

__all__ = ["S", "Role", "Service", "Transition", "startup", "on_comm_fail",
           "on_partner_state", "on_partner_down_command", "on_safe_period", "on_upddone",
           "on_recover_wait_done", "service", "LABELS"]


class Role(enum.Enum):
    """Our side of the relationship: CNR's main is the draft's primary."""

    MAIN = "main"
    BACKUP = "backup"


class Service(enum.Enum):
    """Which DHCP clients a server in a given state answers (§9, ISC's column)."""

    NONE = "none"  # RECOVER, RECOVER-WAIT, POTENTIAL-CONFLICT, STARTUP, SHUTDOWN, PAUSED ...
    BALANCED = "balanced"  # NORMAL: the hash-bucket split (or main-only without load balancing)
    OWN_POOL = "own-pool"  # COMMUNICATIONS-INTERRUPTED: everyone, from our own pool only
    ALL = "all"  # PARTNER-DOWN: everyone, the partner's pool after MCLT


#: CNR's spelling of each state, for logs, the API and metrics.
LABELS = {
    S.STARTUP: "STARTUP",
    S.NORMAL: "NORMAL",
    S.COMMUNICATIONS_INTERRUPTED: "COMMUNICATIONS-INTERRUPTED",
    S.PARTNER_DOWN: "PARTNER-DOWN",
    S.POTENTIAL_CONFLICT: "POTENTIAL-CONFLICT",
    S.RECOVER: "RECOVER",
    S.PAUSED: "PAUSED",
    S.SHUTDOWN: "SHUTDOWN",
    S.RECOVER_DONE: "RECOVER-DONE",
    S.RESOLUTION_INTERRUPTED: "RESOLUTION-INTERRUPTED",
    S.CONFLICT_DONE: "CONFLICT-DONE",
    S.RECOVER_WAIT: "RECOVER-WAIT",
}

_SERVICE = {
    S.NORMAL: Service.BALANCED,
    S.COMMUNICATIONS_INTERRUPTED: Service.OWN_POOL,
    S.PARTNER_DOWN: Service.ALL,
}


def service(state: S) -> Service:
    """What a server in ``state`` may do for DHCP clients.

    ISC serves nobody in RECOVER-DONE, RESOLUTION-INTERRUPTED and
    CONFLICT-DONE, although the draft allows some service there; doing the
    same keeps a mixed pair from both answering.
    """
    return _SERVICE.get(state, Service.NONE)


@dataclass(frozen=True)
class Transition:
    """A state change, or ``None`` for staying put."""

    new: S
    reason: str


def startup(stored: S | None) -> tuple[S, S]:
    """The state to run in at start (STARTUP) and the previous state remembered.

    A server with no stored state has never talked to its partner (or lost
    its database): its previous state is RECOVER, so it will ask for
    everything (§9.3.1; ISC does the same).
    """
    if stored is None or stored in (S.STARTUP,):
        return S.STARTUP, S.RECOVER
    return S.STARTUP, stored


def on_comm_fail(state: S) -> Transition | None:
    """Communication with the partner was lost (TCP closed or receive timer ran out)."""
    nxt = {
        S.NORMAL: S.COMMUNICATIONS_INTERRUPTED,
        S.POTENTIAL_CONFLICT: S.RESOLUTION_INTERRUPTED,
    }.get(state)
    return Transition(nxt, "communication lost") if nxt else None


# (our state, partner state) -> our next state, for a partner STATE received
# while connected.  Missing pairs mean: stay.  Derived from §9.2 and ISC.
_ON_PARTNER: dict[S, dict[S, S]] = {
    S.NORMAL: {
        S.COMMUNICATIONS_INTERRUPTED: S.NORMAL,
        S.PAUSED: S.COMMUNICATIONS_INTERRUPTED,
        S.SHUTDOWN: S.PARTNER_DOWN,
        S.RECOVER: S.PARTNER_DOWN,
        S.PARTNER_DOWN: S.POTENTIAL_CONFLICT,
        S.POTENTIAL_CONFLICT: S.POTENTIAL_CONFLICT,
        S.RESOLUTION_INTERRUPTED: S.POTENTIAL_CONFLICT,
        S.CONFLICT_DONE: S.POTENTIAL_CONFLICT,
    },
    S.COMMUNICATIONS_INTERRUPTED: {
        S.NORMAL: S.NORMAL,
        S.COMMUNICATIONS_INTERRUPTED: S.NORMAL,
        S.RECOVER_DONE: S.NORMAL,
        S.RECOVER_WAIT: S.NORMAL,
        S.RECOVER: S.PARTNER_DOWN,  # ISC: a partner that lost its database gets our PARTNER-DOWN
        S.PARTNER_DOWN: S.POTENTIAL_CONFLICT,
        S.POTENTIAL_CONFLICT: S.POTENTIAL_CONFLICT,
        S.CONFLICT_DONE: S.POTENTIAL_CONFLICT,
        S.RESOLUTION_INTERRUPTED: S.POTENTIAL_CONFLICT,
        S.SHUTDOWN: S.PARTNER_DOWN,
    },
    S.PARTNER_DOWN: {
        S.NORMAL: S.POTENTIAL_CONFLICT,
        S.COMMUNICATIONS_INTERRUPTED: S.POTENTIAL_CONFLICT,
        S.PARTNER_DOWN: S.POTENTIAL_CONFLICT,
        S.POTENTIAL_CONFLICT: S.POTENTIAL_CONFLICT,
        S.RESOLUTION_INTERRUPTED: S.POTENTIAL_CONFLICT,
        S.CONFLICT_DONE: S.POTENTIAL_CONFLICT,
        S.RECOVER_DONE: S.NORMAL,
    },
    S.RECOVER: {
        S.POTENTIAL_CONFLICT: S.POTENTIAL_CONFLICT,
        S.RESOLUTION_INTERRUPTED: S.POTENTIAL_CONFLICT,
        S.CONFLICT_DONE: S.POTENTIAL_CONFLICT,
        S.NORMAL: S.POTENTIAL_CONFLICT,
        S.SHUTDOWN: S.PARTNER_DOWN,
    },
    S.RECOVER_DONE: {
        S.NORMAL: S.NORMAL,
        S.RECOVER_DONE: S.NORMAL,
        S.SHUTDOWN: S.PARTNER_DOWN,
    },
    S.POTENTIAL_CONFLICT: {
        S.RECOVER: S.RECOVER,
        S.SHUTDOWN: S.PARTNER_DOWN,
    },
    S.RESOLUTION_INTERRUPTED: {
        s: S.POTENTIAL_CONFLICT for s in S if s not in (S.SHUTDOWN, S.STARTUP)
    }
    | {S.SHUTDOWN: S.PARTNER_DOWN},
    S.CONFLICT_DONE: {
        S.NORMAL: S.NORMAL,
        S.SHUTDOWN: S.SHUTDOWN,
    },
}


def on_partner_state(state: S, partner: S, *, partner_startup: bool = False) -> Transition | None:
    """A STATE message from the partner said it is in ``partner``.

    In PARTNER-DOWN, a STATE flagged STARTUP is ignored: the partner is only
    telling us where it was before it restarted (§9.2, and ISC).
    """
    if state is S.PARTNER_DOWN and partner_startup:
        return None
    nxt = _ON_PARTNER.get(state, {}).get(partner)
    if nxt is None or nxt is state:
        return None
    return Transition(nxt, f"partner is {LABELS.get(partner, partner.name)}")


def on_partner_down_command(state: S, *, in_touch: bool) -> Transition | None:
    """The operator says the partner is down (CNR setPartnerDown).

    Refused while the partner is in touch: the draft allows it from NORMAL,
    but CNR (and common sense) does not take the word of an operator over a
    partner that is answering.
    """
    if in_touch:
        return None
    if state in (S.COMMUNICATIONS_INTERRUPTED, S.RESOLUTION_INTERRUPTED, S.STARTUP):
        return Transition(S.PARTNER_DOWN, "operator set partner down")
    return None


def on_safe_period(state: S) -> Transition | None:
    """The safe period ran out in COMMUNICATIONS-INTERRUPTED (use-safe-period)."""
    if state is S.COMMUNICATIONS_INTERRUPTED:
        return Transition(S.PARTNER_DOWN, "safe period expired")
    return None


def on_upddone(state: S, role: Role, *, wait_needed: bool, partner: S | None) -> Transition | None:
    """Our UPDREQ/UPDREQALL has been answered completely (UPDDONE received).

    RECOVER goes to RECOVER-WAIT while MCLT has not passed since the time we
    could last have been wrong (``wait_needed``), else straight to
    RECOVER-DONE.  In POTENTIAL-CONFLICT the main goes CONFLICT-DONE, the
    backup NORMAL (§9.8).
    """
    if state is S.RECOVER:
        if wait_needed and partner not in (S.RECOVER, S.RECOVER_DONE):
            return Transition(S.RECOVER_WAIT, "recover updates received, waiting MCLT")
        return Transition(S.RECOVER_DONE, "recover updates received")
    if state is S.POTENTIAL_CONFLICT:
        if role is Role.MAIN:
            return Transition(S.CONFLICT_DONE, "conflicts resolved (main)")
        if partner is S.CONFLICT_DONE:
            return Transition(S.NORMAL, "conflicts resolved (backup)")
    return None


def on_recover_wait_done(state: S) -> Transition | None:
    """MCLT has passed in RECOVER-WAIT."""
    if state is S.RECOVER_WAIT:
        return Transition(S.RECOVER_DONE, "MCLT passed")
    return None
