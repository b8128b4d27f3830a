"""``tradelab report RUN_DIR|SWEEP_DIR``: one self-contained HTML file a researcher can send.

It reads the run directory as the UI does (eval_summary.json, telemetry.parquet, config.yaml, stats.json),
never the trainer's objects. Figures are plotly's, with plotly.js embedded inline by default so the file
opens offline (``--plotly cdn`` loads it from cdn.plot.ly instead: 4.8 MB less); each figure's data is also
in the file as plain JSON (``<script type="application/json" id="fig-...">``), which the page draws and a
test reads back. A curve of more than DISPLAY_POINTS bars is drawn from the lowest and highest point of each
of about DISPLAY_POINTS / 2 runs of bars (:func:`display_index`), so every trough and peak, and so every
drawdown, stays where it is, and the figure's title says how many points of how many it draws
(docs/report.md). quantstats' tearsheet is not used: quantstats pulls yfinance and curl_cffi, which need a
cffi that ccxt's pin excludes.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tradelab_jax.errors import UserError
from tradelab_jax.knobs import ENV_KNOBS

REPORT_FILE = "report.html"
DISPLAY_POINTS = 2000  # per curve: about two per pixel of the 1200 px page (--points; 0 = every bar)
PLOTLY_CDN = "https://cdn.plot.ly/plotly-{version}.min.js"
ROLLING_BARS = 1440  # rolling Sharpe window: one day of 1m bars (a quarter of the episode when shorter)
POLICIES = ("agent", "buy_and_hold", "flat", "random")
TABLE_METRICS = (("sharpe", "num"), ("total_return", "pct"), ("max_drawdown", "pct"), ("trades", "int"),
                 ("exposure", "pct"), ("fees_paid", "num"))
READING = ("A deflated Sharpe probability below 0.95 means the best configuration's Sharpe ratio is within "
           "what the best of that many zero-skill configurations would reach by luck, given the returns' "
           "length, skew and kurtosis. A PBO above 0.5 means the configuration that looks best on one half "
           "of the bars ranks below the median on the other half more often than not. An interval comes "
           "from resampling seeds within each fold; with one seed there is none.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tradelab report", description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="a run, packed sweep, CV or multirun directory")
    ap.add_argument("--out", default=None, help=f"where to write (default: DIR/{REPORT_FILE}): a path ending "
                    f"in .html is the file; an existing folder or a path without a suffix is a folder (made "
                    f"if missing) that gets {REPORT_FILE}")
    ap.add_argument("--plotly", choices=("inline", "cdn"), default="inline",
                    help="inline (default): plotly.js is in the file, which opens offline; cdn: the file "
                    "loads plotly.js from cdn.plot.ly when opened (4.8 MB smaller, needs the internet)")
    ap.add_argument("--points", type=int, default=DISPLAY_POINTS, metavar="N",
                    help="at most about N points per curve (default %(default)s): the lowest and highest of "
                    "each of N/2 runs of bars, so drawdowns stay visible; 0 draws every bar")
    args = ap.parse_args(argv)
    if args.points < 0 or 0 < args.points < 4:
        raise UserError(f"--points {args.points}: expected 0 (every bar) or a count of at least 4")
    from tradelab_jax import paths

    out = out_path(args.out) if args.out else Path(args.dir) / REPORT_FILE
    paths.check_output_dir(out.parent, "--out" if args.out else "DIR")
    try:
        text = build(args.dir, plotly=args.plotly, points=args.points)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {args.dir}: {err}") from err
    from tradelab_jax.io import atomic_write_text

    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0


def out_path(out: str) -> Path:
    """The file ``--out`` names: a path ending in .html (or .htm) is the file itself; an existing folder or
    a path without a suffix is a folder that gets report.html (`--out sent` must not write a file named
    ``sent`` that no browser opens); any other suffix is refused, since the report is only HTML."""
    path = Path(out).expanduser()
    if path.is_dir() or not path.suffix:
        return path / REPORT_FILE
    if path.suffix.lower() in (".html", ".htm"):
        return path
    raise UserError(f"--out {out!r} ends in {path.suffix!r}, but the report is an HTML file; give a path "
                    f"ending in .html or a folder (it gets {REPORT_FILE})")


def _stats(root: Path) -> dict:
    """stats.json when the trainer (or `tradelab stats`) wrote it, else computed now (not written)."""
    from tradelab_jax.stats.compute import STATS_FILE, compute

    f = root / STATS_FILE
    if f.is_file():
        return json.loads(f.read_text())
    return compute(root)


def _shown_point(root: Path, s: dict) -> Path:
    """The point the figures show: the best configuration's first point (the run itself for a run)."""
    from tradelab_jax import runs

    if runs.is_run_dir(root):
        return root
    best = s["configs"][s["best"]["index"]] if s.get("best") else (s["configs"] or [None])[0]
    if best is None:
        raise UserError(f"{root} holds no evaluated point to report on; train it to the end first")
    return root / best["points"][0]["dir"]


