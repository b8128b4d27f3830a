"""Statistics from what was actually trained: intervals over seeds and folds, the deflated Sharpe ratio and
the probability of backtest overfitting (issue 13 item 2). numpy/scipy only, no JAX import.
See docs/statistics.md."""
