"""Job control: launch, queue, monitor, cancel, resume and restart, against a fake trainer that keeps the
contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.ui import jobs as jobs_mod
from tradelab_jax.ui import results
from tradelab_jax.ui.jobs import JobQueue, read_log_tail

from .conftest import plan
from .runs_factory import make_run


def test_submit_creates_a_queued_run_dir_and_an_atomic_record(outputs, make_queue):
    q = make_queue()
    job = q.submit(plan("alpha"))
    assert job.state == "queued" and job.run_dir.endswith("_alpha") and "/" not in job.run_dir
    assert runs.read_status(outputs / job.run_dir)["status"] == "queued"
    record = json.loads((outputs / ".queue" / f"{job.id}.json").read_text())
    assert record["argv"][-1] == f"run.dir={outputs / job.run_dir}"
    assert record["argv"][2:-1] == ["data=binance_btcusdt_1m", "run.tag=alpha"]
    # A second launch in the same second gets its own directory.
    other = q.submit(plan("alpha"))
    assert other.id != job.id and (outputs / other.run_dir).is_dir()


def test_packed_sweep_queues_one_dir_per_point_under_multirun(outputs, make_queue):
    q = make_queue()
    job = q.submit(plan("sw", points=3))
    assert job.run_dir.startswith("multirun/") and job.points == 3
    assert [runs.read_status(p)["status"] for p in q.point_paths(job)] == ["queued"] * 3
    assert {p.name for p in runs.iter_runs(outputs)} == {"0", "1", "2"}


def test_a_packed_sweep_runs_to_done_and_lists_only_its_points(outputs, make_queue, wait_until):
    q = make_queue()
    job = q.submit(plan("sw", points=2))
    group = outputs / job.run_dir
    assert job.argv[-1] == f"run.dir={group}"  # the group: the trainer makes <n>/ under it
    wait_until(q, lambda: q.get(job.id).state == "done")
    done = q.get(job.id)
    assert done.returncode == 0 and (group / runs.PACKED_FILE).is_file() and (group / ".hydra").is_dir()
    p = q.progress(done)
    assert p["progress"] == 1.0 and p["run_states"] == ["done", "done"] and p["points"] == 2
    assert p["env_steps"] == p["total_env_steps"] == 600 and "fake: chunk 3/3" in p["log_tail"]
    assert q.log_path(done) == group / "console.log"
    # The runs table shows the points, not the group, its packed.json or its .hydra/ folder.
    assert [r["run"] for r in results.list_runs(outputs)] == [f"{job.run_dir}/1", f"{job.run_dir}/0"]


def test_the_process_is_an_argument_list_without_a_shell(outputs, make_queue, monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, args, **kwargs):
            seen["args"], seen["kwargs"] = args, kwargs
            self.pid = 424242

        def poll(self):
            return None

    monkeypatch.setattr(jobs_mod.subprocess, "Popen", FakePopen)
    q = make_queue()
    job = q.submit(plan("evil"))
    q.tick()
    assert isinstance(seen["args"], list) and seen["args"] == q.get(job.id).argv
    assert seen["kwargs"]["shell"] is False and seen["kwargs"]["start_new_session"] is True
    q._procs.clear()  # nothing to clean up: no process was started


def test_one_job_at_a_time_then_the_queue_drains_in_order(outputs, make_queue, wait_until, gate):
    q = make_queue(FAKE_TRAIN_GATE=str(gate))  # the first job runs until the test opens the gate
    first, second = q.submit(plan("first")), q.submit(plan("second"))
    q.tick()
    states = {j.id: j.state for j in q.list()}
    assert states == {first.id: "running", second.id: "queued"}
    assert q.queue_position(q.get(second.id)) == 1
    q.tick()
    assert q.get(second.id).state == "queued"  # still one at a time
    gate.touch()
    wait_until(q, lambda: q.get(first.id).state == "done")
    wait_until(q, lambda: q.get(second.id).state == "done")
    assert q.get(first.id).started_at <= q.get(second.id).started_at
    assert runs.read_status(outputs / second.run_dir)["status"] == "done"


def test_monitor_reads_progress_steps_per_second_and_the_log_tail(outputs, make_queue, wait_until, gate):
    q = make_queue(FAKE_TRAIN_CHUNKS="4", FAKE_TRAIN_GATE=str(gate))  # held after chunk 1 of 4
    job = q.submit(plan("mon"))
    q.tick()
    # A trainer writes status.json before its log line (the real one too: status, then the progress bar),
    # so the panel may show chunk 1 before the log does: wait for one reading that has both.
    p: dict = {}

    def chunk_one_shown() -> bool:
        p.update(q.progress(q.get(job.id)))
        return "fake: chunk 1/4" in p["log_tail"]

    wait_until(q, chunk_one_shown, "chunk 1 in status.json and in the log tail")
    assert p["state"] == "running" and p["progress"] == 0.25 and p["run_states"] == ["running"]
    assert p["env_steps"] == 100 and p["total_env_steps"] == 400 and p["steps_per_s"] == 1001.0
    gate.touch()
    wait_until(q, lambda: q.get(job.id).state == "done")
    p = q.progress(q.get(job.id))
    assert p["progress"] == 1.0 and p["run_states"] == ["done"]
    assert "fake trainer args:" in read_log_tail(q.log_path(job), lines=50)


def test_cancel_a_queued_job_before_it_starts(outputs, make_queue, wait_until):
    q = make_queue(FAKE_TRAIN_DELAY="0.2")
    running, queued = q.submit(plan("run")), q.submit(plan("wait"))
    q.tick()
    assert q.cancel(queued.id).state == "cancelled"
    assert runs.read_status(outputs / queued.run_dir)["status"] == "cancelled"
    wait_until(q, lambda: q.get(running.id).state == "done")
    q.tick()
    assert q.get(queued.id).state == "cancelled" and q.get(queued.id).pid is None


def test_cancel_a_running_job_stops_it_at_a_chunk_boundary(outputs, make_queue, wait_until):
    q = make_queue("slow", FAKE_TRAIN_DELAY="0.1")
    job = q.submit(plan("stopme", points=2))
    q.tick()
    wait_until(q, lambda: q.progress(q.get(job.id))["env_steps"] > 0)
    q.cancel(job.id)
    assert all(runs.cancel_requested(d) for d in q.point_paths(job))
    assert q.progress(q.get(job.id))["cancelling"]
    wait_until(q, lambda: q.get(job.id).state == "cancelled")
    assert q.get(job.id).returncode == 130
    tail = read_log_tail(q.log_path(job), lines=50)
    assert "] cancel requested: SIGTERM sent, CANCEL file written" in tail
    assert tail.endswith("job cancelled (exit code 130)")
    assert [runs.read_status(d)["status"] for d in q.point_paths(job)] == ["cancelled", "cancelled"]


def test_cancel_signals_before_it_writes_the_cancel_file(outputs, make_queue, monkeypatch, wait_until):
    # The real trainer restores the default SIGTERM handler once it has stopped (on the CANCEL file, say);
    # a SIGTERM sent after the file could land then and kill it (-15) instead of its clean exit 130.
    q = make_queue("slow", FAKE_TRAIN_DELAY="0.1")
    job = q.submit(plan("order", points=2))
    q.tick()
    wait_until(q, lambda: q.progress(q.get(job.id))["env_steps"] > 0)
    calls = []
    real_killpg, real_request = jobs_mod.os.killpg, runs.request_cancel
    monkeypatch.setattr(jobs_mod.os, "killpg", lambda pid, sig: (calls.append(("signal", sig)),
                                                                 real_killpg(pid, sig)))  # fmt: skip
    monkeypatch.setattr(runs, "request_cancel", lambda d: (calls.append(("file", d)), real_request(d)))
    q.cancel(job.id)
    assert calls[0] == ("signal", signal.SIGTERM)
    assert [c[1] for c in calls[1:]] == [outputs / job.run_dir, *q.point_paths(job)]
    wait_until(q, lambda: q.get(job.id).state == "cancelled")
    assert q.get(job.id).returncode == 130


def test_a_trainer_that_ignores_sigterm_is_killed_and_marked_cancelled(outputs, make_queue, wait_until):
    q = make_queue("hang", kill_after_s=0.3, FAKE_TRAIN_DELAY="0.2")
    job = q.submit(plan("stubborn"))
    q.tick()
    wait_until(q, lambda: runs.read_status(outputs / job.run_dir)["status"] == "running")
    runs_dir = outputs / job.run_dir
    q.cancel(job.id)  # the fake trainer in "hang" mode ignores both SIGTERM and the CANCEL file
    wait_until(q, lambda: q.get(job.id).state == "cancelled", timeout=20)
    assert q.get(job.id).returncode == -signal.SIGKILL and q.get(job.id).kill_stage == 2
    st = runs.read_status(runs_dir)
    assert st["status"] == "cancelled" and st["pid"] is None and st["ended_at"]


def test_a_failing_trainer_marks_the_job_and_run_failed_with_its_error(outputs, make_queue, wait_until):
    q = make_queue("fail")
    job = q.submit(plan("bad"))
    q.tick()
    wait_until(q, lambda: q.get(job.id).state == "failed")
    assert q.get(job.id).returncode == 2
    assert q.get(job.id).error == "agent.total_timesteps=1 is less than one update"
    st = runs.read_status(outputs / job.run_dir)
    assert st["status"] == "failed" and "code 2" in st["error"]


def test_a_restarted_ui_adopts_the_running_job_and_reaps_it(outputs, make_queue, wait_until, gate, scaled):
    first = make_queue(FAKE_TRAIN_CHUNKS="6", FAKE_TRAIN_GATE=str(gate))  # alive until the gate opens
    job = first.submit(plan("survivor"))
    first.tick()
    pid = first.get(job.id).pid
    # The UI process goes away but the training keeps running; a new UI reads the queue from disk.
    proc = first._procs.pop(job.id)
    first._logs.pop(job.id).close()
    second = make_queue()
    assert [j.id for j in second.active()] == [job.id] and second.get(job.id).pid == pid
    second.tick()
    assert second.get(job.id).state == "running"
    gate.touch()
    proc.wait(timeout=scaled(30))  # the rest of a fake run: well under a second on an idle machine
    wait_until(second, lambda: second.get(job.id).state == "done")


def test_only_one_worker_per_outputs_root(outputs, make_queue):
    a, b = make_queue(), make_queue()
    assert a.start_worker() is True
    assert b.start_worker() is False
    a.stop_worker()
    assert b.start_worker() is True


def test_the_worker_thread_runs_jobs_by_itself(outputs, make_queue, wait_for):
    q = make_queue()
    q.start_worker()
    job = q.submit(plan("auto"))
    # 20 s on an idle machine for a sub-second fake run: past it the worker thread is not running jobs
    wait_for(lambda: q.get(job.id).state == "done", "the worker thread to run the job", 20)


def test_job_ids_are_validated(outputs, make_queue):
    q = make_queue()
    for bad in ("../x", "/etc/passwd", "a/b", ""):
        with pytest.raises(UserError):
            q.get(bad)
        with pytest.raises(UserError):
            q.cancel(bad)


def test_log_tail_collapses_progress_bar_redraws(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("start\n" + "".join(f"\rtag:  {i}%|##   | {i}/100" for i in range(0, 101, 10)) + "\nend\n")
    assert read_log_tail(log) == "start\ntag:  100%|##   | 100/100\nend"
    assert read_log_tail(tmp_path / "missing.log") == ""


def test_crashed_trainer_is_failed_not_left_running(outputs, make_queue, wait_until):
    q = make_queue("crash")
    job = q.submit(plan("crash"))
    q.tick()
    wait_until(q, lambda: q.get(job.id).state == "failed")
    st = runs.read_status(outputs / job.run_dir)
    assert st["status"] == "failed" and "exited with code 9" in st["error"]


def test_a_queue_in_another_process_sees_the_same_jobs(outputs, make_queue):
    q = make_queue()
    job = q.submit(plan("shared"))
    code = (
        f"from tradelab_jax.ui.jobs import JobQueue; "
        f"print([j.id for j in JobQueue({str(outputs)!r}).active()])"
    )
    out = subprocess.run(
        [__import__("sys").executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == repr([job.id])
    assert isinstance(JobQueue(outputs).get(job.id).argv, list)


# ---------------------------------------------------------------------------------------------------------
# resume


def test_a_cancelled_run_with_a_checkpoint_is_queued_as_a_resume_job(outputs, make_queue, wait_until, gate):
    q = make_queue(FAKE_TRAIN_GATE=str(gate))  # the busy job runs until the test opens the gate
    running = q.submit(plan("busy"))
    q.tick()
    rid = "20251126T110000Z_stopped"
    make_run(outputs, rid, status="cancelled", checkpoint=2)
    job = q.resume(rid)
    assert job.argv == [*q.command, f"run.resume={outputs / rid}"] and (outputs / rid).is_absolute()
    assert job.run_dir == rid and job.points == 1 and job.extra == {"resume": rid, "from_update": 2}
    assert json.loads((outputs / ".queue" / f"{job.id}.json").read_text())["argv"] == job.argv
    assert job.id.startswith(f"{rid}_resume-") and runs.read_status(outputs / rid)["status"] == "queued"
    # The same queue as launches: it waits for the running job, then continues from its checkpoint.
    q.tick()
    assert q.get(job.id).state == "queued" and q.queue_position(q.get(job.id)) == 1
    gate.touch()
    wait_until(q, lambda: q.get(running.id).state == "done")
    wait_until(q, lambda: q.get(job.id).state == "done")
    st = runs.read_status(outputs / rid)
    assert st["status"] == "done" and st["resumed_at"] and st["env_steps"] == 300
    assert "fake: resumed at chunk 2" in read_log_tail(q.log_path(job), lines=50)
    assert f"run.resume={outputs / rid}" in read_log_tail(q.log_path(job), lines=50)


@pytest.mark.parametrize(
    ("run_id", "why"),
    [
        ("20251126T110000Z_finished", "it is done (trained and evaluated)"),
        ("20251126T110000Z_busy", "it is running (cancel its job first"),
        ("20251126T110000Z_waiting", "it is queued (cancel its job first"),
        ("20251126T110000Z_early", "it has no checkpoint"),
        ("20251126T110000Z_nothing", "it has no checkpoint"),
    ],
)
def test_resume_refuses_runs_that_cannot_continue_in_one_sentence(outputs, make_queue, run_id, why):
    make_run(outputs, "20251126T110000Z_finished", checkpoint=2)
    make_run(outputs, "20251126T110000Z_busy", status="running", pid=os.getpid(), checkpoint=1)
    make_run(outputs, "20251126T110000Z_waiting", status="queued", checkpoint=1)
    make_run(outputs, "20251126T110000Z_early", status="cancelled")  # stopped before its first chunk
    runs.queue_run(outputs / "20251126T110000Z_nothing")  # cancelled before it started: no config either
    runs.write_status(outputs / "20251126T110000Z_nothing", status="cancelled")
    q = make_queue()
    before = runs.read_status(outputs / run_id)
    with pytest.raises(UserError) as err:
        q.resume(run_id)
    message = str(err.value)
    assert message.startswith(f"run {run_id!r} cannot be resumed: {why}")
    assert message.endswith(results.WHAT_RESUMES) and "\n" not in message
    assert q.list() == [] and runs.read_status(outputs / run_id) == before


@pytest.mark.parametrize(
    "bad", ["../x", "../outputs/20251126T110000Z_stopped", "/etc", "a/b", "", "multirun/x"]
)
def test_resume_refuses_ids_outside_the_outputs_folder(outputs, make_queue, bad):
    make_run(outputs.parent, "x", status="cancelled", checkpoint=1)  # a resumable run next to outputs/
    make_run(outputs, "20251126T110000Z_stopped", status="cancelled", checkpoint=1)
    q = make_queue()
    with pytest.raises(UserError, match=r"invalid run id|no run selected|no run "):
        q.resume(bad)
    assert q.list() == [] and runs.read_status(outputs.parent / "x")["status"] == "cancelled"


def test_a_killed_training_is_resumable_once_its_job_is_reaped(outputs, make_queue, wait_until, scaled):
    q = make_queue("slow", FAKE_TRAIN_DELAY="0.05")
    job = q.submit(plan("killed"))
    q.tick()
    run_dir = outputs / job.run_dir
    wait_until(q, lambda: runs.read_status(run_dir).get("env_steps", 0) > 0)
    proc = q._procs.pop(job.id)  # as if the UI had gone away too: nobody has reaped the job yet
    q._logs.pop(job.id).close()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=scaled(10))  # SIGKILLed: the budget only catches a process that never goes
    assert runs.run_state(run_dir) == "interrupted"
    with pytest.raises(UserError, match=rf"cannot be resumed: job '{job.id}' is still running for it"):
        q.resume(job.run_dir)
    q.tick()  # the worker reaps the dead process: the run becomes failed
    assert q.get(job.id).state == "failed" and runs.read_status(run_dir)["status"] == "failed"
    # The worker runs a record with its own trainer settings: a queue whose fake trainer finishes.
    finisher = make_queue(FAKE_TRAIN_CHUNKS="10", FAKE_TRAIN_DELAY="0.01")
    resumed = finisher.resume(job.run_dir)
    with pytest.raises(UserError, match="it is queued"):  # a second click while it waits
        finisher.resume(job.run_dir)
    wait_until(finisher, lambda: finisher.get(resumed.id).state == "done")
    assert runs.read_status(run_dir)["status"] == "done"


def test_a_point_of_a_packed_sweep_resumes_its_whole_sweep(outputs, make_queue, wait_until):
    q = make_queue("slow", FAKE_TRAIN_DELAY="0.05")
    job = q.submit(plan("sw", points=2))
    q.tick()
    wait_until(q, lambda: q.progress(q.get(job.id))["env_steps"] > 0)
    q.cancel(job.id)
    wait_until(q, lambda: q.get(job.id).state == "cancelled")
    group = outputs / job.run_dir
    finisher = make_queue(FAKE_TRAIN_CHUNKS="10", FAKE_TRAIN_DELAY="0.01")
    resumed = finisher.resume(f"{job.run_dir}/1")
    assert resumed.run_dir == job.run_dir and resumed.points == 2
    assert resumed.argv[-1] == f"run.resume={group}"
    wait_until(finisher, lambda: finisher.get(resumed.id).state == "done")
    assert [runs.read_status(d)["status"] for d in q.point_paths(job)] == ["done", "done"]
    assert not runs.cancel_requested(group)  # the trainer removed the CANCEL files of the first stop


def test_cancelling_a_queued_resume_leaves_the_run_resumable(outputs, make_queue):
    q = make_queue()
    make_run(outputs, "20251126T110000Z_stopped", status="failed", checkpoint=1)
    job = q.resume("20251126T110000Z_stopped")
    assert q.cancel(job.id).state == "cancelled"
    assert runs.read_status(outputs / "20251126T110000Z_stopped")["status"] == "cancelled"
    again = q.resume("20251126T110000Z_stopped")
    assert again.id != job.id and again.state == "queued"
