"""Evaluation on time the agent never trained on, plus the baselines, telemetry and the equity plot.

Trading env: for each evaluation split (default ``val`` and ``test``) the deterministic policy (argmax) and
three baselines (``buy_and_hold``: always the largest bucket, +1 by default; ``flat``: the bucket nearest 0;
``random``: uniform over the buckets, seeded by the run's seed) trade the whole split as one continuous
episode from its first valid bar (``random_start`` false) to its last bar, through the env's own
``transition``. The env's episode length still scales the ``bars_in_position`` observation (capped at 1),
but does not cut the evaluation. A kill-switch termination ends that policy's episode early (the rest is not
traded; the policy's ``terminated`` is true).

``buy_and_hold`` goes through RiskGuard like every policy (sized in risk units, with the stop-loss), so it
is not the asset's own buy-and-hold: each split also records ``asset_return``, the unlevered price change
over the evaluated range, defined as in ``tradelab episode``.

gymnax envs: the mean return of the greedy policy over ``run.eval_episodes`` (>= 20) episodes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.training.envs import batch_env_params, is_gymnax, make_env
from tradelab_jax.training.runner import networks_for

POLICIES = ("agent", "buy_and_hold", "flat", "random")
MS_PER_YEAR = 365 * 24 * 3600 * 1000


def evaluate_points(points: list[dict[str, Any]], params: Any) -> list[dict[str, Any]]:
    """Per point: ``{"splits": {split: {policy: metrics}}, "telemetry": DataFrame, "curves": ...}``."""
    if is_gymnax(points[0]):
        return _evaluate_gymnax(points, params)
    return _evaluate_trading(points, params)


def _evaluate_gymnax(points, params) -> list[dict[str, Any]]:
    from tradelab_jax.agents.ppo.train import make_evaluate_episodes

    cfg = points[0]
    env, env_params = make_env(cfg)
    batched, axes = batch_env_params(points, env, env_params)
    networks = networks_for(cfg, env, env_params)
    episodes = max(20, int(cfg["run"].get("eval_episodes", 32)))
    max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))
    evaluate = make_evaluate_episodes(env, networks, max_steps)
    keys = jnp.stack([jax.random.PRNGKey(int(p["seed"]) + 10_000) for p in points])
    fn = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, axes, None)), static_argnums=3)
    returns, lengths = jax.device_get(fn(params, keys, batched, episodes))
    out = []
    for i in range(len(points)):
        import pandas as pd

        out.append({
            "env_id": cfg["env"]["id"],
            "policy": "greedy",
            "episodes": episodes,
            "mean_episode_return": float(np.mean(returns[i])),
            "std_episode_return": float(np.std(returns[i])),
            "min_episode_return": float(np.min(returns[i])),
            "max_episode_return": float(np.max(returns[i])),
            "mean_episode_length": float(np.mean(lengths[i])),
            "telemetry": pd.DataFrame({"episode": np.arange(episodes), "return": returns[i],
                                       "length": lengths[i]}),
        })
    return out


def _make_eval_fn(env, networks, n_steps: int, start: int, bh: int, flat: int, num_actions: int):
    from tradelab_jax.env import TELEMETRY
    from tradelab_jax.env.trading import initial_state, transition

    def run_policy(net_params, params, policy, key):
        state0 = initial_state(params, jnp.asarray(start))

        def step(carry, _):
            state, alive, key = carry
            key, k = jax.random.split(key)
            logits, _ = networks.apply(net_params, env.get_obs(state, params))
            choices = jnp.stack([jnp.argmax(logits), jnp.asarray(bh), jnp.asarray(flat),
                                 jax.random.randint(k, (), 0, num_actions)])
            action = choices[policy]
            new_state, _, terminated, info = transition(state, action, params)
            new_state = jax.tree.map(lambda n, o: jnp.where(alive, n, o), new_state, state)
            tel = {name: info[name] for name in TELEMETRY}
            tel["action"] = action
            tel["alive"] = alive
            tel["terminated"] = terminated
            return (new_state, alive & ~terminated, key), tel

        _, tel = jax.lax.scan(step, (state0, jnp.asarray(True), key), None, length=n_steps)
        return tel

    per_policy = jax.vmap(run_policy, in_axes=(None, None, 0, 0))
    return per_policy


def _evaluate_trading(points, params) -> list[dict[str, Any]]:
    import pandas as pd

    from tradelab_jax import data

    cfg = points[0]
    splits = list(cfg["run"].get("eval_splits") or ["val", "test"])
    buckets = np.asarray(cfg["env"]["position_buckets"], float)
    bh, flat = int(np.argmax(buckets)), int(np.argmin(np.abs(buckets)))
    market = data.load(cfg["data"]["id"], lake=cfg["data"].get("lake"))
    ts_all, close_all = np.asarray(market.bars["ts"]), np.asarray(market.bars["close"], float)
    periods_per_year = MS_PER_YEAR / float(market.timeframe_ms)
    results = [{"splits": {}, "telemetry": [], "curves": {}} for _ in points]
    networks = None
    for split in splits:
        env, env_params = make_env(cfg, split)
        if networks is None:
            networks = networks_for(cfg, env, env_params)
        batched, axes = batch_env_params(points, env, env_params)
        start, last_bar = int(env_params.start_min), int(env_params.last_bar)
        n_steps = last_bar - start
        fn = _make_eval_fn(env, networks, n_steps, start, bh, flat, len(buckets))
        keys = jnp.stack([jax.random.split(jax.random.PRNGKey(int(p["seed"]) + 20_000), len(POLICIES))
                          for p in points])
        policies = jnp.arange(len(POLICIES))
        run = jax.jit(jax.vmap(fn, in_axes=(0, axes, None, 0)))
        tel = jax.device_get(run(params, batched, policies, keys))
        for i, point in enumerate(points):
            table = {"bars": n_steps, "first_bar": _iso(ts_all[start]), "last_bar": _iso(ts_all[last_bar]),
                     "asset_return": asset_return(close_all, start, last_bar)}
            initial_cash = float(point["env"]["initial_cash"])
            for j, policy in enumerate(POLICIES):
                rows = {k: np.asarray(v[i, j]) for k, v in tel.items()}
                alive = rows.pop("alive").astype(bool)
                # The policy's `terminated` flag, not a telemetry.parquet column (those are the contract).
                killed = bool(np.any(rows.pop("terminated").astype(bool) & alive))
                all_equity = rows["equity"].astype(float)
                rows = {k: v[alive] for k, v in rows.items()}
                metrics = episode_metrics(rows, initial_cash, periods_per_year)
                table[policy] = {**metrics, "terminated": killed}
                frame = pd.DataFrame(rows)
                frame.insert(0, "policy", policy)
                frame.insert(0, "split", split)
                frame["ts"] = ts_all[frame["t"].to_numpy() + 1]
                frame["close"] = close_all[frame["t"].to_numpy() + 1]
                results[i]["telemetry"].append(frame)
                if policy in ("agent", "buy_and_hold"):
                    # After a kill-switch termination the account stays at its last equity.
                    final_equity = rows["equity"][-1] if alive.any() else initial_cash
                    curve = np.where(alive, all_equity, final_equity)
                    ts_split = ts_all[start + 1 : last_bar + 1]
                    results[i]["curves"].setdefault(split, {})[policy] = (ts_split, curve)
            results[i]["splits"][split] = table
    for r in results:
        r["telemetry"] = pd.concat(r["telemetry"], ignore_index=True) if r["telemetry"] else None
        r["policies"] = policy_descriptions(buckets, bh, flat)
    return results


def asset_return(close: np.ndarray, start: int, last_bar: int) -> float:
    """The asset's unlevered price change over an evaluated range: the close of its last traded bar over
    the close at its first decision bar, minus 1 (``asset_return`` of ``tradelab episode``)."""
    return float(close[last_bar] / close[start] - 1.0)


def policy_descriptions(buckets: np.ndarray, bh: int, flat: int) -> dict[str, str]:
    """What each evaluated policy does, in bucket indices (telemetry ``action``) and their targets."""

    def constant(index: int) -> str:
        return f"always bucket index {index} (target {buckets[index]:+g} risk units)"

    return {
        "agent": "argmax of the trained policy (a bucket index)",
        # Not the asset's buy-and-hold: RiskGuard sizes it (risk_pct / stop-loss distance, capped by
        # max_leverage) and its stop can close it again and again; the asset is the split's asset_return.
        "buy_and_hold": constant(bh) + ", sized by RiskGuard with its stop-loss; the unlevered asset is "
                        "the split's asset_return",
        "flat": constant(flat),
        "random": f"uniform over bucket indices 0..{len(buckets) - 1}, seeded by the run's seed",
    }


def _iso(ms: Any) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def episode_metrics(tel: dict[str, np.ndarray], initial_cash: float,
                    periods_per_year: float) -> dict[str, Any]:
    """Summary statistics of one evaluation episode: the env package's single definition."""
    from tradelab_jax.env import metrics as env_metrics

    return _clean(env_metrics.summarize(tel, initial_cash=initial_cash, bars_per_year=periods_per_year))


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def write_telemetry(path: Path, frame: Any) -> None:
    from tradelab_jax.io import atomic_path

    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def plot_equity(path: Path, curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                title: str = "") -> None:
    """Agent vs buy-and-hold equity with a drawdown panel (``tradelab_jax.plots``) on the test split, or
    the last evaluated split."""
    from tradelab_jax.plots import plot_equity as _plot

    split = "test" if "test" in curves else list(curves)[-1]
    ts, agent = curves[split]["agent"]
    _, benchmark = curves[split]["buy_and_hold"]
    _plot(path, ts, agent, benchmark, title=f"{title}  ({split} split)".strip(),
          benchmark_label="buy_and_hold baseline (RiskGuard-sized)")
