"""The market-data lake: Parquet month files with manifests, and :func:`load` to read them.

Importing this package never imports JAX. See docs/data.md for the layout, the manifest and the commands.
"""

from __future__ import annotations

from tradelab_jax.data.loader import DEFAULT_DATASET, MarketData, list_datasets, load, split_bounds

__all__ = ["DEFAULT_DATASET", "MarketData", "list_datasets", "load", "split_bounds"]
