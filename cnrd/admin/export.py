"""Lease export (Kea memfile CSV, JSON) and the backup download, streamed to the API's client.

Neither builds its answer in memory.  An export walks the lease table a
chunk of :data:`CHUNK` leases per call of twisted.web's producer, which
asks for the next chunk only when the client's connection has room
(:class:`ChunkStreamer` is a pull producer): a million leases never make
one string, and DHCP requests are served between chunks.  Each row is one
lease as it is at the moment its chunk is written; a point-in-time copy of
the whole store is the backup's job.

The backup download (:func:`send_backup`) first commits what the lease
table holds (so every lease ACKed before the request is durable), then
copies the store on a worker thread (:func:`cnrd.leases.backup.copy_store`)
into an unnamed temporary file in the data directory, hashes it on a worker
thread, and sends the file in small reads from the reactor.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

from twisted.internet import defer, threads
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from cnrd.admin.values import AdminError, lease_json, query_args
from cnrd.leases.backup import copy_store
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.store import StoreError
from cnrd.text import hw_text, ip_text

__all__ = ["CHUNK", "KEA_LEASE4_COLUMNS", "ChunkStreamer", "export_args", "export_chunks", "kea_row", "scope_ids",
           "send_backup"]

#: Kea's memfile lease4 CSV header (src/lib/dhcpsrv/csv_lease_file4.cc,
#: schema 2.0 as kea-dhcp4 2.2 writes it; later Kea versions append pool_id
#: and still read files without it).
KEA_LEASE4_COLUMNS = ("address", "hwaddr", "client_id", "valid_lifetime", "expire", "subnet_id",
                      "fqdn_fwd", "fqdn_rev", "hostname", "state", "user_context")
CHUNK = 200  # leases per producer call: about 2 ms of formatting (1,000 took up to 114 ms with a collection)
FORMATS = ("csv", "json")
_KEA_DEFAULT, _KEA_DECLINED, _KEA_RECLAIMED = 0, 1, 2
_INFINITE = 0xFFFFFFFF


def _kea_escape(text: str) -> str:
    # Kea's CSV has no quoting: it writes a comma inside a field as "&#x2c"
    # and reads back any "&#xHH".  Quotes and line ends get the same, so
    # Python's csv module and Kea both read each row as written.
    for ch in ",\"\r\n":
        text = text.replace(ch, f"&#x{ord(ch):02x}")
    return text


def _kea_state(state: LeaseState) -> int:
    if state in (LeaseState.LEASED, LeaseState.OFFERED, LeaseState.RESERVED):
        return _KEA_DEFAULT
    if state is LeaseState.UNAVAILABLE:
        return _KEA_DECLINED
    return _KEA_RECLAIMED  # no client holds it: free, expired or released


def kea_row(lease: Lease, subnet_id: int) -> list[str]:
    """One lease as a Kea lease4 CSV row (column order :data:`KEA_LEASE4_COLUMNS`).

    Kea stores a lease's last transaction time as ``expire - valid_lifetime``;
    cnrd's cltt (else the lease's start) is that time.  A lease without an
    end (BOOTP) gets Kea's infinite lifetime.  cnrd's own state and scope,
    which Kea's three states cannot say, go in the user context.
    """
    since = lease.cltt or lease.start
    if lease.expiration in (-1, _INFINITE):
        lifetime, expire = _INFINITE, since + _INFINITE
    else:
        lifetime, expire = max(0, lease.expiration - since), max(0, lease.expiration)
    context = json.dumps({"cnrd": {"state": lease.state.label, "scope": lease.scope}}, separators=(",", ":"))
    return [
        ip_text(lease.address) or "",
        hw_text(lease.hw[1:]) if len(lease.hw) > 1 else "",
        hw_text(lease.client_id) if lease.client_id else "",
        str(lifetime),
        str(expire),
        str(subnet_id),
        "0",
        "0",
        _kea_escape(lease.host_name),
        str(_kea_state(lease.state)),
        _kea_escape(context),
    ]


def _csv_line(row: list[str]) -> str:
    return ",".join(row) + "\n"


def export_chunks(leases: Mapping[int, Lease], fmt: str, scope_ids: Mapping[str, int],
                  state: LeaseState | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
    """The export of ``leases`` as byte chunks of up to ``chunk`` leases each.

    The address list is taken once (a copy of the keys, not of the leases);
    an address removed before its chunk is skipped.  ``fmt`` is "csv"
    (Kea's header and rows) or "json" (an array of the API's lease objects).
    """
    if fmt not in FORMATS:
        raise AdminError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    addresses = list(leases)
    yield (_csv_line(list(KEA_LEASE4_COLUMNS)) if fmt == "csv" else "[").encode()
    first = True
    for i in range(0, len(addresses), chunk):
        out: list[str] = []
        for address in addresses[i:i + chunk]:
            lease = leases.get(address)
            if lease is None or (state is not None and lease.state is not state):
                continue
            if fmt == "csv":
                out.append(_csv_line(kea_row(lease, scope_ids.get(lease.scope, 0))))
            else:
                out.append(("\n" if first else ",\n") + json.dumps(lease_json(lease, lease.scope or None, False),
                                                                 separators=(",", ":")))
                first = False
        if out:
            yield "".join(out).encode()
    if fmt == "json":
        yield b"\n]\n"


def export_args(query: Mapping[str, list[str]]) -> tuple[str, LeaseState | None]:
    """The export's ``format`` (csv, the default, or json) and ``state`` filter from the query string."""
    args = query_args(query, ("format", "state"))
    fmt = args.get("format", "csv")
    if fmt not in FORMATS:
        raise AdminError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    state = None
    if "state" in args:
        names = [s.label for s in LeaseState]
        if args["state"] not in names:
            raise AdminError(400, f"unknown state {args['state']!r}; one of {', '.join(names)}")
        state = LeaseState[args["state"].upper()]
    return fmt, state


