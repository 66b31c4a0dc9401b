"""Pickling for the wire: cloudpickle (notebook code by value), protocol-5 out-of-band buffers, tensors as raw bytes."""

from __future__ import annotations

import io
import pickle
import struct
import types
from typing import Any

import cloudpickle

from ..errors import SerializationError

__all__ = ["Payload", "check_picklable", "dumps_code", "dumps_payload", "loads_payload", "pickle_roundtrip"]


class ProtocolError(Exception):
    """The peer sent something that is not a vastnb frame; the connection is dropped."""


def _rebuild_tensor(buf: Any, dtype: str, shape: tuple[int, ...], requires_grad: bool) -> Any:
    import torch

    dt = getattr(torch, dtype)
    if len(buf) == 0:
        t = torch.empty(shape, dtype=dt)
    else:
        t = torch.frombuffer(buf, dtype=torch.uint8).view(dt).reshape(shape)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _code_with_filename(rebuild: Any, args: tuple, filename: str) -> types.CodeType:
    code = rebuild(*args)
    return code.replace(co_filename=filename) if code.co_filename != filename else code


def _reduce_code(code: types.CodeType) -> Any:
    """Pickle a code object with its real file name.

    Remote tracebacks name the notebook cell and show its line through the code's
    ``co_filename``; cloudpickle 3.1.3 started to write ``"<dynamic-code>"`` there.
    Whatever cloudpickle does, the file name is put back when the code is loaded.
    """
    reduce = cloudpickle.CloudPickler.dispatch_table.get(types.CodeType)
    rebuild, args = reduce(code)[:2] if reduce is not None else _marshal_code(code)
    return (_code_with_filename, (rebuild, args, code.co_filename))


def _marshal_code(code: types.CodeType) -> tuple[Any, tuple]:
    import marshal

    return (marshal.loads, (marshal.dumps(code),))


def _native(klass: type, name: str) -> bool:
    """Whether ``klass`` defines ``name`` itself in C (a built-in exception's ``__new__``/``__init__``)."""
    found = vars(klass).get(name)
    if isinstance(found, staticmethod):
        found = found.__func__
    return found is not None and not isinstance(found, types.FunctionType)


def _rebuild_exception(cls: type, args: tuple, state: Any) -> BaseException:
    """An exception of type ``cls`` with ``args`` and attributes ``state``, without running ``cls.__init__``.

    The built-in base's ``__new__`` and ``__init__`` take ``args`` as they were stored (``OSError``'s parse
    errno and strerror from them); the class's own ``__init__``, whose parameters may be anything, is never called.
    """
    new_base = next(k for k in cls.__mro__ if _native(k, "__new__"))
    init_base = next(k for k in cls.__mro__ if _native(k, "__init__"))
    exc: BaseException = new_base.__new__(cls, *args)  # type: ignore[call-overload]
    init_base.__init__(exc, *args)  # type: ignore[misc]
    if state:
        exc.__setstate__(state)  # type: ignore[attr-defined]
    return exc


def _reduce_exception(exc: BaseException) -> Any:
    """Pickle an exception so it loads without calling its ``__init__`` with the wrong arguments.

    Python's default (``BaseException.__reduce__``) rebuilds with ``cls(*exc.args)``, but ``args`` holds what
    was passed to ``BaseException.__init__``, not to the class: ``AppError(7)`` whose ``__init__`` calls
    ``super().__init__(f"code {code}: bad")`` would come back as ``AppError("code 7: bad")``, i.e. the message
    ``'code code 7: bad: bad'``, and a keyword-only ``__init__`` would not load at all. So the exception is
    rebuilt from its ``args`` and ``__dict__`` as they are. A class that defines its own ``__reduce__``,
    ``__reduce_ex__`` or ``__getnewargs__`` keeps it (NotImplemented: pickle's usual path).
    """
    cls = type(exc)
    for klass in cls.__mro__:
        if _native(klass, "__init__"):
            break  # from here up the built-in reduction applies
        if any(name in vars(klass) for name in ("__reduce__", "__reduce_ex__", "__getnewargs__",
                                                   "__getnewargs_ex__")):
            return NotImplemented
    reduced = exc.__reduce__()
    state = reduced[2] if len(reduced) > 2 else None
    return (_rebuild_exception, (cls, tuple(reduced[1]), state))


