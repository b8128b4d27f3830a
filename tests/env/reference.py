"""A slow, obviously-correct model of docs/execution-semantics.md: plain Python floats, one bar at a time.

Written from the contract text and the project's documented choices (docs/execution-semantics.md in this
repo), not from the JAX code. Besides the §6 telemetry it records ``margin``: how close each step came to
flipping one of its discrete decisions (relative distance of the deciding comparison), so float32 runs
can be compared honestly.
"""

from __future__ import annotations

import math

NAN = float("nan")

DEFAULTS = dict(
    maker_fee=0.0002, taker_fee=0.0005, risk_pct=0.01, stop_loss_bps=50.0, max_leverage=3.0,
    slippage_bps=0.0, initial_cash=10000.0, max_drawdown=0.5, order_type="limit", rebalance_band=0.25,
    min_order_notional=0.0, trailing_stop=False, reward="log_return",
    position_buckets=(-1.0, -0.5, 0.0, 0.5, 1.0),
)


def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def _rel(a: float, b: float) -> float:
    """Relative gap between the two sides of a comparison."""
    scale = max(abs(a), abs(b), 1e-300)
    return abs(a - b) / scale


def reference_replay(bars, actions, start=0, **knobs):
    """Telemetry rows (dicts) for ``actions`` from decision bar ``start``; stops after a termination."""
    k = {**DEFAULTS, **knobs}
    o, h, lo, c = (list(map(float, bars[name])) for name in ("open", "high", "low", "close"))
    buckets = [float(x) for x in k["position_buckets"]]
    bps = float(k["stop_loss_bps"])
    slip = float(k["slippage_bps"]) / 1e4
    market = k["order_type"] in ("market", 1)
    pnl_reward = k["reward"] in ("pnl", 1)

    cash = float(k["initial_cash"])
    q = 0.0
    pbar = None  # flat has no average entry
    s = None  # no stop while flat
    peak = cash
    rows = []
    for i, a in enumerate(actions):
        t = start + i
        margin = math.inf
        # §2 RiskGuard sizing at the close of bar t
        e_t = cash + q * c[t]
        f = buckets[int(a)]
        stop_distance = c[t] * bps / 1e4
        cap = k["max_leverage"] * e_t / c[t]
        if e_t <= 0:
            risk_units, cap = 0.0, 0.0
        elif bps <= 0:  # documented choice: stop disabled, sizing by leverage cap only
            risk_units = cap
        else:
            risk_units = min(e_t * k["risk_pct"] / stop_distance, cap)
        target = f * risk_units
        target = max(-cap, min(cap, target))  # documented: buckets beyond ±1 never exceed the cap
        delta = target - q
        dust = 1e-6 * risk_units  # documented: smaller changes are rounding noise, not orders
        if delta != 0:
            margin = min(margin, _rel(abs(delta), k["rebalance_band"] * risk_units), _rel(abs(delta), dust))
            if k["min_order_notional"] > 0:
                margin = min(margin, _rel(abs(delta) * c[t], k["min_order_notional"]))
        send = (
            delta != 0
            and abs(delta) > dust
            and abs(delta) >= k["rebalance_band"] * risk_units
            and abs(delta) * c[t] >= k["min_order_notional"]
        )

        # §3 execution in bar t+1
        filled, fill_price, fee = False, NAN, 0.0
        if send:
            if market:
                filled = True
                fill_price = o[t + 1] * (1 + _sign(delta) * slip)
                fee = k["taker_fee"] * abs(delta) * fill_price
            else:
                limit = c[t]
                if delta > 0:
                    filled = lo[t + 1] <= limit
                    margin = min(margin, _rel(lo[t + 1], limit))
                else:
                    filled = h[t + 1] >= limit
                    margin = min(margin, _rel(h[t + 1], limit))
                if filled:
                    fill_price = limit
                    fee = k["maker_fee"] * abs(delta) * limit
        if filled:
            cash += -delta * fill_price - fee
            new_q = q + delta
            if new_q == 0:
                pbar = None
            elif q == 0 or _sign(new_q) != _sign(q):  # opening or crossing zero
                pbar = fill_price
            elif _sign(delta) == _sign(q):  # adding: size-weighted average
                pbar = (abs(q) * pbar + abs(delta) * fill_price) / (abs(q) + abs(delta))
            # reducing keeps pbar
            q = new_q
            if q != 0 and bps > 0:
                s = pbar * (1 - bps / 1e4) if q > 0 else pbar * (1 + bps / 1e4)
            elif q == 0:
                s = None

        # §4 stop in bar t+1, after execution
        stop_hit, exit_price, stop_fee = False, NAN, 0.0
        if q != 0 and s is not None:
            if q > 0:
                stop_hit = lo[t + 1] <= s
                margin = min(margin, _rel(lo[t + 1], s))
                if stop_hit:
                    exit_price = min(s, o[t + 1]) * (1 - slip)
            else:
                stop_hit = h[t + 1] >= s
                margin = min(margin, _rel(h[t + 1], s))
                if stop_hit:
                    exit_price = max(s, o[t + 1]) * (1 + slip)
            if stop_hit:
                stop_fee = k["taker_fee"] * abs(q) * exit_price
                cash += q * exit_price - stop_fee
                q, pbar, s = 0.0, None, None
        if k["trailing_stop"] and q != 0 and s is not None:
            if q > 0:
                s = max(s, c[t + 1] * (1 - bps / 1e4))
            else:
                s = min(s, c[t + 1] * (1 + bps / 1e4))

        # §5 marking, reward, kill switch
        e_next = cash + q * c[t + 1]
        if pnl_reward:
            reward = (e_next - e_t) / k["initial_cash"]
        else:
            reward = math.log(e_next / e_t) if e_next / e_t > 2.0**-20 else math.log(2.0**-20)
        peak = max(peak, e_next)
        terminated = e_next <= peak * (1 - k["max_drawdown"]) or e_next <= 0
        margin = min(margin, _rel(e_next, peak * (1 - k["max_drawdown"])))
        rows.append(dict(
            t=t, target_position=target, risk_units=risk_units, stop_distance=stop_distance,
            order_size=delta if send else 0.0, filled=filled, fill_price=fill_price, limit_fee=fee,
            stop_hit=stop_hit, stop_price=s if s is not None else NAN, exit_price=exit_price,
            stop_fee=stop_fee, position=q, cash=cash, equity=e_next, reward=reward,
            terminated=terminated, margin=margin,
        ))
        if terminated:
            break
    return rows
