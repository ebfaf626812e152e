"""Bindings between the lease table and the partner: what we send, what we accept.

:func:`status_of` and :func:`bndupd` turn a lease into the BNDUPD that
tells the partner about it.  :func:`decide` settles a BNDUPD received
from the partner against our own record of the address: reject it (with
the draft's reason), or the lease fields to write, whether our own
unacknowledged update for the address is withdrawn, and whether ours goes
back to the partner.

The rules (draft-ietf-dhc-failover-12 §7.1.3 and figure 7.1.3-1, checked
in ISC dhcpd's order):

1. Address and binding status must be present (reject 3).
2. A duelling update (ours for the address is unacknowledged): ours wins
   (reject 16) when both are ACTIVE and our CLTT is newer, or equal and we
   are the main; when neither is ACTIVE and we are the main; or when ours
   is ACTIVE and theirs is neither ACTIVE nor EXPIRED.  When both servers
   ACKed the same client (both ACTIVE, our lease unexpired), the later
   expiration wins instead, whoever is primary: the client may hold either
   lease.  If theirs wins, ours is withdrawn.
3. ACTIVE, EXPIRED and RELEASED need a client (hardware address or
   client identifier; reject 3).
4. An unexpired lease here is not freed by a FREE, BACKUP or EXPIRED
   (time2), nor by a RELEASED older than our CLTT (time1; reject 15), in
   every state: a restarted partner resending a stale queue cannot take a
   lease granted since.
5. An ACTIVE for another client of an address we lease, unexpired: the
   main refuses (reject 2), the backup takes the main's word.
6. An ACTIVE no newer than our own release or expiry is refused (time1,
   reject 15).
7. Otherwise the binding is taken; for the same client, an unexpired
   lease of ours that runs longer keeps its expiration and is sent back so
   the partner holds it too.

The client's relay-agent-information (option 82), host name (12) and
vendor class (60) travel in client-request-options ([D] §12.8, cookie +
DHCP options) of ACTIVE and RELEASED updates, as [D] table 7.1-1 asks, so
that the backup answers DHCPLEASEQUERY for the main's clients while the
main is down (the seed's "DHCPLEASEQUERY and Failover").  A malformed
value is refused (reject 254, unknown error: [D] has no closer code) and
the binding is not taken.  An ACTIVE update without the option (ISC dhcpd
never sends it) keeps what we hold for the same client and leaves a new
client's empty.

Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from cnrd.failover import wire
from cnrd.failover.states import Role
from cnrd.failover.wire import BindingStatus, ClientOptionsError, Message, RejectReason
from cnrd.leases.model import Lease, LeaseFlag, LeaseState, client_key

_STATUS_OF = {
    LeaseState.AVAILABLE: int(BindingStatus.FREE),
    LeaseState.LEASED: int(BindingStatus.ACTIVE),
    LeaseState.EXPIRED: int(BindingStatus.EXPIRED),
    LeaseState.RELEASED: int(BindingStatus.RELEASED),
    LeaseState.UNAVAILABLE: int(BindingStatus.ABANDONED),
    LeaseState.RESET: int(BindingStatus.RESET),
    LeaseState.BACKUP: int(BindingStatus.BACKUP),
}

_WITH_CLIENT = (BindingStatus.ACTIVE, BindingStatus.EXPIRED, BindingStatus.RELEASED)
_FREED = (BindingStatus.EXPIRED, BindingStatus.RELEASED, BindingStatus.RESET, BindingStatus.FREE)
# [D] table 7.1-1: client-request-options SHOULD go with these, SHOULD NOT with the rest.
_WITH_REQUEST_OPTIONS = (BindingStatus.ACTIVE, BindingStatus.RELEASED)

# The DHCP options of the client's request that travel to the partner, and the lease field of each.
RELAY_AGENT_INFO, HOST_NAME, VENDOR_CLASS = 82, 12, 60


_O = wire.Option
_O_ADDRESS, _O_STATUS, _O_REQUEST_OPTIONS = int(_O.ASSIGNED_IP_ADDRESS), int(_O.BINDING_STATUS), \
    int(_O.CLIENT_REQUEST_OPTIONS)
_O_HW, _O_CLIENT_ID, _O_CLTT = int(_O.CLIENT_HARDWARE_ADDRESS), int(_O.CLIENT_IDENTIFIER), \
    int(_O.CLIENT_LAST_TRANSACTION_TIME)
_O_EXPIRATION, _O_PET, _O_START = int(_O.LEASE_EXPIRATION_TIME), int(_O.POTENTIAL_EXPIRATION_TIME), \
    int(_O.START_TIME_OF_STATE)
_u32 = int.from_bytes  # big-endian by default: the wire's byte order

_RESERVED, _BOOTP = int(LeaseFlag.RESERVED), int(LeaseFlag.BOOTP)
_IP_RESERVED, _IP_BOOTP = int(wire.IPFlags.RESERVED), int(wire.IPFlags.BOOTP)


def status_of(lease: Lease | None) -> int:
    """The binding status that tells the partner about ``lease`` (FREE for no record)."""
    if lease is None:
        return int(BindingStatus.FREE)
    return _STATUS_OF.get(lease.state, int(BindingStatus.FREE))


def bndupd(address: int, lease: Lease | None, xid: int, now: int) -> tuple[Message, int, int]:
    """The BNDUPD for ``address`` as ``lease`` records it; with its status and potential expiration."""
    status = status_of(lease)
    if lease is None:
        lease = Lease(address)
    flags = 0
    held = int(lease.flags)  # plain ints: an IntFlag operation builds a member each time
    if held & _RESERVED:
        flags |= _IP_RESERVED
    if held & _BOOTP:
        flags |= _IP_BOOTP
    abandoned = status == BindingStatus.ABANDONED
    expiration = lease.expiration if 0 <= lease.expiration <= 0xFFFFFFFF else 0
    pet = lease.potential_expiration if status == BindingStatus.ACTIVE else 0
    msg = wire.bndupd(
        xid, now, assigned_address=address, binding_status=status,
        client_id=None if abandoned else lease.client_id,
        client_hw=None if abandoned or not lease.hw else lease.hw,
        lease_expiration=expiration, potential_expiration=pet,
        start_time_of_state=lease.start, cltt=lease.cltt or None, ip_flags=flags or None,
        request_options=request_options(lease) if status in _WITH_REQUEST_OPTIONS else None)
    return msg, status, pet


def request_options(lease: Lease) -> bytes | None:
    """The client-request-options value for ``lease``: its option 82, host name and
    vendor class as DHCP options; None when it has none of them."""
    host = lease.host_name.encode("utf-8", "surrogateescape")
    if not (lease.relay_info or host or lease.vendor_class):
        return None
    return wire.encode_client_options(
        ((HOST_NAME, host), (VENDOR_CLASS, lease.vendor_class), (RELAY_AGENT_INFO, lease.relay_info)))


class _Update(NamedTuple):
    """The fields of a received BNDUPD that the rules read, decoded once.

    A named tuple: as immutable as a frozen dataclass, and built in a third
    of the time (one per BNDUPD received).
    """

    status: int
    hw: bytes | None
    client_id: bytes | None
    cltt: int  # 0 when absent
    expiration: int  # 0 when absent
    potential_expiration: int  # 0 when absent
    start: int | None

    @property
    def key(self) -> bytes | None:
        """The client's lease-table key, None when the update names no client."""
        if not self.hw and not self.client_id:
            return None
        return client_key(self.client_id, self.hw or b"")


