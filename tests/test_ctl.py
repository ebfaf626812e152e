"""Tests for cnrctl (cnrd.ctl): argument parsing, value conversion and tables as units,
then the console script against a real ``twistd -n cnrd`` on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnrd import ctl
from cnrd.config import loads
from cnrd.ctl import UsageError, convert_value, find_target, format_fields, format_related_servers, \
    format_table, parse_args

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CNRCTL = str(BIN / "cnrctl")
TWISTD = str(BIN / "twistd")


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = ctl.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


# -- argument parsing -----------------------------------------------------------


def test_verbs_are_case_insensitive_as_in_nrcmd() -> None:
    # The seed writes "dhcp getRelatedservers".
    for spelling in ("getRelatedServers", "getRelatedservers", "GETRELATEDSERVERS"):
        args = parse_args(["DHCP", spelling])
        assert (args.object, args.verb) == ("dhcp", "getRelatedServers")


def test_global_options_before_or_after_the_verb() -> None:
    a = parse_args(["--config", "x.ini", "--json", "dhcp", "show"])
    b = parse_args(["--config=x.ini", "dhcp", "show", "--json"])
    c = parse_args(["-c", "x.ini", "dhcp", "--json", "show"])
    for args in (a, b, c):
        assert (args.config, args.json, args.verb) == ("x.ini", True, "show")
    d = parse_args(["failover-pair", "p", "--json", "set", "mclt=1h", "--json"])
    assert (d.json, d.name, d.verb, d.args) == (True, "p", "set", ["mclt=1h"])
    assert parse_args(["dhcp", "show"]).json is False


@pytest.mark.parametrize("argv, partner, when", [
    (["dhcp", "setPartnerDown", "examplepair"], "examplepair", None),
    (["dhcp", "setPartnerDown", "10.0.0.2", "-3d"], "10.0.0.2", "-3d"),
    (["dhcp", "setpartnerdown", "p", "-1d12h", "--json"], "p", "-1d12h"),
    (["dhcp", "setPartnerDown", "p", "Nov", "25", "14:00", "2026"], "p", "Nov 25 14:00 2026"),
    (["dhcp", "setPartnerDown", "p", "2026-11-25T14:00:00Z"], "p", "2026-11-25T14:00:00Z"),
])
def test_set_partner_down_takes_nrcmds_time_conventions(argv, partner, when) -> None:
    args = parse_args(argv)
    assert (args.partner, args.time) == (partner, when)
    assert args.json is ("--json" in argv)


@pytest.mark.parametrize("argv, expected", [
    (["failover-pair", "list"], ("list", [])),
    (["failover-pair", "examplepair", "show"], ("show", [])),
    (["failover-pair", "examplepair", "set", "mclt=1h", "backup-pct=20"], ("set", ["mclt=1h", "backup-pct=20"])),
    (["failover-pair", "examplepair", "enable", "load-balancing"], ("enable", ["load-balancing"])),
    (["failover-pair", "examplepair", "get", "mclt"], ("get", ["mclt"])),
])
def test_failover_pair_verbs(argv, expected) -> None:
    args = parse_args(argv)
    assert (args.verb, args.args) == expected


def test_lease_and_scope_verbs() -> None:
    a = parse_args(["lease", "10.1.0.5", "show"])
    assert (a.address, a.verb) == ("10.1.0.5", "show")
    assert parse_args(["lease", "10.1.0.5"]).verb == "show"
    b = parse_args(["lease", "list", "--hardware-address", "02:00:00:00:00:01", "--state", "leased",
                    "--scope", "lan", "--limit", "5"])
    assert (b.verb, b.hardware_address, b.state, b.scope, b.limit) == ("list", "02:00:00:00:00:01", "leased",
                                                                       "lan", 5)
    assert parse_args(["scope", "list"]).verb == "list"
    assert parse_args(["scope", "lan", "show"]).verb == "show"


@pytest.mark.parametrize("argv, fragment", [
    ([], "required"),
    (["dhcp"], "required"),
    (["dhcp", "frobnicate"], "invalid choice"),
    (["dhcp", "set"], "required"),
    (["failover-pair", "p"], "give a verb"),
    (["failover-pair", "p", "set"], "give key=value"),
    (["failover-pair", "list", "show"], "no more arguments"),
    (["failover-pair", "p", "enable"], "one attribute"),
    (["lease", "10.1.0.5", "show", "--state", "leased"], "go with lease list"),
    (["lease", "list", "--limit", "0"], "at least 1"),
    (["scope", "list", "show"], "scope list"),
    (["dhcp", "show", "--frob"], "unrecognized"),
])
def test_usage_mistakes_exit_2(argv, fragment, capsys) -> None:
    code, out, err = run_main(*argv)
    assert code == 2 and out == ""
    assert err.startswith("cnrctl: ") and fragment in err


def test_help_and_version_exit_0(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(["--version"])
    assert e.value.code == 0
    assert "cnrctl (cnrd)" in capsys.readouterr().out


# -- values ------------------------------------------------------------------


@pytest.mark.parametrize("key, text, kind, value", [
    ("max-dhcp-requests", "600", "int", 600),
    ("start-on-reboot", "enabled", "bool", True),
    ("start-on-reboot", "Off", "bool", False),
    ("start-on-reboot", "false", "bool", False),
    ("safe-period", "1h", "duration", 3600),
    ("safe-period", "1h30m", "duration", 5400),
    ("mclt", "3600", "duration", 3600),
    ("backup-pct", "12.5%", "percent", 12.5),
    ("dynamic-bootp-backup-pct", "none", "optional-percent", None),
    ("dynamic-bootp-backup-pct", "0", "optional-percent", 0.0),
    ("main", " 10.0.0.1 ", "ipv4", "10.0.0.1"),
    ("log-settings", "failover-detail", "log-settings", ["failover-detail"]),
    ("log-settings", "Default, failover-detail no-failover-activity", "log-settings",
     ["default", "failover-detail", "no-failover-activity"]),
    ("failover-recover", "0", "time", None),
    ("failover-recover", "-3d", "time", "-3d"),
    ("failover-recover", "2026-11-28T06:00:00Z", "time", "2026-11-28T06:00:00Z"),
    ("failover-recover", "1700000000", "time", "1700000000"),
    ("unknown", "42", None, 42),
    ("unknown", "on", None, True),
    ("unknown", "text", None, "text"),
])
def test_values_are_converted_as_the_config_file_reads_them(key, text, kind, value) -> None:
    assert convert_value(key, text, kind) == value


def test_a_date_in_words_is_read_in_cnrctls_time_zone(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert convert_value("failover-recover", "Nov 25 14:00 2026", "time") == "2026-11-25T13:00:00Z"
        assert ctl.partner_down_time("Nov 25 14 2026") == "2026-11-25T13:00:00Z"
        assert ctl.partner_down_time("-3d") == "-3d"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("key, text, kind, fragment", [
    ("max-dhcp-requests", "many", "int", "bad integer"),
    ("start-on-reboot", "maybe", "bool", "bad boolean"),
    ("mclt", "1 fortnight", "duration", "bad duration"),
    ("log-settings", "failover-detial", "log-settings", "did you mean 'failover-detail'"),
    ("main", "cluster-B", "ipv4", "bad IPv4 address"),
    ("failover-recover", "tomorrow", "time", "bad"),
])
def test_bad_values_are_usage_errors_naming_the_key(key, text, kind, fragment) -> None:
    with pytest.raises(UsageError, match=fragment) as e:
        convert_value(key, text, kind)
    assert str(e.value).startswith(key)


def test_assignments_need_an_equals_sign(tmp_path) -> None:
    token = tmp_path / "t"
    token.write_text("x\n")
    # Refused before anything is sent (nothing listens on port 9).
    code, _, err = run_main("--api", "http://127.0.0.1:9", "--token-file", str(token), "dhcp", "set", "mclt")
    assert code == 2 and "expected key=value" in err
    code, _, err = run_main("--api", "http://127.0.0.1:9", "--token-file", str(token),
                            "failover-pair", "p", "set", "mclt=soon")
    assert code == 2 and "mclt: bad duration" in err
    code, _, err = run_main("--api", "http://127.0.0.1:9", "--token-file", str(token),
                            "dhcp", "enable", "max-dhcp-requests")
    assert code == 2 and "no on/off attribute" in err and "start-on-reboot" in err


# -- finding the server ----------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_target_from_the_servers_ini_with_the_default_token_file(tmp_path) -> None:
    write(tmp_path / "api-token", "  secret\n")
    ini = write(tmp_path / "c.ini", f"[server]\nname = a\ndata-dir = {tmp_path}\n[api]\nlisten = 0.0.0.0:8111\n")
    t = find_target(None, None, str(ini), env={})
    assert (t.base, t.token) == ("http://127.0.0.1:8111/api/v1", "secret")
    assert str(ini) in t.source


def test_target_with_token_file_and_ipv6_listen(tmp_path) -> None:
    write(tmp_path / "tok", "s2")
    ini = write(tmp_path / "c.ini", f"[server]\nname = a\ndata-dir = /nonexistent\n"
                                    f"[api]\nlisten = [::1]:8112\ntoken-file = {tmp_path}/tok\n")
    t = find_target(None, None, str(ini), env={})
    assert (t.base, t.token) == ("http://[::1]:8112/api/v1", "s2")


def test_target_from_a_file_that_does_not_load(tmp_path) -> None:
    # "dhcp reload" must reach the server to hear why the file is bad.
    write(tmp_path / "api-token", "s3")
    ini = write(tmp_path / "c.ini", f"[server]\nname = a\ndata-dir = {tmp_path}\nbogus-key = 1\n"
                                    "[api]\nlisten = 127.0.0.1:8113\n[scope x\n")
    t = find_target(None, None, str(ini), env={})
    assert (t.base, t.token) == ("http://127.0.0.1:8113/api/v1", "s3")


def test_target_from_options_and_environment(tmp_path) -> None:
    tok = write(tmp_path / "tok", "s4")
    t = find_target("127.0.0.1:9000", str(tok), None, env={})
    assert t.base == "http://127.0.0.1:9000/api/v1"
    t = find_target(None, None, None, env={"CNRCTL_API": "http://h:1/api/v1/", "CNRCTL_TOKEN_FILE": str(tok)})
    assert (t.base, t.token) == ("http://h:1/api/v1", "s4")
    # The option beats the environment.
    t = find_target("http://o:2", None, None, env={"CNRCTL_API": "http://h:1", "CNRCTL_TOKEN_FILE": str(tok)})
    assert t.base == "http://o:2/api/v1"


@pytest.mark.parametrize("ini, fragment", [
    ("[server]\nname = a\ndata-dir = {d}\n[api]\nenabled = false\n", "API is disabled"),
    ("[server]\nname = a\ndata-dir = {d}\n[api]\nlisten = 127.0.0.1:0\n", "port 0"),
    ("[server]\nname = a\ndata-dir = {d}/nothing-here\n", "does not exist"),
])
def test_target_problems_are_usage_errors(tmp_path, ini, fragment) -> None:
    write(tmp_path / "api-token", "x")
    path = write(tmp_path / "c.ini", ini.format(d=tmp_path))
    with pytest.raises(UsageError, match=fragment):
        find_target(None, None, str(path), env={})


def test_missing_config_names_the_alternatives(tmp_path) -> None:
    with pytest.raises(UsageError, match="--api URL and --token-file"):
        find_target(None, None, None, env={})  # /etc/cnrd/cnrd.ini does not exist here
    with pytest.raises(UsageError, match="does not exist$"):
        find_target(None, None, str(tmp_path / "x.ini"), env={})


def test_unreachable_server_is_exit_1_with_a_clear_line(tmp_path) -> None:
    tok = write(tmp_path / "tok", "x")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    code, out, err = run_main("--api", f"http://127.0.0.1:{port}", "--token-file", str(tok), "dhcp", "show")
    assert code == 1 and out == ""
    assert err.startswith(f"cnrctl: cannot reach the cnrd API at http://127.0.0.1:{port}/api/v1 (")
    assert "is cnrd running" in err and err.count("\n") == 1


# -- tables -------------------------------------------------------------------------


def test_table_columns_are_aligned() -> None:
    rows = [{"name": "lan", "subnet": "10.1.0.0/24", "total": 50, "x": None},
            {"name": "a-much-longer-name", "subnet": "10.2.0.0/16", "total": 65534, "x": True}]
    text = format_table(rows, (("NAME", "name"), ("SUBNET", "subnet"), ("TOTAL", "total"), ("X", "x")))
    assert text == ("NAME                SUBNET       TOTAL  X\n"
                    "lan                 10.1.0.0/24  50     -\n"
                    "a-much-longer-name  10.2.0.0/16  65534  true\n")


def test_fields_are_aligned_and_typed() -> None:
    text = format_fields({"start-on-reboot": True, "log-settings": ["default", "failover-detail"],
                          "failover-recover": None, "backup-pct": 12.5, "empty": []})
    assert text == ("start-on-reboot   true\n"
                    "log-settings      default, failover-detail\n"
                    "failover-recover  -\n"
                    "backup-pct        12.5\n"
                    "empty             -\n")


RELATED = {"related-servers": [{
    "pair": "examplepair", "role": "main", "our-address": "10.98.0.1", "partner-address": "10.98.0.2",
    "state": "COMMUNICATIONS-INTERRUPTED", "partner-state": "NORMAL", "communication": "INTERRUPTED",
    "comm-interrupted-since": "2026-11-28T07:30:00Z", "last-contact": "2026-11-28T07:29:55Z",
    "state-since": "2026-11-28T07:30:00Z", "mclt": 30, "unacked-updates": 2, "clock-skew-seconds": 0,
}]}


def test_related_servers_one_block_per_pair() -> None:
    now = 1795851060  # 2026-11-28T07:31:00Z
    assert format_related_servers(RELATED, now) == (
        "failover-pair examplepair: partner 10.98.0.2\n"
        "  role                    main\n"
        "  our-address             10.98.0.1\n"
        "  partner-address         10.98.0.2\n"
        "  state                   COMMUNICATIONS-INTERRUPTED\n"
        "  partner-state           NORMAL\n"
        "  communication           INTERRUPTED\n"
        "  comm-interrupted-since  2026-11-28T07:30:00Z (1m ago)\n"
        "  last-contact            2026-11-28T07:29:55Z (1m5s ago)\n"
        "  state-since             2026-11-28T07:30:00Z (1m ago)\n"
        "  mclt                    30\n"
        "  unacked-updates         2\n"
        "  clock-skew-seconds      0\n"
    )
    two = {"related-servers": [RELATED["related-servers"][0], {**RELATED["related-servers"][0], "pair": "second"}]}
    assert format_related_servers(two).count("failover-pair ") == 2
    assert "\n\nfailover-pair second:" in format_related_servers(two)
    assert format_related_servers({"related-servers": []}).startswith("no related servers")


def test_status_and_reload_text() -> None:
    status = {"version": "0.1.0", "server": "t", "uptime-seconds": 3723, "dhcp-enabled": True, "leases": 1,
              "counters": {"received": {"DISCOVER": 2}, "sent": {"OFFER": 2}, "drops": {}}, "commits": 3}
    text = ctl.format_status(status)
    assert "uptime-seconds  3723 (1h2m3s)\n" in text
    assert "COUNTER   TYPE/REASON  COUNT\nreceived  DISCOVER     2\nsent      OFFER        2\n" in text
    assert ctl.format_reload({"reloaded": True, "applied": [], "restart-required": [], "warnings": []}) == \
        "reloaded\nno changes\n"
    text = ctl.format_reload({"applied": ["[policy default] lease-time"], "restart-required": ["[api] listen"],
                              "warnings": ["w"]})
    assert text == ("reloaded\napplied:\n  [policy default] lease-time\n"
                    "needs a restart (running value kept):\n  [api] listen\nwarning:\n  w\n")


# -- end to end: the console script against a real twistd ------------------------------

SERVER_INI = """\
# cnrctl end-to-end test server
[server]
name = ctltest
# no broadcast interface: nothing but the API is used here
interfaces =
data-dir = {data}
server-port = 0
client-port = {client_port}
# keep this comment
max-dhcp-requests = 500

