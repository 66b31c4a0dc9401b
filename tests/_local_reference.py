"""A notebook run on vastnb's real local backend, in a real IPython shell, in its own process.

``LocalReference(path, module_name)`` starts a fresh Python process (this interpreter) that

* creates ``IPython.core.interactiveshell.InteractiveShell.instance()`` and runs the notebook's code
  cells with ``shell.run_cell``, in order, magics included (``%load_ext vastnb``, ``%%vast_remote``,
  ``%%vast_run``, …), so ``vastnb.Deployment`` / ``%vast_deployment`` start real local workers;
* then answers calls: ``call(fname, kwargs)`` runs ``await fname(**kwargs)`` in that shell, as a
  notebook cell would, and returns ``("ok", value)`` or ``("err", exception)``;
* on :meth:`close`, runs the notebook's closing ``%vast_down`` cells (deferred until the calls are
  done), shuts every deployment down, exits, and is checked for worker processes left behind.

Which cells run: every code cell except those tagged ``vast-skip`` (the author keeps them out of
the deployment; the export leaves them out too) and trailing cells that only shut the deployment
down (deferred, see above). A cell that fails fails the whole run with its traceback, except a
cell that fails only because one of ``optional_modules`` (e.g. a plotting library) is not installed
here; such cells are listed in :attr:`LocalReference.notes`.

Values travel between the processes with cloudpickle. Classes defined in the notebook are sent
once, by value, and become attributes of a module named ``module_name`` in this process (their
``__module__`` is set to it); after that, objects of notebook classes travel in both directions as
objects of the other side's own class (arguments arrive as the notebook's ``Point``, results come
back as this process's ``Point``).

The child's stdout is kept for the protocol (length-prefixed pickles); everything the notebook
prints goes to its stderr, which is written to a file and quoted when something fails.
"""

from __future__ import annotations

import atexit
import io
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import types
import weakref
from typing import Any, BinaryIO

import cloudpickle

_HEADER = struct.Struct("!Q")
_LIVE: "weakref.WeakSet[LocalReference]" = weakref.WeakSet()


class LocalReferenceError(RuntimeError):
    """The reference process failed (a cell raised, it timed out, it died, or it left workers behind)."""


