"""Reading run directories for the UI: the runs table, one run's curves and tables, comparisons (no Gradio).

Everything here reads the run-directory contract (docs/run-directory.md) through :mod:`tradelab_jax.runs`.
A run is named by its id, its path relative to the outputs root (``<ts>_<tag>`` or
``multirun/<ts>_<tag>/<n>``); :func:`resolve_run` is the only way from an id to a folder and refuses
anything that is not a run directory inside the outputs root, or that is reached through a symbolic link.
Every file of a run is opened through :func:`runs.run_file_path` (its real path must lie in the run), so a
link planted in outputs/ never makes the UI read or serve another file. What cannot be read (a link out,
bad YAML or JSON, a config that is no mapping, a damaged metrics line or telemetry) is left out of the view
with one sentence in its ``notes``, never an exception; discovery's skipped entries (:func:`runs.scan_runs`)
are notes of the runs table. Run states, what can resume and run discovery
are the contract's (:mod:`tradelab_jax.runs`). A run's equity and price figures are the report's plotly
figures (:func:`tradelab_jax.report.figures_of`, drawn from the telemetry read here), so the panel and
``tradelab report`` show the same thing, interactive; the training curves are matplotlib figures (Agg, no
pyplot state), safe to build from several request threads at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tradelab_jax import fmt, paths, report, roundtrips, runs
from tradelab_jax.errors import UserError
from tradelab_jax.plots import drawdown
from tradelab_jax.runs import WHAT_RESUMES

# The runs table: column -> how it is read. Metrics are the agent's on the test split.
RUN_COLUMNS = (
    "run",
    "tag",
    "dataset",
    "status",
    "started",
    "env_steps",
    "test_return",
    "sharpe",
    "max_drawdown",
    "fees_paid",
    "seed",
    "risk_pct",
    "stop_loss_bps",
)
SORTABLE = RUN_COLUMNS
# Files of a run the UI offers for download (nothing else is ever served).
DOWNLOADABLE = (
    runs.CONFIG_FILE,
    runs.METRICS_FILE,
    runs.EVAL_FILE,
    runs.TELEMETRY_FILE,
    runs.EQUITY_FILE,
    runs.STATUS_FILE,
    "console.log",
)
SUMMARY_METRICS = (
    "total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "calmar", "trades", "round_trips",
    "win_rate", "turnover", "fees_paid", "stops_hit", "exposure", "final_equity",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# ids


def resolve_id(outputs: str | os.PathLike, id_: Any, *, kind: str, example: str, none: str) -> Path:
    """The folder that ``id_`` (a path relative to ``outputs``) names, checked but not yet known to be a
    run or session: plain parts (:func:`paths.check_id`), inside the outputs root, and not reached through
    a symbolic link, each refusal one sentence naming the ``kind`` ("run", "session") with ``example`` ids.
    ``none`` is the sentence when nothing is selected. The one rule both runs and paper sessions are opened
    by."""
    if not isinstance(id_, str) or not id_:
        raise UserError(none)
    if id_.startswith("/") or "\\" in id_:
        raise UserError(f"invalid {kind} id {id_!r}: expected a path relative to the outputs root, e.g. "
                        f"{example}")
    parts = id_.split("/")
    for part in parts:
        paths.check_id(part, f"{kind} id part")
    path = paths.inside(outputs, *parts)
    if path != Path(outputs).resolve().joinpath(*parts):
        raise UserError(f"{kind} {id_!r} is reached through a symbolic link; links in outputs/ are not "
                        "followed")
    return path


def resolve_run(outputs: str | os.PathLike, run_id: Any) -> Path:
    """The directory of run ``run_id`` under ``outputs``; refuses traversal, absolute paths and non-runs.

    Any run :func:`runs.iter_runs` lists opens: ``<ts>_<tag>``, ``multirun/<ts>_<tag>/<n>``, a packed
    multirun's ``multirun/<ts>_<tag>/<job>/<n>``, a run pulled from the archive under its id.
    """
    path = resolve_id(outputs, run_id, kind="run", none="no run selected",
                      example="<timestamp>_<tag> or multirun/<timestamp>_<tag>/<n>")
    if not runs.is_run_dir(path):
        raise UserError(f"no run {run_id!r} in {Path(outputs).resolve()}")
    return path


def run_id_of(outputs: str | os.PathLike, path: str | os.PathLike) -> str:
    return Path(path).resolve().relative_to(Path(outputs).resolve()).as_posix()


def run_file(outputs: str | os.PathLike, run_id: str, name: str) -> Path:
    """A downloadable file of a run (one of :data:`DOWNLOADABLE`), checked to be inside the run."""
    if name not in DOWNLOADABLE:
        raise UserError(f"file {name!r} is not offered; valid: {', '.join(DOWNLOADABLE)}")
    run_dir = resolve_run(outputs, run_id)
    try:
        path = runs.run_file_path(run_dir, name)
    except runs.RunFileError as err:
        raise UserError(f"run {run_id!r}: {err}") from None
    if not path.is_file():
        raise UserError(f"run {run_id!r} has no {name}")
    return path


# ---------------------------------------------------------------------------------------------------------
# the runs table


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


Notes = list[str] | None  # where a reader puts the sentence for what it could not read (None: dropped)


def _note(notes: Notes, message: object) -> None:
    if notes is not None and str(message) not in notes:
        notes.append(str(message))


def _read(reader, run_dir: Path, notes: Notes, default: Any = None) -> Any:
    """``reader(run_dir)``, or ``default`` when its file is missing or refused (a :class:`runs.RunFileError`,
    or an OSError), whose sentence goes to ``notes``."""
    try:
        value = reader(run_dir)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as err:
        _note(notes, err)
        return default
    return default if value is None else value


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else ``{}`` (a section of a foreign file that is no mapping)."""
    return value if isinstance(value, dict) else {}


