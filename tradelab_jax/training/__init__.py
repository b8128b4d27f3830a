"""The training runner: config schema, packed sweeps, chunked host loop, run directory and evaluation.

:mod:`tradelab_jax.train` is the Hydra entry point; this package does the work and never passes a
``DictConfig`` into jitted code (configs arrive here as plain dicts).
"""
