"""A cnrd demo in a network-namespace lab (run through scripts/demo).

Builds a server namespace with a bridge at 10.1.0.1/24 (named like the
``eth1`` of etc/standalone.ini), starts ``twistd -n cnrd`` on that config
(data kept in a temp dir), has ISC dhclient take a lease from a client
namespace, and shows what the server stored.  Everything is torn down on
exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.cnrd_proc import CnrdProcess  # noqa: E402
from tests.integration.lab import Lab, dhclient  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--once", action="store_true", help="stop after the first client is served")
    args = ap.parse_args()
    text = (REPO / "etc" / "standalone.ini").read_text()
    with Lab() as lab:
        srv = lab.netns("srv")
        br = lab.bridge(srv, "br0", addr="10.1.0.1/24")
        cli = lab.netns("cli")
        _, cif = lab.link(srv, cli, a_bridge=br)
        config = text.replace("interfaces = eth1", f"interfaces = {br}").replace(
            "/var/lib/cnrd/standalone", "@DATA@")
        server = CnrdProcess(srv, config, name="demo").start()
        print(f"cnrd is serving etc/standalone.ini on {br} in namespace {srv.name}")
        print(f"  config: {server.config_path}\n  log:    {server.proc.log_path}")
        lease = dhclient(cli, cif)
        print(f"dhclient in namespace {cli.name} on {cif} got {lease.address} from {lease.server}")
        for address, mac in sorted(server.leased().items()):
            print(f"  lease store: {address} leased to {mac}")
        if args.once:
            return 0
        print("\nTry more clients, e.g.:")
        print(f"  ip netns exec {cli.name} busybox udhcpc -f -q -n -i {cif} -s /bin/true")
        print("Ctrl-C stops the server and removes the lab.")
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        try:
            while not stop and server.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print("\nstopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