def scope_ids(scopes: Iterable[str]) -> dict[str, int]:
    """Kea's subnet_id for each scope: its place in the configuration, from 1."""
    return {name: i for i, name in enumerate(scopes, 1)}


class ChunkStreamer:
    """A pull producer writing an iterator's chunks to a request, one chunk per call.

    twisted.web asks for the next chunk only when the connection has room
    (its cooperator calls :meth:`resumeProducing` a few at a time, in
    between other reactor work), and stops asking when the client goes
    away; :attr:`finished` fires once the last chunk is written or the
    client left.
    """

    def __init__(self, request: Any, chunks: Iterable[bytes]) -> None:
        self._request = request
        self._chunks = iter(chunks)
        self._done = False
        self.finished: defer.Deferred[None] = defer.Deferred()
        self.chunks = 0

    def start(self) -> defer.Deferred[None]:
        """Register with the request; returns :attr:`finished`."""
        self._request.registerProducer(self, False)
        return self.finished

    def resumeProducing(self) -> None:
        if self._done:
            return
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._done = True
            self._request.unregisterProducer()
            self.finished.callback(None)
            return
        except Exception as e:  # noqa: BLE001 -- ends the answer; the errback logs it as a bug
            self._done = True
            self._request.unregisterProducer()
            self.finished.errback(e)
            return
        self.chunks += 1
        self._request.write(chunk)

    def stopProducing(self) -> None:
        # The client went away: nothing more to write.
        if not self._done:
            self._done = True
            self.finished.callback(None)


def _sha256(f: IO[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    f.seek(0)
    size = 0
    while block := f.read(1 << 20):
        h.update(block)
        size += len(block)
    f.seek(0)
    return h.hexdigest(), size


def send_backup(request: Any, persist: Callable[[], defer.Deferred[bool]], store: object, data_dir: str,
                taken_at: int) -> defer.Deferred[bytes]:
    """Answer ``request`` with a copy of ``store``: headers, then the file; fires with b"" when sent.

    ``persist`` commits what the lease table holds that the store has not
    got yet (the running server's :meth:`~cnrd.admin.view.RunningServer.persist`):
    every lease ACKed before the request is then in the copy.
    """
    try:
        # Closed by the last callback, once sent: it outlives this function.
        f = tempfile.TemporaryFile(dir=data_dir, prefix=".backup-")  # noqa: SIM115
    except OSError as e:
        raise AdminError(507, f"cannot make a temporary file in {data_dir}: {e.strerror or e}") from None

    def copied(_: None) -> defer.Deferred[tuple[str, int]]:
        return threads.deferToThread(_sha256, f)

    def send(digest_size: tuple[str, int]) -> defer.Deferred[bytes]:
        digest, size = digest_size
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", str(size).encode())
        request.setHeader(b"content-disposition", f'attachment; filename="cnrd-leases-{taken_at}.mdb"'.encode())
        request.setHeader(b"x-cnrd-backup-sha256", digest.encode())
        request.setHeader(b"x-cnrd-backup-taken-at", str(taken_at).encode())
        d: defer.Deferred[Any] = FileSender().beginFileTransfer(f, request)
        # A client that leaves mid-transfer stops the sender; nothing to answer then.
        d.addErrback(lambda _: None)
        return d.addCallback(lambda _: b"")

    def closed(result: Any) -> Any:
        f.close()
        if isinstance(result, Failure) and result.check(StoreError):
            raise AdminError(501, f"no backup: {result.getErrorMessage()}")
        return result

    def copy(ok: bool) -> defer.Deferred[None]:
        if not ok:
            raise AdminError(503, "the lease store did not commit (see the server log); no backup taken")
        return threads.deferToThread(copy_store, store, f.fileno(), taken_at)

    d: defer.Deferred[Any] = persist()
    d.addCallback(copy)
    d.addCallback(copied)
    d.addCallback(send)
    d.addBoth(closed)
    return d
