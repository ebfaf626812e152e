"""The failover wire codec: draft-ietf-dhc-failover-12 ([D]) as ISC dhcpd 4.4 speaks it.

One failover relationship is one TCP connection (port 647, [D] §8.1) carrying
back-to-back messages ([D] §6.1)::

    length (2) | type (1) | payload offset (1) | time (4) | xid (4) | [extra header] | options

Options are ``code (2) | length (2) | value`` TLVs ([D] §6.2).  This package turns
bytes into :class:`Message` objects and back, and knows which options each
message type carries and how big they are.  It knows nothing of connections,
timers or failover states: the peer logic decides what to answer.

* :mod:`~cnrd.failover.wire.codes` -- message types, option codes, state and
  reason codes, flags, and the per-type allowed and required options;
* :mod:`~cnrd.failover.wire.message` -- :class:`Message` with its typed option
  attributes, and :class:`FailoverWireError`;
* :mod:`~cnrd.failover.wire.codec` -- :func:`decode`, :func:`validate`, :func:`encode`;
* :mod:`~cnrd.failover.wire.framer` -- :class:`Framer`, for a TCP byte stream;
* :mod:`~cnrd.failover.wire.builders` -- one constructor per message type;
* :mod:`~cnrd.failover.wire.hba` -- the RFC 3074 load-balancing hash and bucket maps;
* :mod:`~cnrd.failover.wire.clientopts` -- the cookie + DHCP options value of
  client-request-options and client-reply-options.

This module re-exports all of them.  Design, and where it follows ISC rather
than the letter of [D] ("ISC" means ISC DHCP 4.4's ``server/failover.c`` and
``server/stables.c``):

* :class:`Message` keeps its options raw and in wire order, so ``encode(decode(b))
  == b`` for every well-formed frame; typed attributes decode on access.
* Decoding has two layers.  *Framing* (length 12..2048, payload offset, TLVs
  inside the message) is always checked.  *Validation* (``strict=True``, the
  default) adds what ISC's parser and message handlers enforce: the message type,
  the size of fixed-size options, no repeated option, and the options without
  which a message cannot be acted on (see :func:`validate`).
* Options a message type does not use (``ALLOWED``, ISC's ``fto_allowed`` table)
  are kept for re-encoding but otherwise ignored, as ISC does: they are neither
  size- nor duplicate-checked and the typed attributes do not see them.  Unknown
  codes (> 29) are ignored the same way ([D] §6.1: MUST be ignored).
* Errors are :class:`FailoverWireError`.  ``fatal`` errors mean the byte stream
  or the message format is broken: drop the link (ISC closes without a word;
  a DISCONNECT carrying ``reject_reason`` is the polite [D] way).  Non-fatal
  errors are well-framed messages that lack what their type needs; they carry
  the decoded message so the peer can answer with the right reject (CONNECTACK
  for a CONNECT, BNDACK for a BNDUPD) and the stream stays usable.
* Batched BNDUPD/BNDACK ([D] §6.3) decode, and :meth:`Message.bindings` splits
  them; ISC can neither send nor parse them, so the builders never batch.

Pure package: stdlib only, no reactor, no clock (callers pass ``time``).
"""

from __future__ import annotations

from cnrd.failover.wire.builders import (
    bndack,
    bndupd,
    connect,
    connectack,
    contact,
    disconnect,
    poolreq,
    poolresp,
    state,
    upddone,
    updreq,
    updreqall,
)
from cnrd.failover.wire.clientopts import ClientOptionsError, decode_client_options, encode_client_options
from cnrd.failover.wire.codec import decode, encode, validate
from cnrd.failover.wire.codes import (
    ALLOWED,
    HBA_SIZE,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    PORT,
    PROTOCOL_VERSION,
    BindingStatus,
    DDNSFlags,
    IPFlags,
    MessageType,
    Option,
    RejectReason,
    ServerFlags,
    ServerState,
    TLSReply,
    TLSRequest,
)
from cnrd.failover.wire.framer import Framer
from cnrd.failover.wire.hba import (
    hba_buckets,
    hba_from_buckets,
    hba_from_split,
    hba_has_bucket,
    load_balance_hash,
)
from cnrd.failover.wire.message import FailoverWireError, Message

__all__ = [
    "PORT",
    "HEADER_SIZE",
    "MIN_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "HBA_SIZE",
    "MessageType",
    "Option",
    "ServerState",
    "BindingStatus",
    "RejectReason",
    "ServerFlags",
    "IPFlags",
    "DDNSFlags",
    "TLSRequest",
    "TLSReply",
    "ALLOWED",
    "FailoverWireError",
    "Message",
    "decode",
    "validate",
    "encode",
    "Framer",
    "connect",
    "connectack",
    "state",
    "bndupd",
    "bndack",
    "contact",
    "disconnect",
    "updreqall",
    "updreq",
    "upddone",
    "poolreq",
    "poolresp",
    "hba_from_split",
    "hba_from_buckets",
    "hba_buckets",
    "hba_has_bucket",
    "load_balance_hash",
    "ClientOptionsError",
    "decode_client_options",
    "encode_client_options",
]