@dataclass(frozen=True)
class Decision:
    """What to do with a received BNDUPD.

    ``reject`` is the reason and text for the BNDACK, or None to accept and
    write ``fields`` (lease attributes; the caller adds the scope).
    ``withdraw``: our in-flight update for the address lost and is
    forgotten (also when the update is then rejected for another reason).
    ``keep_ours``: queue our binding back to the partner after writing.
    """

    reject: tuple[RejectReason, str] | None = None
    fields: dict[str, object] = field(default_factory=dict)
    withdraw: bool = False
    keep_ours: bool = False


def decide(local: Lease | None, update: Message, ours_in_flight: int | None, role: Role,
           now: int) -> Decision:
    """Settle the partner's BNDUPD ``update`` against ``local`` (see the module's rules).

    ``ours_in_flight`` is the binding status of our own unacknowledged
    update for the address, None when there is none.  The caller has
    checked that the address belongs to the relationship.
    """
    values = update.values()  # one pass over the options; fields read from it
    raw_status = values.get(_O_STATUS)
    if _O_ADDRESS not in values or raw_status is None:
        return Decision(reject=(RejectReason.MISSING_BINDING_INFO, "missing binding information"))
    try:
        request = values.get(_O_REQUEST_OPTIONS)
        options = None if request is None else wire.decode_client_options(request)
    except ClientOptionsError as error:
        return Decision(reject=(RejectReason.UNKNOWN, f"malformed client-request-options: {error}"))
    get = values.get
    cltt, expiration, pet, start = get(_O_CLTT), get(_O_EXPIRATION), get(_O_PET), get(_O_START)
    theirs = _Update(raw_status[0], get(_O_HW), get(_O_CLIENT_ID),
                     _u32(cltt) if cltt else 0, _u32(expiration) if expiration else 0,
                     _u32(pet) if pet else 0, None if start is None else _u32(start))
    decision = _decide(local, theirs, ours_in_flight, role, now)
    if decision.reject is None and decision.fields:
        decision.fields.update(_option_fields(local, theirs, options))
    return decision


