"""The GPU picker: choose the GPUs a deployment's workers may run on, and see what that means.

::

    picker = GpuPicker(image, source=app)     # or %vast_gpus
    picker                                    # the widget
    picker.code                               # 'image.require(gpu_name.in_([RTX_4090, H100_SXM]), gpu_ram >= 24)'
    picker.apply()                            # the same as running that line (replacing what it applied before)

As you choose, it shows the Python line it stands for, the Vast query string,
which of this machine's GPUs match (and why not), how many Vast offers match and
the cheapest (when an ``offers`` provider is given), and, once workers have
benchmarked, each GPU model's measured score against its price.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .. import gpus as _gpus
from .. import query as _q
from ..errors import ConfigurationError
from ..events import Event, EventKind, WorkerSnapshot
from . import _html as h
from ._picker_html import PICKER_CSS, field_of, picker_html, segment_head
from .progress import Throttle

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["GpuPicker"]

log = logging.getLogger("vastnb")

SEGMENTS = ("data center", "consumer", "professional", "AMD")
MEMORY_STEPS = (0, 8, 12, 16, 24, 32, 40, 48, 80, 96, 141)
GPU_COUNTS = (0, 1, 2, 4, 8)
PRICE_STEPS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RELIABILITY_STEPS = (0.0, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)
CPU_STEPS = (0, 2, 4, 8, 16, 32, 64)
DISK_STEPS = (0, 16, 32, 50, 100, 200, 500, 1000)

OffersProvider = Callable[[_q.Query], Sequence[Any]]

#: The offer columns the picker's controls set; on Apply its choice replaces the image's conditions on them.
PICKER_COLUMNS = ("gpu_name", "gpu_ram", "num_gpus", "dph_total", "reliability", "cpu_cores_effective", "disk_space")


def _model_of(gpu: str | None) -> _gpus.GpuModel | None:
    """The catalog model of a worker's GPU label (``"RTX_4090 #0"``)."""
    if not gpu:
        return None
    return _gpus.by_name(re.sub(r"\s*#\d+$", "", gpu))


