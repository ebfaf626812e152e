"""What failover lets the DHCP core do for the scopes of one relationship.

:class:`Gate` answers the DHCP server (it satisfies the ``Gate`` protocol
of :mod:`cnrd.dhcp.server`): whether to answer a request and from whose
free addresses, and how long a lease may run under the MCLT rules.  It
reads the session through :class:`GateView` and changes nothing.

Pure module.
"""

from __future__ import annotations

import functools
from typing import Protocol

from cnrd.config import FailoverPairConfig
from cnrd.failover import wire
from cnrd.failover.leasetime import lease_time, potential_expiration
from cnrd.failover.states import LABELS, S, Role, Service, service
from cnrd.leases.model import Lease

#: The main's hash-bucket maps (a set bit is a bucket the main serves):
#: every bucket, and the even split of load balancing.
ALL_MAIN = wire.hba_from_split(256)
SPLIT_EVEN = wire.hba_from_split(128)


#: Kinds of request the gate tells apart (see :meth:`Gate.admit`).
HASHED = frozenset({"new", "rebind", "dynamic-bootp"})


@functools.lru_cache(maxsize=32)  # asked for on every request: build each map once
def main_hba(pair: FailoverPairConfig) -> bytes:
    """The bucket map a main sends in its CONNECT: every bucket without load
    balancing; with it, ``hba`` when set, else buckets 0..split-1 (ISC's meaning)."""
    if not pair.load_balancing:
        return ALL_MAIN
    return pair.hba if pair.hba is not None else wire.hba_from_split(pair.split)


class GateView(Protocol):
    """The session's values a gate reads."""

    @property
    def state(self) -> S: ...

    @property
    def role(self) -> Role: ...

    @property
    def stos(self) -> int: ...

    @property
    def mclt(self) -> int: ...

    @property
    def hba(self) -> bytes: ...

    @property
    def max_secs(self) -> int: ...


class Gate:
    """The DHCP server's gate for the scopes of one failover relationship."""

    def __init__(self, view: GateView) -> None:
        self._view = view

    def admit(self, kind: str, lb_key: bytes, secs: int, now: int) -> tuple[bool, str | None, str]:
        """May a request be answered, and from whose free addresses ("main", "backup", "any").

        ``kind``: "new" for a client looking for an address (DISCOVER,
        INFORM), "dynamic-bootp" for one looking in a dynamic-BOOTP scope,
        "rebind" for a broadcast REQUEST of a client that holds an address
        (INIT-REBOOT, REBINDING), "renew" for one talking to this server by
        name (SELECTING with our server-id, unicast RENEWING).  While load
        balancing, the first three are answered only for our hash buckets
        (RFC 3074) unless the client's ``secs`` is above the pair's
        load-balance-max-seconds; "renew" always is.  The third value is
        the drop reason.  A dynamic-BOOTP scope never gets "any": the
        partner may have given its free addresses to BOOTP clients for
        ever, so even PARTNER-DOWN leaves them alone (CNR 7.2, "BOOTP Backup
        Percentage" and "Dynamic BOOTP").
        """
        view = self._view
        state, role = view.state, view.role
        svc = service(state)
        own = "main" if role is Role.MAIN else "backup"
        if svc is Service.NONE:
            return False, None, f"failover-{LABELS.get(state, state.name).lower()}"
        if svc is Service.BALANCED:
            hba = view.hba
            if hba == ALL_MAIN:
                if role is Role.BACKUP:
                    # CNR, "Confirming Failover" step 6: the backup drops requests in NORMAL.
                    return False, None, "failover-normal-backup"
                return True, own, ""
            if kind in HASHED and not (view.max_secs and secs > view.max_secs):
                main_serves = wire.hba_has_bucket(hba, wire.load_balance_hash(lb_key))
                if main_serves != (role is Role.MAIN):
                    return False, None, "failover-load-balanced-to-partner"
            return True, own, ""
        if svc is Service.OWN_POOL:
            return True, own, ""
        # PARTNER-DOWN: everyone is served, but the partner may have handed
        # out its own free addresses until it went down; they are ours only
        # MCLT after the partner-down time (draft §5.3).
        if now < view.stos + view.mclt or kind == "dynamic-bootp":
            return True, own, ""
        return True, "any", ""

    def lease_time(self, lease: Lease | None, desired: int, now: int) -> int:
        """Seconds to grant a client the policy would give ``desired`` (the MCLT rules)."""
        partner_time = lease.partner_time if lease is not None else 0
        return lease_time(desired, now, self._view.mclt, partner_time)

    def potential_expiration(self, desired: int, granted: int, now: int) -> int:
        """The potential expiration to tell the partner for a lease just granted."""
        return potential_expiration(now, desired, granted)
