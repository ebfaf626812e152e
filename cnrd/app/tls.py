"""TLS only in a server whose configuration uses it.

Twisted's reactor imports pyOpenSSL as soon as it is installed (``twisted[tls]``,
which the HTTPS API, LDAP STARTTLS and https webhooks need), for
``listenSSL``, ``connectSSL`` and ``startTLS``; with it come pyOpenSSL's
modules, ``cryptography``'s Rust extension and libcrypto: about 12.5 MiB of
resident memory in a process that holds ~61 MiB before its first lease, paid
whether or not anything speaks TLS.  When the configuration ``twistd cnrd``
starts with has no setting that needs TLS (:meth:`cnrd.config.Config.tls_settings`),
:func:`leave_unloaded` marks pyOpenSSL as not importable before the reactor is
imported, and Twisted sets itself up without TLS, as it does where pyOpenSSL is
not installed.

The trade-off: whether a server has TLS is decided once, at start.  A reload
whose file turns a TLS setting on reports it as needing a restart and keeps the
running value (:func:`cnrd.admin.reload.plan_reload`), the way it treats the
listening sockets; a restart costs a few seconds, and in exchange every server
that does not use TLS, which is most DHCP servers, is that much smaller.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["leave_unloaded"]

# The module whose absence Twisted's reactor (twisted.internet.posixbase,
# tcp) and HTTP client check for.
_PYOPENSSL = "OpenSSL"
# Imported: Twisted has decided about TLS already.
_DECIDED = ("twisted.internet.posixbase", "twisted.internet.reactor", "twisted.protocols.tls")


def leave_unloaded(modules: MutableMapping[str, Any] | None = None) -> bool:
    """Keep pyOpenSSL out of this process; False when that is too late.

    Too late: pyOpenSSL or Twisted's reactor is imported already (as under
    ``twistd --reactor``, which installs it while parsing the options).
    ``modules``: ``sys.modules`` unless given.
    """
    # sys.modules is typed as holding modules only, though None is how it says "not importable".
    table: MutableMapping[str, Any] = sys.modules if modules is None else modules
    if _PYOPENSSL in table:
        return table[_PYOPENSSL] is None  # None: already kept out
    if any(name in table for name in _DECIDED):
        return False
    # Python raises ModuleNotFoundError for a name mapped to None, which
    # Twisted treats as pyOpenSSL not being installed.
    table[_PYOPENSSL] = None
    return True
