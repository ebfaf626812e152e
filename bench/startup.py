"""A cnrd server's start-up with many leases, in one process: load time and memory.

``python -m bench.startup --leases 1000000`` writes that many LEASED records
into an LMDB store the way ``bench/servers.py``'s cnrd preload does (the /12
start-up pool, one MAC per client, lease time 3600), then starts a
:class:`cnrd.app.runtime.Runtime` on it in a fresh child process (the real
load path: the journaled store, ``DhcpServer.load`` under the GC policy,
the expiry pass, ``gc.freeze``) with a clock instead of a reactor and no
socket.  It prints the load time and ``/proc/self/status``'s VmRSS, RssAnon
and RssFile after start (LMDB pages read during the load are RssFile), plus
the journal applier's RSS, which ``bench.run`` counts as the server's.
``--breakdown`` adds an estimate of each structure's size.

It checks what it measured: every record written must be in the table,
LEASED, out of the pool's free addresses, and the next allocation must be
a never-used address; else it exits 1.  ``--keep DIR`` reuses a store
written before (the write of 10,000,000 records takes minutes).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

POOL_FIRST = (10 << 24) | (16 << 16) | 10  # 10.16.0.10, bench.servers.STARTUP_NET
POOL_LAST = (10 << 24) | (31 << 16) | (255 << 8) | 250
# More leases than the /12 holds: a /8 (10.0.0.10-10.255.255.250).
BIG_FIRST, BIG_LAST, BIG_SUBNET = (10 << 24) | 10, (10 << 24) | 0xFFFFFA, "10.0.0.0/8"
SCOPE = "bench"
LEASE_TIME = 3600

CONFIG = """
[server]
name = startup
interfaces = eth1
data-dir = {data_dir}

[policy default]
lease-time = 3600

[scope bench]
subnet = {subnet}
ranges = {first}-{last}
"""


def pool_for(n: int) -> tuple[str, int, int]:
    """(subnet, first, last) of the pool for ``n`` preloaded leases."""
    if n <= POOL_LAST - POOL_FIRST + 1:
        return "10.16.0.0/12", POOL_FIRST, POOL_LAST
    return BIG_SUBNET, BIG_FIRST, BIG_LAST


def _ip(n: int) -> str:
    return ".".join(str(n >> s & 255) for s in (24, 16, 8, 0))


def mac(i: int) -> bytes:
    """The MAC of preloaded client number i (as bench.servers.preload_mac)."""
    return b"\x02\xbe" + i.to_bytes(4, "big")


def write_store(path: str, n: int, now: int) -> None:
    """``n`` LEASED records from the pool's first address, as bench/servers.py writes them."""
    from cnrd.leases.lmdb_store import LmdbLeaseStore
    from cnrd.leases.model import Lease, LeaseState

    _, first, last = pool_for(n)
    if n > last - first + 1:
        raise SystemExit(f"{n} leases do not fit the /8 pool")
    store = LmdbLeaseStore(path, map_size=max(4 << 30, n * 400))
    try:
        batch: list[Lease] = []
        for i in range(n):
            batch.append(Lease(
                address=first + i, state=LeaseState.LEASED, scope=SCOPE, hw=b"\x01" + mac(i),
                start=now, expiration=now + LEASE_TIME, cltt=now, potential_expiration=now + LEASE_TIME,
            ))
            if len(batch) >= 50000:
                store.commit(batch)
                batch = []
        if batch:
            store.commit(batch)
    finally:
        store.close()