def _safe_config(run_dir: Path, notes: Notes = None) -> dict[str, Any]:
    return _read(runs.read_config, run_dir, notes, {})


def _safe_eval(run_dir: Path, notes: Notes = None) -> dict[str, Any]:
    return _read(runs.read_eval_summary, run_dir, notes, {})


def _safe_status(run_dir: Path, notes: Notes = None) -> dict[str, Any] | None:
    return _read(runs.read_status, run_dir, notes)


def split_metrics(summary: dict[str, Any], policy: str = "agent") -> dict[str, Any]:
    """The policy's metrics on the test split (or the last evaluated split)."""
    splits = _mapping(summary.get("splits"))
    if not splits:
        return {}
    name = "test" if "test" in splits else list(splits)[-1]
    return dict(_mapping(_mapping(splits[name]).get(policy)))


def _num(x: Any) -> int | float | None:
    """A number of a foreign file as the table can sort it: ints and floats kept, anything else None."""
    return x if isinstance(x, int | float) and not isinstance(x, bool) else None


def _text(x: Any) -> str | None:
    return None if x is None or isinstance(x, dict | list) else str(x)


def run_row(outputs: str | os.PathLike, run_dir: Path, notes: Notes = None) -> dict[str, Any]:
    """The run's row of the table; every field of a foreign or damaged file is a number, a string or None."""
    status = _safe_status(run_dir, notes) or {}
    config = _safe_config(run_dir, notes)
    summary = _safe_eval(run_dir, notes)
    row = split_metrics(summary)
    env = _mapping(config.get("env"))
    dataset = _get(summary, "run", "dataset_id") or (
        _get(config, "env", "id") if env.get("kind") == "gymnax" else _get(config, "data", "id")
    )
    test_return = row.get("total_return")
    if test_return is None and "mean_episode_return" in summary:
        test_return = summary["mean_episode_return"]
    started = _text(status.get("started_at") or status.get("queued_at")) or ""
    return {
        "run": run_id_of(outputs, run_dir),
        "tag": _text(_get(config, "run", "tag")) or run_dir.name.split("_", 1)[-1],
        "dataset": _text(dataset),
        "status": runs.effective_state(status or None),
        "started": started.replace("T", " ").rstrip("Z"),
        "env_steps": _num(status.get("env_steps")),
        "test_return": _num(test_return),
        "sharpe": _num(row.get("sharpe")),
        "max_drawdown": _num(row.get("max_drawdown")),
        "fees_paid": _num(row.get("fees_paid")),
        "seed": _num(config.get("seed")),
        "risk_pct": _num(env.get("risk_pct")),
        "stop_loss_bps": _num(env.get("stop_loss_bps")),
    }


