"""A burst of new DHCP clients whose entries are in an LDAP server that answers late.

    sudo .venv/bin/python -m bench.ldapburst --clients 1000 --delay 0.05 --out results/ldapburst.json

Lab (bench.run's two namespaces, one veth; tests/integration/lab.py):

    srv: cnrd ─ 127.0.0.1:PROXY bench.ldapdelay (holds each answer DELAY s) ─ 127.0.0.1:389 slapd
     └ veth ─ load: perfdhcp as a relay (10.8.0.1)

slapd (tests/ldapfix.py: stock schemas, mdb) holds one client entry per MAC
perfdhcp will send (``-b mac=BASE``: perfdhcp's sequential generator adds
0..N-1 to the base's last two octets, which random_mac_base leaves zero),
each naming the class ``ldapclass`` whose policy's lease time (7200 s)
differs from the default policy's (3600 s): a lease of 7200 s in cnrd's
store is a client that got its LDAP class, one of 3600 s one answered with
the default class (its lookup failed or timed out).

Two perfdhcp runs with the same MACs, each a full DORA of every client at
``--rate`` (``-n N``, ``-W`` to collect late answers):

1. *burst*: every client new, nothing cached: each DISCOVER waits for its
   LDAP lookup (first contact);
2. *cached*: the same clients again within ``client-cache-ttl``: answered
   from the cache, no lookup.

Reported per run: leases and how many got their class, perfdhcp's
DISCOVER-OFFER and REQUEST-ACK delay percentiles, and the deltas of
``cnrd_ldap_lookups_total`` by result and of the ``cnrd_ldap_lookup_seconds``
histogram (count, mean, buckets) over the run; and the proxy's totals.

Fails (exit 1, no result file) if perfdhcp sent nothing, the lookup counter
did not move in the burst, the proxy passed no LDAP message, or no lease
went to a MAC of the loaded entries (entries and perfdhcp's MACs disagree).
Bounded: every wait has a timeout; a run takes well under 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench import perf
from bench.run import Bench, SMOKE, machine, pin_load, pin_server
from bench.servers import THROUGHPUT_NET, CnrdServer
from cnrd.leases.model import LeaseState
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.cnrd_proc import config as cnrd_config
from tests.integration.lab import Lab, missing_requirements, random_mac_base, read_log, wait_for
from tests.ldapfix import CLIENTS, Slapd, client_ldif, missing_ldap_requirements

REPO = Path(__file__).resolve().parents[1]
CLASS = "ldapclass"
CLASS_LEASE = 7200  # the class's policy: tells a client that got its class from one that did not
DEFAULT_LEASE = 3600
PROXY_PORT = 3890
CACHE_TTL = 300  # s: longer than both runs, so the second is answered from the cache
MAX_CLIENTS = 20000  # perfdhcp's MACs vary the base's last two octets only
RUN_TIMEOUT = 240.0  # s, a whole perfdhcp run at most


class LdapCnrd(CnrdServer):
    """cnrd with an [ldap] section pointing at the delay proxy and the class the entries name."""

    name = "cnrd-ldap"

    def __init__(self, *a: Any, ldap_port: int, ldap_timeout: float, password_file: Path, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ldap_port, self.ldap_timeout, self.password_file = ldap_port, ldap_timeout, password_file

    def _configure(self) -> None:
        assert self.iface is not None and self.ns is not None
        sections = f"""
[policy {CLASS}]
lease-time = {CLASS_LEASE}

[client-class {CLASS}]
policy = {CLASS}

[scope {self.scope}]
subnet = {self.net.subnet}
ranges = {self.net.pool_first}-{self.net.pool_last}

