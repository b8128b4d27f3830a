"""Evaluation on time the agent never trained on, plus the baselines, telemetry and the equity plot.

Trading env: for each evaluation split (default ``val`` and ``test``) the deterministic policy (argmax) and
the three baselines of :mod:`tradelab_jax.env.policies` (``buy_and_hold``: the bucket nearest +1, first on a
tie; ``flat``: the bucket nearest 0; ``random``: uniform over the buckets, seeded by the run's seed) trade
the whole split as one continuous episode from its first valid bar (``random_start`` false) to its last
bar, in one vmapped program: every (point, policy) pair is a :func:`tradelab_jax.env.rollout.rollout` of the
env's own ``transition``, its policy an index into the stacked policies. The env's episode length still
scales the ``bars_in_position`` observation (capped at 1), but does not cut the evaluation. A kill-switch
termination ends that policy's episode early (the rest is not traded; the policy's ``terminated`` is true).

``buy_and_hold`` goes through RiskGuard like every policy (sized in risk units, with the stop-loss), so it
is not the asset's own buy-and-hold: each split also records ``asset_return``, the unlevered price change
over the evaluated range (:func:`tradelab_jax.env.policies.asset_return`, as in ``tradelab episode``).

gymnax envs: the mean return of the greedy policy over ``run.eval_episodes`` (>= 20) episodes.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.data.schema import ms_to_iso
from tradelab_jax.env import policies
from tradelab_jax.env.policies import POLICIES, asset_return
from tradelab_jax.env.rollout import rollout, trim_at_termination
from tradelab_jax.training.envs import batch_env_params, dataset, is_gymnax, make_env, split_record
from tradelab_jax.training.runner import networks_for

MS_PER_YEAR = 365 * 24 * 3600 * 1000


def evaluate_points(points: list[dict[str, Any]], params: Any, swept: tuple[str, ...] = (),
                    blocks: Any = None) -> list[dict[str, Any]]:
    """Per point: ``{"splits": {split: {policy: metrics}}, "telemetry": DataFrame, "curves": ...}``.

    ``swept``: the env knobs the run plan batches over the points (:meth:`RunPlan.swept`). ``blocks``:
    the training's :class:`~tradelab_jax.training.devices.PointBlocks`; evaluation runs in the same blocks
    on the same devices, so its bits, like training's, do not depend on the device or process count at a
    fixed ``run.point_block`` (None: every point in one program on the default device).
    """
    if is_gymnax(points[0]):
        return _evaluate_gymnax(points, params, blocks)
    return _evaluate_trading(points, params, swept, blocks)


def _vmapped(fn: Any, args: tuple[Any, ...], axes: tuple[Any, ...], blocks: Any) -> Any:
    """``jit(vmap(fn, in_axes=axes))(*args)`` as host arrays: in ``blocks`` when given, else in one call."""
    run = jax.jit(jax.vmap(fn, in_axes=axes))
    if blocks is None:
        return jax.device_get(run(*args))
    return blocks.resized(len(jax.tree.leaves(args[0])[0])).apply(run, args, axes)


def _evaluate_gymnax(points, params, blocks=None) -> list[dict[str, Any]]:
    from tradelab_jax.agents.ppo.train import make_evaluate_episodes

    cfg = points[0]
    env, env_params = make_env(cfg)
    batched, axes = batch_env_params(points, env, env_params)
    networks = networks_for(cfg, env, env_params)
    episodes = max(20, int(cfg["run"]["eval_episodes"]))
    max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))
    evaluate = make_evaluate_episodes(env, networks, max_steps)
    keys = jnp.stack([jax.random.PRNGKey(int(p["seed"]) + 10_000) for p in points])
    returns, lengths = _vmapped(functools.partial(evaluate, num_episodes=episodes), (params, keys, batched),
                                (0, 0, axes), blocks)
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


def _make_eval_fn(env, networks, n_steps: int, start: int, num_actions: int):
    """``fn(net_params, params, buy_and_hold, flat, policy, key)``: one policy's :func:`rollout` of the
    split, the policy an index into :func:`tradelab_jax.env.policies.stack` (vmap it over policies)."""

    def run_policy(net_params, params, buy_and_hold, flat, policy, key):
        stacked = policies.stack(num_actions, buy_and_hold, flat,
                                 lambda obs: networks.apply(net_params, obs)[0])
        return rollout(env, params, policies.select(stacked, policy), key, jnp.asarray(start), n_steps,
                       freeze=True)

    return jax.vmap(run_policy, in_axes=(None, None, None, None, 0, 0))


def _evaluate_trading(points, params, swept=(), blocks=None) -> list[dict[str, Any]]:
    """The points of a cross-validation run are evaluated fold by fold, each on its fold's test window
    (as the ``test`` split, with the baselines); other runs on ``run.eval_splits``."""
    folds = [(p.get("cv") or {}).get("fold") for p in points]
    if all(f is None for f in folds):
        return _evaluate_splits(points, params, swept, list(points[0]["run"].get("eval_splits")
                                                            or ["val", "test"]), blocks)
    out: list[dict[str, Any] | None] = [None] * len(points)
    for fold in sorted(set(folds)):
        idx = np.asarray([i for i, f in enumerate(folds) if f == fold])
        sub = jax.tree.map(lambda x, idx=idx: np.asarray(x)[idx], params)
        for i, result in zip(idx, _evaluate_splits([points[i] for i in idx], sub, swept, ["test"], blocks),
                             strict=True):
            out[int(i)] = result
    return out


def _evaluate_splits(points, params, swept, splits, blocks=None) -> list[dict[str, Any]]:
    import pandas as pd

    cfg = points[0]
    buckets = [np.asarray(p["env"]["position_buckets"], float) for p in points]  # a sweep may vary them
    bh = jnp.asarray([policies.buy_and_hold_index(b) for b in buckets])
    flat = jnp.asarray([policies.flat_index(b) for b in buckets])
    market = dataset(cfg).market  # the run's dataset, loaded once per process
    ts_all, close_all = np.asarray(market.bars["ts"]), np.asarray(market.bars["close"], float)
    periods_per_year = MS_PER_YEAR / float(market.timeframe_ms)
    results = [{"splits": {}, "telemetry": [], "curves": {}} for _ in points]
    networks = None
    for split in splits:
        env, env_params = make_env(cfg, split)
        if networks is None:
            networks = networks_for(cfg, env, env_params)
        batched, axes = batch_env_params(points, env, env_params, swept=swept)
        start, last_bar = int(env_params.start_min), int(env_params.last_bar)
        n_steps = last_bar - start
        fn = _make_eval_fn(env, networks, n_steps, start, len(buckets[0]))
        keys = jnp.stack([jax.random.split(jax.random.PRNGKey(int(p["seed"]) + 20_000), len(POLICIES))
                          for p in points])
        tel = _vmapped(fn, (params, batched, bh, flat, jnp.arange(len(POLICIES)), keys),
                       (0, axes, 0, 0, None, 0), blocks)
        for i, point in enumerate(points):
            table = {"bars": n_steps, "first_bar": ms_to_iso(ts_all[start]),
                     "last_bar": ms_to_iso(ts_all[last_bar]),
                     "asset_return": asset_return(close_all, start, last_bar)}
            initial_cash = float(point["env"]["initial_cash"])
            for j, policy in enumerate(POLICIES):
                rows = trim_at_termination({k: v[i, j] for k, v in tel.items()})
                # The policy's `terminated` flag, not a telemetry.parquet column (those are the contract).
                killed = bool(rows.pop("terminated")[-1])
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
                    equity = rows["equity"].astype(float)
                    curve = np.concatenate([equity, np.full(n_steps - equity.size, equity[-1])])
                    ts_split = ts_all[start + 1 : last_bar + 1]
                    results[i]["curves"].setdefault(split, {})[policy] = (ts_split, curve)
            results[i]["splits"][split] = table
    ranges = split_record(cfg)  # the data is the same for every point
    for r, b in zip(results, buckets, strict=True):
        r["telemetry"] = pd.concat(r["telemetry"], ignore_index=True) if r["telemetry"] else None
        r["policies"] = policy_descriptions(b)
        r["data_splits"] = ranges
    return results


def policy_descriptions(buckets: np.ndarray) -> dict[str, str]:
    """What each evaluated policy does, in bucket indices (telemetry ``action``) and their targets."""

    def constant(index: int) -> str:
        return f"always bucket index {index} (target {buckets[index]:+g} risk units)"

    return {
        "agent": "argmax of the trained policy (a bucket index)",
        # Not the asset's buy-and-hold: RiskGuard sizes it (risk_pct / stop-loss distance, capped by
        # max_leverage) and its stop can close it again and again; the asset is the split's asset_return.
        "buy_and_hold": constant(policies.buy_and_hold_index(buckets)) + ", sized by RiskGuard with its "
                        "stop-loss; the unlevered asset is the split's asset_return",
        "flat": constant(policies.flat_index(buckets)),
        "random": f"uniform over bucket indices 0..{len(buckets) - 1}, seeded by the run's seed",
    }


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
