"""Causality checks on the public feature and env APIs: ``tradelab check lookahead|recursive``."""