def list_runs(outputs: str | os.PathLike, notes: Notes = None) -> list[dict[str, Any]]:
    """One row per run directory under ``outputs`` (CLI and UI runs alike), newest first; ``notes`` gets
    what discovery passed over (links, folders without a run) and each file of a listed run not read."""
    if not Path(outputs).is_dir():
        return []
    found, skipped = runs.scan_runs(outputs)
    for entry in skipped:  # named by its path under outputs, as run ids are (run_id_of would follow a link)
        _note(notes, f"{entry.path.relative_to(outputs).as_posix()}: skipped, {entry.why}")
    rows = []
    for run_dir in runs.order_runs(outputs, found):
        note_links_out(run_dir, notes)
        try:
            rows.append(run_row(outputs, run_dir, notes))
        except (OSError, ValueError) as err:  # a run being written or damaged: still list it
            _note(notes, f"{run_id_of(outputs, run_dir)}: {err}")
            rows.append(
                {c: None for c in RUN_COLUMNS}
                | {"run": run_id_of(outputs, run_dir), "status": f"unreadable ({type(err).__name__})"}
            )
    return rows


def note_links_out(run_dir: Path, notes: Notes) -> None:
    """A note for each of the run's files (:data:`DOWNLOADABLE`) that is a link out of it, read or not: a
    view names every file it refuses, including those (equity.png) it only offers for download."""
    for name in DOWNLOADABLE:
        if (run_dir / name).is_symlink():
            _read(lambda d, name=name: runs.run_file_path(d, name), run_dir, notes)


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def filter_runs(
    frame: pd.DataFrame,
    text: str = "",
    status: str = "all",
    sort_by: str = "started",
    descending: bool = True,
) -> pd.DataFrame:
    """Rows whose run/tag/dataset contains ``text`` (case-insensitive) and whose status matches, sorted."""
    out = frame
    text = (text or "").strip().lower()
    if text:
        # A run cancelled before it started has no config yet: its tag and dataset are missing.
        hay = [" ".join(v for v in vals if isinstance(v, str)).lower()
               for vals in out[["run", "tag", "dataset"]].itertuples(index=False)]  # fmt: skip
        out = out[[text in h for h in hay]]
    if status and status != "all":
        out = out[out["status"] == status]
    if sort_by not in SORTABLE:
        raise UserError(f"cannot sort by {sort_by!r}; valid: {', '.join(SORTABLE)}")
    out = out.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    return out.reset_index(drop=True)


