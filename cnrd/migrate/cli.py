"""``cnrd-import``: ISC dhcpd and Kea leases into a stopped cnrd, and dhcpd.conf into a cnrd INI.

An offline program, like ``cnrd-check``: it writes the lease store itself,
so it is not a ``cnrctl`` verb (cnrctl only talks to a running server's
API).  ``cnrd-import leases`` refuses to run while any process has the
store open: LMDB holds a POSIX lock on ``data-dir/lock.mdb`` for as long as
a process has the environment open (the server, its journal applier, a
reader), and the kernel drops it when that process dies, so a crash leaves
no stale lock behind and a PID file the operator may not have is not
needed.  The check asks the kernel (``F_GETLK``) without taking the lock.

An adapter: files, the clock (what has expired by now), the lease store.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import struct
import sys
import time
from collections.abc import Sequence

from cnrd import __version__
from cnrd.config import ConfigError, load, loads
from cnrd.leases.journal import open_store
from cnrd.leases.store import StoreError
from cnrd.migrate.dhcpd_conf import ConvertOptions, convert_dhcpd_conf
from cnrd.migrate.isc_leases import read_isc_leases
from cnrd.migrate.kea_csv import read_kea_csv
from cnrd.migrate.plan import plan_import
from cnrd.migrate.records import ForeignLease, Malformed

__all__ = ["main", "store_holder"]

# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (and padding).
_FLOCK = struct.Struct("hhqqi4x")


def store_holder(data_dir: str) -> int | None:
    """The PID of a process that has the LMDB store in ``data_dir`` open, or None.

    Every process with the environment open holds a shared POSIX lock on
    the first byte of ``lock.mdb``; asking whether an exclusive lock would
    conflict names one of them.
    """
    path = os.path.join(data_dir, "lock.mdb")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        # F_GETLK with a write lock over byte 0; an O_RDONLY descriptor may ask.
        res = fcntl.fcntl(fd, fcntl.F_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0))
    finally:
        os.close(fd)
    ltype, _, _, _, pid = _FLOCK.unpack(res)
    return None if ltype == fcntl.F_UNLCK else int(pid)


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _leases(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as e:
        sys.stderr.write(f"cnrd-import: {e}\n")
        return 1
    records: list[ForeignLease | Malformed] = []
    try:
        for path in args.isc or ():
            records += read_isc_leases(_read(path))
        for path in args.kea or ():
            records += read_kea_csv(_read(path))
    except OSError as e:
        sys.stderr.write(f"cnrd-import: {e}\n")
        return 1
    data_dir = config.server.data_dir
    pid = store_holder(data_dir)
    if pid is not None:
        sys.stderr.write(f"cnrd-import: the lease store in {data_dir} is open in process {pid} "
                         "(is cnrd running?); stop the server first\n")
        return 1
    try:
        store = open_store(config.server)
    except StoreError as e:
        sys.stderr.write(f"cnrd-import: {e}\n")
        return 1
    try:
        existing = {lease.address: lease for lease in store.load()}
        leases, events, report = plan_import(records, config, existing, int(time.time()))
        if leases and not args.dry_run:
            store.commit(leases, events)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"dry_run": bool(args.dry_run), **report.as_dict()}, indent=1))
    else:
        print(("dry run: nothing written\n" if args.dry_run else "") + report.text())
    return 0


def _config(args: argparse.Namespace) -> int:
    try:
        text = _read(args.dhcpd_conf)
    except OSError as e:
        sys.stderr.write(f"cnrd-import: {e}\n")
        return 1
    opts = ConvertOptions(name=args.name, data_dir=args.data_dir, interfaces=tuple(args.interfaces or ()),
                          source=args.dhcpd_conf)
    try:
        ini = convert_dhcpd_conf(text, opts)
    except ValueError as e:
        sys.stderr.write(f"cnrd-import: {args.dhcpd_conf}: {e}\n")
        return 1
    out = args.output or "-"
    try:
        loads(ini, out)
    except ConfigError as e:
        # The converter's output must load; if it does not, say so and keep it for a look.
        sys.stderr.write(f"cnrd-import: the converted configuration does not load: {e}\n")
        if out == "-":
            sys.stdout.write(ini)
        return 1
    if out == "-":
        sys.stdout.write(ini)
    else:
        with open(out, "w", encoding="utf-8") as f:
            f.write(ini)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnrd-import", description="ISC dhcpd and Kea leases into a stopped cnrd "
                                "server's store, and a dhcpd.conf into a cnrd INI (see docs/migration.md).")
    p.add_argument("--version", action="version", version=f"cnrd-import (cnrd) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("leases", help="import leases into a stopped server's store")
    lp.add_argument("--config", required=True, help="the cnrd INI of the server to import into")
    lp.add_argument("--isc", action="append", metavar="DHCPD.LEASES", help="an ISC dhcpd lease file")
    lp.add_argument("--kea", action="append", metavar="LEASES4.CSV", help="a Kea lease4 memfile CSV")
    lp.add_argument("--dry-run", action="store_true", help="report what would be imported, write nothing")
    lp.add_argument("--json", action="store_true", help="the report as JSON")
    cp = sub.add_parser("config", help="convert a dhcpd.conf into a cnrd INI (checked by cnrd's loader)")
    cp.add_argument("dhcpd_conf", metavar="DHCPD.CONF")
    cp.add_argument("-o", "--output", help="where to write the INI (default: standard output)")
    cp.add_argument("--name", default="cnrd", help="[server] name (default: cnrd)")
    cp.add_argument("--data-dir", default="/var/lib/cnrd", help="[server] data-dir (default: /var/lib/cnrd)")
    cp.add_argument("--interfaces", nargs="*", help="[server] interfaces")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cnrd-import`` command; returns the exit status (0 done, 1 refused or failed, 2 usage)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command == "leases":
        if not args.isc and not args.kea:
            sys.stderr.write("cnrd-import leases: give --isc FILE and/or --kea FILE\n")
            return 2
        return _leases(args)
    return _config(args)


if __name__ == "__main__":
    sys.exit(main())