[api]
listen = 127.0.0.1:{api_port}   # the port the test picked

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149
{extra}"""

PAIR = """
[failover-pair examplepair]
# a main whose backup never comes: 127.0.0.2 on a port nobody listens on
main = 127.0.0.1
backup = 127.0.0.2
port = {failover_port}
mclt = 60
failover-poll-interval = 2
failover-poll-timeout = 6
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """``twistd -n cnrd --config X`` on 127.0.0.1, with cnrctl pointed at its INI file."""

    def __init__(self, tmp: Path, extra: str = "") -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.ini = tmp / "cnrd.ini"
        self.api_port = free_port()
        self.ini.write_text(SERVER_INI.format(data=self.data, api_port=self.api_port,
                                              client_port=free_port(socket.SOCK_DGRAM),
                                              extra=extra.format(failover_port=free_port())))
        self.log_path = tmp / "twistd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([TWISTD, "-n", "--pidfile=", "cnrd", "--config", str(self.ini)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.tmp, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 20
        while "admin API listening" not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"cnrd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by its PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def ctl(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([CNRCTL, "--config", str(self.ini), *args], capture_output=True, text=True,
                              timeout=30, env={**os.environ, **(env or {})})

    def ok(self, *args: str) -> str:
        r = self.ctl(*args)
        assert r.returncode == 0, f"cnrctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
        return r.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.ok("--json", *args))


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def pair_server(tmp_path):
    s = Server(tmp_path, PAIR).start()
    try:
        yield s
    finally:
        s.stop()


