"""Bytes on the wire between the notebook and its local workers.

One connection is a TCP stream on loopback. It opens with a handshake that
carries the cluster's secret; a peer that sends anything else is dropped before
a single byte of it is deserialized. After that, each message is a frame::

    header (16 bytes, little endian): kind u8 | flags u8 | reserved u16 | request id u32 | length u64
    body (length bytes)

A body is a *payload*: a pickle (protocol 5, cloudpickle so notebook code travels
by value) plus its out-of-band buffers (NumPy arrays, torch tensors)::

    n_buffers u32 | main_len u64 | buffer_len u64 × n | main | buffers…

Small payloads travel inline in the stream. Large ones (≥ ``SHM_THRESHOLD``) are
written once into a shared-memory segment that the sender keeps for reuse, and
the frame only names the segment. The receiver loads the message from its mapping
of the segment: NumPy arrays and torch tensors (protocol-5 out-of-band buffers,
64-byte aligned) come out as views of it, so a 16 MiB array is copied once per
direction, and never goes through base64, JSON lists or socket buffers. The
segment is lent until the last of those views is gone; then a RELEASE frame hands
it back. A ``bytes`` owns its memory, so large ``bytes`` are copied out by the
unpickler (twice per direction) and their segment is handed back at once. Each
side keeps at most ``SHM_POOL_BYTES`` of idle segments for reuse; no segment file
outlives the processes that use it, and views stay readable after the connection
closes (see ``_segments``).

Large ``bytes`` are written by the pickler straight from the object (no copy);
tensors are reduced to raw buffers; CUDA tensors arrive on the CPU.

The request id names the request a message belongs to (a call, a cell), so its
output and result find their way back; the messages themselves are the typed
dataclasses of :mod:`vastnb.wire.messages`. Exceptions travel as
:class:`~vastnb.wire.messages.ErrorRecord` (:func:`format_remote_error`) and
become exceptions again with :func:`build_remote_exception`.

Replies from machines vastnb does not trust (Vast workers run on other people's
hosts) are loaded with :func:`loads_untrusted`, a restricted unpickler that runs
none of their code (:mod:`vastnb.wire._restricted`).
"""

from __future__ import annotations

from ._errors import RemoteTraceback, build_remote_exception, format_remote_error
from ._frames import (
    HANDSHAKE_DIRECT,
    HANDSHAKE_MAGIC,
    HEADER,
    KIND_MSG,
    SHM_POOL_BYTES,
    SHM_THRESHOLD,
    Connection,
    PayloadError,
    frame,
    segment_files,
    sweep_segments,
    unlink_created_segments,
)
from ._pickle import (
    Payload,
    ProtocolError,
    check_picklable,
    dumps_code,
    dumps_payload,
    loads_payload,
    pickle_roundtrip,
)
from ._fast import dumps_small
from ._restricted import UntrustedReply, dumps_reply, loads_untrusted

__all__ = [
    "Connection",
    "HANDSHAKE_DIRECT",
    "HANDSHAKE_MAGIC",
    "HEADER",
    "KIND_MSG",
    "Payload",
    "PayloadError",
    "ProtocolError",
    "RemoteTraceback",
    "SHM_POOL_BYTES",
    "SHM_THRESHOLD",
    "UntrustedReply",
    "build_remote_exception",
    "check_picklable",
    "dumps_code",
    "dumps_payload",
    "dumps_reply",
    "dumps_small",
    "format_remote_error",
    "frame",
    "loads_payload",
    "loads_untrusted",
    "pickle_roundtrip",
    "segment_files",
    "sweep_segments",
    "unlink_created_segments",
]