def _telemetry(point: Path, split: str) -> dict[str, Any]:
    import pandas as pd

    return by_policy(pd.read_parquet(point / "telemetry.parquet"), split)


def by_policy(df, split: str) -> dict[str, Any]:
    """One split of a telemetry frame as policy -> its rows in bar order (what :func:`figures_of` draws)."""
    df = df[df["split"] == split]
    return {str(pol): g.sort_values("t").reset_index(drop=True) for pol, g in df.groupby("policy")}


def _iso(ts_ms) -> list[str]:
    import pandas as pd

    return [t.strftime("%Y-%m-%dT%H:%M") for t in pd.to_datetime(np.asarray(ts_ms), unit="ms", utc=True)]


def _floats(x) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(x, dtype=float)]


def display_index(y, points: int = DISPLAY_POINTS) -> np.ndarray:
    """The indices (in bar order) of the points a curve of ``y`` is drawn with: every one when there are at
    most ``points`` (or ``points`` is 0); else the first and the last and, in each of
    :func:`display_runs` equal runs of bars, the lowest and the highest finite value (min/max per pixel
    bucket: an average or every k-th bar would shave off the one-bar troughs a drawdown is made of). A run
    that holds NaN keeps its first NaN too, so a gap stays a gap."""
    y = np.asarray(y, dtype=float)
    n = y.size
    if not points or n <= points:
        return np.arange(n)
    edges = np.linspace(0, n, display_runs(points) + 1).astype(int)
    keep = [0, n - 1]
    for a, b in itertools.pairwise(edges):
        seg = y[a:b]
        finite = np.isfinite(seg)
        if not finite.all():
            keep.append(a + int(np.argmin(finite)))
        if finite.any():
            vals = np.where(finite, seg, np.nan)
            keep += [a + int(np.nanargmin(vals)), a + int(np.nanargmax(vals))]
    return np.unique(keep)