def test_e2e_show_and_json_is_the_apis_answer(server) -> None:
    text = server.ok("dhcp", "show")
    assert "server          ctltest\n" in text and "dhcp-enabled    true\n" in text
    status = server.json("dhcp", "show")
    assert status["server"] == "ctltest" and status["dhcp-enabled"] is True
    raw = server.ok("dhcp", "show", "--json")
    assert raw.endswith("}\n") and json.loads(raw)["version"] == status["version"]
    assert server.ok("scope", "list").splitlines()[1].split() == ["lan", "10.1.0.0/24", "50", "0", "50", "50",
                                                                  "0", "0"]
    assert "subnet               10.1.0.0/24\n" in server.ok("scope", "lan", "show")
    r = server.ctl("scope", "wan", "show")
    assert r.returncode == 1 and r.stderr == "cnrctl: no scope 'wan' (there are: lan)\n"
    assert server.ok("dhcp", "getRelatedServers").startswith("no related servers")
    assert server.ok("failover-pair", "list") == "no failover pairs\n"


def test_e2e_attributes_get_set_enable_disable(server) -> None:
    out = server.ok("dhcp", "set", "max-dhcp-requests=600", "log-settings=failover-detail,default",
                    "safe-period=1h", "failover-recover=-2h")
    assert "max-dhcp-requests  600\n" in out and "safe-period        3600\n" in out
    attrs = server.json("dhcp", "get")
    assert attrs["max-dhcp-requests"] == 600 and attrs["safe-period"] == 3600
    assert attrs["log-settings"] == ["default", "failover-detail"]
    assert attrs["failover-recover"] is not None
    assert server.ok("dhcp", "get", "safe-period") == "safe-period=3600\n"
    assert server.ok("dhcp", "set", "failover-recover=0").startswith("failover-recover  -\n")
    assert server.ok("dhcp", "get", "failover-recover") == "failover-recover=-\n"
    server.ok("dhcp", "set", "failover-recover=2026-11-28T06:00:00Z")
    assert server.ok("dhcp", "get", "failover-recover") == "failover-recover=2026-11-28T06:00:00Z\n"
    assert server.ok("dhcp", "unset", "failover-recover") == "failover-recover  -\n"
    server.ok("dhcp", "disable", "start-on-reboot")
    assert server.ok("dhcp", "get", "start-on-reboot") == "start-on-reboot=false\n"
    server.ok("dhcp", "enable", "start-on-reboot")
    assert server.json("dhcp", "get")["start-on-reboot"] is True
    # Refusals: the server's reason on stderr, exit 1.
    r = server.ctl("dhcp", "set", "max-dhcp-requests=0")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith("cnrctl: ") and "out of range" in r.stderr
    r = server.ctl("dhcp", "set", "bogus=1")
    assert r.returncode == 1 and "unknown key 'bogus'" in r.stderr
    r = server.ctl("dhcp", "get", "bogus")
    assert r.returncode == 1 and "no attribute 'bogus'" in r.stderr


