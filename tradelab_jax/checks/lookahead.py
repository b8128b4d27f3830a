"""Look-ahead check: rewrite every bar after a cut ``t`` and demand that nothing up to ``t`` moved.

Features up to bar ``t``, the env's (and a trained policy's) observations and action probabilities at every
decision bar ``<= t``, and the state fields and rewards of every step whose fill bar is ``<= t``, must be
bit-identical to the unmodified run (docs/lookahead.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax import features as fs
from tradelab_jax.env.trading import from_arrays, initial_state, transition

PERTURBATIONS = ("random_walk", "spikes", "zero_volume", "nan")
PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass
class Verdict:
    """One feature's (or the env's) result: cuts tried, bars compared, the first bar that moved."""

    name: str
    cuts: int = 0
    bars: int = 0
    first_moved: int | None = None
    perturbation: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_moved is None


def perturb(bars: Mapping[str, np.ndarray], t: int, kind: str, rng: np.random.Generator) -> dict:
    """A copy of ``bars`` with every bar after ``t`` rewritten (bars ``<= t`` untouched)."""
    out = {k: np.array(v, copy=True) for k, v in bars.items()}
    n = len(out["ts"]) - t - 1
    if n <= 0:
        return out
    floats = [k for k, v in out.items() if k != "ts" and np.issubdtype(v.dtype, np.floating)]
    if kind == "random_walk":
        close = out["close"][t] * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        out["open"][t + 1:] = close * np.exp(rng.normal(0, 0.005, n))
        out["close"][t + 1:] = close
        out["high"][t + 1:] = np.maximum(close, out["open"][t + 1:]) * 1.01
        out["low"][t + 1:] = np.minimum(close, out["open"][t + 1:]) * 0.99
        for k in floats:
            if k not in PRICE_COLUMNS:
                out[k][t + 1:] = np.abs(out[k][t + 1:]) * rng.uniform(0, 5, n)
    elif kind == "spikes":
        for k in floats:
            out[k][t + 1:] *= rng.choice([1.0, 10.0, 0.1], n)
    elif kind == "zero_volume":
        for k in floats:
            if k not in PRICE_COLUMNS:
                out[k][t + 1:] = 0.0
    elif kind == "nan":
        for k in floats:
            out[k][t + 1:] = np.nan
    else:
        raise ValueError(kind)
    return out


def _bits(x) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x))
    return a.view(np.uint8).reshape((*a.shape, -1)) if a.dtype.kind == "f" else a


def _first_diff(a, b) -> int | None:
    """First row index where ``a`` and ``b`` differ in any bit (NaN equals NaN of the same bits)."""
    ba, bb = _bits(a), _bits(b)
    diff = (ba != bb).reshape(ba.shape[0], -1).any(axis=1)
    return int(np.argmax(diff)) if diff.any() else None


def cut_bars(n_bars: int, warmup: int, cuts: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    lo, hi = warmup + 2, n_bars - 2
    return sorted(int(c) for c in rng.integers(lo, hi, cuts)) if hi > lo else []


def check_features(bars: Mapping[str, np.ndarray], specs: Sequence[fs.FeatureSpec], *, cuts: int = 8,
                   seed: int = 0, perturbations: Sequence[str] = PERTURBATIONS) -> list[Verdict]:
    """Each feature up to every cut bar, bit-compared against the unmodified run."""
    base = fs.compute_features(bars, specs)
    verdicts = [Verdict(name) for name in base.names]
    rng = np.random.default_rng(seed)
    values = np.asarray(base.values)
    for t in cut_bars(len(bars["ts"]), 0, cuts, seed):
        for kind in perturbations:
            moved = np.asarray(fs.compute_features(perturb(bars, t, kind, rng), specs).values)
            for j, v in enumerate(verdicts):
                v.cuts += 1
                v.bars += t + 1
                first = _first_diff(values[: t + 1, j], moved[: t + 1, j])
                if first is not None and v.ok:
                    v.first_moved, v.perturbation = first, kind
    return verdicts


STATE_FIELDS = ("t", "cash", "position", "entry_price", "stop_price", "peak_equity", "equity", "price")
# Per decision bar: known at its close, so compared for decision bars <= t (the rest only up to fill bar t).
AT_DECISION = ("action_probs", "obs")


@partial(jax.jit, static_argnums=(0, 3))
def _episode(env, params, actions, logits=None):
    """Per step from decision bar ``params.start_min``: the observation, the state fields after the step
    and the reward. Without ``logits`` the steps take ``actions``; with a trained actor's
    ``logits(obs) -> [A]`` they take its greedy action and record its action probabilities (softmax)."""

    def body(state, action):
        obs = env.get_obs(state, params)
        out = {}
        if logits is not None:
            logit = logits(obs)
            out["action_probs"] = jax.nn.softmax(logit)
            action = jnp.argmax(logit).astype(jnp.int32)
        stepped, reward, _, _ = transition(state, action, params)
        return stepped, {**out, "obs": obs, "reward": reward,
                         **{k: getattr(stepped, k) for k in STATE_FIELDS}}

    _, out = jax.lax.scan(body, initial_state(params, params.start_min), actions)
    return out


def check_env(bars: Mapping[str, np.ndarray], specs: Sequence[fs.FeatureSpec], *, cuts: int = 4,
              seed: int = 0, perturbations: Sequence[str] = PERTURBATIONS, **knobs) -> Verdict:
    """The env's own transition under a fixed random action sequence: every step whose fill bar is
    ``<= t`` (decision bar ``< t``) has the same state and reward after rewriting the future, and every
    observation of a decision bar ``<= t`` is the same."""
    matrix = fs.compute_features(bars, specs)
    env, params = from_arrays(bars, np.asarray(matrix.values), warmup=matrix.warmup,
                              episode_length=len(bars["ts"]), random_start=False, **knobs)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.num_actions, int(params.last_bar - params.start_min))
    return _compare_episodes(Verdict("env (observation, state, reward)"), bars, specs, env, params,
                             actions, None, cuts=cuts, seed=seed, perturbations=perturbations)


def check_policy(bars: Mapping[str, np.ndarray], run_dir: Path, *, cuts: int = 4, seed: int = 0,
                 perturbations: Sequence[str] = PERTURBATIONS) -> Verdict:
    """A trained run's agent (its checkpoint, features, window and knobs, loaded as ``tradelab episode
    --policy`` loads them) trading its own greedy actions: its action probabilities and observations at
    every decision bar ``<= t``, and the state and reward of every step filled by bar ``t``, are
    bit-identical after rewriting the future."""
    from tradelab_jax.episode import load_policy, run_settings

    settings = run_settings(run_dir, what="--run")
    specs = settings["features"]
    matrix = fs.compute_features(bars, specs)
    env, params = from_arrays(bars, np.asarray(matrix.values), warmup=matrix.warmup,
                              window=settings["window"], episode_length=settings["episode_length"],
                              random_start=False, **settings["knobs"])
    policy = load_policy(run_dir, env, params, settings["config"], what="--run")
    steps = np.zeros(int(params.last_bar - params.start_min), np.int32)
    return _compare_episodes(Verdict(f"policy {run_dir.name} (action probabilities)"), bars, specs, env,
                             params, steps, policy.logits, cuts=cuts, seed=seed, perturbations=perturbations)


def _compare_episodes(verdict: Verdict, bars, specs, env, params, actions, logits, *, cuts, seed,
                      perturbations) -> Verdict:
    start = int(params.start_min)
    actions = jnp.asarray(actions, jnp.int32)
    base = jax.device_get(_episode(env, params, actions, logits))
    rng = np.random.default_rng(seed)
    for t in cut_bars(len(bars["ts"]), start, cuts, seed):
        for kind in perturbations:
            moved = perturb(bars, t, kind, rng)
            feats = np.asarray(fs.compute_features(moved, specs).values, np.float32)
            ohlc = np.stack([moved[c] for c in PRICE_COLUMNS], axis=1)
            p2 = params.replace(ohlc=jnp.asarray(ohlc, params.ohlc.dtype), features=jnp.asarray(feats))
            out = jax.device_get(_episode(env, p2, actions, logits))
            k = t - start  # steps with decision bars start .. t-1 are filled by bar t
            verdict.cuts += 1
            verdict.bars += k + 1
            for key in base:
                rows = k + 1 if key in AT_DECISION else k
                first = _first_diff(base[key][:rows], out[key][:rows])
                if first is not None and verdict.ok:
                    verdict.first_moved, verdict.perturbation = start + first, f"{kind} ({key})"
    return verdict
