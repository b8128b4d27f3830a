"""A checkpoint's bytes restored into the pytree a caller expects, or one sentence saying why not.

The one restore for ``run.resume`` (the whole runner state, :func:`tradelab_jax.training.runner._restore`)
and ``tradelab episode --policy`` (its network params): bytes that are not a flax msgpack checkpoint, or
whose tree, shapes or dtypes are not the template's (another run's checkpoint: another network or
observation shape), raise :class:`tradelab_jax.runs.CheckpointError` naming the file. Reading the file and
checking it against ``latest.json``'s sha256 is :func:`tradelab_jax.runs.read_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from flax import serialization, traverse_util

from tradelab_jax.runs import CheckpointError

# What decoding bytes that are not a checkpoint raises (msgpack's errors, flax's ext hooks, numpy's
# frombuffer over a wrong buffer); anything else is a bug and is not caught.
_DECODE_ERRORS = (msgpack.UnpackException, ValueError, TypeError, KeyError, IndexError, OverflowError)
# What flax's from_state_dict raises when the saved tree is not the template's (missing or unknown keys or
# fields, a list of another length, a leaf where a dict should be).
_TREE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


def state_dict(data: bytes, path: Path) -> dict[str, Any]:
    """The checkpoint's state dict (nested dicts of numpy arrays), from ``flax.serialization.to_bytes``."""
    try:
        state = serialization.msgpack_restore(data)
    except _DECODE_ERRORS as err:
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint ({_clause(err)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (it holds a "
                              f"{type(state).__name__}, not a state dict)")
    return state


def restore(template: Any, state: Any, path: Path, *, what: str) -> Any:
    """``template`` with its leaves taken from ``state`` (a state dict); CheckpointError naming the first leaf
    whose shape or dtype differs, or the part of the tree that does not match. ``what`` names the template in
    the sentence ("this run's training state")."""
    try:
        restored = serialization.from_state_dict(template, state)
    except _TREE_ERRORS as err:
        raise CheckpointError(f"checkpoint {path} does not match {what} ({_clause(err)})") from None
    expected = traverse_util.flatten_dict(serialization.to_state_dict(template), sep="/")
    saved = traverse_util.flatten_dict(serialization.to_state_dict(restored), sep="/")
    for name, want in expected.items():
        got = saved.get(name)
        is_array = hasattr(got, "dtype")
        if not is_array or np.shape(got) != tuple(want.shape) or got.dtype != want.dtype:
            held = _describe(np.shape(got), got.dtype) if is_array else "no array"
            raise CheckpointError(f"checkpoint {path} does not match {what}: {name} is {held} in the "
                                  f"checkpoint, {_describe(want.shape, want.dtype)} here (a checkpoint of "
                                  "another run, with another network or observation shape?)")
    return restored


def _describe(shape: tuple[int, ...], dtype: Any) -> str:
    return f"{np.dtype(dtype).name}[{','.join(map(str, shape))}]"


def _clause(err: BaseException) -> str:
    """An exception as a short one-line clause for a sentence."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
