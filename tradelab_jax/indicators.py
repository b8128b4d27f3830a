"""Causal technical indicators over 1-D time arrays, in JAX.

Every function takes arrays first, then window sizes (Python ints: they set shapes and loop counts, so they
are static under ``jax.jit``), works in the input's floating dtype (float32 by default, float64 under
``jax_enable_x64``), and returns NaN on warm-up bars. The value at bar ``t`` uses bars ``<= t`` only.
Batch over series with ``jax.vmap``.

Precision. Prices near 1e5 carry ~0.008 of float32 rounding, while the quantities a policy needs (a close
minus its moving average, a VWAP distance) are a few dollars, so nothing here forms a large running sum
and subtracts: windowed statistics sum deviations from the current bar (``x[t-k] - x[t]`` is exact in
floating point for prices within a factor of two), and the EMA/Wilder recurrences run on deviations
(``ema[t] - x[t]``) or on small positive terms, as linear recurrences solved by a chunked ``lax.scan``
(see ``_linear_recurrence``). See docs/indicators.md for definitions, warm-up lengths and the TA-Lib match.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "MACD",
    "Bollinger",
    "atr",
    "bollinger",
    "close_location_value",
    "ema",
    "log_return",
    "macd",
    "realized_vol",
    "rolling_std",
    "rsi",
    "session_vwap",
    "sma",
    "taker_imbalance",
    "true_range",
    "volume_zscore",
    "vwap",
    "zscore",
]


class Bollinger(NamedTuple):
    """Bollinger bands; ``percent_b`` is 0.5 and ``bandwidth`` 0 on a flat window (std 0)."""

    upper: jax.Array
    middle: jax.Array
    lower: jax.Array
    percent_b: jax.Array
    bandwidth: jax.Array


class MACD(NamedTuple):
    """MACD line, signal line and histogram (line - signal), laid out like ``talib.MACD``."""

    line: jax.Array
    signal: jax.Array
    hist: jax.Array


# ---------------------------------------------------------------------------------------------------------
# Building blocks


def _float(x) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _check_1d(x: jax.Array, name: str = "input") -> None:
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D time array, got shape {x.shape}; use jax.vmap for batches")


def _check_window(window: int, name: str = "window", minimum: int = 1) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < minimum:
        raise ValueError(f"{name} must be a Python int >= {minimum} (static under jit), got {window!r}")
    return window


def _mask_warmup(x: jax.Array, warmup: int) -> jax.Array:
    """NaN before bar ``warmup``."""
    return jnp.where(jnp.arange(x.shape[0]) >= warmup, x, jnp.nan).astype(x.dtype)


def _window_fold(fn, init, arrays: tuple[jax.Array, ...], window: int):
    """Fold ``fn(acc, *lagged)`` over lags k = 0..window-1, where ``lagged[i][t] = arrays[i][t-k]``.

    Bars before the series start read the first bar (edge padding); callers mask those outputs as warm-up.
    O(T * window) work, vectorised over T; the lag loop is a ``lax.fori_loop``, not unrolled Python.
    """
    n = arrays[0].shape[0]
    padded = tuple(jnp.concatenate([jnp.broadcast_to(a[:1], (window - 1,)), a]) for a in arrays)

    def body(k, acc):
        lagged = tuple(lax.dynamic_slice_in_dim(p, window - 1 - k, n) for p in padded)
        return fn(acc, *lagged)

    return lax.fori_loop(0, window, body, init)


def _window_sum(x: jax.Array, window: int) -> jax.Array:
    """Sum of the last ``window`` values (for small or same-signed terms; no warm-up mask)."""
    return _window_fold(lambda acc, xl: acc + xl, jnp.zeros_like(x), (x,), window)


def _window_moments(x: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """``(mean - x, population variance)`` of the last ``window`` values, two-pass and centred on x[t]."""
    dev_sum = _window_fold(lambda acc, xl: acc + (xl - x), jnp.zeros_like(x), (x,), window)
    mean_dev = dev_sum / window  # mean[t] - x[t]
    sq = _window_fold(lambda acc, xl: acc + jnp.square((xl - x) - mean_dev), jnp.zeros_like(x), (x,), window)
    return mean_dev, sq / window


def _linear_recurrence(a: jax.Array, b: jax.Array) -> jax.Array:
    """``y[t] = a[t] * y[t-1] + b[t]`` with ``y[-1] = 0``, as a two-level chunked scan.

    The series is cut into ~sqrt(T) chunks: one ``lax.scan`` runs every chunk at once from a zero start
    (also tracking each chunk's running product of ``a``), a second scan carries the chunk ends across,
    and a broadcast adds each chunk's carry-in. That is ~2 sqrt(T) sequential steps of width sqrt(T)
    (fast on an accelerator, unlike a 130k-step scan) and compiles far faster than
    ``lax.associative_scan``, with the rounding of the plain sequential recurrence.
    """
    n = b.shape[0]
    a = jnp.broadcast_to(a, b.shape).astype(b.dtype)
    length = max(1, math.isqrt(max(n - 1, 0)) + 1)
    chunks = -(-n // length)
    pad = chunks * length - n
    # [length, chunks]: scan along time within a chunk, vectorised across chunks.
    a_c = jnp.concatenate([a, jnp.ones((pad,), b.dtype)]).reshape(chunks, length).T
    b_c = jnp.concatenate([b, jnp.zeros((pad,), b.dtype)]).reshape(chunks, length).T

    def within(carry, ab):
        prod, y = carry
        a_t, b_t = ab
        carry = (prod * a_t, a_t * y + b_t)
        return carry, carry

    init = (jnp.ones((chunks,), b.dtype), jnp.zeros((chunks,), b.dtype))
    _, (prod, y) = lax.scan(within, init, (a_c, b_c))

    def across(carry_in, ends):
        prod_end, y_end = ends
        return prod_end * carry_in + y_end, carry_in

    _, carry_in = lax.scan(across, jnp.zeros((), b.dtype), (prod[-1], y[-1]))
    return (y + prod * carry_in[None, :]).T.reshape(-1)[:n]


def _seeded_recurrence(decay: float, b: jax.Array, seed_idx: int, seed: jax.Array) -> jax.Array:
    """``y[seed_idx] = seed``, then ``y[t] = decay * y[t-1] + b[t]``; NaN before ``seed_idx``."""
    n = b.shape[0]
    t = jnp.arange(n)
    a = jnp.where(t > seed_idx, jnp.asarray(decay, b.dtype), jnp.zeros((), b.dtype))
    b = jnp.where(t > seed_idx, b, jnp.where(t == seed_idx, seed, jnp.zeros((), b.dtype)))
    return _mask_warmup(_linear_recurrence(a, b), seed_idx)


def _zero_before(x: jax.Array, start: int) -> jax.Array:
    """0 before bar ``start`` (warm-up NaN that only feeds masked outputs); later NaN stays NaN."""
    return jnp.where(jnp.arange(x.shape[0]) >= start, x, jnp.zeros((), x.dtype))


def _diff(x: jax.Array) -> jax.Array:
    """``x[t] - x[t-1]`` with 0 at t = 0 (exact for floating prices within a factor of two)."""
    return jnp.concatenate([jnp.zeros((1,), x.dtype), x[1:] - x[:-1]])


def _ema_deviation(x: jax.Array, window: int, seed_idx: int) -> jax.Array:
    """``ema[t] - x[t]`` for an EMA with k = 2/(window+1) seeded at ``seed_idx`` with the SMA of the
    ``window`` values ending there (TA-Lib's seeding); NaN before ``seed_idx``.

    From ``ema[t] = ema[t-1] + k (x[t] - ema[t-1])``: ``d[t] = (1-k) d[t-1] - (1-k) (x[t] - x[t-1])``,
    a recurrence on small numbers, so float32 keeps the digits that matter.
    """
    n = x.shape[0]
    if n <= seed_idx:
        return jnp.full_like(x, jnp.nan)
    decay = 1.0 - 2.0 / (window + 1)
    seg = lax.dynamic_slice_in_dim(x, seed_idx - window + 1, window)
    seed = jnp.sum(seg - x[seed_idx]) / window
    return _seeded_recurrence(decay, -decay * _diff(x), seed_idx, seed)


def _wilder(x: jax.Array, window: int, first: int) -> jax.Array:
    """Wilder's average of ``x``: the mean of ``x[first : first+window]`` at bar ``first+window-1``, then
    ``avg[t] = avg[t-1] (window-1)/window + x[t]/window``; NaN before."""
    seed_idx = first + window - 1
    if x.shape[0] <= seed_idx:
        return jnp.full_like(x, jnp.nan)
    seed = jnp.sum(lax.dynamic_slice_in_dim(x, first, window)) / window
    return _seeded_recurrence((window - 1) / window, x / window, seed_idx, seed)


# ---------------------------------------------------------------------------------------------------------
# Moving averages and dispersion


@partial(jax.jit, static_argnames=("window",))
def sma(x: jax.Array, window: int) -> jax.Array:
    """Simple moving average over the last ``window`` bars; warm-up ``window - 1`` (= ``talib.SMA``)."""
    x = _float(x)
    _check_1d(x)
    _check_window(window)
    mean_dev = _window_fold(lambda acc, xl: acc + (xl - x), jnp.zeros_like(x), (x,), window) / window
    return _mask_warmup(x + mean_dev, window - 1)


@partial(jax.jit, static_argnames=("window",))
def ema(x: jax.Array, window: int) -> jax.Array:
    """Exponential moving average, k = 2/(window+1), seeded with the SMA of the first ``window`` bars;
    warm-up ``window - 1`` (= ``talib.EMA``)."""
    x = _float(x)
    _check_1d(x)
    _check_window(window)
    return x + _ema_deviation(x, window, window - 1)


@partial(jax.jit, static_argnames=("window",))
def rolling_std(x: jax.Array, window: int) -> jax.Array:
    """Population standard deviation (divide by ``window``) of the last ``window`` bars, computed two-pass;
    warm-up ``window - 1``."""
    x = _float(x)
    _check_1d(x)
    _check_window(window)
    _, var = _window_moments(x, window)
    return _mask_warmup(jnp.sqrt(var), window - 1)


def _zscore(x: jax.Array, window: int) -> jax.Array:
    mean_dev, var = _window_moments(x, window)
    std = jnp.sqrt(var)
    # A flat window (std exactly 0: every deviation is exactly 0 here) has no scale; call it 0, "at the mean".
    z = jnp.where(std > 0, -mean_dev / jnp.where(std > 0, std, 1), jnp.zeros((), x.dtype))
    # NaN inputs in the window must stay NaN, not look flat.
    return _mask_warmup(jnp.where(jnp.isnan(var), jnp.nan, z).astype(x.dtype), window - 1)


@partial(jax.jit, static_argnames=("window",))
def zscore(x: jax.Array, window: int) -> jax.Array:
    """``(x - sma) / rolling_std`` over the last ``window`` bars, 0 where the window is flat (std 0);
    warm-up ``window - 1``. Bounded by ``sqrt(window - 1)`` in absolute value."""
    x = _float(x)
    _check_1d(x)
    _check_window(window)
    return _zscore(x, window)


@partial(jax.jit, static_argnames=("window", "k"))
def bollinger(close: jax.Array, window: int = 20, k: float = 2.0) -> Bollinger:
    """Bollinger bands: SMA ± k population std; ``percent_b = (close - lower)/(upper - lower)`` (0.5 on a
    flat window), ``bandwidth = (upper - lower)/middle``; warm-up ``window - 1``."""
    x = _float(close)
    _check_1d(x)
    _check_window(window)
    mean_dev, var = _window_moments(x, window)
    std = jnp.sqrt(var)
    middle = x + mean_dev
    z = jnp.where(std > 0, -mean_dev / jnp.where(std > 0, std, 1), jnp.zeros((), x.dtype))
    out = Bollinger(
        upper=middle + k * std,
        middle=middle,
        lower=middle - k * std,
        percent_b=0.5 + z / (2.0 * k),
        bandwidth=2.0 * k * std / middle,
    )
    return Bollinger(*(_mask_warmup(v.astype(x.dtype), window - 1) for v in out))


# ---------------------------------------------------------------------------------------------------------
# Oscillators (TA-Lib's Wilder smoothing and MACD layout)


def _rsi_averages(close: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """Wilder-smoothed average gain and loss; defined from bar ``window`` (the first diff is at bar 1)."""
    d = _diff(close)
    gain = jnp.maximum(d, 0)
    loss = jnp.maximum(-d, 0)
    return _wilder(gain, window, 1), _wilder(loss, window, 1)


@partial(jax.jit, static_argnames=("window",))
def rsi(close: jax.Array, window: int = 14) -> jax.Array:
    """Wilder's RSI in [0, 100]; warm-up ``window`` (= ``talib.RSI``, which also returns 0 when both
    averages are 0)."""
    x = _float(close)
    _check_1d(x)
    _check_window(window, minimum=2)
    gain, loss = _rsi_averages(x, window)
    total = gain + loss
    # total is NaN on warm-up bars, which stays NaN; exactly 0 only when nothing moved.
    return jnp.where(total == 0, 0, 100.0 * gain / jnp.where(total == 0, 1, total)).astype(x.dtype)


def true_range(high: jax.Array, low: jax.Array, close: jax.Array) -> jax.Array:
    """``max(high - low, |high - prev close|, |low - prev close|)``; NaN at bar 0 (= ``talib.TRANGE``)."""
    high, low, close = _float(high), _float(low), _float(close)
    prev = jnp.concatenate([close[:1], close[:-1]])
    tr = jnp.maximum(high - low, jnp.maximum(jnp.abs(high - prev), jnp.abs(low - prev)))
    return _mask_warmup(tr, 1)


@partial(jax.jit, static_argnames=("window",))
def atr(high: jax.Array, low: jax.Array, close: jax.Array, window: int = 14) -> jax.Array:
    """Wilder's average true range, seeded with the mean of the true ranges of bars 1..window; warm-up
    ``window`` (= ``talib.ATR``)."""
    high, low, close = _float(high), _float(low), _float(close)
    _check_1d(close, "close")
    _check_window(window)
    tr = true_range(high, low, close)
    if window == 1:
        return tr
    return _wilder(_zero_before(tr, 1), window, 1)


@partial(jax.jit, static_argnames=("fast", "slow", "signal"))
def macd(close: jax.Array, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """MACD as ``talib.MACD`` computes it: both EMAs start at bar ``slow - 1`` (the fast one seeded with the
    SMA of its last ``fast`` bars there, not at bar ``fast - 1``), the signal is an EMA of the line seeded
    with the SMA of its first ``signal`` values, and all three outputs share warm-up
    ``slow + signal - 2``. Periods are swapped if ``slow < fast``, as TA-Lib does."""
    x = _float(close)
    _check_1d(x)
    _check_window(fast, "fast", 2)
    _check_window(slow, "slow", 2)
    _check_window(signal, "signal", 1)
    if slow < fast:
        fast, slow = slow, fast
    start = slow - 1
    line = _ema_deviation(x, fast, start) - _ema_deviation(x, slow, start)
    warmup = start + signal - 1
    if x.shape[0] <= warmup:
        nan = jnp.full_like(x, jnp.nan)
        return MACD(nan, nan, nan)
    sig = line + _ema_deviation(_zero_before(line, start), signal, warmup)
    line = _mask_warmup(line, warmup)
    return MACD(line, sig, line - sig)


# ---------------------------------------------------------------------------------------------------------
# VWAP


def _typical_dev(high, low, close, ref):
    """``(h + l + c)/3 - ref`` formed from exact differences, so float32 keeps the cents."""
    return ((high - ref) + (low - ref) + (close - ref)) / 3.0


def _vwap_deviation(high, low, close, volume, window: int) -> jax.Array:
    """``vwap[t] - close[t]`` for the rolling VWAP (0 where the window traded no volume); no mask."""

    def fold(acc, h, lo, c, v):
        num, den = acc
        return num + _typical_dev(h, lo, c, close) * v, den + v

    zeros = jnp.zeros_like(close)
    num, den = _window_fold(fold, (zeros, zeros), (high, low, close, volume), window)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), jnp.zeros((), close.dtype))


@partial(jax.jit, static_argnames=("window",))
def vwap(high: jax.Array, low: jax.Array, close: jax.Array, volume: jax.Array, window: int) -> jax.Array:
    """Rolling VWAP of the typical price ``(h + l + c)/3`` over the last ``window`` bars (the close where
    the window traded no volume); warm-up ``window - 1``."""
    high, low, close, volume = (_float(a) for a in (high, low, close, volume))
    _check_1d(close, "close")
    _check_window(window)
    return _mask_warmup(close + _vwap_deviation(high, low, close, volume, window), window - 1)


def _session_vwap_deviation(high, low, close, volume, session) -> jax.Array:
    n = close.shape[0]
    session = jnp.asarray(session)
    new = jnp.concatenate([jnp.ones((1,), bool), session[1:] != session[:-1]])
    # Anchor each session at its first close (known at every later bar of it), so the running sums are
    # of small deviations and reset exactly at the boundary.
    start = lax.cummax(jnp.where(new, jnp.arange(n), 0))
    anchor = close[start]
    keep = jnp.where(new, 0, 1).astype(close.dtype)
    num = _linear_recurrence(keep, _typical_dev(high, low, close, anchor) * volume)
    den = _linear_recurrence(keep, volume)
    dev = jnp.where(den > 0, num / jnp.where(den > 0, den, 1), _typical_dev(high, low, close, anchor))
    return (anchor - close) + dev


@jax.jit
def session_vwap(
    high: jax.Array, low: jax.Array, close: jax.Array, volume: jax.Array, session: jax.Array
) -> jax.Array:
    """VWAP of the typical price since the start of the current session; no warm-up.

    ``session`` is an integer id per bar (e.g. the UTC day, ``ts_ms // 86_400_000``, computed on the host
    because int64 milliseconds do not fit JAX's default int32); a new session starts where it changes.
    The first session of a series that starts mid-session is anchored at the series' first bar.
    """
    high, low, close, volume = (_float(a) for a in (high, low, close, volume))
    _check_1d(close, "close")
    return close + _session_vwap_deviation(high, low, close, volume, session)


# ---------------------------------------------------------------------------------------------------------
# Returns, volatility and order flow


@jax.jit
def log_return(close: jax.Array) -> jax.Array:
    """``log(close[t] / close[t-1])``, formed as ``log1p(diff / prev)`` for float32 accuracy; NaN at bar 0."""
    x = _float(close)
    _check_1d(x)
    prev = jnp.concatenate([x[:1], x[:-1]])
    return _mask_warmup(jnp.log1p(_diff(x) / prev), 1)


@partial(jax.jit, static_argnames=("window",))
def realized_vol(close: jax.Array, window: int) -> jax.Array:
    """Realised volatility ``sqrt(sum of the last window squared log returns)`` (per ``window`` bars, not
    annualised); warm-up ``window``."""
    x = _float(close)
    _check_1d(x)
    _check_window(window)
    r = _zero_before(log_return(x), 1)
    return _mask_warmup(jnp.sqrt(_window_sum(jnp.square(r), window)), window)


@partial(jax.jit, static_argnames=("window",))
def volume_zscore(volume: jax.Array, window: int) -> jax.Array:
    """Z-score of volume over the last ``window`` bars (see :func:`zscore`); warm-up ``window - 1``."""
    v = _float(volume)
    _check_1d(v)
    _check_window(window)
    return _zscore(v, window)


@jax.jit
def close_location_value(high: jax.Array, low: jax.Array, close: jax.Array) -> jax.Array:
    """``((close - low) - (high - close)) / (high - low)`` in [-1, 1]; 0 on a bar with no range."""
    high, low, close = _float(high), _float(low), _float(close)
    rng = high - low
    return jnp.where(rng > 0, ((close - low) - (high - close)) / jnp.where(rng > 0, rng, 1), 0).astype(
        close.dtype
    )


@partial(jax.jit, static_argnames=("window",))
def taker_imbalance(buy_volume: jax.Array, sell_volume: jax.Array, window: int = 1) -> jax.Array:
    """``(buy - sell) / (buy + sell)`` of taker volume summed over the last ``window`` bars, in [-1, 1];
    0 where nothing traded; warm-up ``window - 1``."""
    buy, sell = _float(buy_volume), _float(sell_volume)
    _check_1d(buy, "buy_volume")
    _check_window(window)
    b, s = _window_sum(buy, window), _window_sum(sell, window)
    tot = b + s
    out = jnp.where(tot > 0, (b - s) / jnp.where(tot > 0, tot, 1), 0).astype(buy.dtype)
    return _mask_warmup(out, window - 1)