DISPLAY_NAMES = {
    "env_steps": "steps",
    "test_return": "return %",
    "max_drawdown": "max DD %",
    "fees_paid": "fees",
    "risk_pct": "risk",
    "stop_loss_bps": "stop bps",
}


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Rounded and with short headers for reading (return and drawdown in %, fees to cents)."""
    out = frame.copy()
    for col in ("test_return", "max_drawdown"):
        out[col] = pd.to_numeric(out[col], errors="coerce").mul(100).round(2)
    out["sharpe"] = pd.to_numeric(out["sharpe"], errors="coerce").round(2)
    out["fees_paid"] = pd.to_numeric(out["fees_paid"], errors="coerce").round(2)
    out["started"] = out["started"].astype(str).str.slice(0, 16)
    return out.rename(columns=DISPLAY_NAMES)


# ---------------------------------------------------------------------------------------------------------
# one run


def load_metrics(run_dir: Path, notes: Notes = None) -> pd.DataFrame:
    records, skipped = _read(runs.read_metrics_counted, run_dir, notes, ([], 0))
    if skipped:
        _note(notes, f"{run_dir / runs.METRICS_FILE}: {skipped} line(s) not read (not a JSON object: being "
                     "written, or damaged)")  # fmt: skip
    return pd.DataFrame(records)


def config_text(run_dir: Path, notes: Notes = None) -> str:
    """config.yaml as written (undecodable bytes replaced), or a YAML comment saying why there is none; one
    that is not a mapping is shown too, with the note that the rest of the view did not read it."""
    _safe_config(run_dir, notes)
    try:
        path = runs.run_file_path(run_dir, runs.CONFIG_FILE)
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "# no config.yaml yet"
    except (OSError, ValueError) as err:
        _note(notes, err)
        return "# config.yaml not read (see the note above)"


def eval_table(run_dir: Path, notes: Notes = None) -> pd.DataFrame:
    """Split x policy rows of the evaluation summary's metrics (empty until the run is evaluated), read as
    the CLI prints them (fmt.cell: fractions in percent, units in the headers)."""
    summary = _safe_eval(run_dir, notes)
    rows = []
    for split, table in _mapping(summary.get("splits")).items():
        for policy in ("agent", "buy_and_hold", "flat", "random"):
            m = _mapping(_mapping(table).get(policy))
            if m:
                rows.append({"split": split, "policy": policy,
                             **{fmt.header(k): fmt.cell(m.get(k), fmt.METRIC_KINDS.get(k, "num"))
                                for k in SUMMARY_METRICS}})  # fmt: skip
    if not rows and "mean_episode_return" in summary:
        rows.append(
            {
                "split": "eval",
                "policy": summary.get("policy", "greedy"),
                "mean_episode_return": fmt.cell(summary.get("mean_episode_return"), "num"),
                "episodes": fmt.cell(summary.get("episodes"), "int"),
            }
        )
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["split", "policy"])


def load_telemetry(run_dir: Path, notes: Notes = None) -> pd.DataFrame | None:
    """telemetry.parquet, or None when there is none or it cannot be read (then with a note)."""
    def read(d: Path) -> pd.DataFrame:
        return pd.read_parquet(runs.run_file_path(d, runs.TELEMETRY_FILE))

    return _read(read, run_dir, notes)  # pyarrow's errors on a damaged file are OSError or ValueError


TRADE_COLUMNS = ("side", "entry time", "entry price", "exit time", "exit price", "size", "fees", "P&L",
                 "P&L %", "exit")


def trades_table(run_dir: Path, split: str = "test", policy: str = "agent", limit: int = 500,
                 notes: Notes = None) -> pd.DataFrame:  # fmt: skip
    """The policy's round trips on a split (roundtrips.round_trip_table over its telemetry rows): side,
    entry/exit time (UTC) and price, size, fees and P&L in quote currency and in % of the equity at entry."""
    tel = load_telemetry(run_dir, notes)
    if tel is None or "policy" not in tel or "position" not in tel:
        return pd.DataFrame(columns=list(TRADE_COLUMNS))
    rows = tel[(tel["policy"] == policy) & (tel["split"] == split)] if "split" in tel else tel
    rows = rows.sort_values("t") if "t" in rows else rows
    cash = _num(_get(_safe_config(run_dir), "env", "initial_cash"))
    cash = float(cash) if cash else float(rows["equity"].iloc[0]) if len(rows) else 1.0
    cols = {c: rows[c].to_numpy() for c in rows.columns}
    if not len(rows):
        return pd.DataFrame(columns=list(TRADE_COLUMNS))
    trips = roundtrips.round_trip_table(cols, cash).head(limit)
    equity = np.concatenate([[cash], cols["equity"].astype(np.float64)])
    ts = cols.get("ts")
    index = {int(v): i for i, v in enumerate(ts)} if ts is not None else {}

    def when(v: Any) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "open"
        return pd.to_datetime(int(v), unit="ms", utc=True).strftime("%Y-%m-%d %H:%M")

    out = []
    for r in trips.to_dict("records"):
        base = equity[index.get(int(r["entry_time"]), 0)]
        out.append({
            "side": r["side"], "entry time": when(r["entry_time"]),
            "entry price": fmt.cell(r["entry_price"], "num"),
            "exit time": when(r["exit_time"]), "exit price": fmt.cell(r["exit_price"], "num"),
            "size": f"{r['size']:.6g}", "fees": fmt.cell(r["fees"], "num"), "P&L": fmt.cell(r["pnl"], "num"),
            "P&L %": fmt.cell(r["pnl"] / base if base and r["pnl"] is not None else None, "pct"),
            "exit": r["exit"],
        })  # fmt: skip
    return pd.DataFrame(out, columns=list(TRADE_COLUMNS))


def equity_curves(run_dir: Path, split: str = "test", notes: Notes = None) -> pd.DataFrame | None:
    """``time, agent, buy_and_hold`` equity on a split, from telemetry.parquet (None for non-trading runs)."""
    tel = load_telemetry(run_dir, notes)
    if tel is None or not {"policy", "equity", "ts"} <= set(tel.columns):
        return None
    if "split" in tel:
        if split not in set(tel["split"]):
            splits = list(dict.fromkeys(tel["split"]))
            if not splits:
                return None
            split = splits[-1]
        tel = tel[tel["split"] == split]
    out = None
    for policy in ("agent", "buy_and_hold"):
        part = tel[tel["policy"] == policy][["ts", "equity"]].rename(columns={"equity": policy})
        out = part if out is None else out.merge(part, on="ts", how="outer")
    if out is None or out.empty:
        return None
    out = out.sort_values("ts")
    out.insert(0, "time", pd.to_datetime(out["ts"], unit="ms", utc=True))
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# plots


def _empty(message: str, size=(8, 3)) -> Figure:
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="0.35", wrap=True)
    ax.set_axis_off()
    return fig


def plot_metrics(metrics: pd.DataFrame) -> Figure:
    """Training curves against env steps: episode return, losses, entropy, steps/s."""
    if metrics.empty or "env_steps" not in metrics:
        return _empty("no training metrics yet")
    fig = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    x = metrics["env_steps"]
    panels = [
        (axes[0, 0], "mean episode return", [("mean_episode_return", "return")]),
        (axes[0, 1], "losses", [("loss", "total"), ("policy_loss", "policy"), ("value_loss", "value")]),
        (axes[1, 0], "entropy and approx KL", [("entropy", "entropy"), ("approx_kl", "approx KL")]),
        (axes[1, 1], "throughput (env steps / s)", [("steps_per_s", "steps/s")]),
    ]
    for ax, title, series in panels:
        drawn = False
        for col, label in series:
            if col in metrics and metrics[col].notna().any():
                y = pd.to_numeric(metrics[col], errors="coerce")
                ax.plot(x, y, marker="o", ms=3, lw=1.2, label=label)
                drawn = True
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if drawn and len(series) > 1:
            ax.legend(fontsize=8)
        if not drawn:
            why = "no episode has finished yet" if title == "mean episode return" else "not recorded"
            ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.5")
    for ax in axes[1]:
        ax.set_xlabel("env steps")
    fig.suptitle("Training curves (metrics.jsonl, one point per chunk)", fontsize=11)
    return fig


def _empty_plotly(message: str, height: int = 260):
    """A plotly figure that says why there is nothing to draw (never an empty chart)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#555"})
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def run_figures(run_dir: Path, split: str = "test", notes: Notes = None) -> dict[str, Any] | None:
    """The report's figures of one run's split (:func:`tradelab_jax.report.figures_of`): ``equity`` (agent,
    baselines and the asset, with the agent's and buy-and-hold's drawdown below), ``price`` (the agent's
    round trips marked), ``rolling_sharpe``; plus ``split``, the split drawn (the last one the telemetry has
    when ``split`` is not in it). None for a run without a trading telemetry."""
    tel = load_telemetry(run_dir, notes)
    if tel is None or not {"split", "policy", "t", "ts", "equity", "close"} <= set(tel.columns):
        return None
    splits = list(dict.fromkeys(tel["split"]))
    if split not in splits:
        if not splits:
            return None
        split = splits[-1]
    parts = report.by_policy(tel, split)
    if "agent" not in parts:
        return None
    env = _mapping(_safe_config(run_dir, notes).get("env"))
    cash = _num(env.get("initial_cash")) or 10_000.0
    bars_per_year = _num(env.get("bars_per_year")) or 525_600
    figs = report.figures_of(parts, split, float(cash), float(bars_per_year))
    figs["split"] = split
    return figs


