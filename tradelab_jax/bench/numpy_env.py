"""The same contract as :class:`tradelab_jax.env.TradingEnv` as a plain-numpy ``gymnasium.Env``.

One environment, stepped from Python the way the predecessor stack (SB3 PPO on a numpy gym env) did. It
is the baseline of ``tradelab bench env`` and, later, the SB3 baseline env of ``tradelab bench train``.
Observations, rewards, termination, truncation and the ``info`` telemetry match the JAX env (float64).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from tradelab_jax.env.kernel import DUST_RISK_UNITS
from tradelab_jax.knobs import PARAM_KNOBS
from tradelab_jax.knobs import resolve_env_knobs as resolve_knobs

_LOG_FLOOR = math.log(2.0**-20)


class NumpyTradingEnv(gym.Env):
    """docs/execution-semantics.md in numpy: ``ohlc`` is ``[T, 4]``, ``features`` ``[T, F]``."""

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self, ohlc: np.ndarray, features: np.ndarray, *, start_min: int, start_max: int,
                 last_bar: int, window: int = 1, **knobs: Any):
        k = resolve_knobs(knobs)
        self.ohlc = np.asarray(ohlc, np.float64)
        self.features = np.asarray(features, np.float32)
        self.window = int(window)
        self.start_min, self.start_max, self.last_bar = int(start_min), int(start_max), int(last_bar)
        self.k = k
        self.buckets = np.asarray(k["position_buckets"], np.float64)
        n_obs = self.window * self.features.shape[1] + 4
        self.action_space = gym.spaces.Discrete(len(self.buckets))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)

    @classmethod
    def from_env_params(cls, params: Any, window: int = 1) -> NumpyTradingEnv:
        """The numpy twin of a JAX env's :class:`~tradelab_jax.env.EnvParams` (unbatched)."""
        get = lambda name: np.asarray(getattr(params, name)).item()
        knobs = {name: get(name) for name in PARAM_KNOBS if name != "position_buckets"}
        knobs["position_buckets"] = np.asarray(params.position_buckets)
        return cls(np.asarray(params.ohlc), np.asarray(params.features), start_min=get("start_min"),
                   start_max=get("start_max"), last_bar=get("last_bar"), window=window, **knobs)

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = self.start_min
        if self.k["random_start"]:
            start = int(self.np_random.integers(self.start_min, self.start_max + 1))
        self.t = start
        self.time = 0
        self.cash = self.k["initial_cash"]
        self.position = 0.0
        self.entry_price = 0.0
        self.stop_price = 0.0
        self.peak = self.cash
        self.equity = self.cash
        self.bars_in_position = 0
        return self._obs(), {}

    def step(self, action):
        k = self.k
        o, h, lo, c1 = self.ohlc[self.t + 1]
        c = self.ohlc[self.t, 3]
        q, equity = self.position, self.equity
        bps = k["stop_loss_bps"]
        slip = k["slippage_bps"] / 1e4
        info: dict[str, Any] = {"t": self.t}

        risk_units, cap, stop_distance = self._risk_units(equity, c)
        target = float(np.clip(self.buckets[action] * risk_units, -cap, cap))
        delta = target - q
        size = abs(delta)
        send = (delta != 0 and size > DUST_RISK_UNITS * risk_units
                and size >= k["rebalance_band"] * risk_units and size * c >= k["min_order_notional"])
        filled, fill_price, fee = False, np.nan, 0.0
        if send:
            if k["order_type"] == 1:
                filled, fill_price = True, o * (1 + np.sign(delta) * slip)
                fee = k["taker_fee"] * abs(delta) * fill_price
            elif (delta > 0 and lo <= c) or (delta < 0 and h >= c):
                filled, fill_price = True, c
                fee = k["maker_fee"] * abs(delta) * c
        if filled:
            new_q = q + delta
            if new_q == 0:
                self.entry_price = 0.0
            elif q == 0 or q * new_q < 0:
                self.entry_price = fill_price
            elif q * delta > 0:
                size = abs(q) + abs(delta)
                self.entry_price = (abs(q) * self.entry_price + abs(delta) * fill_price) / size
            self.cash -= delta * fill_price + fee
            q = new_q
            self.stop_price = self.entry_price * (1 - np.sign(q) * bps / 1e4) if (q != 0 and bps > 0) else 0.0

        stop_hit, exit_price, stop_fee = False, np.nan, 0.0
        if q != 0 and bps > 0:
            s = self.stop_price
            if (q > 0 and lo <= s) or (q < 0 and h >= s):
                stop_hit = True
                level = min(s, o) if q > 0 else max(s, o)
                exit_price = level * (1 - np.sign(q) * slip)
                stop_fee = k["taker_fee"] * abs(q) * exit_price
                self.cash += q * exit_price - stop_fee
                q, self.entry_price, self.stop_price = 0.0, 0.0, 0.0
            elif k["trailing_stop"]:
                if q > 0:
                    self.stop_price = max(s, c1 * (1 - bps / 1e4))
                else:
                    self.stop_price = min(s, c1 * (1 + bps / 1e4))

        new_equity = self.cash + q * c1
        change = new_equity - equity
        if k["reward"] == 1:
            reward = change / k["initial_cash"]
        else:
            reward = math.log1p(change / equity) if change / equity > 2.0**-20 - 1 else _LOG_FLOOR
        self.peak = max(self.peak, new_equity)
        terminated = new_equity <= self.peak * (1 - k["max_drawdown"]) or new_equity <= 0
        if q == 0:
            self.bars_in_position = 0
        elif q * self.position > 0:
            self.bars_in_position += 1
        else:
            self.bars_in_position = 1
        self.position, self.equity = q, new_equity
        self.t += 1
        self.time += 1
        truncated = self.time >= k["episode_length"] or self.t >= self.last_bar
        info.update(
            target_position=target, risk_units=risk_units, stop_distance=stop_distance,
            order_size=delta if send else 0.0, filled=filled, fill_price=fill_price, limit_fee=fee,
            stop_hit=stop_hit, stop_price=self.stop_price if (q != 0 and bps > 0) else np.nan,
            exit_price=exit_price, stop_fee=stop_fee, position=q, cash=self.cash, equity=new_equity,
            reward=reward,
        )
        return self._obs(), reward, bool(terminated), bool(truncated), info

    # -- helpers ---------------------------------------------------------------------------------------
    def _risk_units(self, equity: float, price: float) -> tuple[float, float, float]:
        k = self.k
        stop_distance = price * k["stop_loss_bps"] / 1e4
        if equity <= 0:
            return 0.0, 0.0, stop_distance
        cap = k["max_leverage"] * equity / price
        if k["stop_loss_bps"] <= 0:
            return cap, cap, stop_distance
        return min(equity * k["risk_pct"] / stop_distance, cap), cap, stop_distance

    def _obs(self) -> np.ndarray:
        rows = self.features[self.t - self.window + 1 : self.t + 1].reshape(-1)
        price = self.ohlc[self.t, 3]
        risk_units, _, _ = self._risk_units(self.equity, price)
        live = self.equity > 0
        account = np.array([
            self.position / risk_units if risk_units > 0 else 0.0,
            self.position * (price - self.entry_price) / self.equity if live else 0.0,
            min(self.bars_in_position / self.k["episode_length"], 1.0),
            min(max(1 - self.equity / self.peak, 0.0), 1.0),
        ], np.float32)  # fmt: skip
        return np.concatenate([rows, account])
