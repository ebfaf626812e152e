"""A real OpenLDAP slapd for tests: private config, mdb data, stock schemas.

:class:`Slapd` writes a slapd.conf into a directory of the test's own, with
the stock core/cosine/nis/inetorgperson schemas of /etc/ldap/schema (no
schema of ours), suffix ``dc=cnrd,dc=test``, the admin (root) DN and a
read-only account ``cn=dhcp,dc=cnrd,dc=test`` for cnrd to bind as; it loads
tests/data/ldap/base.ldif and offers add/modify/delete/search through the
ldap-utils programs, stop/start on the same data, and optional StartTLS with
a throwaway CA made by the openssl CLI::

    with Slapd(tmp_path) as ldap:
        ldap.add(client_ldif("02:00:00:00:00:07", "pc-7", "staff"))
        assert ldap.search("(macAddress=02:00:00:00:00:07)")[0]["cn"] == ["pc-7"]

With ``netns`` (a tests.integration.lab.Netns or a namespace name) slapd and
the ldap-utils programs run inside that namespace (``ip netns exec`` execs,
so the PID kept is slapd's own); with a Netns its lab also tracks the PID.
The client entry layout (which standard attribute carries which client
property) is described in tests/data/ldap/README.
Every wait here is bounded; only the slapd this object started is stopped.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "SUFFIX",
    "CLIENTS",
    "ADMIN_DN",
    "ADMIN_PASSWORD",
    "DHCP_DN",
    "DHCP_PASSWORD",
    "DATA",
    "Slapd",
    "SlapdError",
    "client_dn",
    "client_ldif",
    "missing_ldap_requirements",
]

SUFFIX = "dc=cnrd,dc=test"
CLIENTS = f"ou=clients,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
DHCP_DN = f"cn=dhcp,{SUFFIX}"
#: Set in tests/data/ldap/base.ldif (userPassword of cn=dhcp).
DHCP_PASSWORD = "dhcp-secret"

DATA = Path(__file__).resolve().parent / "data" / "ldap"
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
MODULE_DIR = Path("/usr/lib/ldap")
BINARIES = ("slapd", "slaptest", "ldapadd", "ldapmodify", "ldapdelete", "ldapsearch", "ldapwhoami", "openssl")

START_TIMEOUT = 15.0  # seconds until a started slapd must answer a search
STOP_TIMEOUT = 10.0
TOOL_TIMEOUT = 20.0


def missing_ldap_requirements() -> list[str]:
    """What this machine lacks for :class:`Slapd` (empty when all is there)."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    missing += [f"{SCHEMA_DIR}/{s}.schema" for s in SCHEMAS if not (SCHEMA_DIR / f"{s}.schema").exists()]
    if not (MODULE_DIR / "back_mdb.la").exists() and not (MODULE_DIR / "back_mdb.so").exists():
        missing.append(f"{MODULE_DIR}/back_mdb")
    return missing


class SlapdError(RuntimeError):
    """slapd or one of the ldap-utils programs failed; the message has its output."""


def client_dn(mac: str) -> str:
    """The DN of the client entry for ``mac`` (lower-case colon hex)."""
    return f"macAddress={mac.lower()},{CLIENTS}"


def client_ldif(
    mac: str,
    host_name: str,
    client_class: str | None = None,
    reserved: str | None = None,
    *,
    action: str | None = None,
) -> str:
    """The LDIF of one client entry, in the layout of tests/data/ldap/README.

    ``device`` + ``ieee802Device``: cn = host name, macAddress = ``mac``,
    description = client class, ou = action (e.g. ``exclude``); with
    ``reserved`` the auxiliary ``ipHost`` class adds ipHostNumber = the
    reserved address.
    """
    mac = mac.lower()
    lines = [
        f"dn: {client_dn(mac)}",
        "objectClass: device",
        "objectClass: ieee802Device",
    ]
    if reserved is not None:
        lines.append("objectClass: ipHost")
    lines += [f"macAddress: {mac}", f"cn: {host_name}"]
    if client_class is not None:
        lines.append(f"description: {client_class}")
    if action is not None:
        lines.append(f"ou: {action}")
    if reserved is not None:
        lines.append(f"ipHostNumber: {reserved}")
    return "\n".join(lines) + "\n"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse_ldif(text: str) -> list[dict[str, list[str]]]:
    """Entries of ``ldapsearch -LLL -o ldif-wrap=no`` output; ``dn`` is a key too."""
    entries: list[dict[str, list[str]]] = []
    for block in text.strip().split("\n\n"):
        entry: dict[str, list[str]] = {}
        for line in block.splitlines():
            if not line or line.startswith("#") or ":" not in line:
                continue
            name, _, rest = line.partition(":")
            if rest.startswith(":"):
                value = base64.b64decode(rest[1:].strip()).decode("utf-8", "replace")
            else:
                value = rest.strip()
            entry.setdefault(name, []).append(value)
        if entry:
            entries.append(entry)
    return entries


