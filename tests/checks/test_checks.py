"""Look-ahead and recursive checks: the shipped features pass, planted leaks and short warm-ups are caught."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from tradelab_jax import features as fs
from tradelab_jax.checks import cli, lookahead, recursive
from tradelab_jax.errors import UserError


@pytest.fixture(scope="module")
def bars(shared_data) -> dict[str, np.ndarray]:
    df = pd.read_parquet(shared_data / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet")
    out = {k: df[k].to_numpy()[:4000] for k in df.columns}
    out["taker_buy_volume"] = out["volume"] * np.random.default_rng(0).uniform(0, 1, 4000)
    return out


@pytest.fixture
def leaky_kinds(monkeypatch):
    """Test-only kinds: a centred moving average (sees 2 bars ahead), a 50-bar mean claiming no warm-up."""
    kinds = dict(fs.FEATURE_KINDS)
    kinds["centred_ma"] = fs._Kind(
        compute=lambda b, p: jnp.convolve(b["close"], jnp.ones(5) / 5, mode="same") / b["close"],
        defaults=(), lookback=lambda p: 2, columns=fs._cols("close"), label=lambda p: "")
    kinds["short_warmup"] = fs._Kind(
        compute=lambda b, p: jnp.convolve(b["close"], jnp.ones(50) / 50, mode="full")[: b["close"].shape[0]]
        / b["close"], defaults=(), lookback=lambda p: 0, columns=fs._cols("close"), label=lambda p: "")
    monkeypatch.setattr(fs, "FEATURE_KINDS", kinds)


def test_shipped_full_set_passes_both_checks(bars):
    specs = fs.load_feature_set("full")
    assert {s.kind for s in specs} == set(fs.FEATURE_KINDS)
    feats = lookahead.check_features(bars, specs, cuts=2)
    assert len(feats) == len(specs) and all(v.ok and v.bars > 0 for v in feats), feats
    assert lookahead.check_env(bars, specs, cuts=1).ok
    rec = recursive.check(bars, specs, offsets=(1, 300))
    assert all(v.ok and v.bars > 0 for v in rec), rec


def test_planted_leak_is_named(bars, leaky_kinds, capsys):
    specs = fs.parse_specs([{"kind": "zscore"}, {"kind": "centred_ma"}])
    verdicts = lookahead.check_features(bars, specs, cuts=1, seed=3)
    assert verdicts[0].ok and not verdicts[1].ok
    t = lookahead.cut_bars(len(bars["ts"]), 0, 1, 3)[0]
    assert verdicts[1].first_moved == t - 1  # its window reaches bar t+1 from bar t-1
    assert cli.report(verdicts, "cuts") == 1
    assert capsys.readouterr().err.strip() == (
        f"look-ahead: centred_ma moved at bar {t - 1} when bars after the cut were rewritten (random_walk)")


def test_too_short_warmup_is_named(bars, leaky_kinds, capsys):
    specs = fs.parse_specs([{"kind": "short_warmup"}, {"kind": "rsi"}])
    verdicts = recursive.check(bars, specs, offsets=(7,))
    assert not verdicts[0].ok and verdicts[1].ok
    assert cli.report(verdicts, "offsets") == 1
    assert capsys.readouterr().err.strip() == (
        "recursive: short_warmup differs at bar 7 when the series starts later (start +7); "
        "its documented warm-up is too short")


def test_column_kind_lag_norm_and_missing_column(bars):
    specs = fs.parse_specs([
        {"kind": "column", "column": "taker_buy_volume"},
        {"kind": "column", "column": "taker_buy_volume", "lag": 3},
        {"kind": "column", "column": "taker_buy_volume", "norm_window": 20},
    ])
    assert [s.name for s in specs] == ["column_taker_buy_volume", "column_taker_buy_volume_lag3",
                                       "column_taker_buy_volume_n20"]
    assert [s.lookback for s in specs] == [0, 3, 19]
    m = np.asarray(fs.compute_features(bars, specs).values, np.float64)
    x = bars["taker_buy_volume"]
    np.testing.assert_allclose(m[:, 0], x.astype(np.float32))
    assert np.isnan(m[:3, 1]).all()
    np.testing.assert_allclose(m[3:, 1], x[:-3].astype(np.float32))
    w = x[100 - 19:101]
    np.testing.assert_allclose(m[100, 2], (x[100] - w.mean()) / w.std(), rtol=1e-4)
    with pytest.raises(UserError, match=r"^feature 'column_funding' needs column\(s\) funding, which the "
                                         r"bars lack; available columns: ts, open, high, low, close, volume"):
        fs.compute_features(bars, fs.parse_specs([{"kind": "column", "column": "funding"}]))
    with pytest.raises(UserError, match=r"lag must be an integer >= 0, got -1"):
        fs.parse_specs([{"kind": "column", "column": "close", "lag": -1}])
    with pytest.raises(UserError, match=r"name the dataset column to read"):
        fs.parse_specs([{"kind": "column"}])


@pytest.mark.parametrize(("argv", "message"), [
    (["lookahead", "--run", "{tmp}"], "--run '{tmp}' is not a run directory: it has no config.yaml"),
    (["lookahead", "--run", "{tmp}", "--features", "full"], "with --run, the features come from the run's"),
    (["recursive", "--run", "{tmp}"], "--run goes with check lookahead"),
    (["lookahead", "--cuts", "0"], "--bars must be >= 0 and --cuts >= 1"),
    (["canary", "--out", "{file}"], "--out='{file}' is not a folder"),
])
def test_bad_input_is_one_sentence_and_exit_2(argv, message, tmp_path, capsys):
    from tradelab_jax import cli as tradelab

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fill = {"{tmp}": str(tmp_path), "{file}": str(a_file)}

    def sub(text: str) -> str:
        for k, v in fill.items():
            text = text.replace(k, v)
        return text

    assert tradelab.main(["check", *map(sub, argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {sub(message)}") and "Traceback" not in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
