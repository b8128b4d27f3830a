"""The leak canary (``tradelab check canary``): can the training pipeline learn a signal that exists, and
does the causal version of that signal give nothing away?

A dataset is cut from real bars (a sub-period of the embedded BTC/USDT 1m data) with one added column,
``leak[t] = close[t+1] / close[t] - 1``: the return of the bar *after* ``t``, known only in the future.
Under the fill semantics (docs/execution-semantics.md) a decision at the close of bar ``t`` is a limit order
at ``close[t]`` filled in bar ``t+1`` and marked at ``close[t+1]``, so the step decided at ``t`` earns
(for the part that fills) exactly ``leak[t]`` times its exposure: with ``lag: 0`` the agent sees the return
of the very step it is choosing. With ``lag: 1`` it sees ``leak[t-1] = close[t]/close[t-1] - 1``, the
return just realised, known at the close of ``t`` and so causal.

PPO is trained twice through ``tradelab train`` (same config, same seed; only the lag differs) and judged on
the test split (time it never trained on) from the run's own ``eval_summary.json``:

- **leak** (lag 0) must exploit it: total return at least :data:`LEAK_MIN_RETURN` above buy-and-hold's
  *and* annualised Sharpe at least :data:`LEAK_MIN_SHARPE` above buy-and-hold's (and never less than those
  figures themselves).
- **causal** (lag 1) must not: its total return must stay within the baselines' range, the interval spanned
  by the ``flat``, ``buy_and_hold`` and ``random`` policies' test returns widened by :data:`CAUSAL_MARGIN`
  on each side. (Flat earns 0, so the range always holds 0.)

Thresholds and the seed-to-seed spread they were set against: docs/lookahead.md (canary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradelab_jax.errors import UserError

SOURCE_DATASET = "binance_btcusdt_1m"
CANARY_ID = "canary_btcusdt_1m"
LEAK_COLUMN = "leak"
# The sub-period: bars [START_BAR, START_BAR + BARS) of the source (70/15/15 train/val/test by time).
START_BAR = 0
BARS = 20_000
HALVES = (("leak", 0), ("causal", 1))
# The features of both halves: the default set's pair plus the leak column (z-scored over a trailing
# window, causal in itself: the window ends at the bar).
NORM_WINDOW = 240

LEAK_MIN_RETURN = 0.2      # test-split total return above buy-and-hold's (fraction: 0.2 = 20 points)
LEAK_MIN_SHARPE = 30.0     # annualised Sharpe above buy-and-hold's (env.metrics)
CAUSAL_MARGIN = 0.05       # fraction of equity on each side of the baselines' range
BASELINES = ("buy_and_hold", "flat", "random")

# The training budget: small enough for CI on 2 cores, large enough to learn the leak (docs/lookahead.md).
TRAIN_OVERRIDES = (
    "agent.num_envs=8", "agent.num_steps=64", "agent.total_timesteps=65536", "agent.update_epochs=2",
    "agent.num_minibatches=4", "agent.lr=1e-3", "agent.gamma=0.5", "network.hidden_sizes=[32,32]",
    "env.episode_length=256", "run.chunk_updates=32", "run.eval_splits=[test]",
    "run.progress=false", "run.print_summary=false", "run.loggers=[]",
)


def feature_overrides(lag: int) -> list[str]:
    return [
        f"features.name=canary_lag{lag}",
        "features.features=[{kind:zscore,window:30},{kind:vwap_distance,window:60},"
        f"{{kind:column,column:{LEAK_COLUMN},lag:{lag},norm_window:{NORM_WINDOW}}}]",
    ]


def leak_column(close: np.ndarray) -> np.ndarray:
    """``close[t+1] / close[t] - 1`` for every bar but the last (which has no next bar)."""
    close = np.asarray(close, np.float64)
    return close[1:] / close[:-1] - 1.0


def build_dataset(lake_dir: Path, *, start_bar: int = START_BAR, bars: int = BARS,
                  source: str = SOURCE_DATASET, source_lake: Any = None) -> str:
    """Write the canary dataset (the source's bars ``[start_bar, start_bar + bars)`` plus ``leak``) into
    the lake at ``lake_dir`` (never the repo's own lake); returns its id."""
    from tradelab_jax import data
    from tradelab_jax.data.lake import Lake, write_dataset

    market = data.load(source, lake=source_lake)
    stop = start_bar + bars
    if start_bar < 0 or bars < 100 or stop + 1 > len(market):
        raise UserError(f"the canary's bars [{start_bar}, {stop}) must lie inside {source!r} "
                        f"({len(market)} bars) with one bar to spare, and be at least 100")
    cut = {k: np.asarray(v[start_bar:stop]) for k, v in market.bars.items()}
    cut[LEAK_COLUMN] = leak_column(market.bars["close"][start_bar:stop + 1])
    lake = Lake.at(lake_dir)
    manifest = market.manifest
    text = (f"# {CANARY_ID}\n\nThe leak canary's dataset (tradelab_jax/checks/canary.py): bars "
            f"[{start_bar}, {stop}) of {source} plus the column {LEAK_COLUMN!r} = close[t+1]/close[t] - 1, a "
            "deliberately leaked future return. Never train on it for anything else.\n")
    with lake.writer(CANARY_ID):
        previous = lake.read_manifest(CANARY_ID) if lake.exists(CANARY_ID) else None
        write_dataset(lake, dataset_id=CANARY_ID, exchange=manifest["exchange"], symbol=manifest["symbol"],
                      timeframe=manifest["timeframe"], bars=cut, provenance_text=text,
                      sources=[{"kind": "canary", "dataset": source, "bars": [start_bar, stop]}],
                      previous=previous)
    return CANARY_ID


@dataclass
class Half:
    """One trained half and its test-split figures (fractions; Sharpe annualised)."""

    name: str
    lag: int
    run_dir: Path
    split: dict = field(repr=False)

    def policy(self, name: str) -> dict:
        return self.split[name]

    @property
    def agent_return(self) -> float:
        return float(self.split["agent"]["total_return"])

    @property
    def agent_sharpe(self) -> float | None:
        return self.split["agent"].get("sharpe")

    def baseline_range(self) -> tuple[float, float]:
        values = [float(self.split[b]["total_return"]) for b in BASELINES]
        return min(values) - CAUSAL_MARGIN, max(values) + CAUSAL_MARGIN

    def verdict(self) -> tuple[bool, str]:
        hold = self.split["buy_and_hold"]
        ret, sharpe = self.agent_return, self.agent_sharpe
        if self.lag == 0:
            need_ret = max(LEAK_MIN_RETURN, float(hold["total_return"]) + LEAK_MIN_RETURN)
            need_sharpe = max(LEAK_MIN_SHARPE, (hold.get("sharpe") or 0.0) + LEAK_MIN_SHARPE)
            ok = ret >= need_ret and sharpe is not None and sharpe >= need_sharpe
            return ok, (f"exploits the leak (return >= {need_ret:+.1%}, Sharpe >= {need_sharpe:.1f})" if ok
                        else f"did NOT exploit the leak: needs return >= {need_ret:+.1%} and Sharpe >= "
                             f"{need_sharpe:.1f}")
        lo, hi = self.baseline_range()
        ok = lo <= ret <= hi
        return ok, (f"within the baselines' range [{lo:+.1%}, {hi:+.1%}]" if ok
                    else f"OUTSIDE the baselines' range [{lo:+.1%}, {hi:+.1%}]: the causal column gave "
                         "something away, or the baselines are not a fair range")


def train_half(lag: int, *, lake_dir: Path, outputs: Path, seed: int = 0,
               extra: tuple[str, ...] = ()) -> Path:
    """Train one half through ``tradelab train`` and return its run directory."""
    from tradelab_jax import runs, train

    tag = f"canary_lag{lag}_s{seed}"
    code = train.main([f"data.id={CANARY_ID}", f"data.lake={lake_dir}", *feature_overrides(lag),
                       *TRAIN_OVERRIDES, *extra, f"seed={seed}", f"run.outputs={outputs}", f"run.tag={tag}"])
    if code != 0:
        raise UserError(f"the canary's training (lag {lag}) ended with exit code {code}")
    found = [d for d in runs.iter_runs(outputs) if d.name.endswith(f"_{tag}")]
    if not found:
        raise UserError(f"the canary's run directory for lag {lag} is missing under {outputs}")
    return sorted(found)[-1]


def read_half(name: str, lag: int, run_dir: Path) -> Half:
    summary = json.loads((run_dir / "eval_summary.json").read_text(encoding="utf-8"))
    return Half(name, lag, run_dir, summary["splits"]["test"])


def run(out_dir: Path, *, seed: int = 0, extra: tuple[str, ...] = (), halves=HALVES) -> list[Half]:
    """Build the dataset under ``out_dir/lake``, train every half under ``out_dir/runs``, read the results."""
    lake_dir, outputs = out_dir / "lake", out_dir / "runs"
    build_dataset(lake_dir)
    return [read_half(name, lag, train_half(lag, lake_dir=lake_dir, outputs=outputs, seed=seed, extra=extra))
            for name, lag in halves]


def table(halves: list[Half]) -> list[str]:
    """Rows: per half, the agent and the baselines' test return and Sharpe, and the verdict."""
    from tradelab_jax.fmt import fmt_pct

    def sharpe(m: dict) -> str:
        return "n/a" if m.get("sharpe") is None else f"{m['sharpe']:.1f}"

    head = f"{'half':<8} {'lag':>3}  " + "  ".join(f"{p:>18}" for p in ("agent", *BASELINES)) + "  verdict"
    lines = [head, f"{'':<8} {'':>3}  " + "  ".join(f"{'return / Sharpe':>18}" for _ in range(4))]
    for h in halves:
        cells = [f"{fmt_pct(h.split[p]['total_return']):>9} / {sharpe(h.split[p]):>6}"
                 for p in ("agent", *BASELINES)]
        ok, why = h.verdict()
        lines.append(f"{h.name:<8} {h.lag:>3}  " + "  ".join(f"{c:>18}" for c in cells)
                     + f"  {'ok' if ok else 'FAIL'}: {why}")
    return lines


def record(halves: list[Half], verdict: str) -> dict:
    """canary.json: thresholds, and per half its run, figures, baselines' range and verdict."""
    halves_out = {}
    for h in halves:
        ok, why = h.verdict()
        halves_out[h.name] = {
            "lag": h.lag, "run_dir": str(h.run_dir), "ok": ok, "verdict": why,
            "baseline_range": list(h.baseline_range()),
            **{p: {k: h.split[p].get(k) for k in ("total_return", "sharpe", "trades", "fees_paid")}
               for p in ("agent", *BASELINES)},
        }
    return {"dataset": CANARY_ID, "source": SOURCE_DATASET, "bars": [START_BAR, START_BAR + BARS],
            "thresholds": {"leak_min_return_above_hold": LEAK_MIN_RETURN,
                           "leak_min_sharpe_above_hold": LEAK_MIN_SHARPE, "causal_margin": CAUSAL_MARGIN},
            "train_overrides": list(TRAIN_OVERRIDES), "halves": halves_out, "verdict": verdict,
            "ok": all(v["ok"] for v in halves_out.values())}


def default_out() -> Path:
    from tradelab_jax.paths import default_outputs
    from tradelab_jax.runs import utc_timestamp

    return default_outputs() / f"{utc_timestamp()}_canary"

