"""The trading environment (gymnax 1.0 API) and its pure step kernel.

One step follows docs/execution-semantics.md: decide at the close of bar ``t``, size with the RiskGuard,
execute in bar ``t+1`` (limit or market), check the stop in the same bar, mark at ``c[t+1]``.

Three containers, as in gymnax: the static :class:`TradingEnv` (shapes only: number of actions, window
length, number of features), :class:`EnvParams` (market arrays and every knob as a traced leaf) and
:class:`EnvState` (the account, which changes every step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from tradelab_jax.env import kernel
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import ENV_KNOBS, FLOAT_PARAM_KNOBS
from tradelab_jax.knobs import resolve_env_knobs as resolve_knobs

# Observation columns after the feature window (see docs/execution-semantics.md, "Observation").
ACCOUNT_FEATURES = ("position_risk_units", "unrealized_pnl", "bars_in_position", "drawdown")

TELEMETRY = (
    "t", "target_position", "risk_units", "stop_distance", "order_size", "filled", "fill_price",
    "limit_fee", "stop_hit", "stop_price", "exit_price", "stop_fee", "position", "cash", "equity", "reward",
)  # fmt: skip

# EnvParams leaves that hold market data: broadcast (in_axes None) when vmapping over knobs.
MARKET_FIELDS = ("ohlc", "features")


def float_dtype() -> np.dtype:
    """The params dtype: float32, or float64 when JAX x64 is enabled."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def int_dtype() -> np.dtype:
    return jax.dtypes.canonicalize_dtype(jnp.int64)


@struct.dataclass
class EnvParams:
    """Market arrays and every knob of the environment, all traced leaves (vmappable).

    ``ohlc`` is ``[T, 4]`` (open, high, low, close) in the params dtype and ``features`` ``[T, F]`` float32;
    they are the :data:`MARKET_FIELDS`, shared by every environment of a batch. Knob units are those of
    docs/execution-semantics.md §7. ``start_min``/``start_max`` bound the episode's first decision bar,
    less the starts ``[hole_lo, hole_hi)`` (a cross-validation fold's purged test window and embargo; empty,
    ``hole_lo == hole_hi``, otherwise), and ``last_bar`` is the split's last bar (inclusive): no decision is
    taken there, it has no ``t+1``. The bounds are traced leaves, so folds that differ only in them share
    one compiled program.
    """

    ohlc: jax.Array
    features: jax.Array
    maker_fee: jax.Array
    taker_fee: jax.Array
    risk_pct: jax.Array
    stop_loss_bps: jax.Array
    max_leverage: jax.Array
    slippage_bps: jax.Array
    initial_cash: jax.Array
    max_drawdown: jax.Array
    rebalance_band: jax.Array
    min_order_notional: jax.Array
    trailing_stop: jax.Array  # bool
    order_type: jax.Array  # int: 0 limit, 1 market
    reward: jax.Array  # int: 0 log_return, 1 pnl
    position_buckets: jax.Array  # [A]
    episode_length: jax.Array  # int
    random_start: jax.Array  # bool
    start_min: jax.Array  # int
    start_max: jax.Array  # int
    last_bar: jax.Array  # int
    hole_lo: jax.Array  # int: excluded starts [hole_lo, hole_hi), empty when equal
    hole_hi: jax.Array  # int


@struct.dataclass
class EnvState:
    """The account at decision bar ``t`` (after marking at ``c[t]``).

    ``entry_price`` and ``stop_price`` are 0 while flat; ``price`` is ``c[t]`` and ``equity`` is
    ``cash + position * price``, kept so the step gathers only bar ``t+1``.
    """

    t: jax.Array
    time: jax.Array  # steps taken in this episode
    cash: jax.Array
    position: jax.Array
    entry_price: jax.Array
    stop_price: jax.Array
    peak_equity: jax.Array
    equity: jax.Array
    price: jax.Array
    bars_in_position: jax.Array