def status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, VmHWM of this process, KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def rss_of(pid: int) -> int:
    """VmRSS of another process, KiB (0 when gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def breakdown(table: object) -> dict[str, float]:
    """Estimated MiB per structure of the lease table (sys.getsizeof, shared objects counted once)."""
    from cnrd.leases.table import LeaseTable

    assert isinstance(table, LeaseTable)
    size = sys.getsizeof
    seen: set[int] = set()

    def once(o: object) -> int:
        if id(o) in seen:
            return 0
        seen.add(id(o))
        return size(o)

    out: dict[str, float] = {"leases dict": size(table.leases)}
    fields: dict[str, int] = {}
    records = 0
    for address, lease in table.leases.items():
        records += size(lease)
        fields["address"] = fields.get("address", 0) + once(address)
        for name in ("start", "expiration", "cltt", "potential_expiration", "partner_time", "hw", "client_id",
                     "host_name", "relay_info", "vendor_class"):
            fields[name] = fields.get(name, 0) + once(getattr(lease, name))
    out["Lease objects"] = records
    out.update({f"  .{k}": v for k, v in fields.items() if v})
    for name in dir(table):
        value = getattr(table, name, None)
        if name in ("leases",) or not isinstance(value, (dict, list, set)) or not value:
            continue
        n = size(value)
        items = value.items() if isinstance(value, dict) else ((v, None) for v in value)
        for k, v in items:
            n += once(k)
            if isinstance(v, (list, bytes, int)):
                n += once(v)
        out[f"table.{name}"] = n
    for pool in table.pools.values():
        for name, value in vars(pool).items():
            if isinstance(value, (dict, list, set, bytearray)) and value:
                n = size(value) + sum(once(v) for v in value if isinstance(v, int))
                out[f"pool.{name}"] = n
    return {k: round(v / 2**20, 1) for k, v in out.items()}


def child(path: str, n: int, want_breakdown: bool) -> dict[str, object]:
    """Start a Runtime on the store at ``path``; the figures and checks (runs in a fresh process)."""
    from twisted.internet.testing import MemoryReactorClock

    from cnrd.app.runtime import Runtime
    from cnrd.config import loads
    from cnrd.leases.model import LeaseState

    class NoPort:
        max_batch = 64
        kernel_drops = 0

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    before = status()
    reactor = MemoryReactorClock()
    reactor.advance(time.time())
    subnet, first, last = pool_for(n)
    config = CONFIG.format(data_dir=path, subnet=subnet, first=_ip(first), last=_ip(last))
    rt = Runtime(loads(config), reactor,  # type: ignore[arg-type]
                 port_factory=lambda *a, **kw: NoPort(), interfaces=lambda c: [])
    t0 = time.perf_counter()
    c0 = time.process_time()
    rt.startService()
    load_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    after = status()
    table = rt.table
    pool = table.pools[SCOPE]
    errors = []
    if len(table.leases) != n:
        errors.append(f"{len(table.leases)} records in the table, {n} written")
    leased = sum(1 for lease in table.leases.values() if lease.state is LeaseState.LEASED)
    if leased != n:
        errors.append(f"{leased} LEASED, {n} written")
    if pool.free_count() != pool.size - n:
        errors.append(f"pool free {pool.free_count()}, expected {pool.size - n}")
    if n < pool.size:
        got = table.allocate(SCOPE, b"\x00\x01new")
        if got is None or got in table.leases or got != first + n:
            errors.append(f"allocation after the load gave {got}, expected {first + n}")
    if n and table.addresses_of(b"\x00\x01" + mac(n - 1)) != [first + n - 1]:
        errors.append("the last client is not found by its hardware address")
    applier = getattr(rt.store, "_proc", None)
    out: dict[str, object] = {
        "leases": n, "load_s": round(load_s, 3), "load_cpu_s": round(cpu_s, 3),
        "before_kib": before, "after_kib": after,
        "applier_rss_kib": rss_of(applier.pid) if applier is not None else 0,
        "errors": errors,
    }
    if want_breakdown:
        gc.collect()
        out["breakdown_mib"] = breakdown(table)
    rt.stopService()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--leases", type=int, default=1_000_000)
    ap.add_argument("--keep", metavar="DIR", help="store directory to reuse (written there if it holds no leases)")
    ap.add_argument("--repeat", type=int, default=1, help="starts on the same store; the fastest is shown")
    ap.add_argument("--breakdown", action="store_true", help="estimate each structure's size (slow)")
    ap.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.leases, a.breakdown)))
        return 0
    path = a.keep or tempfile.mkdtemp(prefix="cnrd-startup-")
    try:
        if not os.path.exists(os.path.join(path, "data.mdb")):
            t0 = time.perf_counter()
            write_store(path, a.leases, int(time.time()))
            print(f"wrote {a.leases} leases in {time.perf_counter() - t0:.1f} s", flush=True)
        best = None
        for _ in range(a.repeat):
            argv2 = [sys.executable, "-m", "bench.startup", "--child", path, "--leases", str(a.leases)]
            if a.breakdown:
                argv2.append("--breakdown")
            proc = subprocess.run(argv2, capture_output=True, text=True, timeout=3600, check=False)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if r["errors"]:
                print("startup: the run did not load what it says: " + "; ".join(r["errors"]), file=sys.stderr)
                return 1
            after = r["after_kib"]
            print(f"{r['leases']} leases: load {r['load_s']:.2f} s (CPU {r['load_cpu_s']:.2f} s), "
                  f"RSS {after['VmRSS'] / 1024:.0f} MiB (anon {after['RssAnon'] / 1024:.0f}, "
                  f"file {after['RssFile'] / 1024:.0f}; {r['before_kib']['VmRSS'] / 1024:.0f} before the load), "
                  f"applier {r['applier_rss_kib'] / 1024:.0f} MiB, "
                  f"server+applier {(after['VmRSS'] + r['applier_rss_kib']) / 1024:.0f} MiB", flush=True)
            if "breakdown_mib" in r:
                for k, v in r["breakdown_mib"].items():
                    print(f"  {k:28s} {v:8.1f} MiB")
            if best is None or r["load_s"] < best["load_s"]:
                best = r
    finally:
        if not a.keep:
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
