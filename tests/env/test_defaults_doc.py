"""The measured claims of docs/execution-semantics.md, "What the defaults mean for results", on the embedded
BTC/USDT 1m data: recomputed from the bars, so the doc cannot drift from the data."""

from __future__ import annotations

import re

import numpy as np

from tradelab_jax import data


def _doc(repo_root) -> str:
    text = (repo_root / "docs" / "execution-semantics.md").read_text(encoding="utf-8")
    return text.split("## What the defaults mean for results", 1)[1].split("\n## ", 1)[0]


def _percent(text: str, pattern: str) -> float:
    match = re.search(pattern, " ".join(text.split()))
    assert match, pattern
    return float(match.group(1))


def test_limit_touch_rates_in_the_doc_match_the_embedded_data(repo_root):
    bars = data.load("binance_btcusdt_1m").bars
    close, open_, low = bars["close"][:-1], bars["open"][1:], bars["low"][1:]
    doc = _doc(repo_root)
    touched = _percent(doc, r"touches a buy limit at `c\[t\]` in ([\d.]+)% of bars")
    traded_below = _percent(doc, r"trades \*below\* it in only ([\d.]+)%")
    opens_at_close = _percent(doc, r"`o\[t\+1\] == c\[t\]` in ([\d.]+)% of bars")
    assert touched == round(100 * float(np.mean(low <= close)), 1)
    assert traded_below == round(100 * float(np.mean(low < close)), 1)
    assert opens_at_close == round(100 * float(np.mean(open_ == close)), 1)


def test_default_exposure_at_bucket_one_is_twice_equity(repo_root):
    from tradelab_jax.env import DEFAULTS

    exposure = DEFAULTS["risk_pct"] / (DEFAULTS["stop_loss_bps"] / 1e4)
    assert exposure == 2.0 and exposure <= DEFAULTS["max_leverage"]
    assert "the default exposure is 2× equity" in " ".join(_doc(repo_root).split())
