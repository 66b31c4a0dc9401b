"""Vast hosts are other people's machines: replies are loaded restricted, frames are sealed.

* :func:`vastnb.wire.loads_untrusted` loads data, NumPy arrays, torch tensors,
  vastnb's messages and the notebook's own classes, and refuses everything that
  would run code, before any of it runs;
* end to end, a STAND-IN worker host that answers a malicious pickle runs nothing
  in the notebook (and ``trust_hosts=True`` really does load it: the opt-out is
  what it says);
* a real official worker refuses frames that are forged, unsealed, replayed or
  expired, and runs none of them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
import os
import pickle
import re
import struct
import sys
import time
from collections import OrderedDict
from typing import Any, Iterator

import cloudpickle
import httpx
import numpy as np
import pytest
import torch

import vastnb
from vastnb.backends.vast import VastBackend
from vastnb.backends.vast._module import build_snapshot, generate_module
from vastnb.deployment._capture import capture
from vastnb.spec import DeploymentSpec, FunctionSpec
from vastnb.wire import UntrustedReply, dumps_payload, dumps_reply, loads_untrusted
from vastnb.wire import messages as m
from vastnb.worker.vast import (
    CLOCK_SKEW,
    FRAME_ROUTE,
    PY,
    Nonces,
    decode_frame,
    encode_frame,
    frame_key,
    open_frame,
    seal_frame,
)
from tests.vast_standin import OfficialWorkerProcess, Realism, VastStandIn, serve_module

pytestmark = pytest.mark.timeout(240)
IMAGE = "vastai/base-image:@vastai-automatic-tag"
KEY = "security-test-frame-key"


@dataclasses.dataclass
class Point:
    """A class "the notebook" defined: results may be its instances."""

    x: float
    y: float


class NotebookError(Exception):
    """An exception class "the notebook" defined."""


def some_function() -> None:
    """Not a class: a reply may not name it."""


@pytest.fixture
def notebook_module() -> Iterator[None]:
    """This module, sent by value as a notebook's cells are (so its classes count as the notebook's)."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def worker_copy(cls: type) -> type:
    """``cls`` as a worker has it: the same module and qualified name, but a different class object."""
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    return type(cls.__name__, cls.__bases__, namespace)


def raw_payload(obj: Any) -> bytes:
    """A vastnb payload with a plain pickle of ``obj`` (what a host can send, whatever vastnb's pickler does)."""
    main = pickle.dumps(obj, protocol=5)
    return struct.pack("<IQ", 0, len(main)) + main


