"""Import an exported module in the official SDK's deploy (client) mode, offline, and read what it would send.

A fresh interpreter (``IS_DEPLOYMENT`` unset, a dummy API key) imports the module
with ``Deployment.ensure_ready``/``async_ensure_ready`` replaced by a capture that
builds the ``DeploymentConfig`` and tarball with the SDK's own
``_into_deployment_config_and_tarball`` (the step before ``put_deployment``), so
nothing reaches Vast; sockets refuse to connect, to be sure. This also sidesteps
Python 3.11's missing ``NamedTemporaryFile(delete_on_close=…)`` in ``ensure_ready``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from ._notebook import ExportError

__all__ = ["client_mode_config"]

_RUNNER = r'''
import importlib, json, os, socket, sys, tarfile

out_path, module_dir, module_name = sys.argv[1:4]


def _offline(*args, **kwargs):
    raise RuntimeError("vastnb export check: the module tried to reach the network")


socket.socket.connect = _offline
socket.socket.connect_ex = _offline
socket.create_connection = _offline

from vastai.serverless.remote import deploy as _deploy

calls = []


def _capture(self, *args, **kwargs):
    tar = os.path.join(os.path.dirname(out_path), "deployment.tar.gz")
    config = self._into_deployment_config_and_tarball(tar)
    with tarfile.open(tar) as tf:
        tar_config = json.load(tf.extractfile("./config.json"))
        members = sorted(tf.getnames())
    calls.append({"config": config.to_dict(), "tarball_config": tar_config, "tarball_members": members,
                  "root_module": self.root_module})


async def _acapture(self, *args, **kwargs):
    _capture(self)


_deploy.Deployment.ensure_ready = _capture
_deploy.Deployment.async_ensure_ready = _acapture
sys.path.insert(0, module_dir)
module = importlib.import_module(module_name)
result = {"ensure_ready_calls": calls, "mode": type(getattr(module, "app", None)).__module__}
with open(out_path, "w") as f:
    json.dump(result, f)
'''


def client_mode_config(module_source: str, *, module_name: str = "deploy", timeout: float = 60.0) -> dict[str, Any]:
    """What ``import <module_name>`` would register with Vast, computed offline.

    Returns ``{"config": DeploymentConfig.to_dict(), "tarball_config": config.json of the
    tarball, "tarball_members": [...], "root_module": ...}`` for the first
    ``ensure_ready()`` call. Raises :class:`ExportError` with the interpreter's output
    when the import fails or never calls ``ensure_ready()``.
    """
    with tempfile.TemporaryDirectory(prefix="vastnb-client-check-") as tmp:
        module_dir = os.path.join(tmp, "module")
        os.makedirs(module_dir)
        with open(os.path.join(module_dir, f"{module_name}.py"), "w", encoding="utf-8") as f:
            f.write(module_source)
        runner = os.path.join(tmp, "runner.py")
        with open(runner, "w", encoding="utf-8") as f:
            f.write(_RUNNER)
        out = os.path.join(tmp, "out.json")
        env = {k: v for k, v in os.environ.items() if k not in ("IS_DEPLOYMENT", "DEBUG_DEPLOYMENT_TAR")}
        env["VAST_API_KEY"] = "vastnb-offline-check"  # the SDK wants a key to build its client; it is never sent
        env["HOME"] = tmp  # no saved key or config of the user's is read
        try:
            proc = subprocess.run([sys.executable, runner, out, module_dir, module_name], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError(f"importing the export in the SDK's client mode took over {timeout:g} s.") from None
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ExportError(f"the official SDK (client mode) cannot import the export:\n{tail}")
        with open(out, encoding="utf-8") as f:
            result = json.load(f)
    calls = result["ensure_ready_calls"]
    if not calls:
        raise ExportError("the export never calls app.ensure_ready(), so importing it deploys nothing.")
    first: dict[str, Any] = calls[0]
    first["mode"] = result["mode"]
    return first