def _text(value: bytes) -> str:
    """A host name as the DHCP core reads one: UTF-8 when valid, else Latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _option_fields(local: Lease | None, update: _Update, options: dict[int, bytes] | None) -> dict[str, object]:
    """The lease fields the client's options set: relay_info, host_name, vendor_class."""
    status = update.status
    if status not in _WITH_CLIENT:
        # No client holds the address any more: nothing of one to keep.
        return {"relay_info": b"", "host_name": "", "vendor_class": b""}
    if options is None:
        same_client = local is not None and local.key is not None and local.key == update.key
        if status != BindingStatus.ACTIVE or same_client:
            return {}
        return {"relay_info": b"", "host_name": "", "vendor_class": b""}
    return {
        "relay_info": options.get(RELAY_AGENT_INFO, b""),
        "host_name": _text(options.get(HOST_NAME, b"")),
        "vendor_class": options.get(VENDOR_CLASS, b""),
    }


def _decide(local: Lease | None, update: _Update, ours_in_flight: int | None, role: Role, now: int) -> Decision:
    status = update.status
    longer = _longer_for_same_client(local, update, now)
    withdraw = False
    if ours_in_flight is not None:
        if _ours_better(local, update, ours_in_flight, role, longer):
            return Decision(reject=(RejectReason.LESS_CRITICAL_BINDING_INFO,
                                    "incoming update is less critical than outgoing update"))
        withdraw = True
    reject = _refusal(local, update, role, now)
    if reject is not None:
        return Decision(reject=reject, withdraw=withdraw)
    fields: dict[str, object] = {}
    keep_ours = False
    if status == BindingStatus.ACTIVE:
        fields.update(
            state=LeaseState.LEASED, hw=update.hw or b"", client_id=update.client_id,
            start=update.start or now, expiration=update.expiration,
            cltt=update.cltt or now,
            partner_time=max(update.potential_expiration, local.partner_time if local else 0),
        )
        if longer == "ours" and local is not None:
            keep_ours = True
            fields.update(expiration=local.expiration, cltt=max(local.cltt, update.cltt or now))
    elif status in _FREED:
        # Expired and released bindings are stored free: the sender frees
        # them itself once we acknowledge (ISC does the same).
        fields.update(state=LeaseState.AVAILABLE, expiration=0,
                      cltt=update.cltt or (local.cltt if local else 0))
        if status == BindingStatus.FREE:
            fields.update(hw=b"", client_id=None)
    elif status == BindingStatus.BACKUP:
        fields.update(state=LeaseState.BACKUP, expiration=0, hw=b"", client_id=None)
    elif status == BindingStatus.ABANDONED:
        fields.update(state=LeaseState.UNAVAILABLE, expiration=0, hw=b"", client_id=None)
    else:
        return Decision(reject=(RejectReason.UNKNOWN, f"unknown binding status {status}"), withdraw=withdraw)
    return Decision(fields=fields, withdraw=withdraw, keep_ours=keep_ours)


