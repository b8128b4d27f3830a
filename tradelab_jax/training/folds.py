"""Fold arithmetic for cross-validation over time (no JAX): test windows, purge, embargo, start bounds.

Bars are indices ``0 .. n_bars-1`` of the (sub-period of the) dataset; every range is half-open
``[lo, hi)``. A fold is a test window and the training episode starts allowed around it.

The rules (docs/training.md, "Splits and cross-validation"):

* **Decision bars.** An episode starting at decision bar ``s`` takes decisions at ``s .. s+L-1`` and
  reads prices up to bar ``s+L`` (``L`` = ``env.episode_length``). Training before a test window at
  ``[lo, hi)`` may therefore only start at ``s <= lo - 1 - L``: the starts in ``(lo-1-L, lo)`` are
  **purged** (AFML ch. 7: their label span, the episode, overlaps the test window).
* **Observation rows.** The observation at bar ``t`` holds feature rows ``t-window+1 .. t`` and each
  feature row ``u`` uses bars ``u-warmup .. u``; so it reads bars ``t-window+1-warmup .. t``. A training
  decision after the test window must have ``t-window+1-warmup >= hi``: the **embargo** after each test
  window is at least ``guard_bars(warmup, window) = warmup + window - 1`` bars, whatever
  ``cv.embargo_bars`` asks (the larger of the two is used and recorded).
* One fold's training starts are the interval ``[start_min, start_max]`` less a **hole** of excluded
  starts ``[hole_lo, hole_hi)`` (empty, ``hole_lo == hole_hi``, for walk-forward and for no CV).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tradelab_jax.errors import UserError

CV_KINDS = ("none", "walk_forward", "purged_kfold")
WALK_MODES = ("rolling", "expanding")


def guard_bars(warmup: int, window: int) -> int:
    """Bars after a test window whose observation still reads a test bar: ``warmup + window - 1``."""
    return int(warmup) + int(window) - 1


def bars_of(value: float | int, n_bars: int, what: str) -> int:
    """A length given in bars (an int >= 1) or as a fraction of ``n_bars`` (a float in (0, 1))."""
    if isinstance(value, bool):
        raise UserError(f"{what} must be a number of bars (int >= 1) or a fraction in (0, 1), got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        if not 0.0 < value < 1.0:
            raise UserError(f"{what} must be a number of bars (int >= 1) or a fraction in (0, 1), "
                            f"got {value}")
        return int(value * n_bars)
    bars = int(value)
    if bars < 1:
        raise UserError(f"{what} must be a number of bars (int >= 1) or a fraction in (0, 1), got {value}")
    return bars


@dataclass(frozen=True)
class Fold:
    """One fold: its test window, embargo and the training starts allowed (all bar indices)."""

    index: int
    test: tuple[int, int]  # [lo, hi): the out-of-sample window, evaluated like a split
    embargo: tuple[int, int]  # [hi, hi+embargo) after the test window (empty in walk-forward)
    train: tuple[tuple[int, int], ...]  # bar ranges training episodes live in (one or two)
    start_min: int
    start_max: int
    hole_lo: int  # excluded training starts [hole_lo, hole_hi); equal when none
    hole_hi: int
    last_bar: int  # inclusive: the last bar training reads

    def record(self) -> dict:
        """The fold's bounds as recorded in eval_summary.json (lists, not tuples)."""
        d = asdict(self)
        d["test"], d["embargo"] = list(self.test), list(self.embargo)
        d["train"] = [list(r) for r in self.train]
        return d

    def allowed_starts(self) -> range | list[int]:
        """Every training start this fold may draw (for tests and checks)."""
        return [s for s in range(self.start_min, self.start_max + 1) if not self.hole_lo <= s < self.hole_hi]


def _range_starts(lo: int, hi: int, *, first_start: int, episode_length: int) -> tuple[int, int] | None:
    """Starts ``[a, b]`` of whole episodes inside bars ``[lo, hi)`` (prices up to ``s+L <= hi-1``)."""
    a = max(lo, first_start)
    b = hi - 1 - episode_length
    return (a, b) if b >= a else None