def build_params(ohlc: Any, features: Any, *, start_min: int, start_max: int, last_bar: int,
                 hole: tuple[int, int] | None = None, **knobs: Any) -> EnvParams:
    """EnvParams from a ``[T, 4]`` OHLC array, a ``[T, F]`` feature matrix and the knobs (checked);
    ``hole`` is the ``[lo, hi)`` of starts excluded from ``[start_min, start_max]`` (default none)."""
    k = resolve_knobs(knobs)
    fdt, idt = float_dtype(), int_dtype()
    floats = {name: jnp.asarray(k[name], fdt) for name in FLOAT_PARAM_KNOBS}
    return EnvParams(
        ohlc=jnp.asarray(ohlc, fdt),
        features=jnp.asarray(features, jnp.float32),
        **floats,
        trailing_stop=jnp.asarray(k["trailing_stop"], bool),
        order_type=jnp.asarray(k["order_type"], idt),
        reward=jnp.asarray(k["reward"], idt),
        position_buckets=jnp.asarray(k["position_buckets"], fdt),
        episode_length=jnp.asarray(k["episode_length"], idt),
        random_start=jnp.asarray(k["random_start"], bool),
        start_min=jnp.asarray(start_min, idt),
        start_max=jnp.asarray(start_max, idt),
        last_bar=jnp.asarray(last_bar, idt),
        hole_lo=jnp.asarray(start_max + 1 if hole is None else hole[0], idt),
        hole_hi=jnp.asarray(start_max + 1 if hole is None else hole[1], idt),
    )


def valid_starts(*, split_start: int, split_stop: int, warmup: int, window: int,
                 episode_length: int) -> tuple[int, int, int]:
    """``(start_min, start_max, last_bar)`` for a split ``[split_start, split_stop)`` of bar indices.

    The first valid decision bar has every feature of every row of its observation window warmed up
    (``warmup + window - 1``) and lies in the split; the last
    start leaves room for ``episode_length`` steps (each needs bar ``t+1`` inside the split). A split
    shorter than that has a single start and its episodes are truncated at the split's last bar.
    """
    last_bar = split_stop - 1
    start_min = max(split_start, warmup + window - 1)  # every row of the first window is warmed up
    if start_min >= last_bar:
        raise UserError(
            f"the split [{split_start}, {split_stop}) has no bar to trade after the feature warm-up "
            f"({warmup} bars) and observation window ({window}); use a longer split or fewer warm-up bars"
        )
    start_max = max(start_min, last_bar - episode_length)
    return start_min, start_max, last_bar


def initial_state(params: EnvParams, start: jax.Array) -> EnvState:
    """A fresh account at decision bar ``start``: all cash, flat."""
    cash = params.initial_cash
    zero = jnp.zeros_like(cash)
    zero_i = jnp.zeros_like(params.episode_length)
    return EnvState(
        t=jnp.asarray(start, zero_i.dtype),
        time=zero_i,
        cash=cash,
        position=zero,
        entry_price=zero,
        stop_price=zero,
        peak_equity=cash,
        equity=cash,
        price=params.ohlc[start, 3],
        bars_in_position=zero_i,
    )


def sample_start(key: jax.Array, params: EnvParams) -> jax.Array:
    """The episode's first decision bar: uniform over ``[start_min, start_max]`` less the hole
    ``[hole_lo, hole_hi)``, or ``start_min``.

    The draw mixes the key's bits with an integer hash instead of a threefry call: the auto-reset runs
    this every step for every environment, where a threefry draw would cost more than the step itself
    on CPU. The key must be fresh (split for each step, as gymnax requires). Bias < range / 2**32.
    The hole is skipped by drawing over the allowed count and shifting draws at or past ``hole_lo`` by the
    hole's width, so an empty hole draws exactly the bars it drew before holes existed.
    """
    width = params.hole_hi - params.hole_lo
    span = (params.start_max - params.start_min + 1 - width).astype(jnp.uint32)
    offset = uniform_index(hash_key(key), span).astype(params.start_min.dtype)
    start = params.start_min + jnp.where(params.random_start, offset, 0)
    return jnp.where(start >= params.hole_lo, start + width, start)


def fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a bijection on uint32 with full avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hash_key(key: jax.Array) -> jax.Array:
    """32 well-mixed bits from a PRNG key (typed or raw, any implementation)."""
    words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    words = words.astype(jnp.uint32)
    mixed = jnp.uint32(0x9E3779B9)
    for i in range(words.shape[-1]):
        mixed = fmix32(mixed ^ words[..., i])
    return mixed


def uniform_index(bits: jax.Array, n: jax.Array) -> jax.Array:
    """``floor(bits * n / 2**32)`` in uint32 arithmetic (Lemire's multiply-shift, no division).

    Uniform over ``[0, n)`` up to a bias below ``n / 2**32`` when ``bits`` is uniform over uint32.
    """
    n = jnp.asarray(n, jnp.uint32)
    mask = jnp.uint32(0xFFFF)
    b_hi, b_lo = bits >> 16, bits & mask
    n_hi, n_lo = n >> 16, n & mask
    lo_lo = b_lo * n_lo
    hi_lo = b_hi * n_lo
    cross = (lo_lo >> 16) + (hi_lo & mask) + b_lo * n_hi
    return b_hi * n_hi + (hi_lo >> 16) + (cross >> 16)


