"""Trap webhooks over https (treq on Twisted's Agent, twisted[tls]), to a receiver on an ``ssl:`` endpoint.

The receiver's certificate is signed by a throwaway CA: with an agent that
trusts that CA the trap is delivered; with the default agent (the system's
CAs) the certificate is refused, and the failure is counted, never raised.
"""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet import endpoints, reactor, ssl
from twisted.web import resource, server
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from cnrd.ops.webhook import TrapNotifier
from tests.integration.test_api_tls import make_certificates


class Receiver(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict] = []

    def render_POST(self, request):
        self.posts.append(json.loads(request.content.read()))
        return b"ok"


@pytest_twisted.ensureDeferred
async def test_https_webhook_delivered_with_the_ca_refused_without(tmp_path):
    ca, crt, key = make_certificates(tmp_path)
    receiver = Receiver()
    endpoint = endpoints.serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={crt}")
    port = await endpoint.listen(server.Site(receiver))
    url = f"https://127.0.0.1:{port.getHost().port}/hook"
    try:
        trust = ssl.Certificate.loadPEM(ca.read_bytes())
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust),
                      pool=HTTPConnectionPool(reactor, persistent=False))
        trusting = TrapNotifier(reactor, lambda: None, timeout=10, agent=agent)
        assert await trusting.post(url, {"event": "trap", "trap": "x"}) is True
        assert (trusting.delivered, trusting.failed) == (1, 0)
        assert receiver.posts == [{"event": "trap", "trap": "x"}]
        # The default agent trusts the system's CAs only: this receiver is refused before any POST.
        default = TrapNotifier(reactor, lambda: None, timeout=10)
        assert await default.post(url, {"event": "trap", "trap": "y"}) is False
        assert (default.delivered, default.failed) == (0, 1) and len(receiver.posts) == 1
    finally:
        await port.stopListening()