def plot_equity(figs: dict[str, Any] | None):
    """The run view's equity figure (:func:`run_figures`), or a figure saying there is none."""
    if not figs:
        return _empty_plotly("no equity curve: the run has no trading evaluation yet")
    return figs["equity"]


def plot_price(figs: dict[str, Any] | None):
    """The run view's price figure with the agent's round trips, or a figure saying there is none."""
    if not figs:
        return _empty_plotly("no price chart: the run has no trading evaluation yet")
    return figs["price"]


def _run_label(outputs: str | os.PathLike, run_id: str, config: dict[str, Any]) -> str:
    env = _mapping(config.get("env"))
    bits = [run_id.split("/")[-2] + "/" + run_id.split("/")[-1] if run_id.startswith("multirun/") else run_id]
    if config.get("seed") is not None:
        bits.append(f"seed={config['seed']}")
    for key, label, unit in (("risk_pct", "risk", ""), ("stop_loss_bps", "stop", "bps")):
        if isinstance(env.get(key), int | float):
            bits.append(f"{label}={env[key]:g}{unit}")
    del outputs
    return "  ".join(bits)


COMPARE_CONFIG = (
    "status",
    "dataset",
    "features",
    "seed",
    "risk_pct",
    "stop_loss_bps",
    "order_type",
    "total_timesteps",
)