def display_runs(points: int) -> int:
    """The runs of bars a curve of more than ``points`` bars is cut into: two points each, plus the first
    and the last bar, make at most ``points``."""
    return max(1, (points - 2) // 2)


class _Curves:
    """Lines drawn through :func:`display_index`, counting the points they keep for the figures' titles."""

    def __init__(self, points: int):
        self.points, self.drawn, self.bars = points, 0, 0

    def line(self, ts_ms, y, **kw):
        import plotly.graph_objects as go

        y = np.asarray(y, dtype=float)
        i = display_index(y, self.points)
        self.drawn, self.bars = max(self.drawn, i.size), max(self.bars, y.size)
        return go.Scatter(x=_iso(np.asarray(ts_ms)[i]), y=_floats(y[i]), mode="lines", **kw)

    def note(self) -> str:
        """What a title says of the drawing: nothing when every bar is drawn."""
        if self.drawn >= self.bars:
            return ""
        return (f"<br>(downsampled for display: at most {self.drawn:,} of {self.bars:,} points per curve, "
                f"the lowest and highest of each of {display_runs(self.points):,} runs of bars)")


def figures(point: Path, split: str, initial_cash: float, points: int = DISPLAY_POINTS) -> dict[str, Any]:
    """The report's plotly figures of one point's split: equity vs baselines and the asset with drawdown,
    the price with the agent's round trips, the agent's rolling Sharpe (each curve at most about ``points``
    points, :func:`display_index`; every round trip is marked)."""
    return figures_of(_telemetry(point, split), split, initial_cash, _bars_per_year(point), points)


def figures_of(tel: dict[str, Any], split: str, initial_cash: float, bars_per_year: float,
               points: int = DISPLAY_POINTS) -> dict[str, Any]:
    """:func:`figures` from one split's telemetry already read (policy -> frame sorted by ``t``), so the UI
    can draw the same figures from the telemetry it opened through its own checks. Drawdowns and the
    rolling Sharpe ratio are computed over every bar, then downsampled."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from tradelab_jax.roundtrips import round_trip_table

    agent = tel["agent"]
    ts = agent["ts"].to_numpy()
    curves = _Curves(points)
    lines = []
    for pol in POLICIES:
        if pol in tel:
            e = tel[pol]["equity"].to_numpy(float)
            lines.append((curves.line(tel[pol]["ts"].to_numpy(), e, name=pol), 1))
            if pol in ("agent", "buy_and_hold"):
                full = np.concatenate([[initial_cash], e])
                dd = (full / np.maximum.accumulate(full) - 1.0)[1:] * 100
                lines.append((curves.line(tel[pol]["ts"].to_numpy(), dd, name=f"{pol} drawdown"), 2))
    close = agent["close"].to_numpy(float)
    lines.append((curves.line(ts, initial_cash * close / close[0], name="asset (close, scaled)",
                              line={"dash": "dot"}), 1))
    eq = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04,
                       subplot_titles=(f"equity on the {split} split (quote currency){curves.note()}",
                                       "drawdown %"))
    for trace, row in lines:
        eq.add_trace(trace, row, 1)
    eq.update_layout(height=620, legend={"orientation": "h"}, hovermode="x unified")

    trips = round_trip_table({c: agent[c].to_numpy() for c in agent.columns}, initial_cash)
    curves = _Curves(points)
    price = go.Figure(curves.line(ts, close, name="close"))
    for side, symbol in (("long", "triangle-up"), ("short", "triangle-down")):
        t = trips[trips["side"] == side]
        price.add_trace(go.Scatter(x=_iso(t["entry_time"]), y=_floats(t["entry_price"]), mode="markers",
                                   name=f"{side} entry", marker={"symbol": symbol, "size": 10}))
    closed = trips[trips["exit"] != "open"]
    price.add_trace(go.Scatter(x=_iso(closed["exit_time"].astype("int64")), y=_floats(closed["exit_price"]),
                               mode="markers", name="exit", marker={"symbol": "x", "size": 9},
                               text=[f"{k}, P&L {p:.2f}" for k, p in zip(closed["exit"], closed["pnl"],
                                                                          strict=True)]))
    price.update_layout(title=f"price and the agent's {len(trips)} round trip(s){curves.note()}", height=420,
                        legend={"orientation": "h"})

    full = np.concatenate([[initial_cash], agent["equity"].to_numpy(float)])
    r = full[1:] / full[:-1] - 1.0
    w = max(2, min(ROLLING_BARS, r.size // 4))
    import pandas as pd

    rs = pd.Series(r).rolling(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        roll = np.array(rs.mean() / rs.std() * math.sqrt(bars_per_year), dtype=float)
    roll[~np.isfinite(roll)] = np.nan
    curves = _Curves(points)
    rolling = go.Figure(curves.line(ts, roll, name=f"agent, {w} bars"))
    rolling.update_layout(title=f"agent's rolling Sharpe ratio ({w}-bar window, annualised){curves.note()}",
                          height=320,
                          showlegend=True)
    return {"equity": eq, "price": price, "rolling_sharpe": rolling, "round_trips": trips, "window": w}


def _bars_per_year(point: Path) -> float:
    from tradelab_jax import runs

    cfg = runs.read_config(point)
    return float((cfg.get("env") or {}).get("bars_per_year") or 525_600)


def _fig_block(name: str, fig) -> str:
    import plotly

    data = json.dumps(fig.to_plotly_json(), cls=plotly.utils.PlotlyJSONEncoder).replace("</", "<\\/")
    return (f'<div id="plot-{name}" class="plot"></div>\n'
            f'<script type="application/json" id="fig-{name}">{data}</script>\n'
            f'<script>(function(){{var f=JSON.parse(document.getElementById("fig-{name}").textContent);'
            f'Plotly.newPlot("plot-{name}",f.data,f.layout,{{responsive:true}});}})();</script>\n')


def _cell(v, kind: str) -> str:
    from tradelab_jax.fmt import cell

    return html.escape(cell(v, kind))


def _interval(summary: dict, kind: str) -> str:
    ci = summary.get("iqm_ci95")
    if ci:
        return f"{_cell(summary['iqm'], kind)} [{_cell(ci[0], kind)}, {_cell(ci[1], kind)}]"
    why = html.escape(str(summary.get("reason")))
    return f"{_cell(summary.get('iqm'), kind)} <span class=note>({why})</span>"


def _config_tables(root: Path, s: dict) -> str:
    """Per configuration: one row per seed/fold point (the agent), then mean, median and IQM [95 % interval]
    per policy, then P(agent beats each baseline)."""
    from tradelab_jax import runs
    from tradelab_jax.fmt import header

    out = []
    base = root if runs.is_run_dir(root) else None
    for c in s["configs"]:
        out.append(f"<h3>{html.escape(c['name'])}: {c['seeds']} seed(s)"
                   + (f", {c['folds']} fold(s)" if c["folds"] else "") + "</h3>")
        heads = "".join(f"<th>{html.escape(header(m))}</th>" for m, _ in TABLE_METRICS)
        rows = [f"<table class=points><tr><th>point</th><th>seed</th><th>fold</th>{heads}</tr>"]
        for p in c["points"]:
            d = base if base is not None else root / p["dir"]
            row = ((runs.read_eval_summary(d) or {}).get("splits", {}).get(p["split"] or "", {}) or {}).get(
                "agent") or {}
            cells = "".join(f"<td>{_cell(row.get(m), k)}</td>" for m, k in TABLE_METRICS)
            rows.append(f"<tr><td>{html.escape(str(p['dir']))}</td><td>{p['seed']}</td>"
                        f"<td>{'-' if p['fold'] is None else p['fold']}</td>{cells}</tr>")
        rows.append("</table>")
        out.append("\n".join(rows))
        agg = [f"<table class=summary><tr><th>policy</th><th>statistic</th>{heads}</tr>"]
        for pol, metrics in c["policies"].items():
            for stat in ("mean", "median"):
                cells = "".join(f"<td>{_cell(metrics[m][stat], k)}</td>" for m, k in TABLE_METRICS)
                agg.append(f"<tr><td>{pol}</td><td>{stat}</td>{cells}</tr>")
            cells = "".join(f"<td>{_interval(metrics[m], k)}</td>" for m, k in TABLE_METRICS)
            agg.append(f"<tr><td>{pol}</td><td>IQM [95 % interval]</td>{cells}</tr>")
        agg.append("</table>")
        out.append("\n".join(agg))
        beats = ["<table class=beats><tr><th>P(agent beats)</th><th>total_return</th><th>sharpe</th></tr>"]
        for b, ms in c["p_agent_beats"].items():
            cells = "".join(f"<td>{_cell(v['value'], 'num') if v['value'] is not None else '-'}"
                            + ("" if v["value"] is not None else
                               f" <span class=note>({html.escape(v['reason'])})</span>") + "</td>"
                            for v in (ms["total_return"], ms["sharpe"]))
            beats.append(f"<tr><td>{b}</td>{cells}</tr>")
        beats.append("</table>")
        out.append("\n".join(beats))
    return "\n".join(out)


def _detail(name: str, d: dict | None) -> str:
    d = d or {}
    items = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(json.dumps(v))}</li>"
                    for k, v in d.items())
    return f"<h3>{name}</h3><ul>{items}</ul>"


def build(path, plotly: str = "inline", points: int = DISPLAY_POINTS) -> str:
    """The report's HTML text for a run, packed sweep, CV or multirun directory: plotly.js ``inline`` (the
    file opens offline) or from its ``cdn``; curves of at most about ``points`` points (0: every bar)."""
    import yaml

    from tradelab_jax import runs
    from tradelab_jax.stats.collect import discover

    root = Path(path)
    discover(root)  # one sentence for a folder that holds no run
    s = _stats(root)
    if not s.get("configs"):
        raise UserError(f"{root} holds no evaluated trading run to report on (no eval_summary.json with "
                        "splits); train it to the end first")
    point = _shown_point(root, s)
    summary = runs.read_eval_summary(point) or {}
    cfg = runs.read_config(point)
    split = next(p["split"] for c in s["configs"] for p in c["points"] if p["split"])
    cash = float((cfg.get("env") or {}).get("initial_cash", ENV_KNOBS["initial_cash"].default))
    figs = figures(point, split, cash, points)
    run = summary.get("run") or {}
    extra = ""
    if runs.is_sweep_dir(root):
        extra = ("<h3>packed.json</h3><pre>" + html.escape((root / runs.PACKED_FILE).read_text()) + "</pre>")
    shown = "the run" if point == root else f"point {point.name} (the best configuration's first point)"
    body = f"""<h1>tradelab report: {html.escape(root.name)}</h1>
