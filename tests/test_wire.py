"""The wire format in process and over a real loopback connection."""

from __future__ import annotations

import asyncio
import os
import types

import cloudpickle

import numpy as np
import pytest
import torch

from vastnb.errors import SerializationError
from vastnb.wire import SHM_THRESHOLD, Connection, dumps_payload, loads_payload, pickle_roundtrip


class Box:
    def __init__(self, v):
        self.v = v


def test_round_trip_of_many_types():
    value = {"b": b"\x00" * 10, "t": (1, 2.5, None, "s"), "set": {1, 2}, "flag": True, "box": Box([1, 2])}
    out = pickle_roundtrip(value)
    assert out["b"] == value["b"] and out["t"] == value["t"] and out["set"] == {1, 2} and out["flag"] is True
    assert isinstance(out["box"], Box) and out["box"].v == [1, 2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.float16])
def test_tensors_keep_dtype_shape_and_values(dtype):
    t = (torch.randn(7, 5) * 10).to(dtype)
    out = pickle_roundtrip(t)
    assert out.dtype == dtype and out.shape == t.shape and torch.equal(out, t)
    strided = torch.arange(20.0).reshape(4, 5).t()  # non-contiguous
    assert torch.equal(pickle_roundtrip(strided), strided)
    assert pickle_roundtrip(torch.empty(0, 3)).shape == (0, 3)
    assert pickle_roundtrip(torch.tensor(2.0)).item() == 2.0


def test_large_buffers_are_out_of_band():
    arr = np.arange(1 << 18, dtype=np.float64)
    payload = dumps_payload(arr)
    assert len(payload.buffers) == 1 and payload.buffers[0].nbytes == arr.nbytes
    assert payload.main_len < 1000
    t = torch.ones(1 << 16)
    assert len(dumps_payload(t).buffers) == 1
    out = loads_payload(payload.to_bytes())
    assert np.array_equal(out, arr) and out.flags.writeable


def test_unpicklable_value_is_a_clear_error():
    import threading

    with pytest.raises(SerializationError) as info:
        dumps_payload({"lock": threading.Lock()}, "the arguments of f()")
    assert str(info.value).startswith("cannot serialize the arguments of f(): TypeError: cannot pickle '_thread.lock' object.")


def test_connection_over_loopback_inline_and_shared_memory():
    secret = os.urandom(32)

    async def main():
        got = asyncio.Queue()

        async def handle(reader, writer):
            conn = await Connection.accept(reader, writer, secret)
            assert conn is not None
            while True:
                try:
                    req_id, msg = await conn.recv()
                except EOFError:
                    conn.close()
                    return
                conn.send_message(msg, req_id)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await Connection.connect("127.0.0.1", port, secret)
        small = {"x": 1}
        big = os.urandom(SHM_THRESHOLD * 8)
        arr = np.random.rand(300_000)
        for req_id, value in enumerate((small, big, arr, big), start=1):
            client.send_message(value, req_id)
            answer_id, answer = await client.recv()
            assert answer_id == req_id  # the request id comes back in the frame header
            await got.put(answer)
        results = [await got.get() for _ in range(4)]
        assert results[0] == small and results[1] == big and np.array_equal(results[2], arr) and results[3] == big
        # segments are reused, not one per message: the array reused the first `big`'s segment (copied out and
        # released at once), and was still lent to the server (its handler held the array) when the second
        # `big` went out
        assert len(client._pool.segments) == 2
        client.close()
        await client.writer.wait_closed()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_wrong_secret_is_refused():
    secret = os.urandom(32)

    async def main():
        accepted = []

        async def handle(reader, writer):
            accepted.append(await Connection.accept(reader, writer, secret))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionRefusedError, match="the worker refused the handshake"):
            await Connection.connect("127.0.0.1", port, os.urandom(32))
        server.close()
        await server.wait_closed()
        assert accepted == [None]

    asyncio.run(main())


def _lose_file_names(code):
    """A cloudpickle that forgets where code came from (3.1.3 writes "<dynamic-code>"; a later one might write anything)."""
    rebuild, args = _CLOUDPICKLE_CODE_REDUCE(code)[:2]
    return rebuild, tuple("<lost>" if a == code.co_filename else a for a in args)


_CLOUDPICKLE_CODE_REDUCE = cloudpickle.CloudPickler.dispatch_table[types.CodeType]


@pytest.mark.parametrize("lossy", [False, True], ids=["installed cloudpickle", "cloudpickle that drops file names"])
def test_captured_code_keeps_its_file_name_and_lines(monkeypatch, lossy):
    """Remote tracebacks find a notebook cell's lines by the code's file name: it must survive capture."""
    import pickle

    from vastnb.deployment._capture import capture

    if lossy:
        monkeypatch.setitem(cloudpickle.CloudPickler.dispatch_table, types.CodeType, _lose_file_names)

    def outer(x):
        def inner(y):
            return y + 1

        return inner(x)

    blob = capture(outer, "outer")
    loaded = pickle.loads(blob.data)
    inner_code = next(c for c in loaded.__code__.co_consts if isinstance(c, types.CodeType))
    assert (loaded.__code__.co_filename, inner_code.co_filename) == (__file__, __file__)
    assert loaded(1) == 2
    assert __file__ in blob.sources  # the lines travel with the code
