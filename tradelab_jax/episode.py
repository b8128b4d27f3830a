"""``tradelab episode``: one instrumented episode of a policy -> telemetry, summary and equity plot.

The episode starts at the split's first valid bar and runs to its end (or ``--episode-length`` steps, or
the kill switch) through the env's episode runner (:func:`tradelab_jax.env.rollout.run_episode`), the one
the trainer's evaluation uses. Policies: the baselines of :mod:`tradelab_jax.env.policies` (``random``:
uniform buckets; ``flat``: the bucket nearest 0; ``buy_and_hold``: the bucket nearest +1, first on a tie)
or a trained agent's run directory. A run directory's agent trades as in the trainer's own evaluation
(``tradelab_jax.training.evaluate``): the run's ``env.episode_length`` scales its ``bars_in_position``
observation but does not cut the episode, so over a whole split its steps, trades, fees and returns are
those of the split's ``agent`` in eval_summary.json. ``asset_return`` is the asset's unlevered price change
over the whole split, close of its last bar over close of its first decision bar, minus 1
(:func:`tradelab_jax.env.policies.asset_return`, the split's ``asset_return`` in eval_summary.json).
Outputs in ``--out``: ``telemetry.parquet`` (one row per step), ``summary.json`` and ``equity.png``. An
episode the kill switch ended (docs/execution-semantics.md §5) says so in the printed summary and in
``summary.json``'s ``kill_switch`` (when, the equity, its peak and the limit; null otherwise): its return is
over fewer bars than asked for, none traded after it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tradelab_jax.errors import UserError


def run_settings(run_dir: Path, what: str = "--policy") -> dict[str, Any]:
    """The dataset, feature set, window and env knobs a trained agent saw: its run plan's point
    (:func:`tradelab_jax.training.plan.plan_resume`, the plan a resume of this directory builds)."""
    from tradelab_jax import runs
    from tradelab_jax.features import load_feature_set
    from tradelab_jax.training.envs import is_gymnax, trading_knobs
    from tradelab_jax.training.plan import plan_resume

    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise UserError(f"{what} {run_dir} is not a run directory: it has no {runs.CONFIG_FILE}")
    try:
        plan = plan_resume(run_dir)
    except (KeyError, TypeError, AttributeError):
        plan = None
    config = plan.base if plan is not None else None
    if not isinstance(config, dict) or "env" not in config:
        raise UserError(f"{what} {run_dir}: its {runs.CONFIG_FILE} is not a tradelab training config")
    if is_gymnax(config):
        raise UserError(f"{what} {run_dir} trained on a gymnax environment; episodes replay trading agents")
    from tradelab_jax.knobs import resolve_env_knobs as resolve_knobs

    all_knobs = trading_knobs(config)
    knobs = {k: v for k, v in all_knobs.items() if k not in ("random_start", "episode_length")}
    return {
        "config": config,
        "plan": plan,
        "dataset": config["data"]["id"],
        "features": load_feature_set(config.get("features") or "default"),
        "window": int(config["env"].get("window", 1)),
        "knobs": knobs,
        # Scales the agent's bars_in_position observation, as in training and evaluation.
        "episode_length": int(resolve_knobs(all_knobs)["episode_length"]),
    }


def load_policy(run_dir: Path, env: Any, params: Any, config: dict[str, Any], what: str = "--policy"):
    """A trained agent's greedy policy (``tradelab_jax.env.policies.Greedy``) from its latest checkpoint,
    read and verified as a resume reads it (``runs.read_checkpoint``, ``training.checkpoint.restore``)."""
    import jax

    from tradelab_jax import runs
    from tradelab_jax.env.policies import Greedy
    from tradelab_jax.training import checkpoint
    from tradelab_jax.training.runner import networks_for

    networks = networks_for(config, env, params)
    obs = env.get_obs(env.reset(jax.random.key(0), params)[1], params)
    try:
        found = runs.read_checkpoint(run_dir)
        if found is None:
            raise UserError(f"{what} {run_dir} has no checkpoint in {run_dir / runs.CHECKPOINT_DIR}")
        path, data, _ = found
        state = checkpoint.state_dict(data, path)
        if "params" not in state:
            raise runs.CheckpointError(f"checkpoint {path} holds no network params (no 'params' entry)")
        template = jax.eval_shape(networks.init, jax.random.key(0))
        desc = f"the network its config.yaml builds for this episode's observation {tuple(obs.shape)}"
        net_params = checkpoint.restore(template, state["params"], path, what=desc)
    except runs.CheckpointError as err:
        raise UserError(f"{what} {run_dir}: {err}") from None
    net_params = jax.tree.map(jax.numpy.asarray, net_params)
    return Greedy(lambda obs: networks.apply(net_params, obs)[0])


def _parse_knob(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"invalid --knob {text!r}: expected NAME=VALUE, e.g. risk_pct=0.02")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tradelab episode",
        description="One instrumented episode of a policy: telemetry, summary and an equity plot.",
    )
    parser.add_argument("--dataset", default=None,
                        help="dataset id (default: the run's dataset, else binance_btcusdt_1m)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="default %(default)s")
    parser.add_argument("--policy", default="random",
                        help="random, flat, buy_and_hold or a run directory (default %(default)s)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--features", default=None,
                        help="feature set (default: the run's, else default)")
    parser.add_argument("--window", type=int, default=None,
                        help="feature rows per observation (default: the run's, else 1)")
    parser.add_argument("--episode-length", type=int, default=None,
                        help="steps (default: from the split's first valid bar to its end); with "
                             "--policy RUN_DIR the run's env.episode_length still scales the observation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy (default 0)")
    parser.add_argument("--lake", default=None, help="data lake (default: data/ or $TRADELAB_LAKE)")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment knob (docs/execution-semantics.md); repeatable")
    args = parser.parse_args(argv)

    knobs = dict(_parse_knob(k) for k in args.knob)
    for fixed in ("random_start", "episode_length"):
        if fixed in knobs:
            raise UserError(f"--knob {fixed} is set by the episode command; use --episode-length instead")
    if args.episode_length is not None and args.episode_length < 1:
        raise UserError(f"invalid --episode-length {args.episode_length}: expected a positive step count")
    from tradelab_jax.env.policies import BASELINES

    policy_name = args.policy
    run_dir = None
    if policy_name not in BASELINES:
        run_dir = Path(policy_name).expanduser()
        if not run_dir.is_dir():
            raise UserError(
                f"invalid --policy {policy_name!r}: expected random, flat, buy_and_hold or an existing run "
                "directory"
            )
    from tradelab_jax.paths import check_output_dir

    out_dir = check_output_dir(args.out, "--out")

    dataset, features, window = args.dataset, args.features or "default", args.window or 1
    if run_dir is not None:
        # The agent's observation must be built exactly as in training: its features, window and knobs.
        if args.features is not None or args.window is not None:
            raise UserError("with --policy RUN_DIR, --features and --window come from the run's config.yaml")
        settings = run_settings(run_dir)
        dataset = dataset or settings["dataset"]
        features, window, knobs = settings["features"], settings["window"], {**settings["knobs"], **knobs}
    summary = run(dataset or "binance_btcusdt_1m", args.split, policy_name, run_dir, out_dir,
                  features=features, window=window, episode_length=args.episode_length, seed=args.seed,
                  lake=args.lake, knobs=knobs)
    m = summary["metrics"]
    print(
        f"{summary['policy']} on {summary['dataset']}/{summary['split']}: {m['steps']} steps, "
        f"total return {100 * m['total_return']:+.2f}% "
        f"(the asset's price {100 * summary['asset_return']:+.2f}%), "
        f"max drawdown {100 * m['max_drawdown']:.2f}%, {m['trades']} trades, {m['stops_hit']} stops, "
        f"fees {m['fees_paid']:.2f}"
    )
    if summary["kill_switch"]:
        print(kill_switch_line(summary["kill_switch"]))
    print(f"wrote {out_dir / 'telemetry.parquet'}, {out_dir / 'summary.json'}, {out_dir / 'equity.png'}")
    return 0


def kill_switch_line(kill: dict) -> str:
    """The printed sentence of an episode the kill switch ended (``summary["kill_switch"]``)."""
    below = 1.0 - kill["equity"] / kill["peak_equity"] if kill["peak_equity"] > 0 else 1.0
    return (f"the kill switch ended the episode at {kill['at']} after {kill['steps']} steps: equity "
            f"{kill['equity']:.2f} is {100 * below:.2f}% below its peak {kill['peak_equity']:.2f} "
            f"(max_drawdown {100 * kill['max_drawdown']:g}%); no bar after it was traded")


def run(dataset: str, split: str, policy_name: str, run_dir: Path | None, out_dir: Path, *,
        features: Any = "default", window: int = 1, episode_length: int | None = None, seed: int = 0,
        lake: Any = None, knobs: dict | None = None) -> dict:
    """Run the episode and write its three outputs; returns the summary."""
    import jax
    import numpy as np
    import pandas as pd

    from tradelab_jax import data
    from tradelab_jax.data.schema import ms_to_iso
    from tradelab_jax.env import make
    from tradelab_jax.env.metrics import bars_per_year, summarize
    from tradelab_jax.env.policies import asset_return, baseline
    from tradelab_jax.env.rollout import run_episode
    from tradelab_jax.io import atomic_path, atomic_write_json
    from tradelab_jax.plots import plot_equity

    knobs = dict(knobs or {})
    market = data.load(dataset, lake=lake)
    settings = run_settings(run_dir) if run_dir is not None else None
    if settings is not None:
        # The trainer's evaluation: the run's episode_length (the observation's scale), no truncation.
        length = settings["episode_length"]
    else:
        length = episode_length if episode_length is not None else len(market)
    env, params = make(dataset, features=features, split=split, lake=lake, window=window,
                       random_start=False, episode_length=length, **knobs)
    first, last_bar = int(params.start_min), int(params.last_bar)
    if settings is not None:
        policy = load_policy(run_dir, env, params, settings["config"])
        n_steps = last_bar - first if episode_length is None else min(episode_length, last_bar - first)
        telemetry = run_episode(env, params, policy, jax.random.key(seed), n_steps=n_steps)
    else:
        policy = baseline(policy_name, np.asarray(params.position_buckets))
        telemetry = run_episode(env, params, policy, jax.random.key(seed))

    ts = np.asarray(market.bars["ts"])
    close = np.asarray(market.bars["close"], np.float64)
    t = telemetry["t"].astype(np.int64)
    # Same columns as a run directory's telemetry.parquet (docs/run-directory.md): ts and close are those
    # of bar t+1, where the step executed and was marked.
    frame = pd.DataFrame({"split": split, "policy": policy_name if run_dir is None else "agent", **telemetry,
                          "ts": ts[t + 1], "close": close[t + 1]})

    initial_cash = float(params.initial_cash)
    tf_ms = float(market.manifest.get("timeframe_ms") or np.median(np.diff(ts)))
    metrics = summarize(telemetry, initial_cash=initial_cash, bars_per_year=bars_per_year(tf_ms))
    start_close = close[first]
    knobs_json = _knobs_json({**knobs, "random_start": False, "episode_length": length})
    summary = {
        "dataset": dataset,
        "split": split,
        "policy": str(run_dir) if run_dir is not None else policy_name,
        "seed": seed,
        "features": features if isinstance(features, str) else [f.name for f in features],
        "window": window,
        "first_decision": ms_to_iso(ts[t[0]]),
        "last_mark": ms_to_iso(ts[t[-1] + 1]),
        "terminated": bool(telemetry["terminated"][-1]),
        # The unlevered price change over the whole split, not just the steps run (a kill switch can cut
        # them short), as in the trainer's evaluation.
        "asset_return": asset_return(close, first, last_bar),
        "knobs": knobs_json,
        "metrics": metrics,
        "kill_switch": _kill_switch(telemetry, initial_cash, knobs_json["max_drawdown"], ts[t[-1] + 1]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "telemetry.parquet", suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    atomic_write_json(out_dir / "summary.json", summary)
    mark_ts = np.concatenate([[ts[t[0]]], ts[t + 1]])
    equity = np.concatenate([[initial_cash], telemetry["equity"].astype(np.float64)])
    benchmark = initial_cash * np.concatenate([[start_close], close[t + 1]]) / start_close
    plot_equity(out_dir / "equity.png", mark_ts, equity, benchmark,
                title=f"{summary['policy']} on {dataset} ({split})",
                label=policy_name if run_dir is None else "agent",
                benchmark_label="the asset (1x, no fees)")
    return summary


def _kill_switch(telemetry: dict, initial_cash: float, max_drawdown: float, last_mark_ms) -> dict | None:
    """When, at what equity and peak the kill switch ended the episode (§5: the peak of the marked
    equity, from ``initial_cash``), or None when it did not."""
    import numpy as np

    from tradelab_jax.data.schema import ms_to_iso

    if not bool(telemetry["terminated"][-1]):
        return None
    equity = np.asarray(telemetry["equity"], np.float64)
    return {"at": ms_to_iso(last_mark_ms), "steps": int(equity.size), "equity": float(equity[-1]),
            "peak_equity": float(max(initial_cash, equity.max())), "max_drawdown": max_drawdown}


def _knobs_json(knobs: dict) -> dict:
    """The episode's knobs as given (defaults filled in), with choices by name."""
    from tradelab_jax.knobs import ENV_KNOBS, resolve_env_knobs

    out = resolve_env_knobs(knobs)
    for name in ("order_type", "reward"):
        out[name] = ENV_KNOBS[name].name_of(out[name])
    out["position_buckets"] = list(out["position_buckets"])
    return out