[ldap dir]
hostname = 127.0.0.1
port = {self.ldap_port}
username = cn=dhcp,dc=cnrd,dc=test
password-file = {self.password_file}
search-path = {CLIENTS}
search-scope = onelevel
search-filter = (macAddress=%s)
query-dictionary = description=client-class, cn=host-name
timeout = {self.ldap_timeout:g}
"""
        extra = f"client-class = true\nclient-lookup-id = mac\nclient-cache-ttl = {CACHE_TTL}\n"
        self.cp = CnrdProcess(self.ns, cnrd_config(self.iface, sections, extra), name=f"cnrdldap{self.n}")


# -- /metrics ---------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text exposition: (name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    """``name``'s samples summed by one label's value (other labels summed over)."""
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def total(samples: dict, name: str) -> float | None:
    vals = [v for (n, _), v in samples.items() if n == name]
    return sum(vals) if vals else None


def histogram_delta(before: dict, after: dict, name: str) -> dict[str, Any]:
    """The histogram ``name`` over an interval: count, mean, per-bucket counts
    (not cumulative) and the bucket bounds that hold the 50th and 99th
    percentiles (a bound, as the histogram cannot say more)."""
    b0, b1 = by_label(before, f"{name}_bucket", "le"), by_label(after, f"{name}_bucket", "le")
    count = (total(after, f"{name}_count") or 0) - (total(before, f"{name}_count") or 0)
    s = (total(after, f"{name}_sum") or 0) - (total(before, f"{name}_sum") or 0)
    bounds = sorted(b1, key=lambda le: float("inf") if le == "+Inf" else float(le))
    cum = [(le, b1[le] - b0.get(le, 0.0)) for le in bounds]
    buckets, prev = {}, 0.0
    for le, c in cum:
        buckets[le] = c - prev
        prev = c

    def bound_of(q: float) -> str | None:
        for le, c in cum:
            if count and c >= q * count:
                return le
        return None

    return {"count": count, "sum_s": s, "mean_ms": 1000 * s / count if count else None,
            "buckets": buckets, "p50_le_s": bound_of(0.5), "p99_le_s": bound_of(0.99)}


def scrape(cnrd: LdapCnrd) -> dict:
    assert cnrd.ns is not None
    r = cnrd.ns.run("curl", "-s", "--max-time", "10", "http://127.0.0.1:8067/metrics", check=False, timeout=20)
    if r.returncode != 0 or "cnrd_" not in r.stdout:
        raise AssertionError(f"GET /metrics failed (curl {r.returncode}): {r.stdout[:300]}{r.stderr}")
    return parse_metrics(r.stdout)


# -- one run ------------------------------------------------------------------------


def expected_macs(base: str, n: int) -> list[str]:
    """The MACs perfdhcp -b mac=BASE -R n sends (its sequential generator adds 0..n-1)."""
    b = bytes.fromhex(base.replace(":", ""))
    first = int.from_bytes(b[4:], "big")
    return [(b[:4] + (first + i).to_bytes(2, "big")).hex(":") for i in range(n)]


def lease_census(cnrd: LdapCnrd, macs: set[str]) -> dict[str, int]:
    """Leased addresses in cnrd's store: how many, how many to the loaded
    MACs, and how many with the class's and the default lease time."""
    out = {"leased": 0, "to_loaded_macs": 0, "class_lease_time": 0, "default_lease_time": 0, "other_lease_time": 0}
    for lease in cnrd.cp.leases():
        if lease.state is not LeaseState.LEASED:
            continue
        out["leased"] += 1
        if lease.hw[1:].hex(":") in macs:
            out["to_loaded_macs"] += 1
        # the lease time of the last ACK: a re-met client keeps its first start
        length = lease.expiration - lease.cltt
        key = ("class_lease_time" if length == CLASS_LEASE else "default_lease_time" if length == DEFAULT_LEASE
               else "other_lease_time")
        out[key] += 1
    return out


