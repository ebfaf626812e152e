"""The lease export route (GET /api/v1/export/leases) through the real API: in-process runtime, real HTTP."""

from __future__ import annotations

import pytest

from tests.adminkit import STANDALONE, Server
from tests.test_api import V1, serve  # noqa: F401 -- the fixture
from tests.test_export import _rows

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")


async def test_export_through_the_api_round_trips(tmp_path, serve):  # noqa: F811
    server = Server(tmp_path, STANDALONE)
    api = serve(server)
    addresses = {server.lease(n) for n in range(7)}
    status, headers, body = await api.call("GET", V1 + "/export/leases?format=csv")
    assert status == 200 and headers.getRawHeaders("content-type") == ["text/csv; charset=utf-8"]
    rows = _rows(body)
    table = server.dhcp.table.leases
    assert {r["address"] for r in rows} == {f"10.1.0.{a & 0xFF}" for a in addresses} == \
        {f"10.1.0.{a & 0xFF}" for a in table}
    for r in rows:
        lease = next(l for l in table.values() if f"10.1.0.{l.address & 0xFF}" == r["address"])
        assert r["hwaddr"] == ":".join(f"{b:02x}" for b in lease.hw[1:])
        assert int(r["expire"]) == lease.expiration and r["subnet_id"] == "1" and r["state"] == "0"
    status, _, got = await api.call("GET", V1 + "/export/leases?format=json")
    _, _, page = await api.call("GET", V1 + "/leases?limit=100")
    assert status == 200 and sorted(got, key=lambda l: l["address"]) == page["leases"]
    status, _, err = await api.call("GET", V1 + "/export/leases?format=xml")
    assert status == 400 and "format must be" in err["error"]
    status, _, _ = await api.call("GET", V1 + "/export/leases", token=None)
    assert status == 401