def compare_table(outputs: str | os.PathLike, run_ids: list[str], notes: Notes = None) -> pd.DataFrame:
    """One row per run: its test-split metrics, buy-and-hold's return, the agent's Sharpe IQM with its 95 %
    interval over seeds/folds and the verdict of its (or its sweep's) stats.json, then its config."""
    rows = []
    for rid in run_ids:
        d = resolve_run(outputs, rid)
        note_links_out(d, notes)
        cfg = _safe_config(d, notes)
        summary = _safe_eval(d, notes)
        row = split_metrics(summary)
        bh = split_metrics(summary, "buy_and_hold")
        env, agent = _mapping(cfg.get("env")), _mapping(cfg.get("agent"))
        config = {
            "status": runs.run_state(d),
            "dataset": _get(cfg, "data", "id"),
            "features": _get(cfg, "features", "name"),
            "seed": cfg.get("seed"),
            "risk_pct": env.get("risk_pct"),
            "stop_loss_bps": env.get("stop_loss_bps"),
            "order_type": env.get("order_type"),
            "total_timesteps": agent.get("total_timesteps"),
        }
        found = read_stats(outputs, d, notes)
        rows.append(
            {
                "run": rid,
                **{k: row.get(k) for k in SUMMARY_METRICS},
                "buy_and_hold_return": bh.get("total_return"),
                "sharpe IQM [95 %]": sharpe_interval(found[2]) if found else "- (no stats.json)",
                "verdict": found[2]["verdict"].strip() if found else "- (no stats.json)",
                **config,
            }
        )
    return pd.DataFrame(rows)


def _cell(x: Any, field: str = "") -> str:
    if isinstance(x, bool | np.bool_):
        return str(bool(x)).lower()
    if field in fmt.METRIC_KINDS or field == "buy_and_hold_return":
        return fmt.cell(None if x is None else float(x) if isinstance(x, int | float | np.number) else x,
                        fmt.METRIC_KINDS.get(field, "pct"))
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        return f"{float(x):.4g}"
    return str(x)


def compare_display(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison with runs side by side: one row per field, one column per run."""
    if table.empty:
        return pd.DataFrame(columns=["field"])
    fields = [c for c in table.columns if c not in ("run", "verdict")]  # verdicts: below the table
    out = {"field": [fmt.header(f) if f != "buy_and_hold_return" else f"{f} %" for f in fields]}
    for _, row in table.iterrows():
        out[str(row["run"])] = [_cell(row[f], f) for f in fields]
    return pd.DataFrame(out)


def plot_compare_equity(outputs: str | os.PathLike, run_ids: list[str], split: str = "test",
                        notes: Notes = None):
    """Each run's agent equity on one split, overlaid, with buy-and-hold of the first run as reference, and
    each run's drawdown (%) below in the run's colour; a plotly figure (hover, zoom, a legend per panel).

    Runs over the same bars share a time axis; runs over different periods are aligned on their first bar.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    if len(run_ids) < 1:
        return _empty_plotly("pick two or more runs to compare")
    loaded = []
    for rid in run_ids:
        d = resolve_run(outputs, rid)
        curves = equity_curves(d, split, notes)
        if curves is not None:
            loaded.append((rid, _safe_config(d), curves))
    if not loaded:
        return _empty_plotly("none of these runs has an equity curve (trading evaluation) yet")
    same_period = len({int(c["ts"].iloc[0]) for _, _, c in loaded}) == 1

    def xs(curves: pd.DataFrame) -> list:
        return report._iso(curves["ts"]) if same_period else list(range(len(curves)))

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06,
                        subplot_titles=(f"agent equity on the {split} split (quote currency)", "drawdown %"))
    palette = qualitative.Plotly
    for i, (rid, cfg, curves) in enumerate(loaded):
        label, colour = _run_label(outputs, rid, cfg), palette[i % len(palette)]
        eq = curves["agent"].to_numpy(float)
        fig.add_trace(go.Scatter(x=xs(curves), y=report._floats(eq), name=label, mode="lines",
                                 line={"color": colour}, legendgroup=rid), 1, 1)
        dd = report._floats(-drawdown(eq) * 100)
        fig.add_trace(go.Scatter(x=xs(curves), y=dd, name=f"{label} drawdown", mode="lines",
                                 line={"color": colour, "width": 1}, legendgroup=rid), 2, 1)
    reference = loaded[0][2]
    if "buy_and_hold" in reference:
        label = "buy and hold" if same_period else f"buy and hold ({loaded[0][0]})"
        fig.add_trace(go.Scatter(x=xs(reference), y=report._floats(reference["buy_and_hold"]), name=label,
                                 mode="lines", line={"color": "#444", "dash": "dash"}), 1, 1)
    fig.update_layout(height=560, legend={"orientation": "h"}, hovermode="x unified")
    if not same_period:
        fig.update_xaxes(title_text="bars since the split's first bar (the runs cover different periods)",
                         row=2, col=1)
    return fig


