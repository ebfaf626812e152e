"""Malformed failover messages against a real cnrd main, from its partner's address.

    lan (bridge) ── main 10.98.0.1   (twistd cnrd)
                 ── backup 10.98.0.2 (twistd cnrd; the injector runs here too)
                 ── cli (dhclient)

The main accepts TCP 647 only from its configured partner, so the injector runs
in the backup's namespace and binds 10.98.0.2.  It also keeps one link per
relationship (cnrd/failover/protocol.py: a second connection is closed without
reading it), so while the real pair is up an injected connection is simply
refused; the test shows that first.  To get the injector's bytes parsed, the
real backup is killed (SIGKILL, its LMDB store survives), not stopped: a
SIGSTOPped backup's kernel still completes the main's redial, and that dead
link would hold the relationship's one slot.  Each malformed stream then goes
over a fresh connection, and the main must answer DISCONNECT (CONNECTACK with a
reject for a CONNECT) and close, without dying.  Finally the backup restarts,
the pair returns to NORMAL and the lease is in both stores.
"""

from __future__ import annotations

import json
import struct
import sys


from cnrd.failover import wire as w
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import dhclient, wait_for
from tests.integration.test_failover_pair import pair, reached, state_lines  # noqa: F401 (pair: the fixture)

# Connect from SRC to DST:647, read what the main says first (its CONNECT), send
# the payload, read until the main closes; print what happened as JSON.
INJECT = r"""
import json, socket, sys, time
src, dst, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket()
s.bind((src, 0))
s.settimeout(5)
out = {"connected": False, "before": "", "after": "", "eof": False, "error": None}
try:
    s.connect((dst, 647))
    out["connected"] = True
    s.settimeout(0.7)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                out["eof"] = True
                break
            got += chunk
    except socket.timeout:
        pass
    out["before"] = got.hex()
    if not out["eof"]:
        s.sendall(payload)
        s.settimeout(10)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                out["eof"] = True
                break
            got += chunk
        out["after"] = got.hex()
except OSError as e:
    out["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def _frame(mtype: int, options: list[tuple[int, bytes]], *, payoff: int = 12,
           length: int | None = None) -> bytes:
    """A failover message with whatever header fields the case needs (encode()
    refuses to write broken ones)."""
    body = b"".join(struct.pack("!HH", c, len(v)) + v for c, v in options)
    total = 12 + len(body)
    return struct.pack("!HBBII", total if length is None else length, mtype, payoff, 0, 77) + body


_STATE_OK = [(w.Option.SERVER_STATE, b"\x02"), (w.Option.SERVER_FLAGS, b"\x00"),
             (w.Option.START_TIME_OF_STATE, b"\x00\x00\x00\x01")]

# name -> (bytes sent, message type the main answers with before closing)
CASES: dict[str, tuple[bytes, int]] = {
    "garbage (an HTTP request)": (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", w.MessageType.DISCONNECT),
    "length below the header": (b"\x00\x05" + bytes(30), w.MessageType.DISCONNECT),
    "length above 2048": (struct.pack("!H", 3000) + bytes(40), w.MessageType.DISCONNECT),
    # The length field ends the message inside its second option.
    "length field shorter than the options": (_frame(w.MessageType.STATE, _STATE_OK, length=20),
                                              w.MessageType.DISCONNECT),
    "payload offset past the end": (_frame(w.MessageType.STATE, _STATE_OK, payoff=200),
                                    w.MessageType.DISCONNECT),
    "unknown mandatory type 99": (_frame(99, []), w.MessageType.DISCONNECT),
    # server-state claiming 32 bytes, one present (length field patched below).
    "truncated option": (_frame(w.MessageType.STATE, []) + b"\x00\x18\x00\x20\x02",
                         w.MessageType.DISCONNECT),
    "wrong option size": (_frame(w.MessageType.STATE, [(w.Option.SERVER_STATE, b"\x00\x02")]
                                 + _STATE_OK[1:]), w.MessageType.DISCONNECT),
    "valid CONTACT then random bytes": (
        w.encode(w.contact(1, 1)) + bytes.fromhex("0fa0ffee00112233445566778899"),
        w.MessageType.DISCONNECT),
    "CONNECT without a hash bucket map": (
        _frame(w.MessageType.CONNECT, [(w.Option.RELATIONSHIP_NAME, b"examplepair"),
                                       (w.Option.MAX_UNACKED_BNDUPD, b"\x00\x00\x00\x0a"),
                                       (w.Option.RECEIVE_TIMER, b"\x00\x00\x00\x06"),
                                       (w.Option.MCLT, b"\x00\x00\x00\x1e")]),
        w.MessageType.CONNECTACK),
}
# The truncated-option frame: its header length must cover the short option.
_t = CASES["truncated option"][0]
CASES["truncated option"] = (struct.pack("!H", len(_t)) + _t[2:], w.MessageType.DISCONNECT)


def _messages(hex_bytes: str) -> list[w.Message]:
    """What the main sent, cut into messages (framing only: just reading it)."""
    framer = w.Framer(strict=False)
    try:
        return framer.feed(bytes.fromhex(hex_bytes))
    except w.FailoverWireError as e:
        return e.preceding


def inject(backup: CnrdProcess, payload: bytes) -> dict:
    """Run the injector in the backup's namespace, from 10.98.0.2 to the main."""
    cp = backup.ns.run(sys.executable, "-c", INJECT, "10.98.0.2", "10.98.0.1", payload.hex(),
                       timeout=30)
    return json.loads(cp.stdout)