class Reduce:
    """Pickles as ``fn(*args)``: how a malicious pickle makes the loader call something."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> Any:
        return (self.fn, self.args)


# =========================================================================== what loads


def test_data_arrays_tensors_and_messages_load(notebook_module: None) -> None:
    value = {
        "numbers": [1, 2.5, 3 + 4j, True, None], "text": ("a", b"b", bytearray(b"c")), "sets": ({1}, frozenset({2})),
        "ordered": OrderedDict(a=1), "when": datetime.datetime(2025, 1, 2, 3, 4, 5), "money": decimal.Decimal("1.10"),
        "array": np.arange(12, dtype=np.float32).reshape(3, 4), "objects": np.array([1, "a", None], dtype=object),
        "record": np.zeros(2, dtype=[("a", "f4"), ("b", "i8")]), "scalar": np.float64(2.5),
        "tensor": torch.arange(6, dtype=torch.float16).reshape(2, 3), "grad": torch.ones(2, requires_grad=True),
        "error": m.ErrorRecord("ValueError", "bad", (("cell.py", 1, "f", "raise"),), None),
        "exception": KeyError("k"), "vastnb": vastnb.ConfigurationError("declared wrong"),
        "library": json.JSONDecodeError("Expecting value", "x", 0),
    }
    loaded = loads_untrusted(dumps_reply(value), "worker 1")
    assert loaded["numbers"] == value["numbers"] and loaded["text"] == value["text"] and loaded["sets"] == value["sets"]
    assert (loaded["ordered"], loaded["when"], loaded["money"]) == (value["ordered"], value["when"], value["money"])
    assert np.array_equal(loaded["array"], value["array"]) and loaded["array"].dtype == np.float32
    assert list(loaded["objects"]) == [1, "a", None] and loaded["record"].dtype == value["record"].dtype
    assert loaded["scalar"] == 2.5 and type(loaded["scalar"]) is np.float64
    assert torch.equal(loaded["tensor"], value["tensor"]) and loaded["grad"].requires_grad
    assert loaded["error"] == value["error"]
    assert (type(loaded["exception"]), loaded["exception"].args) == (KeyError, ("k",))
    assert (type(loaded["vastnb"]), str(loaded["vastnb"])) == (vastnb.ConfigurationError, "declared wrong")
    assert (type(loaded["library"]), str(loaded["library"])) == (json.JSONDecodeError, str(value["library"]))


def test_the_notebooks_classes_come_back_as_its_own(notebook_module: None) -> None:
    point, error = worker_copy(Point), worker_copy(NotebookError)
    assert point is not Point  # the worker's copy
    loaded = loads_untrusted(dumps_reply({"p": point(1.0, 2.0), "e": error("boom"), "cls": point}), "worker 1")
    assert type(loaded["p"]) is Point and loaded["p"] == Point(1.0, 2.0)
    assert type(loaded["e"]) is NotebookError and str(loaded["e"]) == "boom"
    assert loaded["cls"] is Point


# =========================================================================== what does not


REFUSED_TAIL = (" A Vast worker runs on another person's machine, so its replies may only contain data: builtins, "
                "NumPy arrays, torch tensors, vastnb's messages and classes defined in this notebook. Nothing from the "
                "reply was run. If you control the hosts, VastBackend(trust_hosts=True) loads their replies without "
                "this check.")


@pytest.mark.parametrize("payload, message", [
    (Reduce(os.system, "echo pwned"), "worker 1: the reply asks to load `posix.system` (not a type vastnb loads from "
     "untrusted hosts)." + REFUSED_TAIL),
    (Reduce(exec, "print('pwned')"), "worker 1: the reply asks to load `builtins.exec` (not a data type)." + REFUSED_TAIL),
    (Reduce(getattr, "text", "upper"), "worker 1: the reply asks to load `builtins.getattr` (not a data type)."
     + REFUSED_TAIL),
    (Reduce(some_function), f"worker 1: the reply asks to load `{__name__}.some_function`, but this notebook has no "
     f"class some_function in {__name__}: the worker's copy is not loaded from the host. Define the class in the "
     "notebook (and run that cell), or return plain data."),
    (Reduce(httpx.Client), "worker 1: the reply asks to load `httpx.Client` (not a type vastnb loads from untrusted "
     "hosts)." + REFUSED_TAIL),
])
def test_anything_that_would_run_code_is_refused_before_it_runs(
        notebook_module: None, payload: Any, message: str) -> None:
    with pytest.raises(UntrustedReply) as info:
        loads_untrusted(raw_payload(payload), "worker 1")
    assert str(info.value) == message


def test_code_sent_by_value_is_refused(notebook_module: None) -> None:
    with pytest.raises(UntrustedReply, match=r"^worker 1: the reply asks to load `cloudpickle\.cloudpickle\.\w+`, "
                                             r"which rebuilds code: vastnb never runs code sent back by a Vast host"):
        loads_untrusted(dumps_payload(lambda x: x + 1).to_bytes(), "worker 1")


def test_a_reply_never_imports_a_module(notebook_module: None) -> None:
    assert "antigravity" not in sys.modules  # importing it opens a web browser
    ghost = b"\x80\x05\x8c\x0bantigravity\x8c\x03fly\x93)R."  # antigravity.fly()
    with pytest.raises(UntrustedReply, match=r"^worker 1: the reply asks to load `antigravity\.fly` \(not a type"):
        loads_untrusted(struct.pack("<IQ", 0, len(ghost)) + ghost, "worker 1")
    assert "antigravity" not in sys.modules


def test_a_tensor_dtype_must_be_a_torch_dtype(notebook_module: None) -> None:
    from vastnb.wire._pickle import _rebuild_tensor

    with pytest.raises(UntrustedReply, match=r"^worker 1: the reply asks to load `torch\.load` \(not a torch dtype\)"):
        loads_untrusted(raw_payload(Reduce(_rebuild_tensor, bytearray(4), "load", (1,), False)), "worker 1")


# =========================================================================== end to end: a malicious host


@pytest.fixture(scope="module")
def standin() -> Iterator[VastStandIn]:
    with VastStandIn() as s:
        yield s


def test_a_malicious_host_runs_nothing_in_the_notebook(standin: VastStandIn, tmp_path: Any) -> None:
    marker = str(tmp_path / "pwned.txt")
    standin.realism["evil"] = Realism(malicious_host=marker)
    app = vastnb.Deployment("evil", backend=VastBackend(**standin.backend_options()))
    app.image(IMAGE, storage=16)

    @app.remote(timeout=30, benchmark_dataset=[{}])
    async def f():  # type: ignore[no-untyped-def]
        return 1

    try:
        with pytest.raises(UntrustedReply) as info:
            f.call()
        assert str(info.value) == ("f(): the worker: the reply asks to load `builtins.exec` (not a data type)."
                                   + REFUSED_TAIL)
        with pytest.raises(UntrustedReply) as ready:  # the readiness hello is refused the same way
            app.ensure_ready()
        assert str(ready.value).startswith("waiting for a ready worker: the worker: the reply asks to load "
                                           "`builtins.exec` (not a data type).")
        assert not os.path.exists(marker)
        trusting = vastnb.Deployment("evil", backend=VastBackend(**standin.backend_options(trust_hosts=True)))
        trusting.image(IMAGE, storage=16)

        @trusting.remote(timeout=30, benchmark_dataset=[{}])
        async def g():  # type: ignore[no-untyped-def]
            return 1

        g.call()  # the opt-out loads the host's pickle as is: here, the exploit runs
        with open(marker) as fh:
            assert fh.read() == "the host ran code in the notebook"
        trusting.shutdown(keep_endpoint=True)
    finally:
        standin.realism.pop("evil", None)
        app.shutdown()


def test_trust_hosts_must_be_a_bool() -> None:
    with pytest.raises(vastnb.ConfigurationError, match=r"^`trust_hosts` must be True or False\. Instead got 'yes'\.$"):
        VastBackend(trust_hosts="yes")  # type: ignore[arg-type]


# =========================================================================== sealed frames, on a real official worker


async def _touch(path):  # type: ignore[no-untyped-def]
    with open(path, "a") as fh:
        fh.write("ran\n")
    return "ran"


@pytest.fixture(scope="module")
def sealed(standin: VastStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One official worker serving vastnb's module with frame key ``KEY``."""
    root = tmp_path_factory.mktemp("sealed")
    fn = FunctionSpec(name="_touch", blob=capture(_touch, "_touch"), allow_parallel=False)
    spec = DeploymentSpec(name="sealed", functions={"_touch": fn})
    module = generate_module("sealed", build_snapshot(spec), frame_key=KEY)
    worker = serve_module(standin, str(root), module, "sealed", "601", deployment_id=2)
    try:
        worker.wait_ready()
        yield {"worker": worker, "fn": fn, "marker": str(root / "ran.txt")}
    finally:
        worker.stop()


