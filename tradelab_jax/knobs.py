"""The knob table: every trading-env, PPO and seed knob defined once (name, type, default, range, unit).

Everything else derives from this table: the Hydra schema dataclasses (``training/config.py``), the
packed-sweep axes (a knob is ``sweepable`` when it is a traced leaf, so a sweep over it shares one compiled
program), the env's own checks (``env.make``, ``replay``, ``sweep_params``), the config checks before a run
(CLI, sweeps, ``pod launch``), the UI form's defaults and range checks, and the knob tables of
docs/training.md. ``conf/env/trading.yaml`` and ``conf/agent/ppo.yaml`` keep their commented defaults for
people reading them; tests hold them equal to this table.

This module imports no JAX (nor anything that does), so the UI and the config layer can read it cheaply.

A bad value is refused by :meth:`Knob.check` with one sentence that names the key and what is valid, e.g.
``invalid env.risk_pct=2.0: expected a fraction in (0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradelab_jax.errors import UserError

INF = math.inf
MAX_INT32 = 2**31 - 1  # bar indices, step counters and loop lengths are int32 inside the compiled program
MAX_SEED = MAX_INT32  # jax.random.PRNGKey takes a 32-bit seed
MAX_BUCKET = 10.0  # |exposure| of a position bucket, in risk units: beyond it a typo is likelier than intent


@dataclass(frozen=True)
class Knob:
    """One knob. ``kind`` is ``float``, ``int``, ``bool``, ``choice`` (a name stored as its code) or
    ``buckets`` (a list of exposures); numbers must lie in ``low``..``high`` (``*_inc``: closed end).

    ``sweepable``: a traced leaf (``EnvParams`` / ``PPOHyper``), so points with different values train in
    one compiled program; the others set a shape or a loop length (changing one recompiles).
    """

    group: str  # "env", "agent", "run", or "" for top-level keys (seed)
    name: str
    kind: str
    default: Any
    valid: str  # what a valid value is, completing "expected ..."
    unit: str = ""
    help: str = ""
    sweepable: bool = False
    low: float = -INF
    high: float = INF
    low_inc: bool = True
    high_inc: bool = True
    choices: Mapping[str, int] = field(default_factory=dict)
    section: str = ""  # heading in conf/ and the docs (risk, fees, ...)

    @property
    def key(self) -> str:
        """The config key: ``env.risk_pct``, ``agent.lr``, ``seed``."""
        return f"{self.group}.{self.name}" if self.group else self.name

    def bad(self, value: Any) -> UserError:
        return UserError(f"invalid {self.key}={value!r}: expected {self.valid}")

    def check(self, value: Any) -> Any:
        """``value`` checked and normalised: a float, an int, a bool, a choice's int code, or a float tuple
        for ``buckets``. Raises :class:`UserError` (one sentence) otherwise."""
        if self.kind in ("float", "int"):
            x = self._number(value)
            if not self._in_range(x) or (self.kind == "int" and not x.is_integer()):
                raise self.bad(value)
            return int(x) if self.kind == "int" else x
        if self.kind == "bool":
            if isinstance(value, bool) or type(value).__name__ == "bool_" or value in (0, 1):
                return bool(value)
            raise self.bad(value)
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return self.choices[value]
            if isinstance(value, int) and not isinstance(value, bool) and value in set(self.choices.values()):
                return int(value)
            raise self.bad(value)
        if self.kind == "buckets":
            return self._buckets(value)
        raise AssertionError(self.kind)  # pragma: no cover

    def _number(self, value: Any) -> float:
        """``value`` as a float; a bool or anything else that is not a number is refused."""
        if isinstance(value, bool):
            raise self.bad(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise self.bad(value) from None

    def _in_range(self, x: float) -> bool:
        low_ok = x >= self.low if self.low_inc else x > self.low
        high_ok = x <= self.high if self.high_inc else x < self.high
        return math.isfinite(x) and low_ok and high_ok

    def _buckets(self, value: Any) -> tuple[float, ...]:
        if isinstance(value, str | bytes | Mapping):
            raise self.bad(value)
        try:
            items = list(value.tolist() if hasattr(value, "tolist") else value)
            xs = tuple(float(x) for x in items if isinstance(x, int | float) and not isinstance(x, bool))
        except (TypeError, ValueError):
            raise self.bad(value) from None
        ok = (len(xs) == len(items) >= 2 and len(set(xs)) == len(xs)
              and all(math.isfinite(x) and abs(x) <= MAX_BUCKET for x in xs))
        return xs if ok else _raise(self.bad(value))

    def name_of(self, code: int) -> str:
        """A choice knob's name for its code (``order_type`` 1 -> ``market``)."""
        return {v: k for k, v in self.choices.items()}[int(code)]

    def config_default(self) -> Any:
        """The default as it is written in a config (lists for buckets)."""
        return list(self.default) if self.kind == "buckets" else self.default


