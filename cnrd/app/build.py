"""The composition root: the whole cnrd service tree for one configuration.

:func:`build` makes the :class:`~cnrd.app.runtime.Runtime`, a failover
session and link for every enabled ``[failover-pair]`` (:func:`add_failover`),
the bulk leasequery listener when ``leasequery-allow`` names requestors,
and the admin API with its metrics; nothing else in cnrd creates these
pieces or knows how they are joined.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.twisted import MetricsResource
from twisted.application import service
from twisted.logger import Logger
from twisted.web.resource import IResource

from cnrd.admin.api import ApiService
from cnrd.admin.commands import Admin
from cnrd.admin.metrics import registry_for
from cnrd.admin.mismatch import MismatchPoller
from cnrd.config import Config, ConfigError, FailoverPairConfig
from cnrd.dhcp import net
from cnrd.dhcp.bulk import BulkLeasequeryService
from cnrd.failover import record
from cnrd.failover.listen import FailoverListener
from cnrd.failover.protocol import FailoverService
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import Role
from cnrd.failover.updates import legacy_queue_prefix
from cnrd.text import int_to_ip
from cnrd.app.runtime import Reactor, Runtime

__all__ = ["build", "add_failover", "pair_role", "partner_vendor", "metrics_resource"]

log = Logger(namespace="cnrd")


def pair_role(config: Config, pair: FailoverPairConfig, host_addresses: set[str]) -> tuple[Role, str, str]:
    """Our role in ``pair`` (by our own addresses), our address and the partner's.

    ``failover-main-server`` / ``failover-backup-server`` name the address
    to use on a host with several interfaces (CNR's multi-interface
    case); otherwise the pair's main/backup address that is ours decides.
    """
    main = int_to_ip(pair.failover_main_server or pair.main)
    backup = int_to_ip(pair.failover_backup_server or pair.backup)
    if main in host_addresses:
        return Role.MAIN, main, int_to_ip(pair.backup)
    if backup in host_addresses:
        return Role.BACKUP, backup, int_to_ip(pair.main)
    raise ConfigError(config.path, f"failover-pair {pair.name}", "main",
                      f"neither the main ({main}) nor the backup ({backup}) is an address of this host")


def _host_addresses() -> set[str]:
    return {a for addrs in net.interface_addresses().values() for a, _ in addrs}


def add_failover(top: service.MultiService, runtime: Runtime, config: Config, reactor: Reactor,
                 host_addresses: set[str]) -> list[FailoverService]:
    """A failover session and its link for every enabled pair of ``config``, run by ``runtime``."""
    out = []
    now = int(reactor.seconds())
    store = runtime.store
    adopted: set[str] = set()  # old names whose state a renamed pair took over
    listeners: dict[tuple[str, int], FailoverListener] = {}  # one per local address and port
    for pair in config.failover_pairs.values():
        if not pair.failover:
            continue
        role, local, partner = pair_role(config, pair, host_addresses)
        scopes = list(pair.scopes) or list(config.scopes)
        stored_name = pair.name
        stored_state = store.get_state(record.key(pair.name))
        if stored_state is None:
            # CNR 7.2: a pair renamed with this server's role unchanged keeps its state.
            old = record.renamed_from(pair.name, main=pair.main, backup=pair.backup, role=role,
                                      configured=set(config.failover_pairs) | adopted,
                                      stored=store.state_items("failover/"))
            if old is not None:
                stored_name, stored_state = old, store.get_state(record.key(old))
        # The update queue is in the lease records (the exchange reads it once
        # they are loaded), but a store written before may hold queue keys:
        # the session takes them over and the first commit deletes them.
        prefix = legacy_queue_prefix(stored_name)
        legacy = [k for k, _ in store.state_items(prefix)]
        queue = [int(k[len(prefix):], 16) for k in legacy]
        old_keys: list[str] = []
        if stored_name != pair.name:
            log.info("failover pair {pair}: renamed from {old}; its failover state and update queue "
                     "move to the new name", pair=pair.name, old=stored_name)
            old_keys = [k for k, _ in store.state_items(f"failover/{stored_name}/")]
            adopted.add(stored_name)
        session = FailoverSession(
            pair, role, runtime.table, scopes, now=now,
            stored_state=stored_state, stored_queue=queue,
            log=runtime.log_event, failover_recover=config.server.failover_recover,
            renamed_from_keys=old_keys)
        if legacy:
            session.restore_persist({key: None for key in legacy})
        link = FailoverService(session, reactor, local_ip=local, partner_ip=partner, port=pair.port,
                               commit=runtime.commit, log_settings=lambda: runtime.config.server.log_settings)
        runtime.add_pair(session, link)
        link.setServiceParent(top)
        listener = listeners.get((local, pair.port))
        if listener is None:
            listener = listeners[(local, pair.port)] = FailoverListener(reactor, local, pair.port)
            listener.setServiceParent(top)
        listener.add(link)
        out.append(link)
        _log_pair(config, pair, role, local, partner, scopes)
    # The one path a configuration takes into the running pieces: gates,
    # failover pools and each session's per-scope backup percentages.
    runtime.reconfigure(config)
    return out


def _log_pair(config: Config, pair: FailoverPairConfig, role: Role, local: str, partner: str,
              scopes: list[str]) -> None:
    me = f"{config.server.name} ({local})"
    main_name, backup_name = (me, partner) if role is Role.MAIN else (partner, me)
    scope_word = "server-wide" if not pair.scopes else f"for scopes {', '.join(scopes)}"
    log.info(
        "Failover is enabled {where}. Main server name: {main}, backup server name: {backup}, "
        "mclt = {mclt}, backup-pct = {pct}, dynamic-bootp-backup-pct = {dpct}, "
        "use-safe-period: {usp}, safe-period = {sp}",
        where=scope_word, main=main_name, backup=backup_name,
        mclt=pair.mclt, pct=pair.backup_pct,
        dpct=pair.dynamic_bootp_backup_pct if pair.dynamic_bootp_backup_pct is not None else 0,
        usp="enabled" if pair.use_safe_period else "disabled", sp=pair.safe_period,
    )


def partner_vendor(runtime: Runtime, name: str) -> str | None:
    """The failover vendor class the partner in pair ``name`` last announced (None: not yet, or not running)."""
    session = next((s for s in runtime.sessions if s.name == name), None)
    return session.link.partner_vendor if session is not None else None


def metrics_resource(runtime: Runtime) -> Callable[[], IResource]:
    """Builds the ``/metrics`` resource for ``runtime`` when the API first serves it."""
    def make() -> IResource:
        resource: IResource = MetricsResource(registry=registry_for(runtime))
        return resource
    return make


def build(
    config: Config,
    reactor: Reactor,
    *,
    host_addresses: Callable[[], set[str]] = _host_addresses,
    tls: bool = True,
    **kw: Any,
) -> service.MultiService:
    """The whole cnrd service tree for ``config`` (``kw`` goes to :class:`Runtime`).

    ``tls``: False when the process runs without TLS (cnrd.app.tls), so that
    reloads keep TLS settings for the next start.
    """
    top = service.MultiService()
    runtime = Runtime(config, reactor, **kw)
    runtime.setServiceParent(top)
    admin = Admin(runtime, tls=tls)
    if any(p.failover for p in config.failover_pairs.values()):
        add_failover(top, runtime, config, reactor, host_addresses())
        # Compares each pair's configuration with the partner's, all the time.
        poller = MismatchPoller(reactor, runtime, runtime.traps, notify=runtime.notifier.notify,
                                partner_vendor=lambda name: partner_vendor(runtime, name))
        poller.setServiceParent(top)
        admin.config_check, admin.config_recheck = poller.status, poller.recheck
    if config.server.leasequery_allow:
        # Bulk leasequery (RFC 6926) on TCP server-port, for the requestors leasequery-allow names.
        BulkLeasequeryService(reactor, runtime.server, lambda: runtime.config,
                              port=config.server.server_port).setServiceParent(top)
    if config.api.enabled:
        # Last, so it starts after (and stops before) what it reports on.
        ApiService(runtime.config, reactor, admin, metrics=metrics_resource(runtime)).setServiceParent(top)
    return top
