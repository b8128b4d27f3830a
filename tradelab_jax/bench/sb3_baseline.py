"""The predecessor's stack for ``tradelab bench train``: Stable-Baselines3 PPO (PyTorch) on gymnasium envs.

Imported only when SB3 rows run: it pulls in PyTorch. The SB3 policy is configured to be the same network
as tradelab's (separate actor and critic MLPs, tanh, orthogonal init, Adam eps 1e-5 are SB3's defaults too).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from tradelab_jax.errors import UserError

VEC_ENVS = ("dummy", "subproc")


def sb3_available() -> bool:
    return importlib.util.find_spec("stable_baselines3") is not None


def require_sb3() -> None:
    if not sb3_available():
        raise UserError(
            "the SB3 baseline needs stable-baselines3 (and PyTorch): install it with "
            "pip install -e '.[bench]', or pass --skip-sb3 to measure only tradelab"
        )


def versions() -> dict[str, str | None]:
    if not sb3_available():
        return {"torch": None, "stable_baselines3": None}
    import stable_baselines3
    import torch

    return {"torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__}


DEFAULT_TORCH_THREADS = 1


def set_torch_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op threads and return the number in effect.

    The default is one: SB3's 64-wide MLPs on minibatches of 64 are too small for intra-op parallelism to
    pay, and on 2 cores a second thread measured slower (it competes with the env loop and other jobs).
    """
    import torch

    torch.set_num_threads(int(DEFAULT_TORCH_THREADS if threads is None else threads))
    return torch.get_num_threads()


def trading_env_fn(env_params: Any, window: int = 1) -> Callable[[], Any]:
    """A factory of numpy trading envs that share one copy of the market arrays."""
    from tradelab_jax.bench.numpy_env import NumpyTradingEnv

    proto = NumpyTradingEnv.from_env_params(env_params, window=window)
    # A shallow copy shares the read-only market arrays; reset() assigns every per-episode attribute.
    return lambda: copy.copy(proto)


def measure_sb3(env_id: str | Callable[[], Any], *, num_envs: int, num_steps: int, epochs: int,
                minibatches: int, hidden_sizes: Sequence[int], min_env_steps: int, vec_env: str = "dummy",
                hyper: dict[str, float] | None = None, seed: int = 0) -> dict[str, Any]:
    """Env steps per second of ``PPO.learn`` after one warm-up rollout+update, over whole rollouts.

    ``env_id`` is a gymnasium id or an env factory; ``hyper`` holds PPO keyword arguments (learning_rate,
    gamma, ...). At least ``min_env_steps`` steps (rounded up to whole rollouts, at least one) are timed.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if vec_env not in VEC_ENVS:
        raise UserError(f"invalid --sb3-vec {vec_env!r}; valid: {', '.join(VEC_ENVS)}")
    rollout = num_envs * num_steps
    if rollout % minibatches:
        raise UserError(f"{num_envs} envs x {num_steps} steps is not divisible into {minibatches} "
                        "minibatches")
    vec_cls = SubprocVecEnv if vec_env == "subproc" and num_envs > 1 else DummyVecEnv
    venv = make_vec_env(env_id, n_envs=num_envs, seed=seed, vec_env_cls=vec_cls)
    try:
        net = [int(h) for h in hidden_sizes]
        model = PPO(
            "MlpPolicy", venv, n_steps=num_steps, batch_size=rollout // minibatches, n_epochs=epochs,
            policy_kwargs={"net_arch": {"pi": net, "vf": list(net)}, "activation_fn": torch.nn.Tanh},
            device="cpu", seed=seed, verbose=0, **(hyper or {}),
        )
        model.learn(total_timesteps=rollout)  # warm-up: first rollout and update (allocations, caches)
        warm = model.num_timesteps
        rollouts = max(1, math.ceil(min_env_steps / rollout))
        t0 = time.perf_counter()
        model.learn(total_timesteps=rollouts * rollout, reset_num_timesteps=False)
        wall = time.perf_counter() - t0
        steps = model.num_timesteps - warm
    finally:
        venv.close()
    return {"env_steps": steps, "wall_s": wall, "steps_per_s": steps / wall, "vec_env": vec_cls.__name__}