def _raise(err: Exception):
    raise err


def _fraction(group, name, default, valid, low=0.0, high=1.0, low_inc=False, high_inc=True, **kw) -> Knob:
    return Knob(group, name, "float", default, valid, low=low, high=high, low_inc=low_inc, high_inc=high_inc,
                **kw)


# ---------------------------------------------------------------------------------------------------------
# The trading env (docs/execution-semantics.md §7). Order = the order of conf/env/trading.yaml and of a packed
# sweep's axes.

_ENV: tuple[Knob, ...] = (
    _fraction("env", "risk_pct", 0.01, "a fraction in (0, 1]", unit="fraction of equity", sweepable=True,
              help="equity lost at a stop-out at stop_loss_bps, before fees", section="risk"),
    _fraction("env", "stop_loss_bps", 50.0, "basis points in [0, 10000); 0 disables the stop", high=1e4,
              low_inc=True, high_inc=False, unit="bps of entry price", sweepable=True,
              help="stop distance from the entry price; with risk_pct it sets the position size",
              section="risk"),
    _fraction("env", "max_leverage", 3.0, "a positive number", high=INF, high_inc=False,
              unit="x equity", sweepable=True, help="cap on gross exposure / equity", section="risk"),
    _fraction("env", "max_drawdown", 0.5, "a fraction in (0, 1]", unit="fraction of peak equity",
              sweepable=True, help="kill switch: terminated below peak_equity * (1 - max_drawdown)",
              section="risk"),
    Knob("env", "trailing_stop", "bool", False, "true or false", sweepable=True,
         help="the stop follows the best price since entry", section="risk"),
    _fraction("env", "maker_fee", 0.0002, "a fraction in (-1, 1); negative is a maker rebate", low=-1.0,
              high_inc=False, unit="fraction of notional", sweepable=True, help="limit fills",
              section="fees"),
    _fraction("env", "taker_fee", 0.0005, "a fraction in [0, 1)", low_inc=True, high_inc=False,
              unit="fraction of notional", sweepable=True, help="market fills and stop exits",
              section="fees"),
    _fraction("env", "slippage_bps", 0.0, "basis points in [0, 10000)", high=1e4, low_inc=True,
              high_inc=False, unit="bps of price", sweepable=True, help="market fills and stop exits",
              section="fees"),
    Knob("env", "order_type", "choice", "limit", "'limit' (0) or 'market' (1)",
         choices={"limit": 0, "market": 1}, sweepable=True, help="limit | market", section="orders"),
    _fraction("env", "rebalance_band", 0.25, "a non-negative fraction of risk units", high=INF,
              low_inc=True, high_inc=False, unit="risk units", sweepable=True,
              help="no order while the target is within this band of the position", section="orders"),
    _fraction("env", "min_order_notional", 0.0, "a non-negative amount of quote currency", high=INF,
              low_inc=True, high_inc=False, unit="quote currency", sweepable=True,
              help="smaller orders are skipped", section="orders"),
    Knob("env", "position_buckets", "buckets", (-1.0, -0.5, 0.0, 0.5, 1.0),
         f"a list of at least two distinct exposures in [-{MAX_BUCKET:g}, {MAX_BUCKET:g}] risk units",
         unit="risk units", help="the action space: one action per target exposure (sets num_actions)",
         section="orders"),
    _fraction("env", "initial_cash", 10_000.0, "a positive amount of quote currency", high=INF,
              high_inc=False, unit="quote currency", sweepable=True, section="account, reward and episodes"),
    Knob("env", "reward", "choice", "log_return", "'log_return' (0) or 'pnl' (1)",
         choices={"log_return": 0, "pnl": 1}, sweepable=True, help="log_return | pnl",
         section="account, reward and episodes"),
    Knob("env", "episode_length", "int", 1440, f"a whole number of bars in [1, {MAX_INT32}]", unit="bars",
         low=1, high=MAX_INT32,
         help="one day of 1m bars by default", section="account, reward and episodes"),
    Knob("env", "window", "int", 1, "a whole number of bars in [1, 100000]", unit="bars", low=1, high=100_000,
         help="feature rows in each observation (sets the observation shape)",
         section="account, reward and episodes"),
    Knob("env", "random_start", "bool", True, "true or false",
         help="episodes start at a random bar of the split", section="account, reward and episodes"),
)