def transition(state: EnvState, action: jax.Array, params: EnvParams
               ) -> tuple[EnvState, jax.Array, jax.Array, dict[str, jax.Array]]:
    """One step of the contract without observation or auto-reset: ``(state, reward, terminated, info)``.

    ``info`` holds the telemetry of §6 (names in :data:`TELEMETRY`). This is the single implementation
    of the execution semantics; :meth:`TradingEnv.step_env` and :func:`tradelab_jax.env.replay` both
    call it.
    """
    p = params
    price, equity = state.price, state.equity
    nan = jnp.full_like(price, jnp.nan)

    # §2 sizing at c[t]
    sizing = kernel.compute_risk_units(
        equity=equity, price=price, risk_pct=p.risk_pct, stop_loss_bps=p.stop_loss_bps,
        max_leverage=p.max_leverage,
    )
    order = kernel.compute_order(
        sizing, fraction=p.position_buckets[action], position=state.position, price=price,
        rebalance_band=p.rebalance_band, min_order_notional=p.min_order_notional,
    )

    # §3 execution in bar t+1
    bar = kernel.Bar.at(p.ohlc, state.t + 1)
    fill = kernel.execute_order(
        order, bar, is_market=p.order_type == 1, maker_fee=p.maker_fee, taker_fee=p.taker_fee,
        slippage_bps=p.slippage_bps,
    )
    account = kernel.apply_fill(kernel.Account.of(state), order, fill, stop_loss_bps=p.stop_loss_bps)

    # §4 stop in the same bar, then the optional trail
    stop_exit = kernel.check_stop(
        account, bar, stop_loss_bps=p.stop_loss_bps, taker_fee=p.taker_fee, slippage_bps=p.slippage_bps
    )
    cash, position, entry, stop = account
    hit = stop_exit.filled
    cash = jnp.where(hit, cash + position * stop_exit.price - stop_exit.fee, cash)
    position = jnp.where(hit, 0.0, position)
    flat = position == 0
    entry = jnp.where(flat, 0.0, entry)
    stop = jnp.where(flat, 0.0, stop)
    stop = kernel.trail_stop(
        bar, position=position, stop_price=stop, stop_loss_bps=p.stop_loss_bps, trailing_stop=p.trailing_stop
    )

    # §5 marking, reward, kill switch
    new_equity = cash + position * bar.close
    reward = kernel.compute_reward(
        equity_before=equity, equity_after=new_equity, initial_cash=p.initial_cash, reward_kind=p.reward
    )
    peak = jnp.maximum(state.peak_equity, new_equity)
    terminated = kernel.is_killed(equity=new_equity, peak_equity=peak, max_drawdown=p.max_drawdown)
    held = jnp.where(
        position * state.position > 0, state.bars_in_position + 1, jnp.where(flat, 0, 1)
    ).astype(state.bars_in_position.dtype)

    new_state = EnvState(
        t=state.t + 1,
        time=state.time + 1,
        cash=cash,
        position=position,
        entry_price=entry,
        stop_price=stop,
        peak_equity=peak,
        equity=new_equity,
        price=bar.close,
        bars_in_position=held,
    )
    info = {
        "t": state.t,
        "target_position": order.target,
        "risk_units": sizing.risk_units,
        "stop_distance": sizing.stop_distance,
        "order_size": jnp.where(order.send, order.delta, 0.0),
        "filled": fill.filled,
        "fill_price": jnp.where(fill.filled, fill.price, nan),
        "limit_fee": fill.fee,
        "stop_hit": hit,
        "stop_price": jnp.where(flat | (p.stop_loss_bps <= 0), nan, stop),
        "exit_price": jnp.where(hit, stop_exit.price, nan),
        "stop_fee": stop_exit.fee,
        "position": position,
        "cash": cash,
        "equity": new_equity,
        "reward": reward,
    }
    return new_state, reward, terminated, info


