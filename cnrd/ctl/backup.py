"""cnrctl backup, restore and leases export (docs/backup.md).

``backup`` and ``leases export`` download what the API streams; ``restore``
is offline: it runs the store's own code (``python -m cnrd.leases.backup``)
in a process of its own, so cnrctl stays a client that imports no server
package.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from typing import Any, TextIO

from cnrd.config import ConfigError, load
from cnrd.ctl.client import DEFAULT_CONFIG, Client
from cnrd.ctl.errors import EXIT_OK, ApiError, UsageError

__all__ = ["RESTORE_GUIDANCE", "add_backup_verbs", "backup_verb", "export_verb", "restore_verb"]


def add_backup_verbs(objects: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``backup``, ``restore`` and ``leases export`` to cnrctl's OBJECT subparsers."""
    v = objects.add_parser("backup", help="copy the running server's lease store into FILE (journal applied)",
                           parents=[common])
    v.add_argument("file", metavar="FILE", help="where the copy goes (an LMDB file)")
    v.add_argument("--force", action="store_true", help="replace FILE if it exists")
    v = objects.add_parser("restore", help="put a backup in place of a STOPPED server's lease store",
                           parents=[common])
    v.add_argument("file", metavar="FILE", help="a copy made by cnrctl backup")
    v.add_argument("--data-dir", metavar="DIR", help="the store's directory (default: [server] data-dir of --config)")
    leases = objects.add_parser("leases", help="leases export --format csv|json (Kea's memfile CSV columns)",
                                parents=[common])
    verbs = leases.add_subparsers(dest="verb", metavar="VERB", parser_class=parser_class)
    verbs.required = True
    v = verbs.add_parser("export", help="every lease record, streamed", parents=[common])
    v.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (Kea lease4 columns, the default) "
                   "or json (the API's lease objects)")
    v.add_argument("--state", help="only leases in this state (leased, expired, ...)")
    v.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")


def _copy_info(path: str) -> dict[str, Any]:
    """What the copy at ``path`` holds, read by the server package's own reader (a separate process)."""
    proc = subprocess.run([sys.executable, "-m", "cnrd.leases.backup", "info", path], capture_output=True,
                          text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise ApiError(proc.stderr.strip() or f"cannot read the copy {path}")
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int) or epoch <= 0:
        return "unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def backup_verb(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    """``cnrctl backup FILE``: the API's copy of the store, written to FILE, then checked."""
    path = args.file
    if os.path.exists(path) and not getattr(args, "force", False):
        raise UsageError(f"{path} exists (use --force to replace it)")
    part = path + ".part"
    try:
        with open(part, "wb") as f:
            size = client.download("/backup", f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(part):
            os.unlink(part)
        raise
    try:
        info = _copy_info(part)
    except ApiError:
        os.unlink(part)
        raise
    os.replace(part, path)
    out.write(f"backup: {info['leases']} lease records ({info['leased']} leased), {size} bytes, "
              f"taken at {_when(info['taken-at'])}, in {path}\n")
    return EXIT_OK


RESTORE_GUIDANCE = """\
If this server is in a failover pair, its partner has leases this copy has not.  Before
starting it, set failover-recover to the time its lease data was lost (not earlier than
{taken}, when this copy was taken; if unsure, the present time is safe: the server then
waits MCLT from it), in the INI file:
    [server]
    failover-recover = <that time, e.g. {taken}>
It then starts in RECOVER, asks its partner for every lease (UPDREQALL), waits out MCLT
and moves to RECOVER-DONE.  Once it is back in NORMAL, unset the attribute:
    cnrctl dhcp unset failover-recover   (and remove the line from the INI file)
"""


def restore_verb(args: argparse.Namespace, out: TextIO) -> int:
    """``cnrctl restore FILE``: offline, by the store's own code in a separate process."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is None:
        config_path = args.config or os.environ.get("CNRCTL_CONFIG") or DEFAULT_CONFIG
        try:
            data_dir = load(config_path).server.data_dir
        except ConfigError as e:
            raise UsageError(f"cannot find the data directory: {e} (or give --data-dir)") from None
    proc = subprocess.run([sys.executable, "-m", "cnrd.leases.backup", "restore", args.file, data_dir],
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise ApiError(f"restore refused: {proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    taken = _when(info["taken-at"])
    out.write(f"restored {info['leases']} lease records ({info['leased']} leased) from {args.file} into {data_dir}; "
              f"the store it replaced is kept as {os.path.join(data_dir, 'data.mdb.before-restore')}\n"
              f"the copy was taken at {taken}\n\n" + RESTORE_GUIDANCE.format(taken=taken))
    return EXIT_OK


def export_verb(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    """``cnrctl leases export``: the API's export as it comes, to standard output or --output."""
    query = {"format": args.format}
    if args.state is not None:
        query["state"] = args.state
    if args.output is not None:
        with open(args.output, "wb") as f:
            client.download("/export/leases", f, query)
        return EXIT_OK
    binary = getattr(out, "buffer", None)
    if binary is not None:
        out.flush()
        client.download("/export/leases", binary, query)
        binary.flush()
    else:
        # A text stream without bytes underneath (tests' StringIO): through memory.
        buf = io.BytesIO()
        client.download("/export/leases", buf, query)
        out.write(buf.getvalue().decode("utf-8"))
    return EXIT_OK