def test_e2e_stop_start_and_ready(server) -> None:
    assert server.ok("ready") == "ready\n"
    assert server.ok("dhcp", "stop").startswith("DHCP disabled")
    r = server.ctl("ready")
    assert r.returncode == 1 and r.stdout.startswith("not ready: DHCP is disabled")
    r = server.ctl("--json", "ready")
    assert r.returncode == 1 and json.loads(r.stdout)["ready"] is False
    assert server.json("dhcp", "show")["dhcp-enabled"] is False
    assert server.ok("dhcp", "start") == "DHCP enabled\n"
    assert server.ok("ready") == "ready\n"


def test_e2e_reload_good_and_bad_config(server) -> None:
    assert server.ok("dhcp", "reload") == "reloaded\nno changes\n"
    text = server.ini.read_text()
    server.ini.write_text(text.replace("lease-time = 3600", "lease-time = 7200"))
    out = server.ok("dhcp", "reload")
    assert "applied:\n  [policy default] lease-time\n" in out
    # A bad file: refused with the loader's one line, and the server keeps running its config.
    server.ini.write_text(text.replace("lease-time = 3600", "lease-time = soon"))
    r = server.ctl("dhcp", "reload")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == f"cnrctl: {server.ini}: [policy default] lease-time: bad duration 'soon'\n"
    server.ini.write_text(text + "[scope broken\n")
    r = server.ctl("dhcp", "reload")
    assert r.returncode == 1 and "cannot parse '[scope broken'" in r.stderr
    assert server.ok("ready") == "ready\n"
    server.ini.write_text(text)
    assert "applied:\n  [policy default] lease-time\n" in server.ok("dhcp", "reload")


