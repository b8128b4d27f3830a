"""The env's view of the knob table (:mod:`tradelab_jax.knobs`, where every knob is defined once).

Every knob here is a traced leaf of :class:`~tradelab_jax.env.trading.EnvParams`, so a batch of
environments can each have their own value. Only shape-setting things (number of actions, observation
window, number of features) are static and live on the env object instead.
"""

from __future__ import annotations

from tradelab_jax.knobs import ENV_KNOBS, PARAM_KNOBS, check_env_sweep, env_defaults, resolve_env_knobs

ORDER_TYPES = dict(ENV_KNOBS["order_type"].choices)
REWARDS = dict(ENV_KNOBS["reward"].choices)
# The float knobs (EnvParams leaves of the env's float dtype).
FLOAT_KNOBS: dict[str, float] = {n: ENV_KNOBS[n].default for n in PARAM_KNOBS if ENV_KNOBS[n].kind == "float"}
DEFAULTS = env_defaults()
KNOB_NAMES = PARAM_KNOBS
resolve_knobs = resolve_env_knobs
check_sweep = check_env_sweep

__all__ = ["DEFAULTS", "FLOAT_KNOBS", "KNOB_NAMES", "ORDER_TYPES", "REWARDS", "check_sweep", "resolve_knobs"]