class Slapd:
    """One slapd with its config, data, log and (with ``tls``) certificates in ``directory``.

    ``port`` None picks a free port on ``host`` (389 inside a namespace, which
    is the test's own).  ``sizelimit`` None means no size limit; a number sets
    that soft and hard limit for unpaged searches while paged searches
    (RFC 2696) still get every entry, so a test can show paging is needed.
    ``anonymous_read`` lets an anonymous bind search the tree.
    """

    def __init__(
        self,
        directory: Path | str,
        host: str = "127.0.0.1",
        port: int | None = None,
        netns: Any = None,
        tls: bool = False,
        *,
        sizelimit: int | None = None,
        anonymous_read: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self.netns = netns
        self.port = port if port is not None else (389 if netns is not None else _free_port(host))
        self.tls = tls
        self.sizelimit = sizelimit
        self.anonymous_read = anonymous_read
        self.admin_dn = ADMIN_DN
        self.admin_password = ADMIN_PASSWORD
        self.dhcp_dn = DHCP_DN
        self.dhcp_password = DHCP_PASSWORD
        self.suffix = SUFFIX
        self.clients = CLIENTS
        self.conf = self.directory / "slapd.conf"
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "slapd.log"
        self.ca_file: Path | None = None
        self.cert_file: Path | None = None
        self.key_file: Path | None = None
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._frozen = False
        self._loaded = False

    # ------------------------------------------------------------ properties --
    @property
    def uri(self) -> str:
        """``ldap://HOST:PORT/``, the address cnrd and the tools connect to."""
        return f"ldap://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        """Whether the slapd this object started is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def write_password_file(self, path: Path | str, password: str | None = None) -> Path:
        """Write the dhcp account's password (or ``password``) to ``path`` for cnrd's password-file."""
        p = Path(path)
        p.write_text((self.dhcp_password if password is None else password) + "\n")
        os.chmod(p, 0o600)
        return p

    # --------------------------------------------------------------- config --
    def _ns_argv(self, argv: Sequence[object]) -> list[str]:
        cmd = [str(a) for a in argv]
        if self.netns is not None:
            return ["ip", "netns", "exec", str(self.netns), *cmd]
        return cmd

    def _make_certificates(self) -> None:
        d = self.directory
        ca_key, ca_crt = d / "ca.key", d / "ca.crt"
        key, csr, crt = d / "server.key", d / "server.csr", d / "server.crt"
        ext = d / "server.ext"
        try:
            import ipaddress

            ipaddress.ip_address(self.host)
            san = f"IP:{self.host}"
        except ValueError:
            san = f"DNS:{self.host}"
        ext.write_text(
            f"subjectAltName={san}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        steps = [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", ca_key, "-out", ca_crt, "-subj", "/CN=cnrd test CA"],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={self.host}"],
            ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
             "-CAcreateserial", "-days", "2", "-out", crt, "-extfile", ext],
        ]
        for argv in steps:
            cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
            if cp.returncode != 0:
                raise SlapdError(f"{' '.join(map(str, argv))} failed: {cp.stderr}")
        os.chmod(key, 0o600)
        self.ca_file, self.cert_file, self.key_file = ca_crt, crt, key

    def _config_text(self) -> str:
        lines = [f"include {SCHEMA_DIR}/{s}.schema" for s in SCHEMAS]
        lines += [
            f"pidfile {self.directory / 'slapd.pid'}",
            f"argsfile {self.directory / 'slapd.args'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
        ]
        if self.tls:
            lines += [
                f"TLSCACertificateFile {self.ca_file}",
                f"TLSCertificateFile {self.cert_file}",
                f"TLSCertificateKeyFile {self.key_file}",
            ]
        if self.sizelimit is None:
            limit = "sizelimit size.soft=unlimited size.hard=unlimited size.prtotal=unlimited"
        else:
            n = int(self.sizelimit)
            limit = f"sizelimit size.soft={n} size.hard={n} size.prtotal=unlimited"
        reader = "by * read" if self.anonymous_read else "by users read"
        lines += [
            "",
            "database mdb",
            f"suffix {self.suffix}",
            f"rootdn {self.admin_dn}",
            f"rootpw {self.admin_password}",
            f"directory {self.data_dir}",
            "maxsize 67108864",
            limit,
            "index objectClass eq",
            "index macAddress eq",
            "",
            # the bind passwords: checked by binds, read by nobody
            "access to attrs=userPassword",
            "  by anonymous auth",
            "  by * none",
            # everything else: the dhcp account (and, if allowed, anonymous) may only read
            "access to *",
            f'  by dn.exact="{self.dhcp_dn}" read',
            f"  {reader}",
            "",
        ]
        return "\n".join(lines)

    def configure(self) -> None:
        """Write slapd.conf (and with ``tls`` the certificates) and check it with slaptest; :meth:`start` does it once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self.tls and self.ca_file is None:
            self._make_certificates()
        self.conf.write_text(self._config_text())
        cp = subprocess.run(
            ["slaptest", "-Q", "-u", "-f", str(self.conf)],
            capture_output=True, text=True, timeout=TOOL_TIMEOUT,
        )
        if cp.returncode != 0:
            raise SlapdError(f"slaptest refused {self.conf}: {cp.stdout}{cp.stderr}")

    # ------------------------------------------------------------ lifecycle --
    def start(self) -> "Slapd":
        """Start slapd (on the same data if it ran before) and wait until it answers."""
        if self.running:
            return self
        if not self.conf.exists():
            self.configure()
        self._log = open(self.log_path, "ab")
        argv = self._ns_argv(["slapd", "-d", "0", "-h", self.uri, "-f", self.conf])
        self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = self._proc.pid
        self._frozen = False
        lab = getattr(self.netns, "lab", None)
        if lab is not None and hasattr(lab, "track_pid"):
            lab.track_pid(self.pid, "slapd")
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        for _ in range(300):
            if not self.running:
                raise SlapdError(f"slapd exited with {self._proc.returncode}: {self.log()}")
            cp = self._tool(
                ["ldapsearch", "-x", "-LLL", "-H", self.uri, "-s", "base", "-b", "", "namingContexts"],
                check=False, timeout=5,
            )
            if cp.returncode == 0:
                break
            last = cp.stderr
            if time.monotonic() > deadline:
                self.stop()
                raise SlapdError(f"slapd did not answer within {START_TIMEOUT}s: {last} {self.log()}")
            time.sleep(0.05)
        else:
            self.stop()
            raise SlapdError(f"slapd did not answer: {last}")
        if not self._loaded:
            self.add((DATA / "base.ldif").read_text())
            self._loaded = True
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the slapd this object started (by its PID) and wait for it; its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            if self._frozen:
                os.kill(proc.pid, signal.SIGCONT)
                self._frozen = False
            proc.send_signal(sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._proc = None
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL, as a crash: no clean shutdown of connections."""
        return self.stop(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP slapd: connections stay open but nothing is answered (for timeout tests)."""
        if self.running and not self._frozen:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.running and self._frozen:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGCONT)
            self._frozen = False

    def log(self) -> str:
        """slapd's own output so far (``-d 0`` prints little beyond errors)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "Slapd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ the tools --
    def _tool(
        self,
        argv: Sequence[object],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = TOOL_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        # LDAPNOINIT would also drop LDAPTLS_CACERT: point the config at nothing instead
        env["LDAPCONF"] = os.devnull
        env["LDAPRC"] = os.devnull
        if self.ca_file is not None:
            env["LDAPTLS_CACERT"] = str(self.ca_file)
        cmd = self._ns_argv(argv)
        cp = subprocess.run(
            cmd, input=input, capture_output=True, text=True, errors="replace",
            timeout=timeout, env=env, stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and cp.returncode != 0:
            raise SlapdError(f"{' '.join(cmd)} exited {cp.returncode}: {cp.stdout}{cp.stderr}")
        return cp

    def _admin(self) -> list[str]:
        return ["-x", "-H", self.uri, "-D", self.admin_dn, "-w", self.admin_password]

    def add(self, ldif_text: str) -> None:
        """Add the entries of ``ldif_text`` as the admin."""
        self._tool(["ldapadd", *self._admin()], input=ldif_text)

    def modify(self, dn: str, attr: str, value: str | Sequence[str] | None) -> None:
        """Replace ``attr`` of ``dn`` with ``value`` (a list: several values; None: remove it)."""
        values = [] if value is None else [value] if isinstance(value, str) else list(value)
        lines = [f"dn: {dn}", "changetype: modify"]
        if values:
            lines.append(f"replace: {attr}")
            lines += [f"{attr}: {v}" for v in values]
        else:
            lines.append(f"delete: {attr}")
        lines.append("-")
        self._tool(["ldapmodify", *self._admin()], input="\n".join(lines) + "\n")

    def modify_ldif(self, ldif_text: str) -> None:
        """Apply an LDIF with changetype records as the admin."""
        self._tool(["ldapmodify", *self._admin()], input=ldif_text)

    def delete(self, dn: str) -> None:
        """Delete the entry ``dn`` as the admin."""
        self._tool(["ldapdelete", *self._admin(), dn])

    def search(
        self,
        filter: str = "(objectClass=*)",
        base: str | None = None,
        attrs: Sequence[str] = (),
        *,
        bind: tuple[str, str] | None = None,
        starttls: bool = False,
    ) -> list[dict[str, list[str]]]:
        """Entries matching ``filter`` under ``base`` (default the suffix), each a dict with ``dn``.

        ``bind`` = (dn, password) searches as that account (default: the admin);
        ``starttls`` requires StartTLS (``-ZZ``, checked against the fixture's CA).
        """
        dn, password = bind if bind is not None else (self.admin_dn, self.admin_password)
        argv: list[object] = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.uri,
                              "-D", dn, "-w", password, "-b", base or self.suffix]
        if starttls:
            argv.append("-ZZ")
        cp = self._tool([*argv, filter, *attrs])
        return _parse_ldif(cp.stdout)

    def can_bind(self, dn: str, password: str) -> bool:
        """Whether a simple bind as ``dn`` with ``password`` succeeds (``ldapwhoami``)."""
        cp = self._tool(["ldapwhoami", "-x", "-H", self.uri, "-D", dn, "-w", password], check=False)
        return cp.returncode == 0