def test_e2e_save_keeps_comments(server) -> None:
    before = server.ini.read_text()
    server.ok("dhcp", "set", "max-dhcp-requests=750", "log-settings=failover-detail")
    server.ok("dhcp", "disable", "start-on-reboot")
    out = server.ok("save")
    assert out == (f"saved to {server.ini}: [server] log-settings, [server] max-dhcp-requests, "
                   "[server] start-on-reboot\n")
    after = server.ini.read_text()
    assert after == before.replace("max-dhcp-requests = 500\n",
                                   "max-dhcp-requests = 750\nlog-settings = failover-detail\n"
                                   "start-on-reboot = false\n")
    assert "# keep this comment\n" in after and "   # the port the test picked" in after
    c = loads(after)
    assert c.server.max_dhcp_requests == 750 and c.server.start_on_reboot is False
    assert server.ok("save") == f"nothing to save ({server.ini} has every change)\n"
    assert server.ok("dhcp", "reload") == "reloaded\nno changes\n"


def test_e2e_leases(server) -> None:
    r = server.ctl("lease", "10.9.9.9", "show")
    assert r.returncode == 1 and r.stdout == "" and r.stderr == "cnrctl: 10.9.9.9 is not in any scope\n"
    r = server.ctl("lease", "not-an-address")
    assert r.returncode == 1 and "bad IPv4 address" in r.stderr
    assert "state             available\n" in server.ok("lease", "10.1.0.100", "show")
    assert server.json("lease", "10.1.0.100")["scope"] == "lan"
    assert server.ok("lease", "list") == "no leases\n"
    assert server.json("lease", "list", "--state", "leased") == {"leases": [], "next": None}
    r = server.ctl("lease", "list", "--state", "bogus")
    assert r.returncode == 1 and "unknown state 'bogus'" in r.stderr