# ---------------------------------------------------------------------------------------------------------
# PPO (agents/ppo). Static knobs (PPOSpec) first, then the traced ones (PPOHyper) in PPOHyper's order,
# which is also the order of a packed sweep's agent axes. The defaults are PureJaxRL's CartPole-v1 settings.

_AGENT: tuple[Knob, ...] = (
    Knob("agent", "total_timesteps", "int", 500_000, "a whole number of env steps in [1, 10^11]",
         unit="env steps", low=1, high=1e11, help="per run (per sweep point), rounded down to whole updates"),
    Knob("agent", "num_envs", "int", 4, "a whole number in [1, 65536]", unit="envs", low=1, high=65_536,
         help="parallel environments per run"),
    Knob("agent", "num_steps", "int", 128, "a whole number in [1, 100000]", unit="steps", low=1,
         high=100_000, help="rollout length per update"),
    Knob("agent", "update_epochs", "int", 4, "a whole number in [1, 100000]", low=1, high=100_000,
         help="epochs per update"),
    Knob("agent", "num_minibatches", "int", 4, f"a whole number in [1, {MAX_INT32}]", low=1, high=MAX_INT32,
         help="minibatches per epoch; must divide num_envs x num_steps"),
    Knob("agent", "anneal_lr", "bool", True, "true or false", help="linear decay of lr to 0 over the run"),
    Knob("agent", "normalize_advantages", "bool", True, "true or false"),
    _fraction("agent", "lr", 2.5e-4, "a positive learning rate", high=INF, high_inc=False, sweepable=True,
              help="Adam step size"),
    _fraction("agent", "ent_coef", 0.01, "a non-negative coefficient", high=INF, low_inc=True,
              high_inc=False, sweepable=True, help="entropy bonus"),
    _fraction("agent", "clip_eps", 0.2, "a positive clip range", high=INF, high_inc=False, sweepable=True),
    _fraction("agent", "vf_coef", 0.5, "a non-negative coefficient", high=INF, low_inc=True,
              high_inc=False, sweepable=True, help="value-loss weight"),
    _fraction("agent", "gamma", 0.99, "a discount in [0, 1]", low_inc=True, sweepable=True),
    _fraction("agent", "gae_lambda", 0.95, "a GAE lambda in [0, 1]", low_inc=True, sweepable=True),
    _fraction("agent", "max_grad_norm", 0.5, "a positive gradient-norm bound", high=INF, high_inc=False,
              sweepable=True, help="global-norm gradient clipping"),
)

SEED = Knob("", "seed", "int", 0, f"a whole number in [0, {MAX_SEED}]", low=0, high=MAX_SEED, sweepable=True,
            help="PRNG seed of the run (network init, env resets, minibatch shuffles)")

# Run knobs with a numeric range (the rest of the run group is paths, names and switches).
_RUN: tuple[Knob, ...] = (
    Knob("run", "chunk_updates", "int", 10, "a whole number in [1, 100000]", unit="updates", low=1,
         high=100_000, help="PPO updates per compiled chunk: progress, metrics and checkpoint cadence"),
    Knob("run", "keep_checkpoints", "int", 2, "a whole number in [1, 100000]", low=1, high=100_000),
    Knob("run", "eval_episodes", "int", 32, "a whole number in [1, 100000]", low=1, high=100_000,
         help="gymnax environments: greedy episodes to average"),
)

ENV_KNOBS: dict[str, Knob] = {k.name: k for k in _ENV}
AGENT_KNOBS: dict[str, Knob] = {k.name: k for k in _AGENT}
RUN_KNOBS: dict[str, Knob] = {k.name: k for k in _RUN}
ALL_KNOBS: dict[str, Knob] = {k.key: k for k in (*_ENV, *_AGENT, SEED, *_RUN)}

