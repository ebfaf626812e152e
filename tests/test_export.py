"""Lease export: Kea's memfile lease4 CSV and JSON, unit by unit and through the real API."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cnrd.admin.export import (
    KEA_LEASE4_COLUMNS,
    export_args,
    export_chunks,
    kea_row,
    scope_ids,
)
from cnrd.admin.values import AdminError
from cnrd.leases.model import Lease, LeaseState

# Kea 2.2's CSVLeaseFile4::initColumns, in order (the file's header line).
KEA_HEADER = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context"


def _lease(n: int, **kw: object) -> Lease:
    base: dict[str, object] = {"address": 0x0A010064 + n, "state": LeaseState.LEASED, "scope": "lan",
                               "hw": b"\x01\x02\x00\x00\x00\x00" + bytes([n]), "start": 1000, "cltt": 1000 + n,
                               "expiration": 4600 + n, "host_name": f"host{n}"}
    base.update(kw)
    return Lease(**base)  # type: ignore[arg-type]


def _rows(data: bytes) -> list[dict[str, str]]:
    text = data.decode()
    assert text.splitlines()[0] == KEA_HEADER
    return list(csv.DictReader(io.StringIO(text)))


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field.startswith("&#x", i):
            out.append(chr(int(field[i + 3:i + 5], 16)))
            i += 5
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def test_columns_are_keas():
    assert ",".join(KEA_LEASE4_COLUMNS) == KEA_HEADER


def test_kea_row_fields():
    lease = _lease(1, client_id=b"\x01\x02\x00\x00\x00\x00\x01", host_name='a,b"c')
    row = dict(zip(KEA_HEADER.split(","), kea_row(lease, 3)))
    assert row["address"] == "10.1.0.101"
    assert row["hwaddr"] == "02:00:00:00:00:01"
    assert row["client_id"] == "01:02:00:00:00:00:01"
    # Kea: expire = cltt + valid_lifetime
    assert (row["valid_lifetime"], row["expire"]) == ("3600", "4601")
    assert (row["subnet_id"], row["fqdn_fwd"], row["fqdn_rev"], row["state"]) == ("3", "0", "0", "0")
    assert "," not in row["hostname"] and _unescape(row["hostname"]) == 'a,b"c'
    assert json.loads(_unescape(row["user_context"])) == {"cnrd": {"state": "leased", "scope": "lan"}}


@pytest.mark.parametrize("state, kea", [(LeaseState.LEASED, "0"), (LeaseState.UNAVAILABLE, "1"),
                                        (LeaseState.EXPIRED, "2"), (LeaseState.RELEASED, "2"),
                                        (LeaseState.AVAILABLE, "2")])
def test_kea_states(state, kea):
    assert kea_row(_lease(2, state=state), 1)[9] == kea


def test_bootp_lease_gets_keas_infinite_lifetime():
    row = kea_row(_lease(4, expiration=Lease.INFINITE, cltt=500), 1)
    assert (row[3], row[4]) == (str(0xFFFFFFFF), str(500 + 0xFFFFFFFF))


def test_csv_export_parses_and_comes_in_chunks():
    leases = {l.address: l for l in (_lease(n, host_name=f"h,{n}") for n in range(25))}
    chunks = list(export_chunks(leases, "csv", {"lan": 1}, chunk=10))
    assert len(chunks) == 1 + 3  # the header, then 10 + 10 + 5 leases
    rows = _rows(b"".join(chunks))
    assert [r["address"] for r in rows] == [f"10.1.0.{100 + n}" for n in range(25)]
    assert all(len(r) == len(KEA_LEASE4_COLUMNS) and None not in r for r in rows)
    assert [_unescape(r["hostname"]) for r in rows] == [f"h,{n}" for n in range(25)]


def test_export_filters_by_state_and_skips_what_went_away():
    leases = {l.address: l for l in (_lease(n, state=LeaseState.RELEASED if n % 2 else LeaseState.LEASED)
                                     for n in range(6))}
    gen = export_chunks(leases, "json", {}, LeaseState.LEASED, chunk=2)
    first = [next(gen), next(gen)]  # the opening bracket and the first chunk
    del leases[_lease(2).address]  # gone before its chunk is written
    got = json.loads(b"".join(first + list(gen)))
    assert [l["address"] for l in got] == ["10.1.0.100", "10.1.0.104"]


def test_export_args():
    assert export_args({}) == ("csv", None)
    assert export_args({"format": ["json"], "state": ["leased"]}) == ("json", LeaseState.LEASED)
    for bad in ({"format": ["xml"]}, {"state": ["gone"]}, {"limit": ["3"]}, {"format": ["csv", "json"]}):
        with pytest.raises(AdminError) as e:
            export_args(bad)
        assert e.value.status == 400
    assert scope_ids(["b", "a"]) == {"b": 1, "a": 2}
