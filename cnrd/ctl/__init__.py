"""``cnrctl``: the operator's command line, CNR's ``nrcmd`` verbs over the admin HTTP API.

One invocation is one nrcmd line::

    cnrctl dhcp getRelatedServers
    cnrctl dhcp setPartnerDown examplepair -3d
    cnrctl dhcp set failover-recover=0
    cnrctl failover-pair examplepair set backup-pct=20
    cnrctl failover-pair examplepair sync exact --run
    cnrctl save

It finds the server from the server's own INI file (``--config``, default
``/etc/cnrd/cnrd.ini``: ``[api] listen`` and the token file) or from
``--api URL --token-file FILE`` (environment: ``CNRCTL_API``,
``CNRCTL_TOKEN_FILE``, ``CNRCTL_CONFIG``).  Output is aligned text for
people, or with ``--json`` the API's JSON answer as it came.  Exit status: 0
done, 1 the server refused (its reason on stderr) or could not be reached,
2 a usage mistake found before asking the server.

Only the standard library and cnrd's pure modules (the config value
parsers, the time formats), so it runs wherever cnrd is installed.
docs/cnrctl.md lists every verb; docs/api.md the routes behind them.

The package: :mod:`~cnrd.ctl.client` finds the server and speaks HTTP to
it, :mod:`~cnrd.ctl.values` turns ``key=value`` into the API's JSON,
:mod:`~cnrd.ctl.formatting` turns the answers into text, and
:mod:`~cnrd.ctl.cli` parses the command line and runs the verbs.
"""

from __future__ import annotations

from cnrd.ctl.cli import Runner, build_parser, main, parse_args
from cnrd.ctl.client import Client, Target, find_target
from cnrd.ctl.errors import ApiError, UsageError
from cnrd.ctl.formatting import (
    format_fields,
    format_related_servers,
    format_reload,
    format_status,
    format_sync,
    format_table,
)
from cnrd.ctl.values import convert_value, parse_assignment, partner_down_time

__all__ = ["main", "UsageError", "ApiError", "Target", "Client", "Runner", "find_target", "build_parser",
           "parse_args", "parse_assignment", "convert_value", "partner_down_time", "format_table",
           "format_fields", "format_related_servers", "format_status", "format_reload", "format_sync"]