class TradingEnv(environment.Environment[EnvState, EnvParams]):
    """A single-instrument trading environment over a bar series (gymnax 1.0 API).

    Observation (float32, ``[window * F + 4]``): the feature rows ``t-window+1 .. t`` (oldest first,
    flattened) followed by the account: position in risk units at ``c[t]``, unrealized PnL as a fraction
    of equity, bars in the current position / ``episode_length``, and drawdown from peak equity.

    The env object is static (hashed by its shapes only), so every environment with the same shapes
    shares one compiled ``step``; all data and knobs travel in :class:`EnvParams`.
    """

    def __init__(self, num_actions: int = 5, window: int = 1, num_features: int = 0,
                 default_params: EnvParams | None = None):
        super().__init__()
        window = ENV_KNOBS["window"].check(window)
        self._num_actions = int(num_actions)
        self.window = int(window)
        self.num_features = int(num_features)
        self._default_params = default_params

    # The jit cache keys on the env object: equal shapes must mean the same compiled program.
    def _key(self) -> tuple:
        return (type(self), self._num_actions, self.window, self.num_features)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TradingEnv) and self._key() == other._key()

    def __repr__(self) -> str:
        return f"TradingEnv(num_actions={self._num_actions}, window={self.window}, " \
               f"num_features={self.num_features})"

    @property
    def default_params(self) -> EnvParams:
        if self._default_params is None:
            raise UserError("this TradingEnv has no data; build it with tradelab_jax.make(dataset_id)")
        return self._default_params

    def _resolve(self, params: EnvParams | None) -> EnvParams:
        return self.default_params if params is None else params

    # Public API. Unlike gymnax's base class the step needs no randomness, so the whole key goes to the
    # auto-reset, and the observation is computed once from the selected state (cheaper under vmap).
    def step(self, key, state, action, params=None):
        """``obs, state, reward, terminated, truncated, info`` with auto-reset on either end."""
        return _step(self, key, state, action, self._resolve(params))

    def reset(self, key, params=None):
        """``obs, state`` at a start bar drawn from the split's valid range."""
        return _reset(self, key, self._resolve(params))

    def step_env(self, key, state, action, params):
        del key
        new_state, reward, terminated, info = transition(state, action, params)
        return self.get_obs(new_state, params), new_state, reward, terminated, info

    def reset_env(self, key, params):
        state = initial_state(params, sample_start(key, params))
        return self.get_obs(state, params), state

    def get_obs(self, state, params=None, key=None):
        params = self._resolve(params)
        window = jax.lax.dynamic_slice(
            params.features, (state.t - (self.window - 1), 0), (self.window, self.num_features)
        ).reshape(-1)
        return jnp.concatenate([window, account_features(state, params)])

    def is_terminated(self, state, params):
        return kernel.is_killed(
            equity=state.equity, peak_equity=state.peak_equity, max_drawdown=params.max_drawdown
        )

    def is_truncated(self, state, params):
        return (state.time >= params.episode_length) | (state.t >= params.last_bar)

    @property
    def name(self) -> str:
        return "TradingEnv"

    @property
    def num_actions(self) -> int:
        return self._num_actions

    @property
    def obs_size(self) -> int:
        return self.window * self.num_features + len(ACCOUNT_FEATURES)

    def action_space(self, params=None):
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_size,), jnp.float32)


def account_features(state: EnvState, params: EnvParams) -> jax.Array:
    """The four account columns of the observation (float32, always finite; see TradingEnv)."""
    equity = state.equity
    live = equity > 0
    risk_units = kernel.compute_risk_units(
        equity=equity, price=state.price, risk_pct=params.risk_pct, stop_loss_bps=params.stop_loss_bps,
        max_leverage=params.max_leverage,
    ).risk_units
    position_ru = jnp.where(risk_units > 0, state.position / jnp.where(risk_units > 0, risk_units, 1.0), 0.0)
    safe_equity = jnp.where(live, equity, 1.0)
    unrealized = jnp.where(live, state.position * (state.price - state.entry_price) / safe_equity, 0.0)
    # Capped at 1: in training a position cannot outlast an episode, but an evaluation that trades a whole
    # split as one episode can hold longer, and the policy never saw values above 1.
    held = jnp.minimum(state.bars_in_position / params.episode_length, 1.0)
    drawdown = jnp.clip(1 - equity / state.peak_equity, 0.0, 1.0)
    return jnp.stack([position_ru, unrealized, held, drawdown]).astype(jnp.float32)


