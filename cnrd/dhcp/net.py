"""The DHCP socket adapter: moves datagrams between the kernel and the server.

This module knows nothing about DHCP messages.  It owns one UDP socket (port 67
by default, bound to ``0.0.0.0`` so that it sees limited broadcasts from every
interface as well as unicasts from relay agents to any of our addresses) and,
for replies to clients that have no address yet, one ``AF_PACKET`` socket.

Receiving: every datagram comes with its ``IP_PKTINFO`` (interface index, our
address on that interface, header destination), so the caller can tell which
interface a broadcast arrived on, which address to put in server-identifier and
whether the request was broadcast or unicast.  Deciding which interfaces are
served is the caller's job: it drops :class:`Received` whose ``ifindex`` is not
configured (relayed traffic arrives on whatever interface routes to the relay).

Sending: :meth:`DhcpPort.send` passes an ``IP_PKTINFO`` control message, so a
reply to ``255.255.255.255`` leaves the interface the request came in on with
the right source address, without one socket per interface.

Linux only (``IP_PKTINFO``, ``SO_RXQ_OVFL``, ``AF_PACKET``, netlink).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import time
from typing import Callable, NamedTuple

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "Received",
    "DhcpPort",
    "interface_addresses",
    "interface_index",
    "build_ipv4_udp",
]

log = Logger()

# Linux constants the Python 3.11 socket module does not export.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
ETH_P_IP = 0x0800
SIOCGIFADDR = 0x8915

# struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
_PKTINFO = struct.Struct("=i4s4s")
_U32 = struct.Struct("=I")
_ANC_BUFSIZE = socket.CMSG_SPACE(_PKTINFO.size) + socket.CMSG_SPACE(_U32.size)
# Largest UDP payload over IPv4: never truncate a datagram.
_RECV_BUFSIZE = 65535
_ANY = b"\0\0\0\0"


class Received(NamedTuple):
    """One datagram as it arrived.

    A named tuple rather than a frozen dataclass: as immutable, and built in
    a third of the time (one per datagram).
    """

    data: bytes
    src_ip: str
    src_port: int
    ifindex: int  # interface the datagram came in on (IP_PKTINFO ipi_ifindex)
    local_ip: str  # ipi_spec_dst: our address on that interface (for server-identifier)
    dst_ip: str  # ipi_addr: header destination (tells broadcast from unicast)


@implementer(IReadDescriptor)
class DhcpPort:
    """A UDP port (67 by default) read in batches through the reactor.

    ``on_batch(batch, dropped_overload)`` is called once per :meth:`doRead`
    that read anything.  One ``doRead`` drains at most ``2 * max_batch``
    datagrams: the first ``max_batch`` are delivered, the rest are read and
    discarded (``dropped_overload``), so that under overload the socket buffer
    holds fresh requests rather than ones the clients have given up on, and the
    reactor keeps turning.  Whatever is left stays queued for the next
    ``doRead``.

    Counters: ``kernel_drops`` is the kernel's own drop counter for this socket
    (``SO_RXQ_OVFL``; the kernel reports it with the next datagram it does
    queue, so it lags until one arrives), ``overload_drops`` the total
    discarded here, ``send_errors`` / ``recv_errors`` the failed system calls.

    No-address unicast (:meth:`send_to_hw`) uses an ``AF_PACKET`` /
    ``SOCK_DGRAM`` socket: we build the IPv4 and UDP headers and the kernel adds
    the link-layer header with ``chaddr`` as destination.  Chosen over seeding
    the ARP cache (``SIOCSARP``/``ATF_COM``, dnsmasq's way) because:

    * it has no side effects on shared kernel state: a seeded entry stays in the
      host's neighbour table for an address the client may never take (it may
      pick another server's offer, or the address may be declined), the kernel
      then ARP-probes it, and every other local process routes to that address
      through it;
    * it does not depend on the routing table: the frame leaves ``ifindex``
      even when no route to ``yiaddr`` points there, and there is no window
      between the ioctl and the send in which the kernel can replace the entry;
    * it never involves ARP, so it works when the client never answers ARP.

    The costs, accepted: the frame bypasses netfilter's OUTPUT chain, it needs
    ``CAP_NET_RAW`` (the server already runs privileged to bind port 67), and it
    assumes a link layer whose address is ``chaddr`` (Ethernet, the only case
    where RFC 2131 hardware unicast makes sense).  If the packet socket cannot
    be opened, :meth:`send_to_hw` falls back to an IP and link-layer broadcast
    out of ``ifindex``, which RFC 2131 §4.1 allows when unicast is impossible.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFDSet,
        port: int,
        on_batch: Callable[[list[Received], int], None],
        *,
        bind_ip: str = "0.0.0.0",
        max_batch: int = 500,
        rcvbuf: int = 4 << 20,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.reactor = reactor
        self.port = port
        self.on_batch = on_batch
        self.bind_ip = bind_ip
        self.max_batch = max_batch
        self.rcvbuf = rcvbuf
        self.kernel_drops = 0
        self.overload_drops = 0
        self.send_errors = 0
        self.recv_errors = 0
        self._sock: socket.socket | None = None
        self._packet: socket.socket | None = None
        self._reading = False
        self._last_error_log: dict[tuple[str, int], float] = {}
        # Our addresses and the destinations datagrams reach us at, as text:
        # the same few in every datagram, and inet_ntoa formats with printf.
        self._ntoa_cache: dict[bytes, str] = {}
        self._suppressed: dict[tuple[str, int], int] = {}

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Open and bind the socket and start reading from the reactor."""
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            try:  # beyond net.core.rmem_max when we have CAP_NET_ADMIN
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.setblocking(False)
            sock.bind((self.bind_ip, self.port))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        try:
            packet = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            packet.setblocking(False)
            self._packet = packet
        except OSError as e:
            self.log.warn(
                "cannot open an AF_PACKET socket ({error}); replies to clients "
                "without an address will be broadcast instead",
                error=e,
            )
        self.reactor.addReader(self)
        self._reading = True
        self.log.info(
            "listening on {bind_ip}:{port} (receive buffer {rcvbuf} bytes)",
            bind_ip=self.bind_ip,
            port=self.getPort(),
            rcvbuf=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        )

    def stop(self) -> None:
        """Stop reading and close the sockets.  Safe to call more than once."""
        if self._reading:
            self._reading = False
            self.reactor.removeReader(self)
        self._close()

    def _close(self) -> None:
        for sock in (self._sock, self._packet):
            if sock is not None:
                sock.close()
        self._sock = self._packet = None

    def getPort(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._sock is None:
            return self.port
        port: int = self._sock.getsockname()[1]
        return port

    # -- IReadDescriptor ---------------------------------------------------

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def logPrefix(self) -> str:
        return "DhcpPort"

    def connectionLost(self, reason: Failure) -> None:
        # The reactor has already forgotten us (error in doRead, or shutdown).
        self._reading = False
        self._close()

    def doRead(self) -> None:
        sock = self._sock
        if sock is None:
            return
        max_batch = self.max_batch
        limit = 2 * max_batch
        batch: list[Received] = []
        overload = 0
        count = 0
        kernel = None
        recvmsg = sock.recvmsg
        ntoa = self._ntoa_cache
        while count < limit:
            full = len(batch) >= max_batch
            try:
                # Datagrams beyond the batch are only counted: read 1 byte.
                data, ancdata, _flags, src = recvmsg(1 if full else _RECV_BUFSIZE, _ANC_BUFSIZE)
            except BlockingIOError:
                break
            except OSError as e:
                self.recv_errors += 1
                self._log_error("recv", e)
                break
            count += 1
            ifindex = 0
            spec_dst = dst = _ANY
            for level, kind, cdata in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(cdata) >= _PKTINFO.size:
                    ifindex, spec_dst, dst = _PKTINFO.unpack_from(cdata)
                elif level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(cdata) >= _U32.size:
                    kernel = _U32.unpack_from(cdata)[0]
            if full:
                overload += 1
            else:
                batch.append(
                    Received(
                        data,
                        src[0],
                        src[1],
                        ifindex,
                        ntoa.get(spec_dst) or self._ntoa(spec_dst),
                        ntoa.get(dst) or self._ntoa(dst),
                    )
                )
        if kernel is not None and kernel != self.kernel_drops:
            self.log.warn(
                "kernel dropped {new} datagrams on port {port} (socket buffer full), {total} in all",
                new=(kernel - self.kernel_drops) & 0xFFFFFFFF,
                total=kernel,
                port=self.port,
            )
            self.kernel_drops = kernel
        if overload:
            self.overload_drops += overload
        if not batch and not overload:
            return
        try:
            self.on_batch(batch, overload)
        except Exception:
            # Never let a handler bug make the reactor drop this descriptor.
            self.log.failure("on_batch raised; batch of {n} datagrams lost", n=len(batch))

    def _ntoa(self, raw: bytes) -> str:
        """``raw`` (4 bytes) as dotted text, remembered (bounded: a header
        destination is the sender's to pick)."""
        cache = self._ntoa_cache
        if len(cache) >= 256:
            cache.clear()
        text = cache[raw] = socket.inet_ntoa(raw)
        return text

    # -- sending -------------------------------------------------------------

    def send(
        self,
        data: bytes,
        dst_ip: str,
        dst_port: int,
        *,
        ifindex: int | None = None,
        src_ip: str | None = None,
    ) -> None:
        """Send one datagram; errors are counted and logged, never raised.

        ``ifindex`` forces the outgoing interface and ``src_ip`` the source
        address (``IP_PKTINFO``): needed for ``255.255.255.255``, which has no
        route of its own.  For a unicast to a relay leave ``ifindex`` None and
        let the routing table choose.
        """
        sock = self._sock
        if sock is None:
            self._count_send_error("send", OSError(errno.EBADF, "port not started"), dst_ip)
            return
        try:
            if ifindex or src_ip:
                pktinfo = _PKTINFO.pack(
                    ifindex or 0, socket.inet_aton(src_ip) if src_ip else _ANY, _ANY
                )
                sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, (dst_ip, dst_port))
            else:
                sock.sendto(data, (dst_ip, dst_port))
        except OSError as e:
            self._count_send_error("send", e, dst_ip, ifindex=ifindex)

    def send_to_hw(
        self,
        data: bytes,
        yiaddr: str,
        chaddr: bytes,
        ifindex: int,
        dst_port: int,
        src_ip: str | None = None,
    ) -> None:
        """Unicast to ``yiaddr`` at link-layer address ``chaddr`` on ``ifindex``.

        For a client that has no address yet (RFC 2131 §4.1); no ARP is involved.
        ``chaddr`` must be the hardware address itself (``hlen`` bytes, not the
        16-byte field).  ``src_ip`` defaults to the interface's primary address.
        Errors are counted and logged, never raised.
        """
        packet = self._packet
        if packet is None or self._sock is None:
            if self._sock is not None:
                self.send(data, "255.255.255.255", dst_port, ifindex=ifindex, src_ip=src_ip)
            else:
                self._count_send_error("send_to_hw", OSError(errno.EBADF, "port not started"), yiaddr)
            return
        try:
            if not 1 <= len(chaddr) <= 8:
                raise OSError(errno.EINVAL, f"hardware address of {len(chaddr)} bytes")
            ifname = socket.if_indextoname(ifindex)
            if src_ip is None:
                src_ip = _primary_address(self._sock, ifname)
            frame = build_ipv4_udp(src_ip, self.getPort(), yiaddr, dst_port, data)
            packet.sendto(frame, (ifname, ETH_P_IP, 0, 0, bytes(chaddr)))
        except OSError as e:
            self._count_send_error("send_to_hw", e, yiaddr, ifindex=ifindex, chaddr=bytes(chaddr).hex(":"))

    # -- error logging (rate limited: at most one line a second per errno) ---

    def _count_send_error(self, op: str, error: OSError, dst: str, **fields: object) -> None:
        self.send_errors += 1
        self._log_error(op, error, dst=dst, **fields)

    def _log_error(self, op: str, error: OSError, **fields: object) -> None:
        key = (op, error.errno or 0)
        now = time.monotonic()
        if now - self._last_error_log.get(key, -1e9) < 1.0:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last_error_log[key] = now
        suppressed = self._suppressed.pop(key, 0)
        self.log.warn(
            "{op} failed: {error} ({suppressed} similar errors not logged)",
            op=op,
            error=error,
            errno=error.errno,
            suppressed=suppressed,
            send_errors=self.send_errors,
            recv_errors=self.recv_errors,
            **fields,
        )


# -- packet building ---------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_ipv4_udp(src_ip: str, src_port: int, dst_ip: str, dst_port: int, payload: bytes) -> bytes:
    """An IPv4 header (DF, TTL 64, ID 0) + UDP header with checksums + payload."""
    src = socket.inet_aton(src_ip)
    dst = socket.inet_aton(dst_ip)
    udp_len = 8 + len(payload)
    if udp_len + 20 > 0xFFFF:
        raise OSError(errno.EMSGSIZE, "datagram too large")
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp_header = struct.pack("!HHHH", src_port, dst_port, udp_len, 0)
    udp_sum = _checksum(pseudo + udp_header + payload) or 0xFFFF
    udp_header = struct.pack("!HHHH", src_port, dst_port, udp_len, udp_sum)
    ip_header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, socket.IPPROTO_UDP, 0, src, dst
    )
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    return ip_header + udp_header + payload


