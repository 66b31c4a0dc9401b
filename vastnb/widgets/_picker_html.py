"""The GPU picker's outputs as HTML: the code to keep, the query, this machine's GPUs, offers, price-performance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _charts as svg
from . import _html as h

if TYPE_CHECKING:
    from .picker import GpuPicker

__all__ = ["PICKER_CSS", "field_of", "local_html", "offers_html", "picker_html", "segment_head"]

#: The live widget's own style sheet, scoped to it: model lists in 4, 2 or 1 columns by the picker's width
#: (never 3 and a lone 4th), and selected models readable in light and dark themes.
PICKER_CSS = """<style>
.vastnb-gpu-picker { container-type: inline-size; }
.vastnb-gpu-picker .vastnb-models { grid-template-columns: minmax(0, 1fr); }
@container (min-width: 560px) { .vastnb-gpu-picker .vastnb-models { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
@container (min-width: 1100px) { .vastnb-gpu-picker .vastnb-models { grid-template-columns: repeat(4, minmax(0, 1fr)); } }
.vastnb-gpu-picker select option:checked {
  background: var(--jp-brand-color1, #1976d2) linear-gradient(0deg, var(--jp-brand-color1, #1976d2) 0 100%);
  color: #fff;
}
</style>"""


def segment_head(segment: str, no_match: str) -> str:
    """A model list's heading; with ``no_match`` (the filter text), says that the filter hides every model in it."""
    note = (f'<span style="font-weight:400;text-transform:none;letter-spacing:0;color:{h.FAINT};margin-left:6px">'
            f"no match for “{h.esc(no_match)}”</span>") if no_match else ""
    return (f'<div style="font-size:11px;font-weight:600;letter-spacing:.05em;text-transform:uppercase;color:{h.MUTED}">'
            f"{h.esc(segment)}{note}</div>")


def field_of(offer: Any, name: str) -> Any:
    """A field of an offer, whether the SDK gave a dict or an object."""
    return offer.get(name) if isinstance(offer, dict) else getattr(offer, name, None)


def picker_html(picker: "GpuPicker", *, include_title: bool = True) -> str:
    """The picker's outputs as HTML: code, query string, local GPUs, offers, price-performance."""
    code = picker.code
    codebox = (
        f'<pre style="font-family:{h.MONO};font-size:12px;line-height:1.5;margin:2px 0 0 0;padding:7px 10px;border-radius:4px;'
        f'background:{h.rgba("#64748b", 0.09)};white-space:pre;overflow-x:auto">'
        + (f'<span style="color:{h.FAINT}">{h.esc(picker.imports)}\n# in place of your {h.esc(picker.var)}.require(...) line, to keep this choice:</span>\n{h.esc(code)}'
           if code else f'<span style="color:{h.FAINT}"># any GPU: remove your {h.esc(picker.var)}.require(...) line</span>')
        + "</pre>"
    )
    body = h.panel(codebox, title="Python", sub=True)
    query = f'<code style="font-family:{h.MONO};font-size:12px">{h.esc(picker.query_string)}</code>'
    req = getattr(picker.image, "requirement", None)
    if req is not None:
        try:
            query += f'<div style="color:{h.FAINT};font-size:11.5px">{h.esc(picker.var)} requires now: <code>{h.esc(req.unparse_query())}</code></div>'
        except Exception:
            pass
    body += h.panel(query, title="Vast query", sub=True)
    panels = [h.panel(local_html(picker), title="This machine", sub=True, min_width=340)]
    if picker.offers_provider is not None:
        panels.append(h.panel(offers_html(picker), title="Vast offers", sub=True, min_width=280))
    body += h.row(*panels)
    measured = picker.measured()
    if measured:
        top = max(r["per_dollar"] or 0.0 for r in measured) or 1.0
        rows = [[
            f"<b>{h.esc(r['model'])}</b>", h.fmt_count(r["workers"]), h.fmt_rate(r["perf"]),
            h.fmt_money(r["price"]) if r["price"] is not None else f'<span style="color:{h.FAINT}">–</span>',
            (f'<div style="display:flex;align-items:center;gap:6px">{svg.hbar(r["per_dollar"], top, h.STATE_COLORS["ready"], width=90, height=9)}'
             f'{h.fmt_per_dollar(r["perf"], r["price"])}</div>') if r["per_dollar"] else "",
        ] for r in measured]
        body += h.panel(h.table(["GPU model", "Workers", "Score", "$/hour", "Work per $"], rows, align="lrrrl"),
                        title="Measured price · performance", sub=True, note="benchmark score; work per $ = score × 3600 ÷ $/hour")
    if include_title:
        body = '<div style="font-size:15px;font-weight:650">GPU picker</div>' + body
    return h.root(body)

def local_html(picker: "GpuPicker") -> str:
    if not picker.local:
        reason = picker.local_reason or "no NVIDIA GPU found"
        return f'<div style="color:{h.FAINT}">{h.esc(reason)}; workers here run on the CPU.</div>'
    rows = []
    for gpu, failed in picker.local_matches():
        mark = f'<span style="color:{h.UP};font-weight:700">✓</span>' if not failed else f'<span style="color:{h.ERROR_TEXT};font-weight:700">✗</span>'
        why = "matches" if not failed else "fails " + "; ".join(failed)
        rows.append(
            f'<div style="margin:1px 0">{mark} <b>GPU {gpu.index}</b> {h.esc(gpu.vast_name or gpu.name)} '
            f'<span style="color:{h.FAINT}">{h.fmt_gb(gpu.memory_mb)}</span> '
            f'<span style="color:{h.MUTED if not failed else h.ERROR_TEXT}">— {h.esc(why)}</span></div>'
        )
    return "".join(rows)

def offers_html(picker: "GpuPicker") -> str:
    if picker._offers_for != picker.query.unparse_query():
        return f'<div style="color:{h.FAINT}">searching…</div>'
    if picker.offers_error:
        return f'<div style="color:{h.ERROR_TEXT}">search failed: {h.esc(picker.offers_error)}</div>'
    offers = picker.offers or []
    if not offers:
        return f'<div style="color:{h.ERROR_TEXT}">no offer matches: loosen the requirement</div>'
    priced = [o for o in offers if isinstance(field_of(o, "dph_total"), (int, float))]
    best = min(priced, key=lambda o: field_of(o, "dph_total")) if priced else None
    text = f"<b>{len(offers):,}</b> matching offer{'s' if len(offers) != 1 else ''}"
    if best is not None:
        n = field_of(best, "num_gpus")
        text += (f' · cheapest <b>{h.fmt_money(field_of(best, "dph_total"))}</b> '
                 f'<span style="color:{h.FAINT}">({h.esc(field_of(best, "gpu_name"))}{f" ×{n}" if n else ""})</span>')
    return f"<div>{text}</div>"