def _ours_better(local: Lease | None, update: _Update, ours: int, role: Role, longer: str | None) -> bool:
    """Rule 2: whether our in-flight update beats the partner's."""
    theirs = update.status
    both_active = ours == BindingStatus.ACTIVE and theirs == BindingStatus.ACTIVE
    if both_active and longer is not None:
        # Both of us ACKed this client (a partition with both serving): it
        # may hold either lease, so the later expiration wins, whoever is
        # primary and whichever CLTT is newer.
        return longer == "ours"
    if both_active:
        their_cltt = update.cltt
        return local is not None and (local.cltt > their_cltt or (local.cltt == their_cltt and role is Role.MAIN))
    if ours != BindingStatus.ACTIVE and theirs != BindingStatus.ACTIVE:
        return role is Role.MAIN
    return ours == BindingStatus.ACTIVE and theirs != BindingStatus.EXPIRED


def _refusal(local: Lease | None, update: _Update, role: Role, now: int) -> tuple[RejectReason, str] | None:
    """Rules 3 to 6: a reason to refuse the partner's binding, if there is one."""
    status = update.status
    if status in _WITH_CLIENT and not update.hw and not update.client_id:
        return RejectReason.MISSING_BINDING_INFO, "no client hardware address"
    if local is None:
        return None
    unexpired = not local.expired_at(now)
    if local.state is LeaseState.LEASED and status != BindingStatus.ACTIVE and unexpired:
        # ISC lets EXPIRED through 65 s early for clock skew; a lease granted
        # for an MCLT is shorter than that, so no slack here: a skewed
        # partner's EXPIRED is refused, and our own expiry frees the address
        # moments later.
        if status in (BindingStatus.FREE, BindingStatus.BACKUP, BindingStatus.EXPIRED):
            return RejectReason.OUTDATED_BINDING_INFO, "lease has not expired here"
        if status == BindingStatus.RELEASED and update.cltt < local.cltt:
            # CLTT has one-second resolution: a release in the second of the
            # ACK is the client's own, so only an older one is stale.
            return RejectReason.OUTDATED_BINDING_INFO, "lease renewed here after that release"
    if local.state is LeaseState.LEASED and status == BindingStatus.ACTIVE and local.key is not None \
            and local.key != update.key and role is Role.MAIN and unexpired:
        return RejectReason.FATAL_CONFLICT, "address leased to another client here"
    if local.state in (LeaseState.EXPIRED, LeaseState.RELEASED) and status == BindingStatus.ACTIVE \
            and update.cltt <= local.cltt:
        return RejectReason.OUTDATED_BINDING_INFO, "older than our release or expiry"
    return None


def _longer_for_same_client(lease: Lease | None, update: _Update, now: int) -> str | None:
    """For an ACTIVE update of an address we hold LEASED, unexpired, to the same
    client: "ours" or "theirs", whichever lease runs longer; None if the update
    is not ACTIVE, the client differs, ours has run out, or they end together."""
    if update.status != BindingStatus.ACTIVE:
        return None
    if lease is None or lease.state is not LeaseState.LEASED or lease.expired_at(now):
        return None
    if lease.key is None or lease.key != update.key:
        return None
    theirs = update.expiration
    if lease.expiration > theirs:
        return "ours"
    if theirs > lease.expiration:
        return "theirs"
    return None

