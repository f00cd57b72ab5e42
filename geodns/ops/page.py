"""The status page: one server-rendered HTML document an operator reads at a glance.

Rendered from the same dict ``GET /status`` returns, so page and API never disagree.
No external assets: inline CSS, and a few lines of inline JS that re-fetch the page
every few seconds and swap in the new ``#content`` (keeping the scroll position,
unlike a meta refresh); a banner turns red when the server stops answering.
Without JS the ``<noscript>`` meta refresh does the same job, coarser.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["REFRESH_SECONDS", "render_page"]

REFRESH_SECONDS: Final = 5
STATE_COLOURS: Final = {"up": "#1a7f37", "drain": "#b35900", "down": "#cf222e"}

_CSS: Final = """
:root{--up:#1a7f37;--drain:#b35900;--down:#cf222e;--muted:#57606a;--line:#d0d7de}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 color:#1f2328;background:#f6f8fa}
header{display:flex;flex-wrap:wrap;gap:12px;align-items:center;padding:12px 20px;
 background:#fff;border-bottom:1px solid var(--line)}
header h1{font-size:18px;margin:0 12px 0 0}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,
 minmax(520px,1fr))}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eaeef2;vertical-align:middle}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.pill{display:inline-block;border-radius:999px;padding:2px 10px;font-weight:600;
 color:#fff;font-size:12px;letter-spacing:.03em}
.pill.up{background:var(--up)}.pill.drain{background:var(--drain)}
.pill.down{background:var(--down)}.pill.ok{background:var(--up)}
.pill.failed{background:var(--down)}.pill.none{background:var(--muted)}
tr.pop td:first-child{border-left:6px solid var(--muted);font-weight:600}
tr.state-up td:first-child{border-left-color:var(--up)}
tr.state-drain td:first-child{border-left-color:var(--drain)}
tr.state-down td:first-child{border-left-color:var(--down)}
tr.state-down,tr.state-drain{background:#fff8f5}
.forced{font-size:11px;border:1px solid currentColor;border-radius:4px;padding:0 4px;
 margin-left:4px;color:#8250df;font-weight:600}
.addr{display:inline-block;font:12px ui-monospace,monospace;padding:1px 6px;margin:1px;
 border-radius:4px;border:1px solid var(--line)}
.addr.down{border-color:var(--down);color:var(--down)}
.addr.drain{border-color:var(--drain);color:var(--drain)}
.bar{position:relative;height:16px;min-width:140px;background:#eaeef2;border-radius:4px;
 overflow:hidden}
.bar>span{position:absolute;inset:0 auto 0 0;background:#0969da}
.bar.over>span{background:var(--down)}
span.over{color:var(--down);font-weight:700}
.share{font-weight:600;font-variant-numeric:tabular-nums}
.muted{color:var(--muted)}
.summary{display:flex;gap:8px;flex-wrap:wrap;align-items:center}
#live{margin-left:auto;font-size:12px;color:var(--muted)}
#live.stale{color:#fff;background:var(--down);padding:2px 8px;border-radius:4px}
ul.problems{margin:4px 0 0;padding-left:18px;color:var(--down);font:12px ui-monospace,
 monospace}
svg.spark{vertical-align:middle}
"""

_JS: Final = """
(function(){
  var every = %d * 1000, okAt = Date.now();
  function show(){
    var live = document.getElementById('live');
    if (!live) return;
    var age = Math.round((Date.now() - okAt) / 1000);
    if (age > 3 * every / 1000) {
      live.className = 'stale';
      live.textContent = 'server not answering: data is ' + age + 's old';
    } else {
      live.className = 'fresh';
      live.textContent = 'live, updated ' + new Date(okAt).toLocaleTimeString();
    }
  }
  function refresh(){
    fetch(window.location.href, {cache: 'no-store', credentials: 'same-origin'})
      .then(function(r){ if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function(text){
        var doc = new DOMParser().parseFromString(text, 'text/html');
        var fresh = doc.getElementById('content');
        if (fresh) {
          document.getElementById('content').replaceWith(fresh);
          var n = Number(document.body.dataset.refreshes || 0) + 1;
          document.body.dataset.refreshes = String(n);
        }
        okAt = Date.now();
      })
      .catch(function(){})
      .then(function(){ show(); setTimeout(refresh, every); });
  }
  show();
  refresh();
})();
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    d = max(0, int(now - ts))
    if d < 60:
        return f"{d}s ago"
    if d < 3600:
        return f"{d // 60}m ago"
    if d < 86400:
        return f"{d // 3600}h {d % 3600 // 60}m ago"
    return f"{d // 86400}d ago"


def _clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def _state(value: object) -> str:
    return str(value) if value in STATE_COLOURS else "none"


def _pill(state: object, text: str | None = None) -> str:
    cls = _state(state) if state in STATE_COLOURS else str(state)
    return f'<span class="pill {_e(cls)}">{_e(text or str(state).upper())}</span>'


def _spark(series: Sequence[int], colour: str) -> str:
    """An inline SVG sparkline of per-minute answers (oldest left)."""
    if len(series) < 2:
        return ""  # one point says nothing: the rate next to it does
    w, h = 90, 18
    top = max(series) or 1
    step = w / (len(series) - 1)
    pts = " ".join(f"{i * step:.1f},{h - 1 - (v / top) * (h - 2):.1f}"
                   for i, v in enumerate(series))
    return (f'<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'aria-hidden="true"><polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{pts}"/></svg>')


def _checked(pop: Mapping[str, Any], real: object) -> str:
    """What the health check concluded, or that there is no check to conclude anything."""
    if "check" in pop and not pop.get("check"):
        return '<span title="no health check configured: always treated as up">no check</span>'
    return _e(real or "-")


def _uptime(seconds: float) -> str:
    d = max(0, int(seconds))
    if d < 3600:
        return f"{d // 60}m {d % 60}s"
    if d < 86400:
        return f"{d // 3600}h {d % 3600 // 60}m"
    return f"{d // 86400}d {d % 86400 // 3600}h"


def _server_line(data: Mapping[str, Any]) -> str:
    """``geodns 0.1.0 on host, up 3h 12m, config /etc/geodns/geodns.toml``"""
    srv: Mapping[str, Any] = data.get("server") or {}
    if not srv:
        return ""
    parts = [f"geodns {_e(srv.get('version', '?'))} on <b>{_e(srv.get('host', '?'))}</b>"]
    if isinstance(srv.get("uptime_seconds"), int | float):
        started = srv.get("started")
        title = f' title="started {_e(_clock(float(started)))}"' if isinstance(
            started, int | float) else ""
        parts.append(f'<span{title}>up {_uptime(float(srv["uptime_seconds"]))}</span>')
    if srv.get("config"):
        parts.append(f"config {_e(srv['config'])}")
    geo: Mapping[str, Any] = data.get("geoip") or {}
    if geo:
        cls = "over" if geo.get("stale") else ""
        parts.append(f'<span class="{cls}" title="{_e(geo.get("path"))}">GeoIP '
                     f'{_e(geo.get("type"))} built {_e(geo.get("built"))} '
                     f'({_e(geo.get("age_days"))} days)</span>')
    return '<span id="server" class="muted">' + " &middot; ".join(parts) + "</span>"


def _pops_section(data: Mapping[str, Any]) -> str:
    pops: list[Mapping[str, Any]] = list(data.get("pops") or [])
    answers: Mapping[str, Any] = data.get("answers") or {}
    per_pop: Mapping[str, Any] = answers.get("pops") or {}
    minutes = answers.get("window_minutes", 5)
    total = answers.get("total", 0)
    rows = []
    for pop in pops:
        name = str(pop.get("name", "?"))
        state = _state(pop.get("state"))
        real = pop.get("real")
        forced = pop.get("forced")
        info: Mapping[str, Any] = per_pop.get(name) or {}
        share = float(info.get("share", 0.0))
        qps = float(info.get("qps", 0.0))
        capacity = pop.get("capacity")
        over = capacity is not None and qps > float(capacity)
        addrs = "".join(
            f'<span class="addr {_e(_state(a.get("state")))}" '
            f'title="real {_e(a.get("real"))}'
            f'{", forced " + _e(a.get("forced")) if a.get("forced") else ""}">'
            f'{_e(a.get("address"))}</span>'
            for a in pop.get("addresses") or [])
        forced_tag = (f'<span class="forced" title="operator override">forced '
                      f'{_e(forced)}</span>') if forced else ""
        cap = (f'<span class="{"over" if over else ""}">{float(capacity):g} qps</span>'
               if capacity is not None else '<span class="muted">-</span>')
        load = _load_cell(pop)
        rows.append(
            f'<tr class="pop state-{state}" data-pop="{_e(name)}" data-state="{state}" '
            f'data-share="{share:.4f}">'
            f'<td>{_e(name)}</td>'
            f'<td>{_pill(state)}{forced_tag}</td>'
            f'<td class="muted">{_checked(pop, real)}</td>'
            f'<td>{addrs}</td>'
            f'<td><div class="bar{" over" if over else ""}" title="{share * 100:.1f}% of '
            f'answers"><span style="width:{share * 100:.1f}%"></span></div></td>'
            f'<td class="num share">{share * 100:.1f}%</td>'
            f'<td class="num">{_spark(info.get("series") or [], "#0969da")} {qps:,.1f}/s'
            f'</td>'
            f'<td class="num">{cap}</td><td class="num load">{load}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="9" class="muted">no POPs configured</td></tr>')
    return (f'<section class="wide" id="pops"><h2>POPs &middot; share of {total:,} answers '
            f'in the last {minutes} min</h2><table><thead><tr><th>POP</th><th>state</th>'
            '<th>checked</th><th>addresses</th><th>share</th><th class="num">%</th>'
            '<th class="num">answer rate</th><th class="num">capacity</th>'
            '<th class="num">load</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></section>")


def _load_cell(pop: Mapping[str, Any]) -> str:
    """The POP's load feed against its capacity: ``950 of 1000 (95%)``."""
    load, capacity = pop.get("load"), pop.get("capacity")
    if not isinstance(load, int | float):
        return '<span class="muted">-</span>'
    stale = ' <span class="muted">(stale)</span>' if pop.get("load_stale") else ""
    if not isinstance(capacity, int | float) or not capacity:
        return f"{load:g}{stale}"
    ratio = load / capacity
    return (f'<span class="{"over" if ratio > 1 else ""}" title="load feed value against '
            f'pops.{_e(pop.get("name"))}.capacity">{load:g} of {capacity:g} '
            f'({ratio:.0%})</span>{stale}')


def _changes_section(data: Mapping[str, Any], now: float) -> str:
    changes: list[Mapping[str, Any]] = list(data.get("recent_changes") or [])[:20]
    rows = []
    for c in changes:
        ts = c.get("time")
        when = float(ts) if isinstance(ts, int | float) else None
        extra = " (forced)" if c.get("forced") else ""
        if c.get("reason"):
            extra += f" {c['reason']}"
        rows.append(
            f'<tr class="change"><td class="muted" title="{_e(_clock(when))}">'
            f'{_e(_ago(when, now))}</td><td>{_e(c.get("target", "?"))}</td>'
            f'<td>{_pill(_state(c.get("from")), str(c.get("from", "?")))} &rarr; '
            f'{_pill(_state(c.get("to")), str(c.get("to", "?")))}</td>'
            f'<td class="muted">{_e(extra.strip())}</td></tr>')
    body = "".join(rows) or '<tr><td colspan="4" class="muted">no changes yet</td></tr>'
    return ('<section id="changes"><h2>Recent state changes</h2><table><tbody>'
            + body + "</tbody></table></section>")


def _reload_section(data: Mapping[str, Any], now: float) -> str:
    lr: Mapping[str, Any] | None = data.get("last_reload")
    zones: list[Mapping[str, Any]] = list(data.get("zones") or [])
    if lr is None:
        head = f'{_pill("none", "NO RELOAD YET")}'
        problems = ""
    else:
        ok = bool(lr.get("ok"))
        ts = lr.get("time")
        when = float(ts) if isinstance(ts, int | float) else None
        what = "initial load" if lr.get("reason") == "start" else lr.get("reason")
        head = (f'{_pill("ok" if ok else "failed", "OK" if ok else "FAILED")} '
                f'<span title="{_e(_clock(when))}">{_e(_ago(when, now))}</span>'
                + (f' <span class="muted">({_e(what)})</span>' if what else ""))
        items = "".join(f"<li>{_e(p)}</li>" for p in (lr.get("problems") or [])[:10])
        problems = f'<ul class="problems">{items}</ul>' if items else ""
    zrows = "".join(f'<tr><td>{_e(z.get("name"))}</td><td class="num">'
                    f'{_e(z.get("serial"))}</td></tr>' for z in zones)
    ztable = (f'<table><thead><tr><th>zone</th><th class="num">serial</th></tr></thead>'
              f'<tbody>{zrows}</tbody></table>') if zrows else '<p class="muted">no zones</p>'
    return (f'<section id="reload"><h2>Last reload</h2><p id="last-reload">{head}</p>'
            f'{problems}{ztable}</section>')


def _pools_section(data: Mapping[str, Any]) -> str:
    pools: list[Mapping[str, Any]] = list(data.get("pools") or [])
    states = {str(p.get("name")): _state(p.get("state")) for p in data.get("pops") or []}
    steering: Mapping[str, Any] = data.get("steering") or {}
    shares: Mapping[str, Any] = (steering.get("spill") or {}).get("shares") or {}
    rows = []
    for pool in pools:
        shed = shares.get(str(pool.get("name"))) or {}
        members = " ".join(
            f'<span class="addr {states.get(str(p), "none")}">{_e(p)}'
            + (f' <span class="over" title="share of its client blocks sent elsewhere '
               f'(spill)">sheds {float(shed[p]):.0%}</span>' if shed.get(p) else "")
            + "</span>"
            for p in pool.get("pops") or [])
        rows.append(f'<tr><td>{_e(pool.get("name"))}</td><td>{_e(pool.get("strategy"))}'
                    f'</td><td class="num">{_e(pool.get("ttl", "-"))}</td><td>{members}'
                    '</td></tr>')
    body = "".join(rows) or '<tr><td colspan="4" class="muted">no pools</td></tr>'
    return ('<section id="pools"><h2>Pools</h2><table><thead><tr><th>pool</th>'
            '<th>strategy</th><th class="num">ttl</th><th>POPs</th></tr></thead><tbody>'
            + body + "</tbody></table></section>")


def _overrides_section(data: Mapping[str, Any]) -> str:
    rules: list[Mapping[str, Any]] = list(data.get("overrides") or [])
    if not rules:
        return ""
    rows = "".join(
        f'<tr><td>{_e(r.get("pattern"))}</td><td>{_pill(_state(r.get("state")))}</td>'
        f'<td class="muted">{_e(r.get("until") or "until removed")}</td>'
        f'<td class="muted">{_e(r.get("source", ""))}'
        f'{"" if r.get("active", True) else " (expired)"}</td></tr>' for r in rules)
    return ('<section id="overrides"><h2>Operator overrides</h2><table><tbody>'
            + rows + "</tbody></table></section>")


def render_page(data: Mapping[str, Any], *, now: float | None = None,
                refresh: int = REFRESH_SECONDS) -> str:
    """The whole status page for a ``/status`` dict."""
    now = time.time() if now is None else now
    pops: list[Mapping[str, Any]] = list(data.get("pops") or [])
    counts = {s: sum(1 for p in pops if _state(p.get("state")) == s)
              for s in ("up", "drain", "down")}
    summary = " ".join(_pill(s, f"{n} {s.upper()}") for s, n in counts.items() if n)
    lr = data.get("last_reload")
    reload_pill = ("" if not lr else
                   _pill("ok", "RELOAD OK") if lr.get("ok") else _pill("failed",
                                                                        "RELOAD FAILED"))
    content = (
        f'<div id="content" data-generated="{now:.3f}"><header><h1>geodns</h1>'
        f'<div class="summary" id="summary">{summary or _pill("none", "NO POPS")} '
        f'{reload_pill}</div>{_server_line(data)}'
        f'<span id="live">rendered {_e(_clock(now))}</span></header>'
        f'<main>{_pops_section(data)}{_changes_section(data, now)}'
        f'{_reload_section(data, now)}{_pools_section(data)}{_overrides_section(data)}'
        '</main></div>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>geodns status</title><noscript><meta http-equiv="refresh" '
        f'content="{refresh}"></noscript><style>{_CSS}</style></head><body>'
        f'{content}<script>{_JS % refresh}</script></body></html>')
