"""The ``[api]`` section: where the admin API listens and the tokens it accepts.

Pure module.
"""

from __future__ import annotations

from cnrd.config.listen import parse_endpoint
from cnrd.config.model import ApiConfig, field_default
from cnrd.config.section import Section
from cnrd.config.values import parse_bool, parse_name

__all__ = ["API_KEYS", "build_api"]

API_KEYS = ("listen", "token-file", "read-token-file", "enabled", "metrics-listen")


def build_api(s: Section) -> ApiConfig:
    """The API settings of section ``s``; the token files are read when the server starts."""
    s.check_keys()
    d = ApiConfig
    listen = s.get("listen", parse_endpoint, default=field_default(d, "listen"))
    metrics_listen = s.get("metrics-listen", parse_endpoint)
    # Port 0 is a different free port each time, so two such listeners never collide.
    if metrics_listen is not None and metrics_listen.description == listen.description and listen.port != 0:
        raise s.error("metrics-listen", "is the same as listen (leave it out to serve /metrics on the API)")
    token_file = s.get("token-file", parse_name)
    read_token_file = s.get("read-token-file", parse_name)
    if read_token_file is not None and read_token_file == token_file:
        raise s.error("read-token-file", "is also token-file (the read-only token must differ from the admin one)")
    return ApiConfig(
        listen=listen,
        token_file=token_file,
        read_token_file=read_token_file,
        enabled=s.get("enabled", parse_bool, default=field_default(d, "enabled")),
        metrics_listen=metrics_listen,
    )
