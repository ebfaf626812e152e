"""What the admin commands and metrics may see and do of a running server.

:class:`RunningServer` is the typed interface between the operator's side
(:mod:`cnrd.admin`) and the running pieces (:class:`cnrd.app.runtime.Runtime`
implements it): the configuration in force and the one way to change it,
the lease table and DHCP core to read, the failover sessions' public
operations, and durability.  Nothing here reaches a transport or a
session's fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.internet.defer import Deferred

from cnrd.config import Config
from cnrd.dhcp.registry import RegistryHealth
from cnrd.dhcp.server import DhcpServer
from cnrd.failover.session import FailoverSession
from cnrd.leases.store import LeaseStore
from cnrd.leases.table import LeaseTable

__all__ = ["RunningServer"]


class RunningServer(Protocol):
    """A running cnrd server as the admin commands see it."""

    @property
    def config(self) -> Config:
        """The configuration in force (replaced by :meth:`reconfigure`, never changed in place)."""

    @property
    def table(self) -> LeaseTable:
        """The lease table, for queries."""

    @property
    def store(self) -> LeaseStore:
        """The lease store, for the lease history (its events)."""

    @property
    def server(self) -> DhcpServer:
        """The DHCP core: counters, scopes, whether it answers clients."""

    @property
    def sessions(self) -> Sequence[FailoverSession]:
        """The failover sessions that run."""

    @property
    def started_at(self) -> float:
        """When the server started serving (reactor time), 0 before."""

    @property
    def commits(self) -> int:
        """Lease store commits since start."""

    @property
    def registry_health(self) -> RegistryHealth | None:
        """The LDAP client registry's connection and lookups; None without one."""

    def check_registry(self, config: Config) -> Deferred[list[str]]:
        """Bind with the LDAP settings ``config`` changes; warnings, or fails with a ConfigError."""

    def now(self) -> int:
        """The server's clock in whole seconds."""

    def pair_addresses(self, name: str) -> tuple[str, str] | None:
        """Our address and the partner's in failover pair ``name``, None if it does not run."""

    def persist(self) -> Deferred[bool]:
        """Send what the sessions decided and commit; fires with True once durable."""

    def reconfigure(self, config: Config) -> list[str]:
        """Run with ``config`` from now on; returns warnings for the operator."""
