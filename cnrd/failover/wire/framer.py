"""Cutting a failover TCP byte stream into messages.

Pure module: bytes in, :class:`Message` objects out; the protocol adapter owns
the connection.
"""

from __future__ import annotations

from typing import NoReturn

from cnrd.failover.wire.codec import decode
from cnrd.failover.wire.codes import MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE
from cnrd.failover.wire.message import FailoverWireError, Message, fatal

__all__ = ["Framer"]


class Framer:
    """Cuts a TCP byte stream into messages by their length field ([D] §6.1).

    ``feed`` takes data in any chunking and returns the messages completed so far;
    an incomplete message just waits for more.  A length outside 12..2048 is
    fatal as soon as its two bytes arrive (ISC's "message length wait" check), so a
    garbage stream never makes us buffer much.  Errors are raised with
    ``preceding`` set to the messages decoded earlier in the same call.  After a
    non-fatal error the bad message has been consumed: ``feed(b"")`` carries on
    with what is buffered.  After a fatal one the framer stays broken.
    """

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        self._buffer = bytearray()
        self._broken: FailoverWireError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        if self._broken is not None:
            raise fatal(f"stream already failed: {self._broken.reason}")
        buf = self._buffer
        buf += data
        out: list[Message] = []
        while len(buf) >= 2:
            length = int.from_bytes(buf[:2], "big")
            if length < MIN_MESSAGE_SIZE or length > MAX_MESSAGE_SIZE:
                err = fatal(f"message length {length} outside "
                             f"{MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}")
                self._fail(err, out)
            if len(buf) < length:
                break
            frame = bytes(buf[:length])
            del buf[:length]
            try:
                out.append(decode(frame, strict=self.strict))
            except FailoverWireError as err:
                self._fail(err, out)
        return out

    def _fail(self, err: FailoverWireError, out: list[Message]) -> NoReturn:
        err.preceding = out
        if err.fatal:
            self._broken = err
            self._buffer.clear()
        raise err
