"""Reinforcement-learning agents written against the gymnax 1.0 environment API."""