class GpuPicker:
    """Choose GPU requirements for ``image`` with controls; :meth:`apply` sets them on the image.

    ``image`` needs ``set_picker_requirement(query_or_None) -> str | None`` (a
    :class:`vastnb.Image` has it): each apply replaces the picker's previous
    requirement instead of adding a conflicting one. ``offers`` is a callable
    taking the picker's :class:`~vastnb.query.Query` (without Vast's search
    defaults) and returning offers with ``gpu_name``, ``num_gpus``,
    ``dph_total``, ``reliability``; it runs on a background thread. ``source``
    (a deployment) adds measured scores against prices. ``local`` overrides the
    detected local GPUs (``vastnb.gpus.local_gpus()``).
    """

    def __init__(
        self,
        image: Any,
        *,
        source: Any = None,
        offers: OffersProvider | None = None,
        local: Sequence[_gpus.LocalGpu] | None = None,
        var: str = "image",
    ) -> None:
        self.image = image
        self.source = source
        self.offers_provider = offers
        self.var = var
        found = _gpus.local_gpus() if local is None else local
        self.local: list[_gpus.LocalGpu] = list(found)
        self.local_reason: str | None = getattr(found, "reason", None)
        self.status = ""  # what the last apply() said
        self.offers: list[Any] | None = None  # the last search's offers (None before one)
        self.offers_error: str | None = None
        self._offers_for: str | None = None  # query string the offers belong to
        self._offers_cond = threading.Condition()
        self._selected: dict[str, None] = {}  # constants, in the order chosen
        self._syncing = False
        self._lock = threading.RLock()
        self._build()
        self._offer_search = Throttle(self._search_offers, 0.4, name="vastnb-picker-offers") if offers else None
        self._source_redraw: Throttle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        if source is not None and getattr(source, "events", None) is not None:
            self._source_redraw = Throttle(self._render, 1.0, name="vastnb-picker-source")
            self._unsubscribe = source.events.subscribe(self._on_event)
        self._start_from_image()
        self._changed()

    # ------------------------------------------------------------------ controls
    def _build(self) -> None:
        import ipywidgets as w

        self._filter = w.Text(placeholder="filter models, e.g. 4090 or H100", layout=w.Layout(width="260px"))
        self.model_lists: dict[str, ipywidgets.SelectMultiple] = {}
        self._heads: dict[str, ipywidgets.HTML] = {}
        columns = []
        for segment in SEGMENTS:
            # no horizontal margin: at width 100% a widget's default 2 px margins push its right border out of view
            sel = w.SelectMultiple(options=self._options(segment, ""), rows=7, layout=w.Layout(width="100%", margin="2px 0"))
            sel.observe(self._on_models(segment), names="value")
            self.model_lists[segment] = sel
            self._heads[segment] = w.HTML(segment_head(segment, ""))
            columns.append(w.VBox([self._heads[segment], sel], layout=w.Layout(min_width="0", margin="0")))
        self._grid = w.GridBox(columns, layout=w.Layout(grid_gap="6px 16px", width="100%", margin="2px 0"))
        self._grid.add_class("vastnb-models")  # 4, 2 or 1 columns by the picker's width (PICKER_CSS), never 3 + 1
        self._chips = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self._clear = w.Button(description="Clear", icon="times", layout=w.Layout(width="80px"), tooltip="Deselect every model")
        self._clear.on_click(lambda _: self.select())
        style = {"description_width": "110px"}
        lay = w.Layout(width="380px", max_width="100%")

        def slider(desc: str, steps: Sequence[Any], fmt: Callable[[Any], str]) -> ipywidgets.SelectionSlider:
            return w.SelectionSlider(options=[(fmt(v), v) for v in steps], value=steps[0], description=desc, style=style, layout=lay, continuous_update=False)

        self.min_gpu_ram = slider("GPU memory ≥", MEMORY_STEPS, lambda v: "any" if not v else f"{v} GB")
        self.num_gpus = slider("GPUs per worker", GPU_COUNTS, lambda v: "any" if not v else str(v))
        self.max_price = slider("max $/hour", PRICE_STEPS, lambda v: "any" if not v else f"${v:g}")
        self.min_reliability = slider("reliability ≥", RELIABILITY_STEPS, lambda v: "any" if not v else f"{v:g}")
        self.min_cpu_cores = slider("CPU cores ≥", CPU_STEPS, lambda v: "any" if not v else str(v))
        self.min_disk = slider("disk ≥", DISK_STEPS, lambda v: "any" if not v else f"{v} GB")
        for ctl in self._controls():
            ctl.observe(lambda _: self._changed(), names="value")
        self._filter.observe(lambda _: self._refilter(), names="value")
        self._apply_button = w.Button(description="Apply", button_style="primary", icon="check", tooltip="Set this requirement on the image",
                                      layout=w.Layout(flex="none"))
        self._apply_button.on_click(lambda _: self.apply())
        self._status = w.HTML(layout=w.Layout(flex="1 1 240px", min_width="0"))
        self._out = w.HTML(layout=w.Layout(width="100%", margin="2px 0"))
        title = w.HTML(
            h.root(f'<div style="font-size:15px;font-weight:650">GPU picker '
                   f'<span style="font-weight:400;font-size:12px;color:{h.FAINT}">choose where workers may run; Apply sets it on <code>{h.esc(self.var)}</code></span></div>')
        )
        settings = w.GridBox(
            [self.min_gpu_ram, self.num_gpus, self.max_price, self.min_reliability, self.min_cpu_cores, self.min_disk],
            layout=w.Layout(grid_template_columns="repeat(auto-fill, minmax(min(100%, 400px), 1fr))", grid_gap="2px 16px", width="100%", margin="8px 0 4px 0"),
        )
        self.widget = w.VBox(
            [w.HTML(PICKER_CSS, layout=w.Layout(display="none")), title, w.HBox([self._filter, self._chips, self._clear], layout=w.Layout(align_items="center", width="100%", margin="2px 0", flex_flow="row wrap")),
             self._grid, settings, self._out, w.HBox([self._apply_button, self._status], layout=w.Layout(align_items="center", width="100%", margin="2px 0", flex_flow="row wrap"))],
            layout=w.Layout(width="100%", padding="4px 2px"),
        )
        self.widget.add_class("vastnb-gpu-picker")

    def _controls(self) -> list[Any]:
        return [self.min_gpu_ram, self.num_gpus, self.max_price, self.min_reliability, self.min_cpu_cores, self.min_disk]

    @staticmethod
    def _options(segment: str, text: str) -> list[tuple[str, str]]:
        models = [m for m in _gpus.CATALOG.values() if m.segment == segment]
        if text:
            needle = text.replace("_", " ").casefold()
            models = [m for m in models if needle in m.name.casefold() or needle in m.architecture.casefold()]
        models.sort(key=lambda m: (-m.fp16_tflops, m.name))
        return [(f"{m.name} · {m.memory_gb:g} GB · {m.fp16_tflops:,.0f} TF", m.constant) for m in models]

    def _on_models(self, segment: str) -> Callable[[dict[str, Any]], None]:
        def observe(change: dict[str, Any]) -> None:
            if self._syncing:
                return
            shown = {value for _, value in self.model_lists[segment].options}
            now = set(change["new"])
            for c in [c for c in self._selected if c in shown and c not in now]:
                del self._selected[c]
            for c in change["new"]:
                self._selected.setdefault(c, None)
            self._changed()

        return observe

    def _refilter(self) -> None:
        text = self._filter.value.strip()
        self._syncing = True
        try:
            for segment, sel in self.model_lists.items():
                opts = self._options(segment, text)
                keep = {v for _, v in opts}
                self._heads[segment].value = segment_head(segment, text if not opts else "")
                # options and selection go to the browser in one message: an index into the old options that
                # the new ones no longer have makes the frontend fail ("setting 'selected' of undefined")
                with sel.hold_sync():
                    sel.value = ()
                    sel.options = opts
                    sel.value = tuple(c for c in self._selected if c in keep)
        finally:
            self._syncing = False

    def _sync_lists(self) -> None:
        self._syncing = True
        try:
            for sel in self.model_lists.values():
                keep = {v for _, v in sel.options}
                with sel.hold_sync():
                    sel.value = tuple(c for c in self._selected if c in keep)
        finally:
            self._syncing = False

    def _start_from_image(self) -> None:
        """Show what the image already requires on the picker's columns (models, sliders), so Apply replaces it."""
        declared = getattr(self.image, "declared_requirement", None)
        if declared is None:
            return
        ops = declared.query
        names = ops.get("gpu_name", {})
        models = [names["eq"]] if "eq" in names else list(names.get("in", []))
        known = [m for m in models if _gpus.by_name(m) is not None]
        if known:
            self.select(*known)
        values = {
            "min_gpu_ram": ops.get("gpu_ram", {}).get("gte"), "num_gpus": ops.get("num_gpus", {}).get("eq"),
            "max_price": ops.get("dph_total", {}).get("lte"), "min_reliability": ops.get("reliability", {}).get("gte"),
            "min_cpu_cores": ops.get("cpu_cores_effective", {}).get("gte"), "min_disk": ops.get("disk_space", {}).get("gte"),
        }
        if values["min_gpu_ram"] is not None:
            values["min_gpu_ram"] = values["min_gpu_ram"] / _q.RAW_UNIT_FACTORS["gpu_ram"]  # MB in the query, GB here
        chosen: dict[str, Any] = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if chosen:
            self.set(**chosen)

    # ------------------------------------------------------------------ programmatic use
    @property
    def models(self) -> list[str]:
        """The chosen GPU constants (``["RTX_4090", "H100_SXM"]``), in the order chosen."""
        return list(self._selected)

    def select(self, *models: str) -> GpuPicker:
        """Choose exactly these GPU models (constants such as ``RTX_4090`` or Vast names such as ``"RTX 4090"``)."""
        chosen: dict[str, None] = {}
        for m in models:
            model = _gpus.CATALOG.get(m) or _gpus.by_name(m)
            if model is None:
                raise ConfigurationError(
                    f"GpuPicker.select(): {m!r} is not a GPU model vastnb knows; use a constant from vastnb.query "
                    f"such as RTX_4090 or H100_SXM."
                )
            chosen[model.constant] = None
        self._selected = chosen
        self._sync_lists()
        self._changed()
        return self

    def set(
        self,
        *,
        min_gpu_ram: float | None = None,
        num_gpus: int | None = None,
        max_price: float | None = None,
        min_reliability: float | None = None,
        min_cpu_cores: int | None = None,
        min_disk: float | None = None,
    ) -> GpuPicker:
        """Set controls by value (0 means any); values between the slider's steps are added as steps."""
        pairs = [
            (self.min_gpu_ram, min_gpu_ram, lambda v: f"{v:g} GB"),
            (self.num_gpus, num_gpus, lambda v: f"{v:g}"),
            (self.max_price, max_price, lambda v: f"${v:g}"),
            (self.min_reliability, min_reliability, lambda v: f"{v:g}"),
            (self.min_cpu_cores, min_cpu_cores, lambda v: f"{v:g}"),
            (self.min_disk, min_disk, lambda v: f"{v:g} GB"),
        ]
        self._syncing = True
        try:
            for ctl, value, fmt in pairs:
                if value is None:
                    continue
                values = [v for _, v in ctl.options]
                if value not in values:
                    opts = sorted(list(ctl.options) + [(fmt(value), value)], key=lambda o: o[1])
                    ctl.options = opts
                ctl.value = value
        finally:
            self._syncing = False
        self._changed()
        return self

    # ------------------------------------------------------------------ what it stands for
    @property
    def query(self) -> _q.Query:
        """The requirement as a vastnb Query (without Vast's search defaults); empty when nothing is chosen."""
        q = _q.Query({})
        models = [_q.GPU_NAMES[c] for c in self._selected]
        if len(models) == 1:
            q.extend(_q.gpu_name == models[0])
        elif models:
            q.extend(_q.gpu_name.in_(models))
        if self.min_gpu_ram.value:
            q.extend(_q.gpu_ram >= self.min_gpu_ram.value)
        if self.num_gpus.value:
            q.extend(_q.num_gpus == self.num_gpus.value)
        if self.max_price.value:
            q.extend(_q.dph_total <= self.max_price.value)
        if self.min_reliability.value:
            q.extend(_q.reliability >= self.min_reliability.value)
        if self.min_cpu_cores.value:
            q.extend(_q.cpu_cores_effective >= self.min_cpu_cores.value)
        if self.min_disk.value:
            q.extend(_q.disk_space >= self.min_disk.value)
        return q

    def _rebuilt(self) -> _q.Query:
        """The image's whole requirement once applied: its other conditions, then the picker's (no search defaults)."""
        declared = getattr(self.image, "declared_requirement", None)
        kept = declared.without(PICKER_COLUMNS) if declared is not None else _q.Query({})
        defaults = _q.Query.search_defaults().query
        kept = _q.Query({c: ops for c, ops in kept.query.items() if defaults.get(c) != ops})
        return kept.extend(self.query)

    @property
    def code(self) -> str:
        """The line to put in place of the notebook's ``image.require(...)``: the requirement rebuilt with this
        selection (the image's conditions on other columns kept); ``""`` when it requires nothing (any GPU)."""
        q = self._rebuilt()
        return f"{self.var}.require({q.to_source()})" if q.query else ""

    @property
    def imports(self) -> str:
        """The import line :attr:`code` needs (``from vastnb.query import gpu_name, gpu_ram, RTX_4090``)."""
        q = self._rebuilt()
        if not q.query:
            return ""
        words = re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", q.to_source())
        names = [w for w in words if w in _q.COLUMNS or w in _q.GPU_NAMES]
        return f"from vastnb.query import {', '.join(dict.fromkeys(names))}"

    @property
    def query_string(self) -> str:
        """The Vast query string for this selection, with Vast's search defaults first (what a search sends)."""
        return _q.Query.search_defaults().extend(self.query).unparse_query()

    def local_matches(self) -> list[tuple[_gpus.LocalGpu, list[str]]]:
        """Each local GPU with the requirements it fails (empty: it matches)."""
        q = self.query
        return [(gpu, q.mismatches(gpu.describe())) for gpu in self.local]

    def apply(self) -> str:
        """Set this selection on the image for this session, replacing its conditions on the picker's columns and
        keeping the others; returns what happened (also shown under the button). Never raises: a refusal is shown."""
        q = self.query
        try:
            said = self.image.set_picker_requirement(q if q.query else None, PICKER_COLUMNS)
        except Exception as exc:  # noqa: BLE001 - a button callback must not raise into the kernel
            self.status = f"Not applied: {exc}"
            self._status.value = h.fluid(h.root(f'<span style="color:{h.ERROR_TEXT};overflow-wrap:anywhere">{h.esc(self.status)}</span>'))
            return self.status
        what = self.code or "no GPU requirement (any GPU)"
        self.status = f"Applied: {what}" + (f" — {said}" if said else "")
        self._status.value = h.fluid(h.root(f'<span style="color:{h.UP}">✓</span> <span style="overflow-wrap:anywhere">{h.esc(self.status)}</span>'))
        self._render()
        return self.status

    # ------------------------------------------------------------------ live outputs
    def _changed(self) -> None:
        if self._syncing:
            return
        self._chips.value = self._chips_html()
        if self._offer_search is not None:
            self._offer_search.poke()
        self._render()

    def _chips_html(self) -> str:
        if not self._selected:
            return h.root(f'<span style="color:{h.FAINT};margin-left:10px">any GPU model — choose some below</span>')
        chips = "".join(
            f'<span style="display:inline-block;margin:0 4px 2px 0;padding:0 8px;border-radius:10px;'
            f'background:{h.rgba("#3b82f6", 0.14)};font-size:11.5px">{h.esc(_q.GPU_NAMES[c])}</span>'
            for c in self._selected
        )
        return h.root(f'<div style="margin-left:10px">{chips}</div>')

    def _on_event(self, event: Event) -> None:
        if event.kind in (EventKind.BENCHMARK, EventKind.WORKER) and self._source_redraw is not None:
            self._source_redraw.poke()
        elif event.kind is EventKind.SHUTDOWN and self._source_redraw is not None:
            self._source_redraw.stop(wait=False)

    def _search_offers(self) -> None:
        provider = self.offers_provider
        if provider is None:
            return
        q = self.query
        key = q.unparse_query()
        try:
            found: list[Any] | None = list(provider(q.copy()))
            error = None
        except Exception as exc:  # a failed search is shown, never raised into the kernel
            found, error = None, f"{type(exc).__name__}: {exc}"
        with self._offers_cond:
            self.offers, self.offers_error, self._offers_for = found, error, key
            self._offers_cond.notify_all()
        self._render()

    def wait_offers(self, timeout: float = 10.0) -> list[Any] | None:
        """Wait until the offers shown belong to the current selection; returns them (None if the search failed)."""
        key = self.query.unparse_query()
        with self._offers_cond:
            if not self._offers_cond.wait_for(lambda: self._offers_for == key, timeout):
                raise TimeoutError(f"no offer search result for {key!r} within {timeout:g} s")
            return self.offers

    def measured(self) -> list[dict[str, Any]]:
        """Per GPU model with benchmarked workers: mean score, price per hour (workers', else cheapest offer), score per dollar."""
        if self.source is None:
            return []
        try:
            workers: Iterable[WorkerSnapshot] = self.source.snapshot().workers
        except Exception:
            log.debug("picker: source snapshot failed", exc_info=True)
            return []
        groups: dict[str, list[WorkerSnapshot]] = {}
        for w in workers:
            if w.perf_score is None or not w.state.alive:  # a stopped worker costs nothing and serves nothing
                continue
            model = _model_of(w.gpu)
            key = model.constant if model else re.sub(r"\s*#\d+$", "", w.gpu or "CPU")
            groups.setdefault(key, []).append(w)
        cheapest: dict[str, float] = {}
        for offer in self.offers or []:
            name, dph = field_of(offer, "gpu_name"), field_of(offer, "dph_total")
            model = _gpus.by_name(str(name)) if name else None
            if model is not None and isinstance(dph, (int, float)):
                cheapest[model.constant] = min(cheapest.get(model.constant, float("inf")), float(dph))
        rows: list[dict[str, Any]] = []
        for key, ws in groups.items():
            perf = sum(w.perf_score or 0.0 for w in ws) / len(ws)
            prices = [w.price_per_hour for w in ws if w.price_per_hour is not None]
            price = sum(prices) / len(prices) if prices else cheapest.get(key)
            rows.append({
                "model": _q.GPU_NAMES.get(key, key), "workers": len(ws), "perf": perf, "price": price,
                "per_dollar": perf * 3600 / price if price else None,
            })
        rows.sort(key=lambda r: -(r["per_dollar"] or 0.0))
        return rows

    def _render(self) -> None:
        with self._lock:
            self._out.value = h.fluid(self.to_html(include_title=False))

    def to_html(self, *, include_title: bool = True) -> str:
        """The picker's outputs as HTML: code, query string, local GPUs, offers, price-performance."""
        return picker_html(self, include_title=include_title)

    # ------------------------------------------------------------------ display
    def to_text(self) -> str:
        """The picker's state as plain text (terminals)."""
        lines = ["GPU picker", f"  code:  {self.code or '# any GPU: no requirement'}", f"  query: {self.query_string}"]
        if self.local:
            for gpu, failed in self.local_matches():
                lines.append(f"  GPU {gpu.index} {gpu.vast_name or gpu.name}: " + ("matches" if not failed else "fails " + "; ".join(failed)))
        else:
            lines.append(f"  this machine: {self.local_reason or 'no NVIDIA GPU found'}")
        if self.status:
            lines.append(f"  {self.status}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": self.to_text(), "text/html": self.to_html()}
        if h.widget_frontend():
            view = self.widget._repr_mimebundle_()
            key = "application/vnd.jupyter.widget-view+json"
            if view and key in view:
                data[key] = view[key]
        return data

    def close(self) -> None:
        """Stop listening to the source and searching offers."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for t in (self._source_redraw, self._offer_search):
            if t is not None:
                t.stop()
