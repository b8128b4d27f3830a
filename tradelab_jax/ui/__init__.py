"""``tradelab ui``: the Gradio control panel for launching, watching and comparing training runs.

    tradelab ui                                   # http://127.0.0.1:7860, outputs/ of the repo
    tradelab ui --port 8080 --outputs /data/runs
    TRADELAB_UI_AUTH=alice:secret tradelab ui --host 0.0.0.0

Layout lives in :mod:`.app`, job control in :mod:`.jobs`, form validation in :mod:`.forms` and run reading in
:mod:`.results`; the UI talks to training only through ``tradelab train`` and the run directories.
See docs/ui.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tradelab_jax import paths
from tradelab_jax.errors import UserError
from tradelab_jax.net import is_loopback

AUTH_ENV = "TRADELAB_UI_AUTH"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:password"`` -> ``("user", "password")``; None when not given."""
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UserError(f"invalid --auth / ${AUTH_ENV}: expected USER:PASSWORD with both parts non-empty")
    return user, password


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradelab ui", description="The Gradio control panel for training runs.")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}; another one warns unless --auth is set)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASSWORD",
        help=f"require a login (or set ${AUTH_ENV}); the flag wins over the variable",
    )
    p.add_argument("--share", action="store_true", help="open a public gradio.live link (off unless asked)")
    p.add_argument(
        "--outputs",
        default=None,
        metavar="DIR",
        help="runs root (default $TRADELAB_OUTPUTS or the repo's outputs/)",
    )
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="only show runs and jobs; do not start queued trainings from this process",
    )
    p.add_argument(
        "--kill-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds a cancelled training may take to stop before it is forced (default 30)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 0 < args.port < 65536:
        raise UserError(f"invalid --port {args.port}: expected 1-65535")
    auth = parse_auth(args.auth if args.auth is not None else os.environ.get(AUTH_ENV))
    outputs = Path(args.outputs).expanduser().resolve() if args.outputs else paths.default_outputs()
    paths.check_output_dir(outputs, "--outputs")
    outputs.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not is_loopback(args.host) and auth is None:
        print(
            f"warning: binding {args.host} without authentication: anyone who can reach this port can "
            f"start and cancel trainings; set --auth USER:PASSWORD or ${AUTH_ENV}",
            file=sys.stderr,
        )
    if args.share and auth is None:
        print("warning: --share publishes the panel on a public link without authentication", file=sys.stderr)

    from tradelab_jax.ui.app import CSS, build_app
    from tradelab_jax.ui.jobs import JobQueue

    queue = JobQueue(outputs, kill_after_s=args.kill_after)
    if not args.no_worker:
        queue.start_worker()
    demo = build_app(outputs, queue)
    print(f"tradelab ui: http://{args.host}:{args.port}  (runs in {outputs})", file=sys.stderr, flush=True)
    try:
        demo.queue(default_concurrency_limit=8).launch(
            server_name=args.host,
            server_port=args.port,
            share=bool(args.share),
            auth=auth,
            allowed_paths=[],
            show_error=False,
            quiet=True,
            css=CSS,
        )
    finally:
        queue.stop_worker()
    return 0