def _primary_address(sock: socket.socket, ifname: str) -> str:
    """The interface's primary IPv4 address (SIOCGIFADDR)."""
    ifreq = struct.pack("16s16s", ifname.encode(), b"")
    result = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, ifreq)
    return socket.inet_ntoa(result[20:24])


# -- interfaces ----------------------------------------------------------------

_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLM_F_DUMP_INTR = 0x10
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3


def _align4(n: int) -> int:
    return (n + 3) & ~3


def interface_addresses() -> dict[str, list[tuple[str, int]]]:
    """Interface name -> [(IPv4 address, prefix length)], from a netlink dump.

    Uses ``RTM_GETADDR`` over ``NETLINK_ROUTE``; handles multipart replies and
    restarts the dump (a few times) if the kernel flags it as interrupted by a
    concurrent change.  Interfaces without an IPv4 address are absent.
    """
    for _attempt in range(5):
        result, interrupted = _dump_addresses()
        if not interrupted:
            return result
    return result


def _dump_addresses() -> tuple[dict[str, list[tuple[str, int]]], bool]:
    result: dict[str, list[tuple[str, int]]] = {}
    interrupted = False
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.settimeout(5.0)
        nl.bind((0, 0))
        pid = nl.getsockname()[0]
        seq = int.from_bytes(os.urandom(4), "little") or 1
        body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        request = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _RTM_GETADDR,
                                  _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + body
        nl.sendto(request, (0, 0))
        while True:
            chunk, _anc, flags, _addr = nl.recvmsg(1 << 16)
            if flags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "netlink reply truncated")
            offset = 0
            while offset + _NLMSG_HDR.size <= len(chunk):
                length, kind, mflags, mseq, mpid = _NLMSG_HDR.unpack_from(chunk, offset)
                if length < _NLMSG_HDR.size or offset + length > len(chunk):
                    raise OSError(errno.EPROTO, "malformed netlink message")
                payload = chunk[offset + _NLMSG_HDR.size: offset + length]
                offset += _align4(length)
                if mseq != seq or (mpid and mpid != pid):
                    continue  # not an answer to our request
                if mflags & _NLM_F_DUMP_INTR:
                    interrupted = True
                if kind == _NLMSG_DONE:
                    return result, interrupted
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code == 0:
                        continue
                    raise OSError(-code, f"netlink RTM_GETADDR: {os.strerror(-code)}")
                if kind != _RTM_NEWADDR or len(payload) < _IFADDRMSG.size:
                    continue
                family, prefixlen, _f, _scope, index = _IFADDRMSG.unpack_from(payload)
                if family != socket.AF_INET:
                    continue
                attrs: dict[int, bytes] = {}
                pos = _IFADDRMSG.size
                while pos + _RTATTR.size <= len(payload):
                    alen, atype = _RTATTR.unpack_from(payload, pos)
                    if alen < _RTATTR.size or pos + alen > len(payload):
                        break
                    attrs[atype & 0x3FFF] = payload[pos + _RTATTR.size: pos + alen]
                    pos += _align4(alen)
                # IFA_LOCAL is our address; IFA_ADDRESS is the peer on point-to-point links.
                raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
                if raw is None or len(raw) != 4:
                    continue
                try:
                    name = socket.if_indextoname(index)
                except OSError:  # vanished meanwhile
                    label = attrs.get(_IFA_LABEL)
                    if label is None:
                        continue
                    name = label.split(b"\0", 1)[0].decode(errors="replace")
                result.setdefault(name, []).append((socket.inet_ntoa(raw), prefixlen))


def interface_index(name: str) -> int:
    """The kernel index of interface ``name``; ValueError if there is none."""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError) as e:
        raise ValueError(f"unknown network interface {name!r}") from e