def test_e2e_wrong_token_and_environment(server, tmp_path) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    r = server.ctl("--token-file", str(bad), "dhcp", "show")
    assert r.returncode == 1 and r.stderr == "cnrctl: wrong API token\n"
    r = subprocess.run([CNRCTL, "dhcp", "show"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "CNRCTL_API": f"http://127.0.0.1:{server.api_port}",
                            "CNRCTL_TOKEN_FILE": str(server.data / "api-token")})
    assert r.returncode == 0 and "ctltest" in r.stdout


def test_e2e_failover_pair_show_set_and_partner_down(pair_server) -> None:
    s = pair_server
    rows = s.ok("failover-pair", "list").splitlines()
    assert rows[0].split() == ["NAME", "MAIN", "BACKUP", "FAILOVER", "MCLT", "BACKUP-PCT", "LOAD-BALANCING",
                               "SCOPES"]
    assert rows[1].split() == ["examplepair", "127.0.0.1", "127.0.0.2", "true", "60", "10", "false", "lan"]
    assert "mclt                      60\n" in s.ok("failover-pair", "examplepair", "show")
    out = s.ok("failover-pair", "examplepair", "set", "mclt=2m", "backup-pct=20")
    assert "mclt                      120\n" in out and "backup-pct                20\n" in out
    assert s.ok("failover-pair", "examplepair", "get", "mclt") == "mclt=120\n"
    s.ok("failover-pair", "examplepair", "enable", "load-balancing")
    assert s.json("failover-pair", "examplepair", "show")["load-balancing"] is True
    out = s.ok("failover-pair", "examplepair", "set", "backup=127.0.0.3")
    assert "pending (at the next start):\n  backup  127.0.0.3\n" in out and "restart required for: backup" in out
    # nrcmd's "dhcp disable failover": every pair, at the next start.
    assert s.ok("dhcp", "disable", "failover") == "failover-pair examplepair: failover=false (at the next start)\n"
    assert s.json("failover-pair", "examplepair", "show")["pending"] == {"backup": "127.0.0.3", "failover": False}
    r = s.ctl("failover-pair", "nopair", "show")
    assert r.returncode == 1 and "no failover pair 'nopair'" in r.stderr
    # The backup never answers: the main's pair is not NORMAL, and its block says so.
    related = s.json("dhcp", "getRelatedServers")["related-servers"][0]
    assert related["pair"] == "examplepair" and related["communication"] == "INTERRUPTED"
    text = s.ok("dhcp", "getRelatedServers")
    assert text.startswith("failover-pair examplepair: partner 127.0.0.2\n  role                    main\n")
    r = s.ctl("dhcp", "setPartnerDown", "nosuchpartner")
    assert r.returncode == 1 and "no failover partner 'nosuchpartner'" in r.stderr
    r = s.ctl("dhcp", "setPartnerDown", "examplepair", "next", "week")
    assert r.returncode == 2 and r.stderr.startswith("cnrctl: ")
    out = s.ok("dhcp", "setPartnerDown", "127.0.0.2", "-1m")
    assert out.startswith("failover-pair examplepair: PARTNER-DOWN (partner down since ")
    assert s.json("dhcp", "getRelatedServers")["related-servers"][0]["state"] == "PARTNER-DOWN"
    out = s.ok("save")
    assert "[failover-pair examplepair] backup" in out and "[failover-pair examplepair] mclt" in out
    saved = s.ini.read_text()
    assert "mclt = 120\n" in saved and "backup = 127.0.0.3\n" in saved and "load-balancing = true\n" in saved
    assert "failover = false\n" in saved
    assert "# a main whose backup never comes" in saved


