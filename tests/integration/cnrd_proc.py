"""Run the real ``twistd -n cnrd`` inside a lab namespace, and read its store."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from cnrd.dhcp.packet import format_hw, int_to_ip
from cnrd.leases.journal import JournaledStore
from cnrd.leases.model import Lease, LeaseState
from tests.integration.lab import Netns, read_log, wait_for

REPO = Path(__file__).resolve().parents[2]
TWISTD = str(Path(sys.executable).with_name("twistd"))


class CnrdProcess:
    """One cnrd server in a namespace: start, kill -9, restart, inspect."""

    def __init__(self, ns: Netns, config_text: str, name: str = "cnrd") -> None:
        self.ns = ns
        self.name = name
        self.data_dir = ns.lab.path(f"{name}-data")
        self.config_path = ns.lab.path(f"{name}.ini")
        self.config_path.write_text(config_text.replace("@DATA@", str(self.data_dir)))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 20) -> "CnrdProcess":
        self.starts += 1
        self.proc = self.ns.popen(
            TWISTD, "-n", "--pidfile=", "cnrd", "--config", self.config_path,
            name=f"{self.name}-{self.starts}", env={"PYTHONPATH": str(REPO)},
        )
        proc = self.proc

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"cnrd exited with {proc.returncode}:\n{read_log(proc)}")
            return "serving DHCP on port" in read_log(proc)

        wait_for(serving, timeout, interval=0.05, what=f"{self.name} to serve DHCP")
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.ns.stop(self.proc, signal.SIGKILL)

    def stop(self) -> int:
        assert self.proc is not None
        return self.ns.stop(self.proc, signal.SIGTERM, timeout=10)

    def log(self) -> str:
        return read_log(self.proc) if self.proc is not None else ""

    def leases(self) -> list[Lease]:
        """The lease records on disk (read by a second process, as LMDB allows)."""
        # LMDB plus what the journal holds that LMDB has not got yet
        store = JournaledStore(str(self.data_dir), readonly=True)
        try:
            return list(store.load())
        finally:
            store.close()

    def leased(self) -> dict[str, str]:
        """address -> client MAC for every lease in state leased, from the store."""
        return {
            int_to_ip(l.address): format_hw(l.hw[1:])
            for l in self.leases()
            if l.state is LeaseState.LEASED
        }


def config(interfaces: str, scopes: str, extra_server: str = "") -> str:
    """A server config with the given scopes; @DATA@ is replaced by the data dir."""
    return f"""
[server]
name = itest
interfaces = {interfaces}
data-dir = @DATA@
{extra_server}

[policy default]
lease-time = 3600
option.routers = 10.1.0.1
option.domain-name-servers = 10.1.0.1

{scopes}
"""


__all__ = ["CnrdProcess", "config"]
