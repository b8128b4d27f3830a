"""tradelab_jax: reinforcement-learning trading agents, end to end on one accelerator.

Importing the package is cheap: the JAX parts are loaded on first use, so data tools never import JAX.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "make"]


def make(dataset_id: str, **kwargs):
    """``(env, env_params)`` for a dataset, like ``gymnax.make``; see :func:`tradelab_jax.env.make`."""
    from tradelab_jax.env import make as _make

    return _make(dataset_id, **kwargs)