def post(standin: VastStandIn, worker: OfficialWorkerProcess, data: bytes) -> Any:
    body = {"auth_data": standin.signed_route(worker.url, "sealed"), "session_id": None,
            "payload": {"kwargs": {"frame": {"type": "bytes", "contents": base64.b64encode(data).decode()},
                                   "workload": 100.0}}}
    result = httpx.post(worker.url + FRAME_ROUTE, json=body, timeout=60).json()["result"]
    return loads_untrusted(base64.b64decode(result["ok"]["contents"]), "worker 601")


def call_frame(sealed: dict[str, Any]) -> bytes:
    fn = sealed["fn"]
    payload = dumps_payload(m.CallFunction(fn.hash, (sealed["marker"],), {})).to_bytes()
    return encode_frame({"v": 1, "py": PY, "op": "call", "fn": fn.hash, "payload": payload})


def test_a_sealed_frame_runs_once_and_nothing_else_runs(standin: VastStandIn, sealed: dict[str, Any]) -> None:
    worker, marker = sealed["worker"], sealed["marker"]
    frame = call_frame(sealed)
    good = seal_frame(frame, KEY, 60.0)
    refused = {
        "unsealed": frame,  # what a captured auth_data plus one's own pickle would be
        "forged": seal_frame(frame, "someone-elses-key", 60.0),
        "expired": seal_frame(frame, KEY, -400.0),  # past its expiry by more than the allowed clock skew
    }
    reasons = {}
    for label, data in refused.items():
        reply = post(standin, worker, data)
        assert (reply["ok"], reply["error"].type) == (False, "vastnb.worker.vast.FrameRefused")
        reasons[label] = reply["error"].message
    assert reasons["unsealed"] == ("worker 601 refused the request: the frame is not sealed (sent by an older vastnb, "
                                   "or not by vastnb); redeploy or upgrade")
    assert reasons["forged"] == ("worker 601 refused the request: the frame's seal does not match this deployment's key "
                                 "(the notebook uses another API key, deployment name or tag than this worker's "
                                 "deployment); redeploy")
    assert re.fullmatch(r"worker 601 refused the request: the frame expired 40\d s ago \(a replay, or a clock off by "
                        r"more than 300 s\)", reasons["expired"])
    assert not os.path.exists(marker)
    assert post(standin, worker, good)["value"] == "ran"
    replay = post(standin, worker, good)
    assert replay["error"].message == ("worker 601 refused the request: the frame was already received once (a "
                                       "replay, or a retry of a request this worker already has)")
    with open(marker) as fh:
        assert fh.read() == "ran\n"  # once


def test_frame_keys_differ_per_api_key_and_deployment() -> None:
    keys = {frame_key("k1", "app"), frame_key("k2", "app"), frame_key("k1", "other"), frame_key("k1", "app", "v2")}
    assert len(keys) == 4 and frame_key("k1", "app") == frame_key("k1", "app", "default")
    seen = Nonces()
    sealed = seal_frame(b"payload", "k", 10.0)
    assert bytes(open_frame(sealed, "k", seen, now=time.time())) == b"payload" and len(seen) == 1
    later = seal_frame(b"later", "k", 1000.0)
    assert bytes(open_frame(later, "k", seen, now=time.time() + 10 + CLOCK_SKEW + 1)) == b"later"
    assert len(seen) == 1  # the first nonce expired and was forgotten
    assert decode_frame(encode_frame({"a": 1})) == {"a": 1}
