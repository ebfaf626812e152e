"""Lease times under failover: the maximum client lead time (MCLT) rules.

CNR 7.2's "Setting the Maximum Client Lead Time" walk-through, which these
functions follow exactly:

1. A new client asking for a desired lease (three days) is offered and
   acknowledged only the MCLT (one hour).
2. The partner is told, in the binding update, lease-expiration = now + MCLT
   and potential-expiration = now + desired + MCLT.
3. Once the partner has acknowledged that potential expiration, a renewal
   gets the desired time; the partner is told potential-expiration =
   now + desired × 1.5.

Underneath is the protocol's invariant (draft-ietf-dhc-failover-12 §7.1.5,
§9): no lease runs past MCLT beyond the latest time the partner has
acknowledged (our acked potential expiration) or told us (its received
potential expiration), or now, whichever is later.

Pure module.
"""

from __future__ import annotations


def lease_time(desired: int, now: int, mclt: int, partner_time: int) -> int:
    """Seconds to grant a client whose policy wants ``desired``.

    ``partner_time`` is the later of the potential expiration the partner
    acknowledged for this address and the one it sent us (0 when none).
    """
    if desired <= mclt:
        return desired
    limit = max(partner_time, now) + mclt
    return max(min(desired, limit - now), 0)


def potential_expiration(now: int, desired: int, granted: int) -> int:
    """The potential expiration to send the partner for a lease just granted.

    While the client holds less than it wants (the first lease, or a short one
    during COMMUNICATIONS-INTERRUPTED), ask for desired + the granted time, so
    that its renewal at T1 can get the full desired time; once it holds the
    desired time, ask for desired × 1.5 so the partner stays ahead of the
    client's next renewal.
    """
    if granted < desired:
        return now + desired + granted
    return now + desired + desired // 2
