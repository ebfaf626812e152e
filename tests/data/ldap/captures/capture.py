"""Record what OpenLDAP's ldapsearch sends and what a real slapd answers, byte for byte.

Run from the repository root: ``.venv/bin/python tests/data/ldap/captures/capture.py``.
Starts slapd with tests/ldapfix.py on 127.0.0.1, puts a recording TCP proxy
in front of it, runs ldapsearch through the proxy and writes
``NAME.client.bin`` (ldapsearch -> slapd) and ``NAME.server.bin``
(slapd -> ldapsearch) next to this file.  A StartTLS capture keeps only the
first PDU each way: what follows is TLS.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from cnrd.ldap.messages import split_pdus  # noqa: E402
from tests.ldapfix import CLIENTS, DHCP_DN, DHCP_PASSWORD, Slapd, client_ldif  # noqa: E402


def record(slapd: Slapd, argv: list[str]) -> tuple[bytes, bytes, str]:
    """(client bytes, server bytes, ldapsearch output) of one ldapsearch run through a proxy."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    env = dict(os.environ, LDAPCONF=os.devnull, LDAPRC=os.devnull)
    if slapd.ca_file is not None:
        env["LDAPTLS_CACERT"] = str(slapd.ca_file)
    proc = subprocess.Popen(["ldapsearch", "-x", "-H", f"ldap://127.0.0.1:{port}/", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    listener.settimeout(10)
    down, _ = listener.accept()
    up = socket.create_connection((slapd.host, slapd.port), timeout=10)
    sent, answered = bytearray(), bytearray()
    deadline = time.monotonic() + 10
    open_ends = {down: up, up: down}
    while open_ends and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_ends), [], [], 0.5)
        for s in ready:
            data = s.recv(65536)
            peer = open_ends.get(s)
            if not data:
                open_ends.pop(s, None)
                if peer is not None:
                    try:
                        peer.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                continue
            (sent if s is down else answered).extend(data)
            if peer is not None:
                peer.sendall(data)
    out = proc.communicate(timeout=10)[0].decode()
    for s in (down, up, listener):
        s.close()
    return bytes(sent), bytes(answered), out


def first_pdu(data: bytes) -> bytes:
    """The first LDAPMessage of ``data`` (what precedes the TLS handshake)."""
    length = data[1] if data[1] < 0x80 else int.from_bytes(data[2: 2 + (data[1] & 0x7F)], "big")
    header = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
    pdus, _ = split_pdus(data[: header + length])
    return pdus[0]


def save(name: str, client: bytes, server: bytes) -> None:
    (HERE / f"{name}.client.bin").write_bytes(client)
    (HERE / f"{name}.server.bin").write_bytes(server)
    print(f"{name}: {len(client)} bytes sent, {len(server)} answered")


def main() -> None:
    bind = ["-D", DHCP_DN, "-w", DHCP_PASSWORD, "-b", CLIENTS]
    with tempfile.TemporaryDirectory() as tmp:
        with Slapd(Path(tmp) / "plain") as slapd:
            slapd.add(client_ldif("02:00:00:00:00:07", "pc-7", "staff", "10.0.0.77"))
            slapd.add("\n".join(client_ldif(f"02:00:00:00:01:{i:02x}", f"pc-1{i}", "lab") for i in range(5)))
            c, s, out = record(slapd, [*bind, "(macAddress=02:00:00:00:00:07)", "cn"])
            assert "cn: pc-7" in out, out
            save("search", c, s)
            c, s, out = record(slapd, ["-D", DHCP_DN, "-w", "wrong", "-b", CLIENTS, "(macAddress=x)", "cn"])
            assert "Invalid credentials" in out, out
            save("badpass", c, s)
            c, s, out = record(slapd, [*bind, "-E", "pr=2/noprompt", "(description=lab)", "macAddress"])
            assert out.count("macAddress: ") == 5, out
            save("paged", c, s)
        with Slapd(Path(tmp) / "tls", tls=True) as slapd:
            c, s, out = record(slapd, ["-ZZ", *bind, "(macAddress=02:00:00:00:00:07)", "cn"])
            assert "result: 0 Success" in out, out
            save("starttls", first_pdu(c), first_pdu(s))


if __name__ == "__main__":
    main()