def make_folds(kind: str, n_bars: int, *, folds: int, warmup: int, window: int, episode_length: int,
               test: float | int | None = None, train: float | int | None = None,
               embargo_bars: int = 0, mode: str = "rolling") -> list[Fold]:
    """The folds of ``kind`` over ``n_bars`` bars; a bad combination is one sentence (UserError)."""
    if kind not in CV_KINDS or kind == "none":
        raise UserError(f"cv kind must be one of {', '.join(CV_KINDS[1:])} to make folds, got {kind!r}")
    if isinstance(folds, bool) or int(folds) != folds or folds < 2:
        raise UserError(f"cv.folds must be an integer >= 2, got {folds!r}")
    if isinstance(embargo_bars, bool) or int(embargo_bars) != embargo_bars or embargo_bars < 0:
        raise UserError(f"cv.embargo_bars must be an integer >= 0, got {embargo_bars!r}")
    first = guard_bars(warmup, window)  # first decision bar with every row of its window warmed up
    folds, embargo_bars = int(folds), int(embargo_bars)
    if kind == "walk_forward":
        return _walk_forward(n_bars, folds, first, episode_length, test, train, embargo_bars, mode)
    return _purged_kfold(n_bars, folds, first, episode_length, embargo_bars, warmup, window)


def _walk_forward(n_bars, folds, first, episode_length, test, train, embargo_bars, mode) -> list[Fold]:
    if mode not in WALK_MODES:
        raise UserError(f"cv.mode must be one of {', '.join(WALK_MODES)}, got {mode!r}")
    if mode == "expanding" and train is not None:
        raise UserError(f"cv.train={train} is the length of a rolling window; expanding walk-forward trains "
                        "on every bar before each test window (set cv.mode=rolling, or cv.train=null)")
    test_len = bars_of(test if test is not None else 1.0 / (folds + 1), n_bars, "cv.test")
    train_len = None if mode == "expanding" else bars_of(
        train if train is not None else 1.0 / (folds + 1), n_bars, "cv.train")
    first_test = n_bars - folds * test_len
    out = []
    for k in range(folds):
        lo = first_test + k * test_len
        hi = lo + test_len
        train_hi = lo - embargo_bars  # a gap of embargo_bars between the training data and the test
        train_lo = 0 if train_len is None else train_hi - train_len
        starts = _range_starts(max(train_lo, 0), train_hi, first_start=first, episode_length=episode_length)
        if train_lo < 0 or starts is None or test_len < 2 or lo < first:
            raise UserError(
                f"walk-forward with cv.folds={folds} does not fit {n_bars} bars: fold {k} needs a training "
                f"range of whole {episode_length}-bar episodes after the {first}-bar warm-up before its "
                f"test window [{lo}, {hi}); use fewer folds, shorter cv.test/cv.train or a longer period"
            )
        out.append(Fold(k, (lo, hi), (lo, lo), ((max(train_lo, 0), train_hi),), starts[0], starts[1],
                        starts[1] + 1, starts[1] + 1, train_hi - 1))
    return out


def _purged_kfold(n_bars, folds, first, episode_length, embargo_bars, warmup, window) -> list[Fold]:
    embargo = max(embargo_bars, guard_bars(warmup, window))
    usable = n_bars - first
    size = usable // folds
    out = []
    for k in range(folds):
        lo = first + k * size
        hi = n_bars if k == folds - 1 else lo + size
        emb_hi = min(n_bars, hi + embargo)
        before = _range_starts(0, lo, first_start=first, episode_length=episode_length)
        after = _range_starts(emb_hi, n_bars, first_start=first, episode_length=episode_length)
        if size < 2 or (before is None and after is None):
            raise UserError(
                f"purged k-fold with cv.folds={folds} does not fit {n_bars} bars: fold {k} (test "
                f"[{lo}, {hi}), embargo {embargo} bars) leaves no whole {episode_length}-bar training "
                f"episode; use fewer folds, a shorter env.episode_length or a longer period"
            )
        train = tuple(r for r, s in (((0, lo), before), ((emb_hi, n_bars), after)) if s is not None)
        if before is not None and after is not None:
            out.append(Fold(k, (lo, hi), (hi, emb_hi), train, before[0], after[1], before[1] + 1, after[0],
                            n_bars - 1))
        else:
            a, b = before or after
            last = (lo - 1) if after is None else n_bars - 1
            out.append(Fold(k, (lo, hi), (hi, emb_hi), train, a, b, b + 1, b + 1, last))
    return out


__all__ = ["CV_KINDS", "WALK_MODES", "Fold", "bars_of", "guard_bars", "make_folds"]
