"""Progress for long operations (``fn.map``, ``ensure_ready``): a widget in Jupyter, a line of text elsewhere.

::

    with Progress(100, "map predict") as bar:      # any thread may call update()
        for result in results:
            bar.update()
            bar.set_postfix(f"{n_workers} workers")

Also home of :class:`Throttle`, the rate limiter every vastnb view redraws through.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable

from . import _html as h

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["Progress", "Throttle"]

log = logging.getLogger("vastnb")


class Throttle:
    """Runs ``fn`` on its own daemon thread: at most once per ``interval``, and once more after the last :meth:`poke`.

    :meth:`poke` only sets a flag, so it is safe (and cheap) from any thread,
    including an event publisher's: any number of pokes while ``fn`` runs or
    while the thread rests its ``interval`` become one call. ``tick`` (if given)
    returns how long to wait for a poke before calling ``fn`` anyway, or None to
    wait indefinitely. :meth:`stop` runs ``final`` (default ``fn``) once more on
    the thread and ends it. The thread starts on the first poke. ``rest`` is how
    the thread rests between calls (default: wait ``interval`` seconds, cut short
    by :meth:`stop`); tests pass their own to hold the thread at that point.
    """

    def __init__(
        self,
        fn: Callable[[], None],
        interval: float = 0.1,
        *,
        name: str = "vastnb-throttle",
        tick: Callable[[], float | None] | None = None,
        final: Callable[[], None] | None = None,
        rest: Callable[[float], object] | None = None,
    ) -> None:
        self.fn = fn
        self.interval = interval
        self.name = name
        self.tick = tick
        self.final = final or fn
        self.calls = 0  # times fn (or final) ran
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._rest = rest or self._halt.wait
        self._stopping = False
        self._idle = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def poke(self) -> None:
        """Ask for a call; returns at once."""
        if self._stopping:
            return
        self._wake.set()
        self.start()

    @property
    def pending(self) -> bool:
        """True while a poke waits for its call."""
        return self._wake.is_set()

    @property
    def settled(self) -> bool:
        """True when the thread waits for a poke and none is pending (every poke so far has had its call)."""
        return self._idle and not self._wake.is_set()

    def start(self) -> None:
        """Start the thread without asking for a call (it then waits for a poke or its tick)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """Run ``final`` once more and end the thread; waits for it (unless ``wait=False`` or called from it)."""
        with self._lock:
            if self._stopping:
                thread = self._thread
            else:
                self._stopping = True
                thread = self._thread
                if thread is None:  # never started: run final here
                    self._call(self.final)
                    self.stopped.set()
                    return
        self._halt.set()
        self._wake.set()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s: redraw failed", self.name)
        self.calls += 1

    def _run(self) -> None:
        while not self._stopping:
            self._idle = True
            self._wake.wait(self.tick() if self.tick is not None else None)
            self._idle = False
            self._wake.clear()
            if self._stopping:
                break
            self._call(self.fn)
            if not self._stopping:
                self._rest(self.interval)  # the rate limit; pokes meanwhile leave _wake set: the trailing call
        self._call(self.final)
        self.stopped.set()