class _Pickler(cloudpickle.CloudPickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            return _reduce_code(obj)
        mod = type(obj).__module__
        if mod == "torch" and type(obj).__name__ in ("Tensor", "Parameter"):
            return self._reduce_tensor(obj)
        if isinstance(obj, BaseException):
            return _reduce_exception(obj)
        return super().reducer_override(obj)

    @staticmethod
    def _reduce_tensor(t: Any) -> Any:
        import torch

        if t.layout != torch.strided:
            raise SerializationError(
                f"cannot send a torch tensor with layout {t.layout}; convert it with .to_dense() first."
            )
        data = t.detach()
        if data.device.type != "cpu":
            data = data.cpu()  # CUDA tensors travel through the CPU and arrive there
        data = data.contiguous()
        dtype = str(data.dtype).removeprefix("torch.")
        raw = data.reshape(-1).view(torch.uint8).numpy() if data.numel() else bytearray()
        return (_rebuild_tensor, (pickle.PickleBuffer(raw), dtype, tuple(data.shape), bool(t.requires_grad)))


class _ChunkWriter:
    """Collects the pickler's output without copying large pieces."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.size = 0

    def write(self, b: Any) -> int:
        n = len(b) if not isinstance(b, memoryview) else b.nbytes
        self.chunks.append(b)
        self.size += n
        return n


def _aligned(pos: int, align: int) -> int:
    return -(-pos // align) * align


class Payload:
    """A pickled message ready to send: main pickle chunks plus out-of-band buffers.

    Laid out as ``n u32 | main_len u64 | buffer_len u64 × n | main | buffers…``; with ``align`` > 1 each buffer
    starts at the next multiple of ``align`` (shared memory, whose buffers become arrays in place)."""

    __slots__ = ("chunks", "main_len", "buffers", "size")

    def __init__(self, chunks: list[Any], main_len: int, buffers: list[memoryview]) -> None:
        self.chunks = chunks
        self.main_len = main_len
        self.buffers = buffers
        head = 4 + 8 + 8 * len(buffers)
        self.size = head + main_len + sum(b.nbytes for b in buffers)

    def head(self) -> bytes:
        n = len(self.buffers)
        return struct.pack(f"<IQ{n}Q", n, self.main_len, *(b.nbytes for b in self.buffers))

    def layout_size(self, align: int = 1) -> int:
        """Bytes :meth:`write_into` writes with this ``align``."""
        pos = 4 + 8 + 8 * len(self.buffers) + self.main_len
        for b in self.buffers:
            pos = _aligned(pos, align) + b.nbytes
        return pos

    def write_into(self, dest: memoryview, align: int = 1) -> None:
        """Write the payload at the start of ``dest``: each piece is copied once, straight from its object."""
        pos = 0
        for piece in [self.head(), *self.chunks]:
            n = len(piece) if not isinstance(piece, memoryview) else piece.nbytes
            dest[pos : pos + n] = piece
            pos += n
        for b in self.buffers:
            pos = _aligned(pos, align)
            dest[pos : pos + b.nbytes] = b.cast("B") if b.format != "B" or b.ndim != 1 else b
            pos += b.nbytes

    def to_bytes(self) -> bytes:
        if not self.buffers:  # a small message: header and pickle, joined once
            return b"".join([self.head(), *self.chunks])
        out = bytearray(self.size)
        self.write_into(memoryview(out))
        return bytes(out)


def dumps_payload(obj: Any, what: str = "value") -> Payload:
    """Pickle ``obj`` for the wire; raise :class:`SerializationError` naming ``what`` on failure."""
    writer = _ChunkWriter()
    buffers: list[memoryview] = []

    def keep(buf: pickle.PickleBuffer) -> None:
        buffers.append(buf.raw())

    try:
        _Pickler(writer, protocol=5, buffer_callback=keep).dump(obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {what}: {type(exc).__name__}: {exc}. "
            "Pass plain data (numbers, strings, bytes, lists, dicts, arrays, tensors) "
            "or objects whose classes can be pickled."
        ) from exc
    return Payload(writer.chunks, writer.size, buffers)


def dumps_code(obj: Any) -> bytes:
    """Pickle code (functions, classes, contexts) by value in one buffer, keeping file names for tracebacks.

    Raises what the pickler raises; :func:`vastnb.deployment._capture.capture` words it for users."""
    out = io.BytesIO()
    _Pickler(out, protocol=5).dump(obj)
    return out.getvalue()


def _parse(body: memoryview, copy_buffers: bool, align: int = 1) -> tuple[memoryview, list[Any]]:
    """The main pickle and the out-of-band buffers of a payload laid out with ``align`` (:class:`Payload`):
    the buffers copied into bytearrays, or with ``copy_buffers=False`` views of ``body``."""
    if body.nbytes < 12:
        raise ProtocolError("payload shorter than its header")
    (n,) = struct.unpack_from("<I", body, 0)
    if n > 1_000_000 or 12 + 8 * n > body.nbytes:
        raise ProtocolError(f"payload declares {n} buffers")
    main_len, *lens = struct.unpack_from(f"<Q{n}Q", body, 4)
    pos = 12 + 8 * n
    starts = []
    end = pos + main_len
    for ln in lens:
        end = _aligned(end, align)
        starts.append(end)
        end += ln
    if end > body.nbytes:
        raise ProtocolError("payload shorter than its declared parts")
    main = body[pos : pos + main_len]
    bufs: list[Any] = []
    for start, ln in zip(starts, lens):
        piece = body[start : start + ln]
        bufs.append(bytearray(piece) if copy_buffers else piece)
    return main, bufs


def _load_view(view: memoryview, copy_buffers: bool = True, align: int = 1) -> Any:
    """Unpickle a payload held in ``view``. With ``copy_buffers=False`` its arrays and tensors are views of
    ``view``'s memory, which must outlive them (shared memory lent by :mod:`vastnb.wire._segments`)."""
    main, bufs = _parse(view, copy_buffers, align)
    try:
        return pickle.loads(main, buffers=bufs)
    finally:
        main.release()


def loads_payload(body: bytes | bytearray | memoryview) -> Any:
    """Inverse of :func:`dumps_payload` (for a payload held in memory)."""
    return _load_view(memoryview(body))


def pickle_roundtrip(obj: Any, what: str = "value") -> Any:
    """Serialize and deserialize in process (tests and checks)."""
    return loads_payload(dumps_payload(obj, what).to_bytes())


def check_picklable(obj: Any, what: str) -> None:
    """Raise :class:`SerializationError` naming ``what`` when ``obj`` cannot travel."""
    dumps_payload(obj, what)