def test_malformed_failover_input_drops_the_link_and_the_pair_recovers(pair):
    lab, lan, br, c, main, backup = pair
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")
    _, cif = lab.link(lan, c, a_bridge=br)
    lease = dhclient(c, cif)
    wait_for(lambda: lease.address in backup.leased(), 10, what="the lease in the backup's store")
    mac = main.leased()[lease.address]

    # 1. While the real link is up, a second connection from the partner's
    #    address is closed unread: the pair does not notice.
    seen_main, seen_backup = len(state_lines(main)), len(state_lines(backup))
    res = inject(backup, CASES["garbage (an HTTP request)"][0])
    assert res["connected"] and res["eof"], res
    assert res["before"] == "" and res["after"] == "", res  # not a word to the intruder
    assert len(state_lines(main)) == seen_main and len(state_lines(backup)) == seen_backup
    assert "bad message from partner" not in main.log()

    # 2. Take the real backup away; the main redials it in vain.
    seen_main = len(state_lines(main))
    backup.kill9()
    wait_for(lambda: reached(main, "COMMUNICATIONS-INTERRUPTED", seen_main), 15,
             what="main in COMMUNICATIONS-INTERRUPTED")

    # 3. Each malformed stream on its own connection: answered and dropped.
    for n, (name, (payload, answer)) in enumerate(CASES.items(), 1):
        res = inject(backup, payload)
        assert res["connected"] and res["error"] is None, (name, res)
        first = _messages(res["before"])
        assert first and first[0].type == w.MessageType.CONNECT, (name, res)  # the main's hello
        replies = _messages(res["after"])
        assert res["eof"], f"{name}: the main kept the link open ({res})"
        assert any(m.type == answer and m.get(w.Option.REJECT_REASON) is not None
                   for m in replies), f"{name}: no {answer.name} with a reject reason: {replies}"
        assert main.proc is not None and main.proc.poll() is None, f"main died on {name}"
        wait_for(lambda n=n: main.log().count("bad message from partner") >= n, 5,
                 what=f"the main to log the bad message ({name})")
    log = main.log()
    assert "Traceback" not in log and "Unhandled" not in log

    # 4. The real backup comes back: NORMAL again, the lease on both sides.
    seen_main = len(state_lines(main))
    backup.start()
    wait_for(lambda: reached(main, "NORMAL", seen_main) and reached(backup, "NORMAL", 0), 40,
             what="both back to NORMAL")
    assert main.leased().get(lease.address) == mac
    wait_for(lambda: backup.leased().get(lease.address) == mac, 10,
             what="the lease still in the backup's store")