class Progress:
    """A progress bar usable from any thread: an ipywidgets bar in a notebook, text in a terminal.

    ``total`` may be None (unknown) and may change (``bar.total = 4``).
    Redraws are rate-limited to ``1 / min_interval`` per second with the last
    state always drawn; :meth:`close` (or leaving the ``with`` block) draws the
    final state. ``mode`` is ``"widget"``, ``"text"`` or None to pick by
    whether a Jupyter kernel is running. ``rate=False`` shows the time elapsed
    instead of a rate and time left (waiting for workers has no meaningful
    rate); ``tick`` (seconds) redraws that often while open, so elapsed time moves.
    """

    def __init__(
        self,
        total: int | None,
        description: str = "",
        *,
        unit: str = "calls",
        min_interval: float = 0.1,
        mode: str | None = None,
        file: IO[str] | None = None,
        line_interval: float = 5.0,
        display: bool = True,
        initial: int = 0,
        rate: bool = True,
        tick: float | None = None,
    ) -> None:
        if mode not in (None, "widget", "text"):
            raise ValueError(f"Progress mode must be 'widget', 'text' or None (automatic). Instead got {mode!r}.")
        self.description = description
        self.unit = unit
        self.rate = rate
        self.mode = mode or ("widget" if h.widget_frontend() else "text")
        self._total = total
        self.n = initial  # already done when the bar starts (drawn with the first update or close)
        self.postfix = ""
        self.failed = False
        self.closed = False
        self.started = time.monotonic()
        self._ended: float | None = None
        self._lock = threading.Lock()
        self._file = file
        self._line_interval = line_interval
        self._last_line = -1e9
        self._line_len = 0
        self._handle: Any = None
        self._widget: ipywidgets.HBox | None = None
        self._bar: ipywidgets.IntProgress | None = None
        self._label: ipywidgets.HTML | None = None
        self._throttle = Throttle(self._render, min_interval, name="vastnb-progress", final=self._render_final,
                                  tick=(lambda: tick) if tick else None)
        if self.mode == "widget":
            self._build()
            if display:
                self._show()
        if tick:
            self._throttle.start()

    # -- state --

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = value
        self._throttle.poke()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done."""
        with self._lock:
            self.n += n
        self._throttle.poke()

    def set_postfix(self, text: str) -> None:
        """Extra words after the count, e.g. ``"2 workers"``."""
        self.postfix = text
        self._throttle.poke()

    def close(self, *, failed: bool = False) -> None:
        """Draw the final state and stop redrawing."""
        if self.closed:
            return
        self.failed = self.failed or failed
        self._ended = time.monotonic()
        self.closed = True
        self._throttle.stop()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(failed=exc_type is not None)

    @property
    def text(self) -> str:
        """The current line: ``map: 37/100 calls, 2 workers · 12.3/s · ~5.1 s left``."""
        n, total = self.n, self._total
        count = f"{n:,}/{total:,}" if total is not None else f"{n:,}"
        s = f"{count} {self.unit}" if self.unit else count
        if self.postfix:
            s += f", {self.postfix}"
        elapsed = (self._ended or time.monotonic()) - self.started
        rate = n / elapsed if elapsed > 0 else 0.0
        if self.closed:
            s += f" · {'failed after' if self.failed else 'done in'} {h.fmt_seconds(elapsed)}"
        elif not self.rate:
            s += f" · {h.fmt_seconds(elapsed)}"
        elif n and elapsed > 0.2:
            s += f" · {h.fmt_rate(rate)}"
            if total is not None and total > n and rate > 0:
                s += f" · ~{h.fmt_seconds((total - n) / rate)} left"
        return f"{self.description}: {s}" if self.description else s

    # -- drawing --

    def _build(self) -> None:
        import ipywidgets as w

        self._bar = w.IntProgress(value=0, min=0, max=max(1, self._total or 1), bar_style="info",
                                  layout=w.Layout(width="260px", flex="none"))
        self._desc = w.HTML(f"<b>{h.esc(self.description)}</b>" if self.description else "",
                            layout=w.Layout(flex="none", margin="0 8px 0 0"))
        self._label = w.HTML(h.esc(self._count_text()), layout=w.Layout(flex="1 1 auto", margin="0 0 0 8px"))
        self._widget = w.HBox([self._desc, self._bar, self._label], layout=w.Layout(align_items="center", flex_flow="row wrap"))
        self._widget.add_class("vastnb-progress")

    def _count_text(self) -> str:
        text = self.text
        prefix = f"{self.description}: "
        return text[len(prefix):] if self.description and text.startswith(prefix) else text

    @property
    def widget(self) -> ipywidgets.HBox | None:
        """The ipywidgets view (None in text mode)."""
        return self._widget

    def _show(self) -> None:
        from IPython.display import display

        self._handle = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def _bundle(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": self.text}
        if self._widget is not None and not self.closed:
            view = self._widget._repr_mimebundle_()
            key = "application/vnd.jupyter.widget-view+json"
            if view and key in view:
                data[key] = view[key]
        return data

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = self._bundle()
        data["text/html"] = self.to_html()
        return data

    def to_html(self) -> str:
        """The bar as static HTML (what a saved notebook keeps)."""
        total = self._total
        frac = 1.0 if (total is None and self.closed) or self.failed else (self.n / total if total else 0.0)
        color = h.DANGER if self.failed else h.STATE_COLORS["ready"] if self.closed and (total is None or self.n >= total) else h.ACCENT
        return h.progress_html(frac, self._count_text(), description=self.description, color=color)

    def __repr__(self) -> str:
        return f"<Progress {self.text}>"

    def _render(self) -> None:
        if self.mode == "widget":
            self._render_widget()
        else:
            self._render_text(final=False)

    def _render_final(self) -> None:
        if self.mode == "widget":
            self._render_widget()
            if self._handle is not None:  # a finished bar becomes static HTML, which survives saving the notebook
                try:
                    self._handle.update({"text/plain": self.text, "text/html": self.to_html()}, raw=True)
                except Exception:
                    log.debug("could not update a progress display", exc_info=True)
        else:
            self._render_text(final=True)

    def _render_widget(self) -> None:
        bar, label = self._bar, self._label
        if bar is None or label is None:
            return
        total = self._total
        bar.max = max(1, total if total is not None else max(self.n, 1))
        bar.value = bar.max if self.closed and self.failed else min(self.n, bar.max)  # a failure reads red at a glance
        if self.closed:
            bar.bar_style = "danger" if self.failed else "success" if total is None or self.n >= total else "warning"
        label.value = h.esc(self._count_text())

    def _render_text(self, *, final: bool) -> None:
        f = self._file or sys.stderr
        line = self.text
        tty = bool(getattr(f, "isatty", lambda: False)())
        try:
            if tty:
                pad = max(0, self._line_len - len(line))
                f.write("\r" + line + " " * pad + ("\n" if final else ""))
                self._line_len = len(line)
                f.flush()
            else:
                now = time.monotonic()
                if final or now - self._last_line >= self._line_interval:
                    f.write(line + "\n")
                    f.flush()
                    self._last_line = now
        except (ValueError, OSError):  # the stream was closed under us
            pass