def _transition_once(state: EnvState, action: jax.Array, params: EnvParams):
    """:func:`transition`, with its outputs computed once on CPU before the auto-reset selects them.

    XLA:CPU fuses each of the ten ``where(done, reset, stepped)`` selects with everything it depends on,
    and ``done`` depends on the whole transition, so the step was recomputed once per state field. A
    ``lax.cond`` on a predicate that is always true but unknown to the compiler (``last_bar >= 0``) is a
    fusion boundary: its outputs are materialised once. Other platforms (with multi-output fusion) run
    the plain transition.
    """

    def plain(state, action):
        return transition(state, action, params)

    def once(state, action):
        def never(state, action):
            shapes = jax.eval_shape(plain, state, action)
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        return jax.lax.cond(params.last_bar >= 0, plain, never, state, action)

    return jax.lax.platform_dependent(state, action, cpu=once, default=plain)


@partial(jax.jit, static_argnums=0)
def _step(env: TradingEnv, key, state, action, params):
    state_st, reward, terminated, info = _transition_once(state, action, params)
    truncated = env.is_truncated(state_st, params)
    done = terminated | truncated
    state_re = initial_state(params, sample_start(key, params))
    state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
    info = {
        **info,
        "terminated": terminated,
        "truncated": truncated,
        "final_observation": env.get_obs(state_st, params),
    }
    return env.get_obs(state, params), state, reward, terminated, truncated, info


@partial(jax.jit, static_argnums=0)
def _reset(env: TradingEnv, key, params):
    return env.reset_env(key, params)


def from_arrays(bars: Mapping[str, Any], features: Any = None, *, warmup: int = 0,
                split: tuple[int, int] | None = None, window: int = 1, **knobs: Any
                ) -> tuple[TradingEnv, EnvParams]:
    """``(env, params)`` for bars already in memory (``open``/``high``/``low``/``close`` arrays).

    ``features`` is a ``[T, F]`` matrix (None: no feature columns) whose first ``warmup`` rows are not
    yet defined; ``split`` is the ``[start, stop)`` range of bar indices episodes may use (default all).
    """
    ohlc = stack_ohlc(bars)
    n = ohlc.shape[0]
    feats = np.zeros((n, 0), np.float32) if features is None else np.asarray(features, np.float32)
    if feats.ndim != 2 or feats.shape[0] != n:
        raise UserError(f"features must be a [T, F] matrix with T={n} rows like the bars, got {feats.shape}")
    start, stop = (0, n) if split is None else split
    if not 0 <= start < stop <= n:
        raise UserError(f"invalid split [{start}, {stop}) for {n} bars")
    knobs = resolve_knobs(knobs)
    start_min, start_max, last_bar = valid_starts(
        split_start=start, split_stop=stop, warmup=warmup, window=window,
        episode_length=knobs["episode_length"],
    )
    window_rows = feats[start_min - window + 1 : last_bar + 1]
    if not np.all(np.isfinite(window_rows)):
        raise UserError("features contain NaN or inf after their warm-up; check the feature set's warmup")
    params = build_params(ohlc, feats, start_min=start_min, start_max=start_max, last_bar=last_bar, **knobs)
    env = TradingEnv(len(knobs["position_buckets"]), window, feats.shape[1], default_params=params)
    return env, params


def stack_ohlc(bars: Mapping[str, Any]) -> np.ndarray:
    """``[T, 4]`` float64 open/high/low/close from a bar mapping, checked for shape and positivity."""
    missing = [k for k in ("open", "high", "low", "close") if k not in bars]
    if missing:
        raise UserError(f"bars lack {', '.join(missing)}; expected open, high, low and close arrays")
    ohlc = np.stack([np.asarray(bars[k], np.float64) for k in ("open", "high", "low", "close")], axis=1)
    if ohlc.ndim != 2 or ohlc.shape[0] < 2:
        raise UserError(f"bars must be 1-D arrays of at least 2 bars, got shape {ohlc.shape[:-1]}")
    if not (np.all(np.isfinite(ohlc)) and np.all(ohlc > 0)):
        raise UserError("bar prices must be finite and positive")
    return ohlc


def params_in_axes(params: EnvParams, batched: tuple[str, ...] | None = None) -> EnvParams:
    """vmap ``in_axes`` for params: market arrays None (broadcast); knobs in ``batched`` (default all) 0."""
    names = [f.name for f in dataclasses.fields(params)]
    knobs = [n for n in names if n not in MARKET_FIELDS]
    batched = tuple(knobs) if batched is None else batched
    return params.replace(**{n: (0 if n in batched else None) for n in names})
