"""The cnrd configuration: an INI file turned into frozen dataclasses.

The package is split by responsibility; this module re-exports what callers use:

* :mod:`cnrd.config.model` -- the dataclasses (:class:`Config` and its sections)
  and :class:`ConfigError`, whose ``str()`` is one line naming file, section and key;
* :mod:`cnrd.config.values` -- one converter per value type (``parse_*``), shared
  with ``cnrctl`` and the admin API, and the tables of allowed words;
* :mod:`cnrd.config.loader` -- INI parsing and validation: :func:`load`, :func:`loads`;
* :mod:`cnrd.config.inifile` -- in-place edits of the file (``cnrctl save``);
* :mod:`cnrd.config.timespec` -- the points in time operators type.

Pure package: no reactor, no sockets.
"""

from __future__ import annotations

from cnrd.config.loader import load, loads
from cnrd.config.model import (
    ApiConfig,
    ClientClassConfig,
    ClientConfig,
    LdapConfig,
    Config,
    ConfigError,
    FailoverPairConfig,
    PolicyConfig,
    Range,
    ReservationConfig,
    ScopeConfig,
    ServerConfig,
    field_default,
)
from cnrd.config.values import (
    LOG_SETTINGS,
    InvalidValue,
    parse_action,
    parse_bool,
    parse_duration,
    parse_hex,
    parse_http_url,
    parse_hw_address,
    parse_int,
    parse_ipv4,
    parse_list,
    parse_listen,
    parse_log_settings,
    parse_name,
    parse_percent,
    parse_size,
    parse_time,
)

__all__ = [
    "LOG_SETTINGS",
    "ApiConfig",
    "ClientClassConfig",
    "ClientConfig",
    "LdapConfig",
    "Config",
    "ConfigError",
    "FailoverPairConfig",
    "InvalidValue",
    "PolicyConfig",
    "Range",
    "ReservationConfig",
    "ScopeConfig",
    "ServerConfig",
    "field_default",
    "load",
    "loads",
    "parse_action",
    "parse_bool",
    "parse_duration",
    "parse_hex",
    "parse_http_url",
    "parse_hw_address",
    "parse_int",
    "parse_ipv4",
    "parse_list",
    "parse_listen",
    "parse_log_settings",
    "parse_name",
    "parse_percent",
    "parse_size",
    "parse_time",
]
