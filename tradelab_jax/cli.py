"""The ``tradelab`` command: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module exposing ``main(argv: list[str]) -> int`` and parses its own
arguments (``tradelab data --help``). Modules are imported only when their command runs, so
``tradelab data list`` never pays for importing JAX, and ``tradelab train`` hands its arguments to Hydra.
A :class:`~tradelab_jax.errors.UserError` becomes one ``error:`` line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from tradelab_jax.errors import UserError

# name -> (module, one-line help). Order is the order shown by `tradelab --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tradelab_jax.demo", "the README's main job: validate its dataset, train PPO, print results"),
    "data": ("tradelab_jax.data.cli", "the market data lake: ingest, import, validate, list, resample..."),
    "episode": ("tradelab_jax.episode", "one instrumented episode -> telemetry, summary, equity plot"),
    "train": ("tradelab_jax.train", "train PPO agents (Hydra overrides and -m multiruns)"),
    "bench": ("tradelab_jax.bench", "measure environment and training throughput against the numpy/SB3 way"),
    "ui": ("tradelab_jax.ui", "the Gradio control panel (binds 127.0.0.1)"),
    "parity": ("tradelab_jax.parity", "compare the same work across JAX backends or against a run directory"),
    "archive": ("tradelab_jax.archive", "push, pull and list run directories in S3"),
    "pod": ("tradelab_jax.pod", "launch and manage training on rented GPU pods"),
    "check": ("tradelab_jax.checks.cli", "prove features, observations and policies free of look-ahead"),
    "stats": ("tradelab_jax.stats.cli", "intervals over seeds and folds, deflated Sharpe, PBO -> stats.json"),
    "report": ("tradelab_jax.report", "one self-contained HTML report of a run or sweep"),
    "paper": ("tradelab_jax.paper", "paper-trade a trained policy on live candles (never sends an order)"),
    "runs": ("tradelab_jax.runs_cli", "list and prune run directories"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: tradelab <command> [args...]",
        "",
        "A research lab for reinforcement-learning trading agents in JAX.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items() if _available(name)]
    lines += ["", "Run `tradelab <command> --help` for a command's options."]
    return "\n".join(lines)


def _available(name: str) -> bool:
    try:
        return importlib.util.find_spec(COMMANDS[name][0]) is not None
    except ModuleNotFoundError:  # its parent package is not there either
        return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from tradelab_jax import __version__

        print(f"tradelab_jax {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS or not _available(name):
        valid = ", ".join(n for n in COMMANDS if _available(n))
        print(f"error: unknown command {name!r}; valid commands: {valid}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        code = int(module.main(rest) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        _leave_peers(err.exit_code, meet=False)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _leave_peers(130, meet=False)
        return 130
    except Exception:
        if _joined() is not None:  # a crash: its traceback, then out without JAX's exit hook
            import traceback

            traceback.print_exc()
            _leave_peers(1, meet=False)
        raise
    _leave_peers(code)  # done, or cancelled at a chunk boundary: the peers got as far
    return code


def _leave_peers(code: int, *, meet: bool = True) -> None:
    """A process of a multi-process run ends here (training.devices.exit_without_peers): after meeting
    its peers when its command returned, at once when it failed (each peer then fails in one sentence at
    its next meeting), never through JAX's exit hook, which would abort on a dead peer."""
    proc = _joined()
    if proc is None:
        return
    if meet:
        try:
            proc.barrier("exit")
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            code = err.exit_code
    sys.modules["tradelab_jax.training.devices"].exit_without_peers(code)


def _joined():
    devices = sys.modules.get("tradelab_jax.training.devices")  # never imported: never joined
    return devices.joined() if devices is not None else None


if __name__ == "__main__":
    sys.exit(main())
