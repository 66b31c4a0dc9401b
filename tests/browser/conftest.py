"""A real JupyterLab in headless Chromium, for end-to-end tests of what a notebook user sees.

Fixtures:

* ``jupyter_lab`` (session): a JupyterLab server on loopback (free port, random
  token) rooted in a fresh temporary directory, with isolated config, settings,
  workspaces and runtime directories, news/update toasts off and notebook
  windowing off (every cell stays in the DOM). ``jupyter_lab.add(path)`` copies
  a notebook (or a helper module) into its root. Its log is saved under
  ``test-artifacts/browser/``.
* ``browser_context`` (session): headless Chromium (``/usr/bin/chromium``, never
  a downloaded browser) with a fresh profile directory.
* ``lab`` (per test): a :class:`LabPage` on a new tab: ``open()`` a notebook,
  ``run_all()`` its cells (Run menu → Run All Cells), ``run_cell(code)`` append
  and run one more, wait for and read output text, and ``screenshot()`` into
  ``test-artifacts/browser/``.

Chromium missing fails the test with the command that installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
# JupyterLab user settings: no news or update toasts, every cell rendered (no virtual windowing).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "autoStartDefaultKernel": True},
}


def chromium_executable() -> str:
    """The system Chromium; fails the test with the fix when there is none."""
    env = os.environ.get("VASTNB_CHROMIUM")
    for candidate in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    pytest.fail(
        "The browser tests need Chromium, which is not installed (looked for "
        f"{', '.join(CHROMIUM_CANDIDATES)} and `chromium` on PATH). Run the README's test command, "
        "./scripts/test, which installs it (Debian's chromium package: apt-get install -y chromium), "
        "or set VASTNB_CHROMIUM to a Chromium binary.",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterLab:
    """A running JupyterLab server (see the module docstring)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ARTIFACTS / "jupyterlab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        for d in ("root", "config", "data", "runtime", "settings", "workspaces", "ipython"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        for rel, values in LAB_SETTINGS.items():
            path = self.base / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
            JUPYTER_CONFIG_DIR=str(self.base / "config"),
            JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.base / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.base / "workspaces"),
            IPYTHONDIR=str(self.base / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONWARNINGS="ignore",
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.news_url=",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {self.proc.returncode}; see {self.log_path}:\n{self.log_tail()}")
            try:
                req = urllib.request.Request(f"{self.url}/api/status", headers={"Authorization": f"token {self.token}"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer on {self.url} within {timeout:g} s; see {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def add(self, path: str | Path, name: str | None = None) -> str:
        """Copy a notebook or helper file into the server's root; returns its name there."""
        src = Path(path)
        dest = self.root / (name or src.name)
        shutil.copyfile(src, dest)
        return dest.name

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def stop(self) -> None:
        """Stop the server (and its kernels) by its process group, started for it alone."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    for old in ARTIFACTS.glob("*.png"):  # screenshots are from this run only
        old.unlink()
    lab = JupyterLab(tmp_path_factory.mktemp("jupyterlab"))
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()
    # Playwright's sync API marks its event loop as running in this thread while it is open;
    # leaving it open would break every later test that calls asyncio.run().
    assert asyncio._get_running_loop() is None, "Playwright left an event loop running in the test thread"


class LabPage:
    """One browser tab on the JupyterLab server, with notebook helpers."""

    def __init__(self, page: Any, server: JupyterLab, name: str) -> None:
        self.page = page
        self.server = server
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))

    # -- notebook --

    def open(self, notebook: str, timeout: float = 90.0) -> None:
        """Open a notebook (a name in the server's root) and wait for its kernel to be idle."""
        self.page.goto(self.server.notebook_url(notebook))
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.wait_kernel_idle(timeout)

    def accept_kernel_dialog(self) -> None:
        """If JupyterLab asks which kernel to start, take the preferred one."""
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():
            dialog.get_by_role("button", name="Select").click()

    def wait_kernel_idle(self, timeout: float = 90.0) -> None:
        """Wait until the notebook's kernel is started and idle (the toolbar's kernel status)."""
        self.accept_kernel_dialog()
        self.page.wait_for_function(
            """() => {
                const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
                const name = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName');
                return s && s.getAttribute('data-status') === 'idle' && name && !/No Kernel/.test(name.textContent);
            }""",
            timeout=timeout * 1000,
        )

    def run_all(self, timeout: float = 120.0, *, check: bool = True) -> None:
        """Run → Run All Cells, then wait until every code cell has run and the kernel is idle.

        With ``check``, a cell that raised fails the test with its traceback.
        """
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        self.wait_all_run(timeout)
        if check:
            errors = self.errors()
            assert not errors, "a notebook cell raised:\n\n" + "\n\n".join(errors)

    def wait_all_run(self, timeout: float = 120.0) -> None:
        """Wait until every code cell shows an execution count (none pending) and the kernel is idle."""
        try:
            self.page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
                    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                }""",
                timeout=timeout * 1000,
            )
        except Exception as exc:
            prompts = self.page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
            shot = self.screenshot("not-run")
            raise AssertionError(f"cells did not all run within {timeout:g} s: prompts {prompts} (screenshot: {shot})") from exc
        self.wait_kernel_idle(timeout)

    def run_cell(self, code: str, timeout: float = 60.0, *, wait: bool = True) -> None:
        """Append a code cell with ``code`` at the end of the notebook and run it (``wait=False``: return once it
        is sent, while it runs)."""
        cells = self.page.locator(".jp-Notebook .jp-Cell")
        cells.last.locator(".jp-InputArea-prompt").click()
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("b")
        self.page.keyboard.press("Enter")
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Control+Enter")  # run without adding an empty cell below
        if wait:
            self.wait_all_run(timeout)

    def set_theme(self, name: str) -> None:
        """Settings → Theme → ``name`` ("JupyterLab Dark", "JupyterLab Light"); waits until the page has it."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Settings$")).click()
        self.page.locator('.lm-Menu-item:has(.lm-Menu-itemLabel:text-is("Theme"))').click()
        self.page.locator(f'.lm-Menu-item:has(.lm-Menu-itemLabel:text-is("{name}"))').click()
        light = "true" if "Light" in name else "false"
        self.page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)
        self.page.wait_for_timeout(500)  # let the theme's stylesheet settle before a screenshot

    def overflow(self, selector: str) -> list[str]:
        """Each element matching ``selector`` that scrolls sideways (its scroll width beyond its client width)."""
        found: list[str] = self.page.evaluate(
            """(sel) => [...document.querySelectorAll(sel)]
                .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth)
                .map(e => `${e.className}: scroll width ${e.scrollWidth} > client width ${e.clientWidth}`)""",
            selector,
        )
        return found

    def console_errors(self) -> list[str]:
        """What the page logged as errors (uncaught exceptions included)."""
        return [line for line in self.console if line.startswith(("error:", "pageerror:"))]

    # -- reading --

    def errors(self) -> list[str]:
        """The text of every error output (tracebacks) in the notebook."""
        loc = self.page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        texts = [loc.nth(i).inner_text() for i in range(loc.count())]
        return [t for t in texts if "Traceback" in t or "Error" in t]

    def outputs(self) -> list[str]:
        """Each code cell's output text, in order."""
        cells = self.page.locator(".jp-Notebook .jp-CodeCell")
        return [cells.nth(i).locator(".jp-OutputArea").inner_text() for i in range(cells.count())]

    def text(self, selector: str = ".jp-Notebook") -> str:
        return str(self.page.locator(selector).first.inner_text())

    def wait_for_text(self, text: str, selector: str = ".jp-Notebook", timeout: float = 60.0) -> Any:
        """Wait until an element matching ``selector`` contains ``text``; returns its locator."""
        loc = self.page.locator(selector, has_text=text).first
        try:
            loc.wait_for(timeout=timeout * 1000)
        except Exception as exc:
            shot = self.screenshot("timeout")
            raise AssertionError(
                f"{text!r} did not appear in {selector!r} within {timeout:g} s (screenshot: {shot}).\n"
                f"Page text:\n{self.text()[-3000:]}"
            ) from exc
        return loc

    # -- artifacts --

    def screenshot(self, label: str, selector: str | Any = None) -> Path:
        """Save a screenshot under test-artifacts/browser/: of the viewport, or of the first element
        matching ``selector`` (a CSS selector or a playwright Locator), the viewport grown to fit it."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        if selector is None:
            self.page.screenshot(path=str(path))
        else:  # grow the viewport so the whole element fits, then restore it
            loc = (self.page.locator(selector) if isinstance(selector, str) else selector).first
            loc.scroll_into_view_if_needed()
            size = self.page.viewport_size or {"width": 1280, "height": 1000}
            box = loc.bounding_box()
            if box and box["height"] + 160 > size["height"]:
                self.page.set_viewport_size({"width": size["width"], "height": min(4000, int(box["height"]) + 200)})
                self.page.wait_for_timeout(300)
                loc.scroll_into_view_if_needed()
            try:
                loc.screenshot(path=str(path))
            finally:
                self.page.set_viewport_size(size)
        return path


@pytest.fixture
def lab(jupyter_lab: JupyterLab, browser_context: Any, request: pytest.FixtureRequest) -> Iterator[LabPage]:
    page = browser_context.new_page()
    lab_page = LabPage(page, jupyter_lab, request.node.name)
    try:
        yield lab_page
    finally:
        try:  # leave no kernel running behind the tab
            page.evaluate(
                """async () => {
                    const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
                    const r = await fetch('/api/sessions', {headers: {'X-XSRFToken': xsrf}});
                    for (const s of await r.json())
                        await fetch('/api/sessions/' + s.id, {method: 'DELETE', headers: {'X-XSRFToken': xsrf}});
                }"""
            )
        except Exception:
            pass
        page.close()
