"""runs.py owns the run-directory contract: one state vocabulary, one derived state, one resumability rule
(asked by `train run.resume=` and by the UI's Resume button) and one run discovery (UI and archive)."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import tradelab_jax
from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.training.validate import check_resume, check_run_dir
from tradelab_jax.ui import results

PACKAGE = Path(tradelab_jax.__file__).parent


@pytest.fixture(scope="module")
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _run(outputs: Path, name: str, *, checkpoint: int | None = None, **status) -> Path:
    """A run directory with a config, the given status.json fields and optionally a (fake) checkpoint."""
    d = outputs / name
    d.mkdir(parents=True)
    runs.write_config(d, {"seed": 0, "run": {"tag": name.split("_", 1)[-1]}})
    runs.write_status(d, **status)
    if checkpoint is not None:
        runs.write_checkpoint(d, checkpoint, b"runner state", {"env_steps": 10 * checkpoint})
    return d


def _cli_refusal(path: Path) -> str | None:
    try:
        check_resume(path)
    except UserError as err:
        return str(err)
    return None


def _ui_refusal(outputs: Path, run_id: str) -> str | None:
    try:
        results.resume_target(outputs, run_id)
    except UserError as err:
        return str(err)
    return None


# ---------------------------------------------------------------------------------------------------------
# states


def test_the_vocabulary_is_the_active_and_the_final_states():
    assert set(runs.ACTIVE_STATES).isdisjoint(runs.FINAL_STATES)
    assert set(runs.STATES) == {"queued", "running", "done", "failed", "cancelled"}
    assert runs.INTERRUPTED not in runs.STATES and runs.INTERRUPTED in runs.EFFECTIVE_STATES
    assert set(runs.RESUMABLE_STATES) <= set(runs.EFFECTIVE_STATES) - {"done", *runs.ACTIVE_STATES}
    with pytest.raises(ValueError, match="invalid status"):  # derived states are never written
        runs.write_status(Path("/nonexistent"), status=runs.INTERRUPTED)


@pytest.mark.parametrize(
    ("fields", "effective"),
    [
        ({"status": "running", "pid": "dead"}, "interrupted"),
        ({"status": "queued", "pid": "dead"}, "interrupted"),
        ({"status": "running", "pid": "self"}, "running"),
        ({"status": "queued", "pid": None}, "queued"),  # waiting for its launcher: not interrupted
        ({"status": "cancelled", "pid": "dead"}, "cancelled"),  # a final state is never derived
        ({}, "unknown"),
        ({"status": "running", "pid": "dead", "host": "this"}, "interrupted"),
        # a peer process of a multi-process run on another node: its pid means nothing here
        ({"status": "running", "pid": "dead", "host": "node-17-of-a-cluster"}, "running"),
    ],
)
def test_an_active_run_whose_process_is_gone_is_interrupted(fields, effective, dead_pid):
    pids = {"dead": dead_pid, "self": os.getpid(), None: None}
    status = {**fields, "pid": pids[fields.get("pid")]} if fields else None
    if fields.get("host") == "this":
        status["host"] = socket.gethostname()
    assert runs.effective_state(status) == effective
    assert runs.recorded_state(status) == (fields.get("status") or "unknown")


def test_run_state_reads_missing_and_damaged_status_as_unknown(tmp_path, dead_pid):
    d = _run(tmp_path, "20250101T000000Z_a", status="running", pid=dead_pid)
    assert runs.run_state(d) == "interrupted" and runs.run_state(d, derive=False) == "running"
    (d / runs.STATUS_FILE).write_text('{"status": "runn')  # half written by hand
    assert runs.run_state(d) == "unknown"
    assert runs.run_state(tmp_path / "nothing") == "unknown"


def test_no_module_but_runs_spells_a_list_of_run_states():
    """Lists of state names live in runs.py; everyone else imports them (a single literal is fine)."""
    names = set(runs.EFFECTIVE_STATES)
    copies = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "runs.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # `state, message = "cancelled", "interrupted"` unpacks two values; it spells no list.
        unpacked = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Tuple) for t in n.targets)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List | ast.Set) and id(node) not in unpacked:
                strings = [e.value for e in node.elts if isinstance(getattr(e, "value", None), str)]
                if len(strings) >= 2 and set(strings) <= names:
                    copies.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {strings}")
    assert copies == []


# ---------------------------------------------------------------------------------------------------------
# one resumability rule, asked from the command line and from the UI


def test_a_queued_run_with_a_dead_pid_resumes_from_both_entry_points(tmp_path, dead_pid):
    """The case on which `train run.resume` and the UI's Resume used to disagree."""
    d = _run(tmp_path, "20250101T000000Z_lost", status="queued", pid=dead_pid, checkpoint=3)
    assert _cli_refusal(d) is None and check_resume(d) == d.resolve()
    target = results.resume_target(tmp_path, d.name)
    assert (target.path, target.points, target.update) == (d, 1, 3)


