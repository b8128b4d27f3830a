"""Job control: launch, queue, monitor, cancel and restart, against a fake trainer that keeps the contract."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.ui import jobs as jobs_mod
from tradelab_jax.ui import results
from tradelab_jax.ui.jobs import JobQueue, read_log_tail

from .conftest import plan, wait_until


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


def test_a_packed_sweep_runs_to_done_and_lists_only_its_points(outputs, make_queue):
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


def test_one_job_at_a_time_then_the_queue_drains_in_order(outputs, make_queue):
    q = make_queue(FAKE_TRAIN_DELAY="0.2")
    first, second = q.submit(plan("first")), q.submit(plan("second"))
    q.tick()
    states = {j.id: j.state for j in q.list()}
    assert states == {first.id: "running", second.id: "queued"}
    assert q.queue_position(q.get(second.id)) == 1
    q.tick()
    assert q.get(second.id).state == "queued"  # still one at a time
    wait_until(q, lambda: q.get(first.id).state == "done")
    wait_until(q, lambda: q.get(second.id).state == "done")
    assert q.get(first.id).started_at <= q.get(second.id).started_at
    assert runs.read_status(outputs / second.run_dir)["status"] == "done"


def test_monitor_reads_progress_steps_per_second_and_the_log_tail(outputs, make_queue):
    q = make_queue(FAKE_TRAIN_CHUNKS="4", FAKE_TRAIN_DELAY="0.3")
    job = q.submit(plan("mon"))
    q.tick()
    wait_until(q, lambda: 0 < q.progress(q.get(job.id))["progress"] < 1, timeout=20)
    p = q.progress(q.get(job.id))
    assert p["state"] == "running" and p["total_env_steps"] == 400 and p["env_steps"] >= 100
    assert p["steps_per_s"] > 1000 and "fake: chunk" in p["log_tail"]
    wait_until(q, lambda: q.get(job.id).state == "done")
    p = q.progress(q.get(job.id))
    assert p["progress"] == 1.0 and p["run_states"] == ["done"]
    assert "fake trainer args:" in read_log_tail(q.log_path(job), lines=50)


def test_cancel_a_queued_job_before_it_starts(outputs, make_queue):
    q = make_queue(FAKE_TRAIN_DELAY="0.2")
    running, queued = q.submit(plan("run")), q.submit(plan("wait"))
    q.tick()
    assert q.cancel(queued.id).state == "cancelled"
    assert runs.read_status(outputs / queued.run_dir)["status"] == "cancelled"
    wait_until(q, lambda: q.get(running.id).state == "done")
    q.tick()
    assert q.get(queued.id).state == "cancelled" and q.get(queued.id).pid is None


def test_cancel_a_running_job_stops_it_at_a_chunk_boundary(outputs, make_queue):
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


def test_cancel_signals_before_it_writes_the_cancel_file(outputs, make_queue, monkeypatch):
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


def test_a_trainer_that_ignores_sigterm_is_killed_and_marked_cancelled(outputs, make_queue):
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


def test_a_failing_trainer_marks_the_job_and_run_failed_with_its_error(outputs, make_queue):
    q = make_queue("fail")
    job = q.submit(plan("bad"))
    q.tick()
    wait_until(q, lambda: q.get(job.id).state == "failed")
    assert q.get(job.id).returncode == 2
    assert q.get(job.id).error == "agent.total_timesteps=1 is less than one update"
    st = runs.read_status(outputs / job.run_dir)
    assert st["status"] == "failed" and "code 2" in st["error"]


def test_a_restarted_ui_adopts_the_running_job_and_reaps_it(outputs, make_queue):
    first = make_queue(FAKE_TRAIN_CHUNKS="6", FAKE_TRAIN_DELAY="0.25")
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
    proc.wait(timeout=30)
    wait_until(second, lambda: second.get(job.id).state == "done")


def test_only_one_worker_per_outputs_root(outputs, make_queue):
    a, b = make_queue(), make_queue()
    assert a.start_worker() is True
    assert b.start_worker() is False
    a.stop_worker()
    assert b.start_worker() is True


def test_the_worker_thread_runs_jobs_by_itself(outputs, make_queue):
    q = make_queue()
    q.start_worker()
    job = q.submit(plan("auto"))
    deadline = time.monotonic() + 20
    while q.get(job.id).state != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q.get(job.id).state == "done"


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


def test_crashed_trainer_is_failed_not_left_running(outputs, make_queue):
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
