"""Job control: launch, monitor, cancel and queue ``tradelab train`` processes (no Gradio here).

A launch request becomes one JSON record in ``<outputs>/.queue/<job id>.json`` (written atomically), so
queued and running jobs survive a page reload and a restart of the UI. One worker per outputs root (it holds
``.queue/worker.lock``) starts one training at a time, as ``[python, -m, tradelab_jax.train, *overrides,
run.dir=<dir>]`` with ``shell=False`` in its own session, output to ``<run dir>/console.log``. The UI
creates the run directory (status ``queued``) when the job is submitted, so the run shows up in the runs
table at once and the trainer writes into exactly that directory.

Cancel: a queued job is simply marked cancelled; a running one gets SIGTERM and then a ``CANCEL`` file (the
trainer stops at its next chunk boundary and keeps its last checkpoint), in that order so that the signal
never lands after the trainer has stopped on the file and restored the default handler; then a second
SIGTERM and finally SIGKILL if it is still alive after ``kill_after_s``. A process that dies before it
could record its end (killed during start-up or compile) has its runs marked ``cancelled`` or ``failed`` by
the worker.

Resume: a stopped run with a checkpoint (see :func:`.results.resume_target`) is queued the same way, as
``[python, -m, tradelab_jax.train, run.resume=<dir>]`` (its packed sweep's directory for a sweep point), so
it waits for its turn, can be cancelled and survives reloads like a launch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tradelab_jax import paths, runs
from tradelab_jax.errors import UserError
from tradelab_jax.io import atomic_write_json
from tradelab_jax.ui import results
from tradelab_jax.ui.forms import LaunchPlan, resume_override, run_dir_override

log = logging.getLogger(__name__)

QUEUE_DIR = ".queue"
LOG_FILE = runs.CONSOLE_FILE
JOB_STATES = runs.STATES  # a job is in the state of the runs it trains
ACTIVE_STATES = runs.ACTIVE_STATES
TRAIN_COMMAND = (sys.executable, "-m", "tradelab_jax.train")


@dataclass
class Job:
    """One launch request and what became of it (``.queue/<id>.json``)."""

    id: str
    tag: str
    overrides: list[str]
    argv: list[str]  # the exact argument list the worker runs
    run_dir: str  # relative to the outputs root: "<ts>_<tag>" or "multirun/<ts>_<tag>"
    points: int = 1  # > 1: a packed sweep with run dirs run_dir/0 ... run_dir/<points-1>
    state: str = "queued"
    created_at: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    pid: int | None = None
    returncode: int | None = None
    cancel_requested_at: str | None = None
    kill_stage: int = 0  # 0 none, 1 second SIGTERM sent, 2 SIGKILL sent
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def packed(self) -> bool:
        return self.points > 1

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def point_ids(self) -> list[str]:
        """Run ids (relative to outputs) of the job's run directories."""
        if self.packed:
            return [f"{self.run_dir}/{n}" for n in range(self.points)]
        return [self.run_dir]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def _ts_now() -> float:
    return time.time()


def _parse_utc(text: str | None) -> float | None:
    if not text:
        return None
    import datetime as dt

    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _readable_status(run_dir: Path) -> dict[str, Any]:
    """The run's status.json, or ``{}`` when it is missing or refused (a link out of the run, damaged)."""
    try:
        return runs.read_status(run_dir) or {}
    except (OSError, ValueError):
        return {}


def _readable_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics lines, or ``[]`` when refused (a link out of the run, not text)."""
    try:
        return runs.read_metrics(run_dir)
    except (OSError, ValueError):
        return []


def no_follow(path: str, flags: int) -> int:
    """An ``open`` opener that refuses a symbolic link (ELOOP): a console.log planted as a link out of its
    run (whose directory :meth:`JobQueue.run_path` resolved inside outputs) is never read or appended to."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def read_log_tail(path: str | os.PathLike, lines: int = 20, max_bytes: int = 65_536) -> str:
    """The last ``lines`` lines of a log, with progress-bar carriage returns turned into lines."""
    path = Path(path)
    try:
        with open(path, "rb", opener=no_follow) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    except OSError as err:
        return f"{path.name} not read ({err.strerror}: a symbolic link is not followed)"
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    kept = [ln.rstrip() for ln in text.split("\n") if ln.strip()]
    out: list[str] = []
    for ln in kept:  # a progress bar redraws the same line many times: keep the newest of a run
        if out and _same_bar(out[-1], ln):
            out[-1] = ln
        else:
            out.append(ln)
    return "\n".join(out[-lines:])


def _same_bar(a: str, b: str) -> bool:
    return "%|" in a and "%|" in b and a.split(":", 1)[0] == b.split(":", 1)[0]


