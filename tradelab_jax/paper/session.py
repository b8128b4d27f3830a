"""A paper session: a trained policy stepping the env's own transition on each newly closed candle.

The backtest (``tradelab episode --policy RUN_DIR``) computes the run's features over a dataset and scans
:func:`tradelab_jax.env.rollout.policy_step` over it. A session does the same work bar by bar: its history
is the lake dataset from its first bar (the warm-up the features need), each closed candle is appended,
the features are recomputed over the whole series (they are causal, so earlier rows never change) and
:func:`tradelab_jax.env.rollout.advance` takes the new steps. Arrays live at a fixed capacity (a power
of two, doubled when full) with the bar index a traced value, so a session compiles once per capacity,
not once per bar. The decision at the close of bar ``t`` executes in bar ``t+1`` (limit at ``c[t]`` or
market at the next open, docs/execution-semantics.md), so each candle first executes the pending decision
and is then the bar of the next one; nothing is sent anywhere: no order, no API key.

After every bar the account is appended to the journal (fsynced) before anything else is written; a
restart reads the journal back and continues with the bars it has not traded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.io import append_jsonl, atomic_path, atomic_write_json
from tradelab_jax.paper import files

STEPS_PER_CALL = 64  # rows of one advance call (a static shape); more new bars take several calls
MIN_CAPACITY = 1024


def capacity_for(n_bars: int) -> int:
    """The smallest power of two (at least MIN_CAPACITY) holding ``n_bars`` bars."""
    cap = MIN_CAPACITY
    while cap < n_bars:
        cap *= 2
    return cap


class PaperSession:
    """One paper session directory, opened fresh or resumed; feed it closed candles with :meth:`on_bars`.

    ``history`` is the lake dataset's bars (``ts`` int64 epoch ms and float64 columns) read before the
    first live candle; ``settings`` are :func:`tradelab_jax.episode.run_settings` of the run.
    """

    def __init__(self, out_dir: Path, run_dir: Path, settings: dict[str, Any], history: Mapping[str, Any],
                 meta: dict[str, Any], *, refresh_s: float = 5.0, plot_s: float = 60.0, seed: int = 0):
        from tradelab_jax.episode import load_policy
        from tradelab_jax.features import compute_features

        self.out_dir, self.run_dir, self.settings, self.meta = out_dir, run_dir, settings, meta
        self.refresh_s, self.plot_s = refresh_s, plot_s
        self.tf_ms = int(meta["timeframe_ms"])
        self.specs = settings["features"]
        self.columns = needed_columns(history, self.specs)
        records = files.read_journal(out_dir)
        self.records: list[dict[str, Any]] = records
        bars = _merge_journal_bars(history, records, self.columns)
        self.n = len(bars["ts"])
        if records:
            last_ts = int(records[-1]["ts"])
            first_ts = int(meta["first_decision_ts"])
        else:
            last_ts = first_ts = int(bars["ts"][-1])  # a new session decides first at the last stored bar
        index = {int(t): i for i, t in enumerate(bars["ts"])}
        if first_ts not in index:
            raise UserError(f"the lake dataset {meta['dataset']!r} no longer holds this session's first "
                            f"decision bar ({meta['first_decision']}); a session needs its history from it")
        self.cap = capacity_for(self.n + 1)
        self._alloc(bars)
        matrix = compute_features(self._padded(), self.specs)
        self.warmup = int(matrix.warmup)
        first = index[first_ts]
        window = settings["window"]
        if first < self.warmup + window - 1:
            raise UserError(
                f"the lake dataset {meta['dataset']!r} holds {first + 1} bars up to the first decision, "
                f"fewer than the {self.warmup + window} the features and window need to warm up; ingest more "
                "history first (tradelab data ingest --since ...)"
            )
        from tradelab_jax.env.trading import TradingEnv, build_params
        from tradelab_jax.knobs import resolve_env_knobs

        values = np.asarray(matrix.values)[first - window + 1 : self.n]
        if not np.all(np.isfinite(values)):
            raise UserError(f"the run's features are NaN or infinite on bars of {meta['dataset']!r} after "
                            "their warm-up; check the dataset (tradelab data validate)")
        knobs = resolve_env_knobs({**settings["knobs"], "random_start": False,
                                   "episode_length": settings["episode_length"]})
        padded = self._padded()
        ohlc = np.stack([padded[k] for k in ("open", "high", "low", "close")], axis=1)
        params = build_params(ohlc, np.asarray(matrix.values), start_min=first, start_max=first,
                              last_bar=self.cap - 1, **knobs)
        self.env = TradingEnv(len(knobs["position_buckets"]), window, values.shape[1], default_params=params)
        self.params = params
        self.policy = load_policy(run_dir, self.env, params, settings["config"], what="RUN_DIR")
        from tradelab_jax.env.trading import initial_state

        template = initial_state(params, first)
        if records:
            self.state = _state_from(records[-1]["state"], template)
            self.state = self.state.replace(t=jnp.asarray(index[last_ts], template.t.dtype))
            self.key = jax.random.wrap_key_data(jnp.asarray(records[-1]["key"], jnp.uint32))
        else:
            self.state, self.key = template, jax.random.key(seed)
        self.t = index[last_ts]  # the bar of the pending decision
        self.terminated = bool(records and records[-1]["row"]["terminated"])
        self._row_dtypes = None
        self._last_refresh = self._last_plot = 0.0
        self.gaps = 0

    # -------------------------------------------------------------------------------------------- arrays

    def _alloc(self, bars: Mapping[str, np.ndarray]) -> None:
        self.ts = np.zeros(self.cap, np.int64)
        self.ts[: self.n] = bars["ts"]
        self.cols = {c: np.zeros(self.cap, np.float64) for c in self.columns}
        for c in self.columns:
            self.cols[c][: self.n] = bars[c]

    def _padded(self) -> dict[str, np.ndarray]:
        """The bars at full capacity, the rows after the last bar repeating it (finite, positive prices;
        a causal feature at bar t never reads them) with their open times continuing on the grid."""
        n, out = self.n, {}
        ts = self.ts.copy()
        ts[n:] = ts[n - 1] + self.tf_ms * np.arange(1, self.cap - n + 1)
        out["ts"] = ts
        for c, arr in self.cols.items():
            col = arr.copy()
            col[n:] = arr[n - 1]
            out[c] = col
        return out

    def _bar(self, i: int) -> dict[str, Any]:
        return {"ts": int(self.ts[i]), **{c: float(self.cols[c][i]) for c in self.columns}}

    def _append(self, bar: Mapping[str, Any]) -> None:
        if self.n >= self.cap - 1:  # bar t+1 must exist inside the arrays: grow (one compile per doubling)
            old = {"ts": self.ts[: self.n], **{c: v[: self.n] for c, v in self.cols.items()}}
            self.cap *= 2
            self._alloc(old)
        self.ts[self.n] = int(bar["ts"])
        for c in self.columns:
            if c not in bar:
                raise UserError(f"a streamed candle lacks the column {c!r} that the history dataset has")
            self.cols[c][self.n] = float(bar[c])
        self.n += 1

    # --------------------------------------------------------------------------------------------- bars

    @property
    def last_traded_ts(self) -> int:
        """Open time of the last bar traded (marked), else of the first decision bar."""
        return int(self.records[-1]["ts"]) if self.records else int(self.meta["first_decision_ts"])

    @property
    def last_ts(self) -> int:
        return int(self.ts[self.n - 1])

    def on_bars(self, bars: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Trade closed candles (``ts`` and the history's columns each), and any held bar not traded yet
        (after a restart: the lake's bars since the journal's last): candles at or before the last bar
        held are skipped (a replayed or duplicated candle). Returns the journal records written, one per
        traded bar."""
        from tradelab_jax.env.rollout import advance_jit
        from tradelab_jax.features import compute_features

        for bar in bars:
            ts = int(bar["ts"])
            if ts <= self.last_ts:
                continue
            if ts != self.last_ts + self.tf_ms:
                self.gaps += 1  # the streamer fills every hole the exchange can; the bars trade as they come
            self._append(bar)
        if self.terminated or self.t + 1 >= self.n:
            return []
        padded = self._padded()
        matrix = compute_features(padded, self.specs)
        fdt = self.params.ohlc.dtype
        ohlc = np.stack([padded[k] for k in ("open", "high", "low", "close")], axis=1)
        self.params = self.params.replace(ohlc=jnp.asarray(ohlc, fdt), features=jnp.asarray(matrix.values))
        written = []
        while self.t + 1 < self.n and not self.terminated:
            todo = min(self.n - 1 - self.t, STEPS_PER_CALL)
            state, key, rows = advance_jit(self.env, self.params, self.policy, self.state, self.key,
                                           jnp.asarray(todo, jnp.int32), STEPS_PER_CALL)
            rows = jax.device_get(rows)
            done = int(rows.pop("done"))
            states, keys = rows.pop("state"), rows.pop("key")
            if self._row_dtypes is None:
                self._row_dtypes = {k: v.dtype for k, v in rows.items()}
            for i in range(done):
                row = {k: files.json_value(v[i]) for k, v in rows.items()}
                t1 = int(row["t"]) + 1
                record = {
                    "ts": int(self.ts[t1]),
                    "bar": self._bar(t1),
                    "row": row,
                    "state": {f: files.json_value(getattr(states, f)[i]) for f in _STATE_FIELDS},
                    "key": [int(w) for w in np.asarray(keys[i]).reshape(-1)],
                }
                append_jsonl(self.out_dir / files.JOURNAL_FILE, record)  # durable before anything else
                self.records.append(record)
                written.append(record)
            self.state, self.key = state, key
            self.t += done
            self.terminated = bool(done and rows["terminated"][done - 1])
            if done < todo and not self.terminated:
                raise AssertionError("advance stopped early without a termination")
        self.refresh()
        return written

    # ------------------------------------------------------------------------------------------ outputs

    def telemetry(self) -> dict[str, np.ndarray]:
        """The journal's rows as columns in the step's own dtypes (those of the backtest's telemetry)."""
        from tradelab_jax.env.rollout import policy_step

        if self._row_dtypes is None:
            shapes = jax.eval_shape(lambda s, k: policy_step(self.env, self.params, self.policy, s, k)[2],
                                    self.state, self.key)
            self._row_dtypes = {k: v.dtype for k, v in shapes.items()}
        rows = [r["row"] for r in self.records]
        out = {}
        for k, dtype in self._row_dtypes.items():
            values = [np.nan if r[k] is None else r[k] for r in rows]
            out[k] = np.asarray(values, dtype=dtype)
        return out

    def refresh(self, *, force: bool = False) -> None:
        """Rewrite telemetry.parquet, summary.json and status.json (every ``refresh_s``) and equity.png
        (every ``plot_s``) from the journal; ``force`` writes all of them now."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self.refresh_s:
            return
        self._last_refresh = now
        self.write_outputs(plot=force or now - self._last_plot >= self.plot_s)
        if force or now - self._last_plot >= self.plot_s:
            self._last_plot = now

    def write_outputs(self, *, plot: bool) -> None:
        import pandas as pd

        from tradelab_jax.data.schema import ms_to_iso
        from tradelab_jax.env.metrics import bars_per_year, summarize

        if not self.records:
            self.write_status()
            return
        tele = self.telemetry()
        ts = np.asarray([r["ts"] for r in self.records], np.int64)
        close = np.asarray([r["bar"]["close"] for r in self.records], np.float64)
        frame = pd.DataFrame({"split": files.SPLIT, "policy": "agent", **tele, "ts": ts, "close": close})
        with atomic_path(self.out_dir / runs.TELEMETRY_FILE, suffix=".parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        initial_cash = float(self.params.initial_cash)
        metrics = summarize(tele, initial_cash=initial_cash, bars_per_year=bars_per_year(self.tf_ms))
        first_close = float(self.meta["first_close"])
        summary = {
            "run": str(self.run_dir),
            "exchange": self.meta["exchange"], "symbol": self.meta["symbol"],
            "timeframe": self.meta["timeframe"], "dataset": self.meta["dataset"],
            "first_decision": self.meta["first_decision"], "last_mark": ms_to_iso(int(ts[-1])),
            "terminated": self.terminated,
            "asset_return": float(close[-1] / first_close - 1.0),
            "metrics": metrics,
        }
        atomic_write_json(self.out_dir / files.SUMMARY_FILE, summary)
        self.write_status(bars=len(ts), last_bar=ms_to_iso(int(ts[-1])), equity=float(tele["equity"][-1]),
                          position=float(tele["position"][-1]), total_return=metrics["total_return"],
                          trades=metrics["trades"], terminated=self.terminated)
        if plot:
            from tradelab_jax.plots import plot_equity

            mark_ts = np.concatenate([[int(self.meta["first_decision_ts"])], ts])
            equity = np.concatenate([[initial_cash], tele["equity"].astype(np.float64)])
            benchmark = initial_cash * np.concatenate([[first_close], close]) / first_close
            plot_equity(self.out_dir / runs.EQUITY_FILE, mark_ts, equity, benchmark,
                        title=f"paper: {self.meta['symbol']} on {self.meta['exchange']}", label="agent",
                        benchmark_label="the asset (1x, no fees)")

    def write_status(self, **fields: Any) -> None:
        runs.write_status(self.out_dir, kind=files.KIND, **fields)


def needed_columns(history: Mapping[str, Any], specs: Sequence[Any]) -> list[str]:
    """OHLCV plus the extra dataset columns the feature set reads (a streamed candle carries OHLCV)."""
    from tradelab_jax.features import FEATURE_KINDS

    cols = ["open", "high", "low", "close", "volume"]
    for spec in specs:
        for c in FEATURE_KINDS[spec.kind].columns(dict(spec.params), list(history)):
            if c != "ts" and c not in cols and c in history:
                cols.append(c)
    return cols


_STATE_FIELDS = ("t", "time", "cash", "position", "entry_price", "stop_price", "peak_equity", "equity",
                 "price", "bars_in_position")


def _state_from(values: Mapping[str, Any], template: Any) -> Any:
    """An EnvState from a journal record, each leaf in the template's dtype (exact: JSON holds float32
    values widened to float64)."""
    return template.replace(**{f: jnp.asarray(values[f], getattr(template, f).dtype) for f in _STATE_FIELDS})


def _merge_journal_bars(history: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                        columns: Sequence[str]) -> dict[str, np.ndarray]:
    """The history with the journal's bars laid over it: a bar the session traded keeps the values it was
    traded on, and bars journaled but not yet in the lake (the streamer compacts later) are added."""
    ts = np.asarray(history["ts"], np.int64)
    out = {"ts": ts, **{c: np.asarray(history[c], np.float64) for c in columns}}
    if not records:
        return out
    extra = {int(r["ts"]): r["bar"] for r in records}
    where = {int(t): i for i, t in enumerate(ts)}
    for t, bar in extra.items():
        if t in where:
            for c in columns:
                out[c][where[t]] = bar[c]
    later = sorted(t for t in extra if t > int(ts[-1]))
    if later:
        out = {"ts": np.concatenate([ts, np.asarray(later, np.int64)]),
               **{c: np.concatenate([out[c], [extra[t][c] for t in later]]) for c in columns}}
    return out