# -- failover-pair NAME sync ------------------------------------------------------


@pytest.mark.parametrize("argv, operation, direction, run", [
    (["failover-pair", "p", "sync", "update"], "update", None, False),
    (["failover-pair", "p", "sync", "Complete", "--report"], "complete", None, False),
    (["failover-pair", "p", "sync", "exact", "--run"], "exact", None, True),
    (["failover-pair", "p", "sync", "exact", "--direction", "backup-to-main", "--run", "--json"],
     "exact", "backup-to-main", True),
])
def test_sync_arguments(argv, operation, direction, run) -> None:
    args = parse_args(argv)
    assert (args.verb, args.args, args.direction, args.run) == ("sync", [operation], direction, run)


@pytest.mark.parametrize("argv, fragment", [
    (["failover-pair", "p", "sync"], "update|complete|exact"),
    (["failover-pair", "p", "sync", "mirror"], "update|complete|exact"),
    (["failover-pair", "p", "sync", "exact", "update"], "update|complete|exact"),
    (["failover-pair", "p", "sync", "exact", "--report", "--run"], "not allowed with"),
    (["failover-pair", "p", "sync", "exact", "--direction", "sideways"], "invalid choice"),
    (["failover-pair", "p", "show", "--run"], "go with failover-pair NAME sync"),
    (["failover-pair", "p", "set", "mclt=1h", "--direction", "backup-to-main"], "go with failover-pair NAME sync"),
])
def test_sync_usage_mistakes_exit_2(argv, fragment) -> None:
    code, out, err = run_main(*argv)
    assert code == 2 and out == ""
    assert err.startswith("cnrctl: ") and fragment in err