class JobQueue:
    """The on-disk job queue of one outputs root and the worker that drains it, one job at a time."""

    def __init__(
        self,
        outputs: str | os.PathLike,
        *,
        command: Sequence[str] = TRAIN_COMMAND,
        kill_after_s: float = 30.0,
        poll_s: float = 1.0,
        env: dict[str, str] | None = None,
    ):
        self.outputs = Path(outputs).expanduser().resolve()
        self.dir = self.outputs / QUEUE_DIR
        self.command = list(command)
        self.kill_after_s = float(kill_after_s)
        self.poll_s = float(poll_s)
        self.env = env
        self._procs: dict[str, subprocess.Popen] = {}  # jobs this process started (reaped with poll())
        self._logs: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._worker_lock_fd: int | None = None
        self._mutex = threading.RLock()

    # --------------------------------------------------------------------------------------------------
    # records

    def _path(self, job_id: str) -> Path:
        return paths.inside(self.dir, paths.check_id(job_id, "job id") + ".json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise record updates between threads and between UI processes sharing the outputs root."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._mutex, open(self.dir / ".lock", "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _save(self, job: Job) -> None:
        atomic_write_json(self._path(job.id), asdict(job))

    def get(self, job_id: str) -> Job:
        try:
            return Job.from_dict(json.loads(self._path(job_id).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise UserError(f"no job {job_id!r} in {self.dir}") from None

    def list(self) -> list[Job]:
        """Every job record, oldest first."""
        if not self.dir.is_dir():
            return []
        jobs = []
        for p in self.dir.glob("*.json"):
            try:
                jobs.append(Job.from_dict(json.loads(p.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue  # a foreign or half-copied file: ignore it
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    def active(self) -> list[Job]:
        return [j for j in self.list() if j.active]

    def queue_position(self, job: Job) -> int | None:
        """1-based place of a queued job among the queued ones."""
        queued = [j.id for j in self.list() if j.state == "queued"]
        return queued.index(job.id) + 1 if job.id in queued else None

    def run_path(self, job: Job) -> Path:
        return paths.inside(self.outputs, *job.run_dir.split("/"))

    def point_paths(self, job: Job) -> list[Path]:
        return [paths.inside(self.outputs, *rid.split("/")) for rid in job.point_ids()]

    def log_path(self, job: Job) -> Path:
        return self.run_path(job) / LOG_FILE

    # --------------------------------------------------------------------------------------------------
    # submit

    def submit(self, plan: LaunchPlan) -> Job:
        """Queue a validated launch: create its run directories (status ``queued``) and its record."""
        with self._locked():
            stamp = runs.utc_timestamp()
            base = f"{runs.MULTIRUN_DIR}/" if plan.packed else ""
            name, n = runs.run_dir_name(plan.tag, stamp), 1
            while (self.outputs / f"{base}{name}").exists() or (self.dir / f"{name}.json").exists():
                n += 1
                name = runs.run_dir_name(f"{plan.tag}-{n}", stamp)
            paths.check_id(name, "job id")
            run_dir = self.outputs / f"{base}{name}"
            job = Job(
                id=name,
                tag=plan.tag,
                overrides=list(plan.overrides),
                argv=[],
                run_dir=f"{base}{name}",
                points=plan.points,
                created_at=runs.utc_now(),
                extra={"axes": plan.axes},
            )
            job.argv = [*self.command, *plan.overrides, run_dir_override(run_dir)]
            run_dir.mkdir(parents=True, exist_ok=False)
            for d in self.point_paths(job):
                runs.queue_run(d)
            self._save(job)
        return job

    # --------------------------------------------------------------------------------------------------
    # resume

    def resume(self, run_id: str) -> Job:
        """Queue ``run.resume=<dir>`` for a stopped run with a checkpoint (its whole sweep if it is packed).

        The run's status goes back to ``queued``, as a launch's does, so the runs table shows it waiting and
        a second Resume is refused; the worker then runs it like any other job.
        """
        with self._locked():  # checked under the lock: two clicks must not queue the same run twice
            target = results.resume_target(self.outputs, run_id)
            busy = self._active_job_of(target)
            if busy is not None:
                raise UserError(
                    f"run {run_id!r} cannot be resumed: job {busy.id!r} is still {busy.state} for it; "
                    f"{results.WHAT_RESUMES}"
                )
            job = Job(
                id=self._resume_job_id(target),
                tag=target.tag,
                overrides=[resume_override(target.path)],
                argv=[],
                run_dir=target.dir_id,
                points=target.points,
                created_at=runs.utc_now(),
                extra={"resume": target.run_id, "from_update": target.update},
            )
            job.argv = [*self.command, *job.overrides]
            for d in self.point_paths(job):
                runs.write_status(
                    d, status="queued", pid=None, ended_at=None, error=None, queued_at=job.created_at
                )
            self._save(job)
        return job

    def _active_job_of(self, target: results.ResumeTarget) -> Job | None:
        """The queued or running job that already trains (part of) the target, if any."""
        ids = {target.dir_id, *(f"{target.dir_id}/{n}" for n in range(target.points) if target.points > 1)}
        return next((j for j in self.active() if ids & {j.run_dir, *j.point_ids()}), None)

    def _resume_job_id(self, target: results.ResumeTarget) -> str:
        """``<run>_resume-<UTC timestamp>``: says what it resumes, unique among the records, a safe id."""
        label = target.dir_id.removeprefix(f"{runs.MULTIRUN_DIR}/").replace("/", "-")
        stamp, n = runs.utc_timestamp(), 1
        while True:
            suffix = f"_resume-{stamp}" + (f"-{n}" if n > 1 else "")
            job_id = paths.check_id(label[: 128 - len(suffix)] + suffix, "job id")
            if not (self.dir / f"{job_id}.json").exists():
                return job_id
            n += 1

    # --------------------------------------------------------------------------------------------------
    # cancel

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask a running one to stop (CANCEL file + SIGTERM)."""
        with self._locked():
            job = self.get(job_id)
            if job.state == "queued":
                job.state, job.ended_at, job.error = "cancelled", runs.utc_now(), None
                job.cancel_requested_at = job.ended_at
                for d in self.point_paths(job):
                    self._finalise_status(d, "cancelled", "cancelled before it started")
                self._save(job)
            elif job.state == "running" and job.cancel_requested_at is None:
                job.cancel_requested_at = runs.utc_now()
                self._save(job)
                # SIGTERM before the CANCEL file: a trainer that saw the file first may already have
                # stopped and put back the default SIGTERM handler, and the signal would then kill it
                # (exit -15) instead of letting it finish its clean stop (exit 130).
                self._signal(job, signal.SIGTERM)
                for d in [self.run_path(job), *self.point_paths(job)]:
                    if d.is_dir():
                        runs.request_cancel(d)
                self._note(
                    job,
                    "cancel requested: SIGTERM sent, CANCEL file written; the trainer stops at its "
                    "next chunk boundary",
                )
            return job

    def _note(self, job: Job, text: str) -> None:
        """A line from the UI in the job's console log, so the log tells the whole story."""
        log_path = self.log_path(job)
        with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8", opener=no_follow) as f:
            # A leading newline: the trainer's progress bar may be mid-line (it redraws with \r).
            f.write(f"\n[tradelab ui {runs.utc_now()}] {text}\n")

    def _signal(self, job: Job, sig: int) -> None:
        if not job.pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(job.pid), sig)  # the trainer leads its own session (start_new_session)

    # --------------------------------------------------------------------------------------------------
    # the worker

    def _alive(self, job: Job) -> bool:
        proc = self._procs.get(job.id)
        if proc is not None:
            return proc.poll() is None
        return runs.pid_alive(job.pid)

    def tick(self) -> None:
        """One scheduling step: reap the running job if it ended, escalate a cancel, start the next job."""
        with self._locked():
            jobs = self.list()
            running = [j for j in jobs if j.state == "running"]
            for job in running:
                if self._alive(job):
                    self._escalate(job)
                else:
                    self._reap(job)
            if any(j.state == "running" for j in (self.get(j.id) for j in running)):
                return
            queued = [j for j in jobs if j.state == "queued"]
            if queued:
                self._start(queued[0])

    def _escalate(self, job: Job) -> None:
        started = _parse_utc(job.cancel_requested_at)
        if started is None:
            return
        waited = _ts_now() - started
        if job.kill_stage == 0 and waited > self.kill_after_s:
            job.kill_stage = 1
            self._note(job, f"still running {waited:.0f}s after the cancel: second SIGTERM")
            self._signal(job, signal.SIGTERM)  # a second SIGTERM stops the trainer now, still cleanly
            self._save(job)
        elif job.kill_stage == 1 and waited > 2 * self.kill_after_s:
            job.kill_stage = 2
            self._note(job, f"still running {waited:.0f}s after the cancel: SIGKILL")
            self._signal(job, signal.SIGKILL)
            self._save(job)

    def _start(self, job: Job) -> None:
        run_dir = self.run_path(job)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        logf = open(self.log_path(job), "ab")  # noqa: SIM115 - kept open for the child's lifetime
        logf.write(f"$ {' '.join(job.argv)}\n".encode())
        logf.flush()
        try:
            proc = subprocess.Popen(
                job.argv,
                shell=False,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(paths.REPO_ROOT),
                env=env,
            )
        except OSError as err:
            logf.close()
            job.state, job.ended_at, job.error = "failed", runs.utc_now(), f"could not start: {err}"
            for d in self.point_paths(job):
                self._finalise_status(d, "failed", job.error)
            self._save(job)
            return
        self._procs[job.id], self._logs[job.id] = proc, logf
        job.state, job.pid, job.started_at = "running", proc.pid, runs.utc_now()
        self._save(job)
        log.info("started job %s (pid %s)", job.id, proc.pid)

    def _reap(self, job: Job) -> None:
        proc = self._procs.pop(job.id, None)
        logf = self._logs.pop(job.id, None)
        if logf is not None:
            logf.close()
        job.returncode = proc.returncode if proc is not None else job.returncode
        statuses = [_readable_status(d) for d in self.point_paths(job)]
        states = [s.get("status") for s in statuses]
        cancelled = job.cancel_requested_at is not None
        if states and all(s == "done" for s in states) and job.returncode in (0, None):
            job.state = "done"
        elif cancelled or job.returncode == 130 or "cancelled" in states:
            job.state = "cancelled"
        else:
            job.state = "failed"
            errors = [s.get("error") for s in statuses if s.get("error")]
            job.error = errors[0] if errors else self._last_error_line(job)
        job.ended_at = runs.utc_now()
        if job.state != "done":
            why = (
                "stopped by the UI"
                if job.state == "cancelled"
                else f"the training process exited with code {job.returncode}"
            )
            for d in self.point_paths(job):
                self._finalise_status(d, job.state, why)
        self._save(job)
        self._note(job, f"job {job.state} (exit code {job.returncode})")
        log.info("job %s ended: %s (exit code %s)", job.id, job.state, job.returncode)

    def _last_error_line(self, job: Job) -> str:
        tail = read_log_tail(self.log_path(job), lines=40)
        errs = [ln for ln in tail.splitlines() if ln.startswith("error:")]
        if errs:
            return errs[-1][len("error:") :].strip()
        return f"the training process exited with code {job.returncode}; see {LOG_FILE}"

    @staticmethod
    def _finalise_status(run_dir: Path, state: str, why: str) -> None:
        """Record the end of a run whose process could not (killed, or never started); keep a final status."""
        try:
            st = runs.read_status(run_dir)
        except (OSError, ValueError) as err:  # refused (a link out, damaged): never written through
            log.warning("run status not finalised: %s", err)
            return
        if st is None or st.get("status") in runs.FINAL_STATES:
            return
        runs.write_status(
            run_dir,
            status=state,
            pid=None,
            ended_at=runs.utc_now(),
            error=None if state == "cancelled" else why,
        )

    def start_worker(self) -> bool:
        """Run :meth:`tick` every ``poll_s`` in a daemon thread; False when another process already does."""
        if self._thread is not None:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            log.warning(
                "another UI already runs the job worker for %s; this one only shows jobs", self.outputs
            )
            return False
        self._worker_lock_fd = fd
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tradelab-ui-jobs", daemon=True)
        self._thread.start()
        return True

    def stop_worker(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._worker_lock_fd is not None:
            os.close(self._worker_lock_fd)
            self._worker_lock_fd = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad record must not stop the queue
                log.exception("job worker tick failed")
            self._stop.wait(self.poll_s)

    # --------------------------------------------------------------------------------------------------
    # monitor

    def progress(self, job: Job, log_lines: int = 20) -> dict[str, Any]:
        """What the job panel shows: state, progress 0..1, env steps, steps/s, last return, log tail."""
        statuses = [_readable_status(d) for d in self.point_paths(job)]
        done_steps = [int(s.get("env_steps") or 0) for s in statuses]
        total = [int(s.get("total_env_steps") or 0) for s in statuses]
        prog = [float(s.get("progress") or 0.0) for s in statuses]
        last: dict[str, Any] = {}
        metrics = _readable_metrics(self.point_paths(job)[0]) if statuses else []
        if metrics:
            last = metrics[-1]
        returns = [s.get("mean_episode_return") for s in statuses if s.get("mean_episode_return") is not None]
        progress = sum(prog) / len(prog) if prog else 0.0
        if job.state == "done":
            progress = 1.0
        return {
            "id": job.id,
            "tag": job.tag,
            "state": job.state,
            "cancelling": job.state == "running" and job.cancel_requested_at is not None,
            "progress": progress,
            "env_steps": sum(done_steps),
            "total_env_steps": sum(total),
            "steps_per_s": last.get("steps_per_s"),
            "mean_episode_return": sum(returns) / len(returns) if returns else None,
            "points": job.points,
            "run_states": [s.get("status") for s in statuses],
            "queue_position": self.queue_position(job) if job.state == "queued" else None,
            "log_tail": read_log_tail(self.log_path(job), lines=log_lines),
            "error": job.error,
        }
