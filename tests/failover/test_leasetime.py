"""The seed's MCLT walk-through, step by step, and the invariant behind it."""

from hypothesis import given
from hypothesis import strategies as st

from cnrd.failover.leasetime import lease_time, potential_expiration

HOUR, DAY = 3600, 86400
NOW = 1_800_000_000


def test_seed_walkthrough():
    desired, mclt = 3 * DAY, HOUR
    # 1. a new client: nothing acknowledged by the partner yet -> MCLT
    first = lease_time(desired, NOW, mclt, partner_time=0)
    assert first == HOUR
    # 2. the partner is told expiration now+MCLT, potential expiration now+desired+MCLT
    pet = potential_expiration(NOW, desired, first)
    assert pet == NOW + 3 * DAY + HOUR
    # 3. renewal half-way through, after the partner acked that PET -> desired
    renew_at = NOW + HOUR // 2
    second = lease_time(desired, renew_at, mclt, partner_time=pet)
    assert second == 3 * DAY
    assert potential_expiration(renew_at, desired, second) == renew_at + 3 * DAY + 3 * DAY // 2


def test_short_leases_are_never_cut():
    assert lease_time(600, NOW, HOUR, 0) == 600


def test_communications_interrupted_renewals_shrink_towards_mclt():
    desired, mclt = DAY, HOUR
    acked = NOW + DAY + DAY // 2
    # Long after the last acked PET, only MCLT remains.
    assert lease_time(desired, acked + 10, mclt, acked) == mclt
    # Shortly before it, what is left of the PET plus MCLT.
    assert lease_time(desired, acked - 100, mclt, acked) == 100 + mclt


@given(st.integers(1, 10 * DAY), st.integers(30, DAY), st.integers(0, 20 * DAY))
def test_never_past_partner_time_plus_mclt(desired, mclt, offset):
    partner_time = NOW + offset - 5 * DAY
    granted = lease_time(desired, NOW, mclt, max(partner_time, 0))
    assert 0 <= granted <= desired
    if desired > mclt:
        assert NOW + granted <= max(partner_time, NOW) + mclt
    # what we then tell the partner covers the lease we gave
    assert potential_expiration(NOW, desired, granted) >= NOW + granted