def run_once(bench: Bench, cnrd: LdapCnrd, *, label: str, base: str, clients: int, rate: int,
             macs: set[str], say: Callable[[str], None]) -> dict[str, Any]:
    before = scrape(cnrd)
    duration = max(2, -(-clients // rate) + 2)  # -p: whole seconds, the sending time and a margin
    t0 = time.monotonic()
    res = perf.run(bench.load, THROUGHPUT_NET.giaddr, bench.perf_target, rate=rate, duration=duration,
                   clients=clients, mac_base=base,
                   extra=["-n", str(clients), "-d", "3", "-W", "3000000", "-x", "t"])
    wall = time.monotonic() - t0
    time.sleep(0.5)  # the last ACKs' commits reach the store and the metrics
    after = scrape(cnrd)
    delays = perf.exchange_delays(res.raw)
    results0 = by_label(before, "cnrd_ldap_lookups_total", "result")
    results1 = by_label(after, "cnrd_ldap_lookups_total", "result")
    lookups = {k: results1[k] - results0.get(k, 0.0) for k in results1}
    out = {
        "label": label, "mac_base": base, "clients": clients, "rate": rate, "wall_s": round(wall, 2),
        "perfdhcp": perf.record(res),
        "discover_sent": res.do.sent, "offers": res.do.received, "requests_sent": res.ra.sent, "acks": res.ra.received,
        "delays": {name: perf.delay_summary(d) for name, d in delays.items()},
        "ldap_lookups": lookups,
        "ldap_lookup_seconds": histogram_delta(before, after, "cnrd_ldap_lookup_seconds"),
        "ldap_up": total(after, "cnrd_ldap_up"),
        "leases": lease_census(cnrd, macs),
    }
    do, ra = out["delays"].get("DISCOVER-OFFER", {}), out["delays"].get("REQUEST-ACK", {})
    say(f"  {label}: {res.do.sent} DISCOVERs, {res.do.received} OFFERs, {res.ra.received} ACKs in {wall:.1f} s; "
        f"DO p50 {_f(do.get('p50_ms'))} p99 {_f(do.get('p99_ms'))} ms; lookups {lookups}; "
        f"leases {out['leases']}")
    return out


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def check(result: dict[str, Any]) -> list[str]:
    """Why these figures do not prove anything (empty: they do)."""
    why = []
    burst, cached = result["runs"]["burst"], result["runs"]["cached"]
    for r in (burst, cached):
        if not r["discover_sent"]:
            why.append(f"{r['label']}: perfdhcp sent no DISCOVER")
    if not sum(burst["ldap_lookups"].values()):
        why.append("burst: cnrd_ldap_lookups_total did not move: cnrd asked LDAP nothing")
    if not result["proxy"].get("pdus_down"):
        why.append("the delay proxy passed no LDAP message to cnrd")
    if not burst["leases"]["to_loaded_macs"]:
        why.append("no lease went to a MAC of the loaded entries: the entries do not match perfdhcp's MACs")
    return why


def table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    b, c = result["runs"]["burst"], result["runs"]["cached"]

    def d(r: dict, ex: str, k: str) -> str:
        return _f(r["delays"].get(ex, {}).get(k))

    def add(label: str, f: Callable[[dict], Any]) -> None:
        rows.append((label, str(f(b)), str(f(c))))

    add("DISCOVERs sent", lambda r: r["discover_sent"])
    add("OFFERs received", lambda r: r["offers"])
    add("ACKs received", lambda r: r["acks"])
    add("leased in cnrd's store after the run", lambda r: r["leases"]["leased"])
    add(f"  last ACK with the LDAP class's lease ({CLASS_LEASE} s)", lambda r: r["leases"]["class_lease_time"])
    add(f"  last ACK with the default lease ({DEFAULT_LEASE} s)", lambda r: r["leases"]["default_lease_time"])
    for ex in ("DISCOVER-OFFER", "REQUEST-ACK"):
        for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            add(f"{ex} {k.replace('_ms', '')} ms", lambda r, ex=ex, k=k: d(r, ex, k))
    results = sorted({k for r in (b, c) for k in r["ldap_lookups"]})
    for k in results:
        add(f"LDAP lookups, result {k}", lambda r, k=k: _f(r["ldap_lookups"].get(k, 0.0)))
    add("LDAP lookup time: count", lambda r: _f(r["ldap_lookup_seconds"]["count"]))
    add("  mean ms", lambda r: _f(r["ldap_lookup_seconds"]["mean_ms"]))
    add("  p50 <= s (bucket)", lambda r: r["ldap_lookup_seconds"]["p50_le_s"] or "-")
    add("  p99 <= s (bucket)", lambda r: r["ldap_lookup_seconds"]["p99_le_s"] or "-")
    head = ("metric", "burst (first contact)", "cached (same MACs)")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    s = result["settings"]
    lines = [f"{s['clients']} clients at {s['rate']}/s; LDAP answers held {s['delay'] * 1000:g} ms by the proxy; "
             f"lookup timeout {s['ldap_timeout']:g} s; runtime {result['runtime_s']:.0f} s",
             f"proxy: {result['proxy']}", ""]
    lines += ["  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(r))
              for r in [head, tuple("-" * n for n in w), *rows]]
    return "\n".join(lines)


def _proxy_totals(text: str) -> dict[str, int]:
    for line in reversed(text.splitlines()):
        if line.startswith("totals "):
            words = line.split()[1:]
            return {k: int(v) for k, v in zip(words[::2], words[1::2])}
    return {}


def measure(a: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    t0 = time.monotonic()
    base = random_mac_base()
    macs_list = expected_macs(base, a.clients)
    macs = set(macs_list)
    result: dict[str, Any] = {
        "settings": {"pinned": a.pinned, "clients": a.clients, "rate": a.rate, "delay": a.delay, "ldap_timeout": a.ldap_timeout,
                     "cache_ttl": CACHE_TTL, "class_lease": CLASS_LEASE, "mac_base": base},
        "machine": machine(),
        "runs": {},
    }
    with Lab() as lab:
        bench = Bench(lab, SMOKE, say)
        slapd = Slapd(lab.path("slapd"), host="127.0.0.1", port=389, netns=bench.srv)
        slapd.start()
        try:
            t = time.monotonic()
            slapd.add("\n".join(client_ldif(m, f"pc-{i}", CLASS) for i, m in enumerate(macs_list)))
            loaded = len(slapd.search("(objectClass=ieee802Device)", CLIENTS, ["macAddress"]))
            say(f"  slapd: {loaded} client entries loaded in {time.monotonic() - t:.1f} s")
            if loaded < a.clients:
                raise AssertionError(f"only {loaded} of {a.clients} entries in slapd")
            proxy = bench.srv.popen(sys.executable, "-m", "bench.ldapdelay", "--listen", f"127.0.0.1:{PROXY_PORT}",
                                    "--upstream", "127.0.0.1:389", "--delay", str(a.delay),
                                    name="ldapdelay", env={"PYTHONPATH": str(REPO)})
            wait_for(lambda: "listening on" in read_log(proxy) or proxy.poll() is not None, 20, what="the proxy")
            if proxy.poll() is not None:
                raise AssertionError(f"the delay proxy exited: {read_log(proxy)}")
            pw = slapd.write_password_file(lab.path("ldap.pw"))
            cnrd = LdapCnrd(THROUGHPUT_NET, ldap_port=PROXY_PORT, ldap_timeout=a.ldap_timeout, password_file=pw)
            cnrd.start(lab, bench.srv, bench.srv_if, timeout=60)
            try:
                if a.pinned:
                    pin_server(cnrd.pids())
                wait_for(lambda: total(scrape(cnrd), "cnrd_ldap_up") == 1, 30, interval=0.5,
                         what="cnrd_ldap_up 1 (cnrd bound to the LDAP server through the proxy)")
                result["runs"]["burst"] = run_once(bench, cnrd, label="burst", base=base, clients=a.clients,
                                                   rate=a.rate, macs=macs, say=say)
                result["runs"]["cached"] = run_once(bench, cnrd, label="cached", base=base, clients=a.clients,
                                                    rate=a.rate, macs=macs, say=say)
                result["cnrd_log_tail"] = cnrd.log()[-3000:]
            finally:
                cnrd.stop()
            bench.srv.stop(proxy, signal.SIGTERM, timeout=10)
            result["proxy"] = _proxy_totals(read_log(proxy))
        finally:
            slapd.stop()
    result["runtime_s"] = time.monotonic() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ldapburst", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000, help="new clients in the burst (default 1000)")
    ap.add_argument("--rate", type=int, default=500, help="perfdhcp's DORA rate, /s (default 500)")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds the proxy holds each LDAP answer")
    ap.add_argument("--ldap-timeout", type=float, default=2.0, help="the [ldap] timeout (default 2 s)")
    ap.add_argument("--out", default="results/ldapburst.json")
    a = ap.parse_args(argv)
    if not 1 <= a.clients <= MAX_CLIENTS or not 1 <= a.rate <= 10000 or not 0 <= a.delay <= 5:
        ap.error(f"--clients 1..{MAX_CLIENTS}, --rate 1..10000, --delay 0..5")
    missing = missing_requirements(["ip", "perfdhcp", "curl"]) + missing_ldap_requirements()
    if missing:
        print(f"ldapburst needs: {', '.join(missing)}", file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    a.pinned = pin_load()
    say(f"ldapburst: {a.clients} clients at {a.rate}/s, LDAP delay {a.delay * 1000:g} ms")
    result = measure(a, say)
    why = check(result)
    if why:
        print("ldapburst measured nothing usable:\n  " + "\n  ".join(why), file=sys.stderr)
        return 1
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(table(result))
    print(f"\nraw numbers and perfdhcp outputs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