# The env knobs that are EnvParams leaves (``window`` sets the observation shape on the env object).
PARAM_KNOBS: tuple[str, ...] = tuple(k.name for k in _ENV if k.name != "window")
SWEEPABLE_ENV: tuple[str, ...] = tuple(k.name for k in _ENV if k.sweepable)
SWEEPABLE_AGENT: tuple[str, ...] = tuple(k.name for k in _AGENT if k.sweepable)
SWEEPABLE_KEYS: tuple[str, ...] = (SEED.key, *(f"env.{k}" for k in SWEEPABLE_ENV),
                                   *(f"agent.{k}" for k in SWEEPABLE_AGENT))
FLOAT_PARAM_KNOBS: tuple[str, ...] = tuple(n for n in PARAM_KNOBS if ENV_KNOBS[n].kind == "float")
STATIC_AGENT: tuple[str, ...] = tuple(k.name for k in _AGENT if not k.sweepable)


def num_updates(total_timesteps: int, num_envs: int, num_steps: int, num_minibatches: int) -> int:
    """Whole PPO updates in a budget (``total_timesteps`` rounded down to updates of ``num_envs x
    num_steps`` env steps); refuses a budget below one update or an update the minibatches do not divide.

    ``UserError.field`` names the knob to blame (the UI marks that field)."""
    per_update = int(num_envs) * int(num_steps)
    updates = int(total_timesteps) // per_update
    if updates < 1:
        err = UserError(f"agent.total_timesteps={total_timesteps} is less than one update of "
                        f"agent.num_envs x agent.num_steps = {per_update} steps")
        err.field = "total_timesteps"
        raise err
    if per_update % int(num_minibatches):
        err = UserError(f"agent.num_envs x agent.num_steps = {per_update} is not divisible by "
                        f"agent.num_minibatches={num_minibatches}")
        err.field = "num_envs"
        raise err
    return updates


def env_defaults() -> dict[str, Any]:
    """The EnvParams knobs' defaults as written in a config (``order_type: limit``)."""
    return {name: ENV_KNOBS[name].default for name in PARAM_KNOBS}


def unknown_env_knob(name: str) -> UserError:
    return UserError(f"unknown knob {name!r}; valid knobs: {', '.join(PARAM_KNOBS)}")


def resolve_env_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Every EnvParams knob: the defaults overridden by ``knobs``, each checked and normalised
    (floats, choice codes, bools, ints, a float tuple for ``position_buckets``)."""
    for name in knobs:
        if name not in PARAM_KNOBS:
            raise unknown_env_knob(name)
    merged = {**env_defaults(), **knobs}
    return {name: ENV_KNOBS[name].check(merged[name]) for name in PARAM_KNOBS}


def check_env_sweep(name: str, values: Sequence[Any]) -> list[Any]:
    """The values of one env knob swept in a batch (``env.sweep_params``), each checked."""
    if name not in PARAM_KNOBS:
        raise unknown_env_knob(name)
    knob = ENV_KNOBS[name]
    if knob.kind == "buckets":
        rows = [knob.check(v) for v in values]
        if len({len(r) for r in rows}) > 1:
            raise UserError("swept position_buckets must all have the same number of buckets")
        return rows
    flat = values.reshape(-1).tolist() if hasattr(values, "reshape") else list(values)
    return [knob.check(v) for v in flat]


def sweepable_message() -> str:
    return "sweepable keys: " + ", ".join(SWEEPABLE_KEYS)


# ---------------------------------------------------------------------------------------------------------
# The docs' tables (docs/training.md holds this output between markers; a test keeps them equal)


def _range_text(k: Knob) -> str:
    return k.valid


def markdown_table(group: str) -> str:
    """The knob table of ``group`` (``env`` or ``agent``) as Markdown."""
    knobs = {"env": _ENV, "agent": (*_AGENT, SEED)}[group]
    rows = ["| key | default | valid values | unit | sweepable | meaning |", "|---|---|---|---|---|---|"]
    for k in knobs:
        default = k.config_default()
        text = ("true" if default else "false") if isinstance(default, bool) else str(default)
        rows.append(f"| `{k.key}` | `{text}` | {_range_text(k)} | {k.unit or '-'} | "
                    f"{'yes' if k.sweepable else 'no'} | {k.help or '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    for g in ("env", "agent"):
        print(markdown_table(g), end="\n\n")