class _Recorder:
    """A Client stand-in: records the one call and answers with ``answer``."""

    def __init__(self, answer: dict) -> None:
        self.answer = answer
        self.calls: list[tuple] = []

    def call(self, method, path, body=None, **kw):
        self.calls.append((method, path, body))
        return 200, json.dumps(self.answer).encode(), self.answer


REPORT = {
    "pair": "examplepair", "operation": "exact", "direction": "main-to-backup", "source": "srv-a",
    "target": "srv-b", "run": False, "applied": [], "restart-required": [], "warnings": [],
    "changes": [
        {"class": "policy", "name": "default", "property": "lease-time", "function": "exact",
         "old": "3600", "new": "7200"},
        {"class": "client", "name": "02:00:00:00:00:09", "property": None, "function": "exact",
         "old": "policy = gold\nhost-name = x", "new": None},
        {"class": "policy", "name": "gold", "property": "option.domain-name", "function": "exact",
         "old": "", "new": "example.com"},
    ],
}


def test_sync_sends_the_apis_body_and_prints_the_changes_as_a_table() -> None:
    client, out = _Recorder(REPORT), io.StringIO()
    args = parse_args(["failover-pair", "examplepair", "sync", "exact"])
    assert ctl.Runner(client, False, out).run(args) == 0
    assert client.calls == [("POST", "/failover-pairs/examplepair/sync",
                             {"operation": "exact", "direction": "main-to-backup", "run": False})]
    lines = out.getvalue().splitlines()
    assert lines[0] == "failover-pair examplepair: exact main-to-backup (report), source srv-a, target srv-b"
    assert lines[1].split() == ["CLASS", "NAME", "PROPERTY", "FUNCTION", "OLD", "NEW"]
    # Columns line up: every row's NEW starts where the heading's does.
    at = lines[1].index("NEW")
    assert [line[at:] for line in lines[2:5]] == ["7200", "-", "example.com"]
    assert lines[2].split() == ["policy", "default", "lease-time", "exact", "3600", "7200"]
    # A whole object's keys on one line; a removed one's NEW is '-', an empty value '""'.
    assert lines[3].split()[:4] == ["client", "02:00:00:00:00:09", "-", "exact"]
    assert "policy = gold; host-name = x" in lines[3]
    assert lines[4].split()[4:] == ['""', "example.com"]
    assert lines[5] == "3 changes (report only: --run makes them)"
    assert len(lines) == 6


def test_sync_run_prints_what_the_target_applied_and_json_is_the_answer() -> None:
    answer = {**REPORT, "run": True, "changes": REPORT["changes"][:1],
              "applied": ["[policy default] lease-time"], "restart-required": ["[failover-pair examplepair] port"],
              "warnings": ["w"]}
    client, out = _Recorder(answer), io.StringIO()
    args = parse_args(["failover-pair", "examplepair", "sync", "exact", "--run", "--direction", "backup-to-main"])
    ctl.Runner(client, False, out).run(args)
    assert client.calls[0][2] == {"operation": "exact", "direction": "backup-to-main", "run": True}
    text = out.getvalue()
    assert "1 change made\n" in text
    assert text.endswith("applied by the target's reload:\n  [policy default] lease-time\n"
                         "needs a restart of the target (running value kept):\n"
                         "  [failover-pair examplepair] port\nwarning:\n  w\n")
    out = io.StringIO()
    ctl.Runner(_Recorder(answer), True, out).run(args)
    assert json.loads(out.getvalue()) == answer


def test_sync_without_changes_says_so() -> None:
    text = ctl.format_sync({**REPORT, "changes": []})
    assert text.splitlines()[1] == "no changes: the target already has what the source has"
    assert "CLASS" not in text