# ---------------------------------------------------------------------------------------------------------
# resume


@dataclass(frozen=True)
class ResumeTarget:
    """What ``run.resume`` continues for a picked run: the run itself, or its whole packed sweep."""

    run_id: str  # the run the user picked
    dir_id: str  # what resumes, relative to outputs: the run, or the packed sweep's directory
    path: Path  # dir_id resolved inside outputs (the value of run.resume=)
    points: int  # > 1: a packed sweep with point directories 0 ... points-1
    tag: str
    update: int  # the update of the last checkpoint, where training continues


def resume_target(outputs: str | os.PathLike, run_id: Any) -> ResumeTarget:
    """Check with :func:`runs.resumable` that run ``run_id`` can be resumed and say what resumes; UserError
    (one sentence) if not.

    A point of a packed sweep resumes with its whole sweep (:func:`runs.resume_root`): the points were
    trained as one program and ``run.resume`` takes the sweep's directory.
    """
    run_dir = resolve_run(outputs, run_id)
    try:
        found = runs.resumable(runs.resume_root(run_dir), picked=run_dir)
    except runs.NotResumable as why:
        raise UserError(f"run {run_id!r} cannot be resumed: {why}; {WHAT_RESUMES}") from None
    return ResumeTarget(
        run_id=run_id,
        dir_id=run_id_of(outputs, found.path),
        path=found.path,
        points=len(found.dirs) if found.path != run_dir else 1,
        tag=str(_get(_safe_config(run_dir), "run", "tag") or run_dir.name.split("_", 1)[-1]),
        update=found.update,
    )


STATS_FILE = "stats.json"  # written by `tradelab stats DIR` (tradelab_jax/stats; docs/statistics.md)


def read_stats(outputs: str | os.PathLike, run_dir: Path,
               notes: Notes = None) -> tuple[str, Path, dict] | None:
    """``(where, folder, stats)``: the run's stats.json, else its sweep's (the folder a sweep point lies in);
    ``None`` when neither has one with a verdict sentence (a note says so). ``where`` is the file relative to
    ``outputs``; ``folder`` is what ``tradelab report`` reports on."""
    root = Path(outputs).resolve()
    for d in (Path(run_dir), Path(run_dir).parent):
        if d.resolve() == root or not (d / STATS_FILE).exists():
            continue
        s = _read(lambda p: runs._read_mapping(p, STATS_FILE), d, notes, {})
        verdict = s.get("verdict")
        if not isinstance(verdict, str) or not verdict.strip():
            _note(notes, f"{d / STATS_FILE} holds no verdict sentence")
            continue
        try:
            where = (d.resolve() / STATS_FILE).relative_to(root)
        except ValueError:
            where = d / STATS_FILE
        return str(where), d, s
    return None


