"""How a training process answers SIGTERM, SIGINT and SIGHUP, so every stop ends in a final state.

``timeout``, SLURM, docker and pod stops send SIGTERM; a closed terminal sends SIGHUP; Ctrl-C sends SIGINT.
Python's defaults would kill the process on SIGTERM/SIGHUP without running any cleanup, leaving
``status.json`` at ``running`` with a dead pid. Instead:

- :class:`Interrupting` (the whole session: loading, compiling, evaluating, writing telemetry and plots)
  turns each of them into :class:`Stopped`, a ``KeyboardInterrupt``, so the session's handler marks the
  run ``cancelled`` with the ``run.resume=`` command and the process exits 130;
- :class:`Deferred` (inside the chunk loop) only records the signal; the loop stops at the next chunk
  boundary with a checkpoint. A second signal stops at once (as :class:`Stopped`).

Handlers can only be installed from the main thread; elsewhere (the UI's in-process tests) both are no-ops.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT, getattr(signal, "SIGHUP", None))
                if s is not None)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived (``signum``); handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Handlers:
    def __init__(self):
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):  # pragma: no cover - overridden
        raise NotImplementedError

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class Interrupting(_Handlers):
    """Every stop signal raises :class:`Stopped` where the main thread is."""

    def _handle(self, signum, frame):
        del frame
        raise Stopped(signum)


class Deferred(_Handlers):
    """The first stop signal is recorded in ``signum``; a second raises :class:`Stopped`."""

    def __init__(self):
        super().__init__()
        self.signum: int | None = None

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            raise Stopped(signum)
        self.signum = signum