def test_a_queued_run_with_a_dead_pid_and_no_checkpoint_resumes_from_neither(tmp_path, dead_pid):
    d = _run(tmp_path, "20250101T000000Z_early", status="queued", pid=dead_pid)
    cli, ui = _cli_refusal(d), _ui_refusal(tmp_path, d.name)
    assert cli is not None and ui is not None
    assert "it has no checkpoint" in cli and "it has no checkpoint" in ui


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"status": "done"}, "it is done (trained and evaluated)"),
        ({"status": "running", "pid": "self"}, "it is running (cancel its job first"),
        ({"status": "queued", "pid": "self"}, "it is queued (cancel its job first"),
    ],
)
def test_both_entry_points_refuse_the_same_runs_with_the_same_reason(tmp_path, fields, why):
    d = _run(tmp_path, "20250101T000000Z_x", checkpoint=2, **{**fields, "pid": os.getpid()})
    cli, ui = _cli_refusal(d), _ui_refusal(tmp_path, d.name)
    assert cli == f"run.resume={str(d)!r}: {cli.split(': ', 1)[1]}" and why in cli
    assert ui.startswith(f"run {d.name!r} cannot be resumed: {why}") and ui.endswith(runs.WHAT_RESUMES)
    assert cli.split(": ", 1)[1] in ui  # one reason, worded once


def test_a_queued_run_without_a_pid_is_its_launchers_to_start(tmp_path):
    """Queued by a launcher (the UI's queue) that has not started it yet: a second Resume is refused, the
    trainer the launcher then starts (`run.resume=`) takes it."""
    d = _run(tmp_path, "20250101T000000Z_waiting", status="queued", pid=None, checkpoint=1)
    assert "it is queued (cancel its job first" in _ui_refusal(tmp_path, d.name)
    assert _cli_refusal(d) is None


def test_a_packed_sweep_resumes_its_points_that_are_not_done_when_each_can(tmp_path, dead_pid):
    sweep = tmp_path / runs.MULTIRUN_DIR / "20250101T000000Z_sw"
    _run(sweep, "0", status="cancelled", checkpoint=4)
    _run(sweep, "1", status="running", pid=dead_pid, checkpoint=4)
    (sweep / runs.PACKED_FILE).write_text('{"points": [{"dir": "0"}, {"dir": "1"}], "keys": []}')
    assert runs.resume_root(sweep / "1") == sweep and runs.resume_root(sweep / "0" / "x") == sweep / "0" / "x"
    found = runs.resumable(sweep)
    assert (found.path, found.dirs, found.update) == (sweep, (sweep / "0", sweep / "1"), 4)
    target = results.resume_target(tmp_path, "multirun/20250101T000000Z_sw/0")
    assert (target.path, target.points) == (sweep, 2) and _cli_refusal(sweep) is None
    # a point already done (its peer process finished it) is left alone; the others resume
    runs.write_status(sweep / "1", status="done")
    assert runs.resumable(sweep).dirs == (sweep / "0",) and _cli_refusal(sweep) is None
    assert results.resume_target(tmp_path, "multirun/20250101T000000Z_sw/0").points == 1
    # one point that cannot resume still refuses the whole sweep, in one sentence naming it
    runs.write_status(sweep / "0", status="failed")
    (sweep / "0" / runs.CHECKPOINT_DIR).rename(sweep / "0" / "gone")
    assert "it has no checkpoint" in _ui_refusal(tmp_path, "multirun/20250101T000000Z_sw/0")
    assert f"run.resume={str(sweep)!r}: point 0 has no checkpoint" in _cli_refusal(sweep)
    runs.write_status(sweep / "0", status="done")
    assert "every point of the sweep is done" in _cli_refusal(sweep)


def test_an_explicit_run_dir_may_be_a_queued_one_only(tmp_path):
    queued = tmp_path / "q"
    runs.queue_run(queued)
    check_run_dir(queued)
    check_run_dir(tmp_path / "fresh")
    assert not runs.holds_run(queued) and not runs.holds_run(tmp_path / "fresh")
    runs.write_status(queued, status="cancelled")
    assert runs.holds_run(queued)
    with pytest.raises(UserError, match=r"already holds a run \(cancelled\)"):
        check_run_dir(queued)


# ---------------------------------------------------------------------------------------------------------
# one run discovery


def test_the_ui_and_the_archive_find_the_same_runs(tmp_path):
    import tradelab_jax.archive.cli as archive_cli
    from tradelab_jax.archive.local import sweep_points

    outputs = tmp_path / "outputs"
    single = runs.new_run_dir(outputs, "a", timestamp="20250101T000000Z")
    sweep = runs.new_run_dir(outputs, "b", multirun=True, timestamp="20250102T000000Z")
    pulled = outputs / "team" / "20250103T000000Z_c"  # pulled from the archive under its id
    for d in (single, sweep / "0", sweep / "1", sweep / "10", pulled):
        runs.queue_run(d)
    runs.queue_run(outputs / ".queue" / "hidden")  # hidden folders are not searched
    runs.queue_run(single / "checkpoints")  # nor is a run's own subfolder
    (sweep / runs.PACKED_FILE).write_text("{}")
    (outputs / "20250104T000000Z_demo-quick").mkdir()  # an episode's output: no status.json

    found = runs.find_runs(outputs)
    assert archive_cli.find_runs is runs.find_runs
    assert set(found) == {single, sweep / "0", sweep / "1", sweep / "10", pulled}
    assert set(runs.iter_runs(outputs)) == set(found)
    listed = {r["run"] for r in results.list_runs(outputs)}
    assert listed == {p.relative_to(outputs).as_posix() for p in found}
    assert sweep_points(sweep) == ["0", "1", "10"] and runs.is_sweep_dir(sweep)
    assert all(results.resolve_run(outputs, run_id) for run_id in listed)  # every listed run opens