def stats_verdict(outputs: str | os.PathLike, run_dir: Path, notes: Notes = None) -> tuple[str, str] | None:
    """``(where, verdict)`` of :func:`read_stats`; ``None`` when there is none."""
    found = read_stats(outputs, run_dir, notes)
    return None if found is None else (found[0], found[2]["verdict"].strip())


INTERVAL_METRICS = ("sharpe", "total_return", "max_drawdown", "trades")
INTERVAL_COLUMNS = ("configuration", "policy", "metric", "n", "mean", "IQM", "95 % low", "95 % high", "note")


def intervals_table(stats: dict[str, Any] | None) -> pd.DataFrame:
    """stats.json's per-configuration summaries as rows: the IQM over seeds/folds with its 95 % interval
    (formatted as the CLI does); a missing interval has its reason in ``note``, never a made-up number."""
    rows = []
    for c in (stats or {}).get("configs") or []:
        if not isinstance(c, dict):
            continue
        for pol, metrics in _mapping(c.get("policies")).items():
            if pol not in ("agent", "buy_and_hold"):
                continue
            for m in INTERVAL_METRICS:
                summary = _mapping(_mapping(metrics).get(m))
                if not summary:
                    continue
                kind = fmt.METRIC_KINDS.get(m, "num")
                ci = summary.get("iqm_ci95") if isinstance(summary.get("iqm_ci95"), list) else None
                rows.append({
                    "configuration": str(c.get("name")), "policy": pol, "metric": fmt.header(m),
                    "n": summary.get("n"), "mean": fmt.cell(summary.get("mean"), kind),
                    "IQM": fmt.cell(summary.get("iqm"), kind),
                    "95 % low": fmt.cell(ci[0], kind) if ci else "-",
                    "95 % high": fmt.cell(ci[1], kind) if ci else "-",
                    "note": "" if ci else str(summary.get("reason") or "no interval"),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


def sharpe_interval(stats: dict[str, Any] | None) -> str:
    """The agent's Sharpe IQM [95 % interval] of the first configuration, in one cell (``-`` when none)."""
    configs = (stats or {}).get("configs") or []
    best = _mapping((stats or {}).get("best"))
    idx = best.get("index") if isinstance(best.get("index"), int) else 0
    c = _mapping(configs[idx]) if configs and idx < len(configs) else {}
    summary = _mapping(_mapping(_mapping(c.get("policies")).get("agent")).get("sharpe"))
    if summary.get("iqm") is None:
        return "-"
    ci = summary.get("iqm_ci95")
    iqm = fmt.cell(summary["iqm"], "num")
    return f"{iqm} [{fmt.cell(ci[0], 'num')}, {fmt.cell(ci[1], 'num')}]" if ci else f"{iqm} (no interval)"


def build_report(outputs: str | os.PathLike, run_id: str, dest: Path) -> Path:
    """Write the report (``tradelab_jax.report.build``) of the run's stats folder (the run, or its sweep)
    into ``dest``/report.html for download; never into outputs/. UserError when there is nothing to report
    or the run has a file linked out of it (the report reads files directly)."""
    from tradelab_jax.io import atomic_write_text

    run_dir = resolve_run(outputs, run_id)
    linked: list[str] = []
    note_links_out(run_dir, linked)
    if linked:
        raise UserError(f"no report for {run_id}: {linked[0]}")
    found = read_stats(outputs, run_dir)
    folder = found[1] if found else run_dir
    try:
        text = report.build(folder)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"no report for {run_id}: {err}") from None
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / report.REPORT_FILE
    atomic_write_text(out, text)
    return out


def status_line(run_dir: Path, notes: Notes = None) -> str:
    """A one-line summary of a run's status.json for the run view."""
    st = _safe_status(run_dir, notes) or {}
    bits = [f"**{runs.effective_state(st or None)}**"]
    steps, total = _num(st.get("env_steps")), _num(st.get("total_env_steps"))
    if steps is not None and total:
        bits.append(f"{int(steps):,} / {int(total):,} env steps")
    for key, label in (("started_at", "started"), ("ended_at", "ended"), ("device", "device")):
        if st.get(key):
            bits.append(f"{label} {st[key]}")
    if st.get("error"):
        bits.append(f"error: {st['error']}")
    return " · ".join(bits)