<p class=meta>{html.escape(s['kind'])} directory <code>{html.escape(str(root))}</code>;
{s['configurations']} configuration(s), {s['points']} point(s);
dataset <code>{html.escape(str(run.get('dataset_id')))}</code>,
checksum <code id=checksum>{html.escape(str(run.get('dataset_checksum')))}</code></p>
<h2>Verdict</h2>
<p id=verdict class=verdict>{html.escape(s['verdict'] or '')}</p>
<p class=note>{html.escape(READING)}</p>
<h2>Figures: {html.escape(shown)}, {html.escape(split)} split</h2>
{_fig_block('equity', figs['equity'])}
{_fig_block('price', figs['price'])}
{_fig_block('rolling_sharpe', figs['rolling_sharpe'])}
<h2>Per seed and per fold (agent), with intervals</h2>
{_config_tables(root, s)}
<h2>Deflated Sharpe ratio and PBO</h2>
{_detail('deflated Sharpe (per-bar Sharpe ratios)', s.get('deflated_sharpe'))}
{_detail('probability of backtest overfitting (CSCV)', s.get('pbo'))}
{_detail('bootstrap', s.get('bootstrap'))}
<h2>Exact config of {html.escape(shown)}</h2>
<pre id=config>{html.escape(yaml.safe_dump(cfg, sort_keys=False))}</pre>
{extra}
"""
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}table{border-collapse:"
             "collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             ".verdict{font-size:1.15em;font-weight:bold}.note{color:#555;font-size:.9em}pre{background:#f6f6f6;"
             "padding:.5em;overflow:auto}")
    title = f"tradelab report {html.escape(root.name)}"
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{style}</style>\n{_plotly_js(plotly)}</head><body>\n{body}</body></html>\n")


def _plotly_js(how: str) -> str:
    """The page's plotly.js: the library itself (``inline``) or a script tag of the same version on
    cdn.plot.ly (``cdn``)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if how == "cdn":
        return f'<script src="{PLOTLY_CDN.format(version=get_plotlyjs_version())}" charset="utf-8"></script>'
    if how != "inline":
        raise UserError(f"plotly={how!r}: expected inline or cdn")
    return f"<script>{get_plotlyjs()}</script>"