# ------------------------------------------------------------------------------------------ both sides
class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with the classes in ``classes`` sent as their name (the other side has its own)."""

    def __init__(self, file: BinaryIO, classes: dict[int, str]) -> None:
        super().__init__(file)
        self._classes = classes

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self._classes.get(id(obj))
            if name is not None:
                return ("notebook class", name)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, classes: dict[str, type]) -> None:
        super().__init__(file)
        self._classes = classes

    def persistent_load(self, pid: Any) -> Any:
        kind, name = pid
        if kind != "notebook class" or name not in self._classes:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._classes[name]


def _dumps(obj: Any, classes: dict[str, type]) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, {id(cls): name for name, cls in classes.items()}).dump(obj)
    return buf.getvalue()


def _loads(data: bytes, classes: dict[str, type]) -> Any:
    return _Unpickler(io.BytesIO(data), classes).load()


def _write_frame(f: BinaryIO, data: bytes) -> None:
    f.write(_HEADER.pack(len(data)) + data)
    f.flush()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------------------------------ this process
class LocalReference:
    """The notebook at ``path``, run on vastnb's local backend in a fresh process (see the module docstring).

    The process starts at once; :attr:`ns`, :meth:`call` and :meth:`close` wait until it has run the
    notebook (``startup_timeout``). Calls are answered one at a time (``call_timeout`` each).
    """

    def __init__(self, path: str, module_name: str, *, optional_modules: tuple[str, ...] = (),
                 startup_timeout: float = 120.0, call_timeout: float = 60.0, close_timeout: float = 60.0) -> None:
        self.path = os.path.abspath(path)
        self.module_name = module_name
        self.module = types.ModuleType(module_name)
        self.module.__file__ = self.path
        sys.modules[module_name] = self.module  # the official worker's client module: filled once the notebook ran
        self.startup_timeout = startup_timeout
        self.call_timeout = call_timeout
        self.close_timeout = close_timeout
        self.notes: list[str] = []
        self._classes: dict[str, type] = {}
        self._ready = False
        self._closed = False
        self._tmp = tempfile.mkdtemp(prefix="vastnb-reference-")
        self._stderr_path = os.path.join(self._tmp, "stderr.log")
        env = dict(os.environ, PYTHONUNBUFFERED="1", IPYTHONDIR=os.path.join(self._tmp, "ipython"))
        with open(self._stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), self.path, ",".join(optional_modules)],
                cwd=os.path.dirname(self.path), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, start_new_session=True,
            )
        self._started = time.monotonic()
        _LIVE.add(self)

    # ------------------------------------------------------------------ protocol
    def _fail(self, why: str) -> LocalReferenceError:
        self._kill()
        return LocalReferenceError(
            f"vastnb's local backend, running {os.path.basename(self.path)} in a subprocess: {why}\n"
            f"--- last lines of its stderr (the notebook's output) ---\n{self.stderr_tail()}"
        )

    def stderr_tail(self, lines: int = 60) -> str:
        try:
            with open(self._stderr_path, encoding="utf-8", errors="replace") as f:
                return "\n".join(f.read().rstrip().splitlines()[-lines:])
        except OSError:
            return "(no stderr file)"

    def _read_exact(self, n: int, deadline: float, doing: str) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"no answer within its time limit while {doing}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                code = self.process.wait(5)
                raise self._fail(f"it exited with status {code} while {doing}")
            buf += chunk
        return bytes(buf)

    def _receive(self, timeout: float, doing: str) -> Any:
        deadline = time.monotonic() + timeout
        (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline, doing))
        message = _loads(self._read_exact(size, deadline, doing), self._classes)
        if message[0] == "failed":
            raise self._fail(message[1])
        return message

    def _send(self, message: Any, doing: str) -> None:
        assert self.process.stdin is not None
        try:
            _write_frame(self.process.stdin, _dumps(message, self._classes))
        except (BrokenPipeError, OSError):
            raise self._fail(f"it stopped reading while {doing}") from None

    def _wait_ready(self) -> None:
        if self._ready:
            return
        if self._closed:
            raise LocalReferenceError(f"the reference run of {self.path} is closed")
        left = self.startup_timeout - (time.monotonic() - self._started)
        _, classes_blob, notes = self._receive(left, "running the notebook's cells")
        classes: dict[str, type] = pickle.loads(classes_blob)
        for name, cls in classes.items():
            try:
                cls.__module__ = self.module_name
            except (AttributeError, TypeError):
                continue
            setattr(self.module, name, cls)
        self._classes = classes
        self.notes = list(notes)
        self._ready = True

    # ------------------------------------------------------------------ API
    @property
    def ns(self) -> dict[str, Any]:
        """The notebook's classes, as this process knows them (the module ``module_name``)."""
        self._wait_ready()
        return self.module.__dict__

    def call(self, fname: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
        """``("ok", value)`` or ``("err", exception)`` of ``await fname(**kwargs)`` in the notebook."""
        self._wait_ready()
        doing = f"calling {fname}(**{kwargs!r})"
        self._send(("call", fname, kwargs), doing)
        _, outcome, value = self._receive(self.call_timeout, doing)
        if outcome == "err-rebuilt":  # the exception itself could not be pickled: its type and args
            cls, args = value
            value = cls.__new__(cls)
            value.args = args
            outcome = "err"
        return outcome, value

    def close(self) -> None:
        """Run the notebook's closing cells, shut its deployments down, and check that no worker outlived it."""
        if self._closed:
            return
        try:
            self._wait_ready()
            self._send(("close",), "shutting down")
            _, pids = self._receive(self.close_timeout, "shutting down")
            try:
                code = self.process.wait(self.close_timeout)
            except subprocess.TimeoutExpired:
                raise self._fail(f"it did not exit within {self.close_timeout:g} s after shutting down") from None
            if code != 0:
                raise self._fail(f"it exited with status {code} after shutting down")
            deadline = time.monotonic() + 10
            while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = [p for p in pids if _pid_alive(p)]
            for pid in left:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if left:
                raise self._fail(f"worker processes {left} outlived it (killed now)")
        finally:
            self._kill()

    def _kill(self) -> None:
        self._closed = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if sys.modules.get(self.module_name) is self.module:
            del sys.modules[self.module_name]
        _LIVE.discard(self)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _kill_all() -> None:
    for ref in list(_LIVE):
        ref._kill()


atexit.register(_kill_all)


# ------------------------------------------------------------------------------------------ the subprocess
def _is_teardown(source: str) -> bool:
    """A cell that only shuts deployments down (``%vast_down``, ``app.shutdown()``)."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(ln.startswith("%vast_down") or ln.endswith(".shutdown()") for ln in lines)


def _child(path: str, optional_modules: tuple[str, ...]) -> int:
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the notebook prints goes to stderr; stdout carries the answers only
    protocol_in = sys.stdin.buffer
    sys.path[0] = ""  # like a kernel started in the notebook's folder (the cwd), not this file's

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from vastnb.export import read_notebook

    def send(message: Any, classes: dict[str, type]) -> None:
        _write_frame(protocol_out, _dumps(message, classes))

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)

    cells = [(n, c.source) for n, c in enumerate(read_notebook(path), 1) if "vast-skip" not in c.tags]
    closing: list[tuple[int, str]] = []
    while cells and _is_teardown(cells[-1][1]):
        closing.insert(0, cells.pop())
    notes: list[str] = []

    def run(number: int, source: str) -> str | None:
        """None, or why the cell failed."""
        result = shell.run_cell(source, store_history=True)
        err = result.error_before_exec or result.error_in_exec
        if err is None:
            return None
        missing = getattr(err, "name", None) or ""
        if isinstance(err, ModuleNotFoundError) and missing.split(".")[0] in optional_modules:
            notes.append(f"cell {number} not run to the end: {err}")
            return None
        return (f"code cell {number} raised:\n{source}\n---\n"
                + "".join(traceback.format_exception(type(err), err, err.__traceback__)))

    for number, source in cells:
        why = run(number, source)
        if why is not None:
            send(("failed", why), {})
            return 1

    ns = shell.user_ns
    classes = {name: value for name, value in list(ns.items())
               if isinstance(value, type) and value.__module__ == "__main__" and not name.startswith("_")}
    send(("ready", cloudpickle.dumps(classes), notes), classes)

    import vastnb

    while True:
        header = protocol_in.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return 1  # the test process went away
        (size,) = _HEADER.unpack(header)
        message = _loads(protocol_in.read(size), classes)
        if message[0] == "call":
            _, fname, kwargs = message
            ns["__vastnb_reference_kwargs__"] = kwargs
            ns.pop("__vastnb_reference_result__", None)
            result = shell.run_cell(f"__vastnb_reference_result__ = await {fname}(**__vastnb_reference_kwargs__)",
                                    store_history=False)
            err = result.error_before_exec or result.error_in_exec
            answer: tuple[Any, ...] = (("answer", "err", err) if err is not None
                                       else ("answer", "ok", ns.pop("__vastnb_reference_result__")))
            try:
                data = _dumps(answer, classes)
            except Exception:  # noqa: BLE001 - an exception that does not pickle: its type and args
                if err is None:
                    raise
                data = _dumps(("answer", "err-rebuilt", (type(err), err.args)), classes)
            _write_frame(protocol_out, data)
        elif message[0] == "close":
            apps = [v for v in ns.values() if isinstance(v, vastnb.Deployment)]
            pids = [w.pid for app in apps for w in app.snapshot().workers if w.pid]
            for number, source in closing:
                why = run(number, source)
                if why is not None:
                    send(("failed", why), classes)
                    return 1
            for app in apps:
                app.shutdown()
            send(("closed", pids), classes)
            return 0
        else:
            send(("failed", f"unknown request {message[0]!r}"), classes)
            return 1


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], tuple(m for m in sys.argv[2].split(",") if m)))
