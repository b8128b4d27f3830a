"""End to end in headless Chromium: the real ``tradelab ui`` server and real ``tradelab train`` processes.

One server on a free loopback port with a temporary outputs root serves the whole module; the tests run in
file order and share it: refuse an invalid field, launch a tiny packed sweep of two risk values (trained
for real by the CLI in one process) and a big run that queues behind it, reload the page and find the jobs,
watch the sweep reach ``done``, cancel the big run once it runs, find both sweep points in the runs table,
open one and see its equity plot, compare the two points, refuse path traversal in the page and over
HTTP, and resume a run stopped at a real checkpoint (a sweep point, rewound) until it is done. Screenshots
go to ``test-artifacts/ui/``.

Every wait is on a state (a job record, a badge, a file, a message) with an idle machine's budget that
tests/conftest.py stretches for the load; each budget says what it protects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tradelab_jax import runs
from tradelab_jax.ui.jobs import JobQueue

from .runs_factory import make_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("TRADELAB_CHROMIUM", "/usr/bin/chromium")
DATASET = "binance_btcusdt_1m_2025-10"  # the small embedded dataset: the evaluation is quick
# A real tiny training from the start of its process: compile, 8 updates, the evaluation. ~40 s on an idle
# 2-core machine, ~70 s beside two CPU hogs; past this budget (scaled for the load) it is stuck.
TRAIN_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, wait_for, scaled):
    if not Path(CHROMIUM).exists():
        # A core test: never skipped silently. scripts/test.sh installs Debian's chromium first.
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/test_deps.sh or set TRADELAB_CHROMIUM")
    root = tmp_path_factory.mktemp("ui-e2e")
    outputs = root / "outputs"
    outputs.mkdir()
    (root / "secret.txt").write_text("TOPSECRET-next-to-outputs")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "TRADELAB_UI_AUTH"}
    log = open(root / "ui.log", "wb")  # noqa: SIM115 - closed in teardown
    # --kill-after: the UI escalates a cancel (second SIGTERM, then SIGKILL at twice it) only after a clean
    # stop (exit 130, which the cancel test checks) had time: ~5 s even beside two hogs; 15 s idle, scaled.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradelab_jax.cli", "ui", "--outputs", str(outputs), "--port", str(port),
         "--kill-after", f"{scaled(15):.0f}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, shell=False,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def serving() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"tradelab ui exited with code {proc.returncode}")
        try:
            return httpx.get(url, timeout=scaled(2)).status_code == 200
        except httpx.HTTPError:
            return False

    try:  # imports Gradio and builds the app: ~10 s idle
        wait_for(serving, "tradelab ui to serve its page", 120, poll_s=0.5)
    except AssertionError as err:
        log.close()
        pytest.fail(f"tradelab ui did not start: {err}\n{(root / 'ui.log').read_text()[-3000:]}")
    yield {"url": url, "outputs": outputs, "root": root, "proc": proc}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=scaled(20))  # Gradio's shutdown; then it is killed
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    for job in JobQueue(outputs).list():  # trainings outlive the UI on purpose; not the test's
        if job.state == "running" and job.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def page(server, scaled):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Playwright's own waits (an element to appear, to be clickable): a page event takes well under a
        # second idle; 60 s (scaled for the load when the page opens) only catches a page that never does.
        pg.set_default_timeout(scaled(60) * 1000)
        pg.goto(server["url"])
        pg.wait_for_selector("#launch")
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def until(page, wait_for) -> Callable[[Callable[[], object], str, float], object]:
    """``until(predicate, what, timeout)``: tests/conftest.py's wait_for, with a screenshot on a timeout."""

    def wait(predicate: Callable[[], object], what: str, timeout: float) -> object:
        return wait_for(predicate, what, timeout, poll_s=0.25,
                        on_timeout=lambda: shot(page, "timeout-" + re.sub(r"\W+", "-", what)))  # fmt: skip

    return wait


def field(page, name: str):
    return page.locator(f"#f-{name} input, #f-{name} textarea").first


def type_into(page, locator, value: str) -> None:
    """Replace a textbox's text by typing it, as a user does (Gradio's input event needs real key events)."""
    locator.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    locator.press_sequentially(value)


def fill(page, **values: str) -> None:
    for name, value in values.items():
        type_into(page, field(page, name), value)


def choose(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").first.click()
    page.get_by_role("option", name=option).first.click()


def jobs(server) -> list:
    return JobQueue(server["outputs"]).list()


def job_state_in_page(page, job_id: str) -> str | None:
    card = page.locator(f".job[data-job='{job_id}']")
    return card.get_attribute("data-state") if card.count() else None


def pick_running_job(page, until, job) -> None:
    """Choose a running job in the Jobs dropdown, and wait until the panel follows it.

    The panel's 1 s timer sends the dropdown's value with each tick and writes it back with its answer, so a
    tick in flight while the user picks puts the old choice back (``on_tick``, ui/tabs/launch.py;
    3 picks in 16 beside two CPU hogs), and Cancel would then act on the old job. A user picks again; so
    does this, until a tick that read the new choice has put the job's own log in the log tail.
    """
    pick = page.locator("#job-pick input").first
    tail = page.locator("#log-tail textarea")

    def followed() -> bool:
        if not pick.input_value().startswith(f"{job.id} "):
            choose(page, "job-pick", f"{job.id} (running)")
            return False
        return job.run_dir in tail.input_value()

    until(followed, f"the job panel to follow {job.id}", 30)  # a tick takes well under 1 s idle


# ---------------------------------------------------------------------------------------------------------
# Budgets below are for an idle machine (tests/conftest.py scales them): a page event answers in well under a
# second, so 20-30 s only says "it never came"; trainings have their own budgets.


def test_an_invalid_field_is_refused_next_to_it_and_nothing_starts(page, server):
    shot(page, "01-launch-form")
    fill(page, tag="my run; rm -rf ~", risk_pct="2")
    page.locator("#err-tag").wait_for(state="visible")
    assert "experiment tag must be" in page.locator("#err-tag").inner_text()
    assert "env.risk_pct=2.0: expected a fraction in (0, 1]" in page.locator("#err-risk_pct").inner_text()
    page.locator("#launch").click()
    page.get_by_text("Not launched").first.wait_for()
    assert "fix the fields" in page.locator("#preview").inner_text()
    shot(page, "02-invalid-field-refused")
    assert jobs(server) == []


def launch(page, server, until, count: int, **values: str) -> None:
    fill(page, **values)
    preview = page.locator("#preview")
    until(lambda: f"run.tag={values['tag']} " in preview.inner_text(), "the preview", 20)
    page.locator("#launch").click()
    until(lambda: len(jobs(server)) == count, f"job record {count}", 20)


def test_launch_a_tiny_packed_sweep_and_a_big_run_that_queues(page, server, until):
    choose(page, "f-dataset", DATASET)
    # Two risk values: one packed sweep of two points, trained in one process.
    launch(page, server, until, 1, risk_pct="0.005, 0.01", stop_loss_bps="50", total_timesteps="256",
           num_envs="2", num_steps="16", chunk_updates="4", seeds="0", tag="e2e-sweep")  # fmt: skip
    preview = page.locator("#preview").inner_text()
    assert f"data={DATASET}" in preview and "sweep.env.risk_pct=[0.005,0.01]" in preview
    assert "one packed sweep: 2 runs" in preview
    # A big run: it waits behind the sweep (one training at a time), and is cancelled later.
    launch(page, server, until, 2, risk_pct="0.01", total_timesteps="100000000", num_envs="4",
           num_steps="128", chunk_updates="2", tag="e2e-cancel")  # fmt: skip
    sweep, big = jobs(server)
    assert (sweep.tag, big.tag) == ("e2e-sweep", "e2e-cancel")
    assert sweep.points == 2 and sweep.run_dir.startswith(f"{runs.MULTIRUN_DIR}/")
    assert sweep.argv[:3] == [sys.executable, "-m", "tradelab_jax.train"]
    assert "sweep.env.risk_pct=[0.005,0.01]" in sweep.argv and "env.stop_loss_bps=50.0" in sweep.argv
    assert sweep.argv[-1] == f"run.dir={server['outputs'] / sweep.run_dir}"
    assert big.points == 1 and "env.risk_pct=0.01" in big.argv
    page.get_by_text("waits in the queue").first.wait_for()
    until(lambda: job_state_in_page(page, big.id) == "queued", "the queued badge", 20)
    assert "#1 in the queue" in page.locator(f".job[data-job='{big.id}']").inner_text()
    assert "packed sweep of 2 runs" in page.locator(f".job[data-job='{sweep.id}']").inner_text()
    # The worker starts it within its 1 s poll; the job is running from its process's start (compile too).
    until(lambda: job_state_in_page(page, sweep.id) == "running", "the sweep running", 30)
    shot(page, "03-running-and-queued")


def test_a_reload_picks_the_jobs_up_again(page, server, until):
    sweep, big = jobs(server)
    page.reload()
    page.wait_for_selector("#launch")
    until(lambda: job_state_in_page(page, sweep.id) in ("running", "done"), "jobs after reload", 30)
    assert job_state_in_page(page, big.id) in ("queued", "running")
    # the log tail of the running job shows the trainer's command and output
    until(lambda: "tradelab_jax.train" in page.locator("#log-tail textarea").input_value(), "the log", 30)


def test_the_sweep_trains_for_real_and_both_points_reach_done(page, server, until):
    queue = JobQueue(server["outputs"])
    job = jobs(server)[0]
    until(lambda: not queue.get(job.id).active, "the sweep to end", TRAIN_TIMEOUT_S)
    ended = queue.get(job.id)
    assert ended.state == "done", f"the trainer ended {ended.state}: {ended.error}"
    assert ended.returncode == 0
    until(lambda: job_state_in_page(page, job.id) == "done", "the done badge", 20)
    assert page.locator(f".job[data-job='{job.id}'] .bar").get_attribute("aria-valuenow") == "100"
    group = queue.run_path(ended)
    packed = json.loads((group / runs.PACKED_FILE).read_text())
    assert [p["dir"] for p in packed["points"]] == ["0", "1"]
    assert runs.point_dirs(group) == queue.point_paths(ended)
    risks = []
    for run_dir in queue.point_paths(ended):
        assert runs.read_status(run_dir)["status"] == "done"
        assert (run_dir / runs.TELEMETRY_FILE).is_file() and (run_dir / runs.EVAL_FILE).is_file()
        risks.append(runs.read_config(run_dir)["env"]["risk_pct"])
    assert sorted(risks) == [0.005, 0.01]
    shot(page, "04-sweep-done")


def test_cancel_the_third_run_while_it_runs(page, server, until):
    big = jobs(server)[1]
    until(lambda: job_state_in_page(page, big.id) == "running", "the queued run to start", 30)
    run_dir = server["outputs"] / big.run_dir
    # Past its first chunk, so the trainer itself stops at a chunk boundary and records it. The big run
    # compiles first: ~15 s idle, ~40 s beside two hogs.
    until(lambda: (runs.read_status(run_dir) or {}).get("env_steps", 0) > 0, "the first chunk", 120)
    card = page.locator(f".job[data-job='{big.id}']")
    until(lambda: "steps/s" in card.inner_text(), "steps/s", 20)
    pick_running_job(page, until, big)
    page.locator("#cancel").click()
    msg = page.locator("#cancel-msg")

    def answer() -> str:  # until it comes, Gradio shows its timer there ("processing | 0.1s", "0.1s")
        text = msg.inner_text().strip()
        return text if "job" in text.lower() else ""  # every answer of on_cancel names the job

    text = until(answer, "the cancel's answer", 20)
    assert "Stopping job" in text and big.id in text, text
    # The trainer stops at its next chunk boundary (a chunk is ~0.1 s of training; the stop took ~5 s
    # beside two hogs); 90 s also covers the UI's escalation (2 x --kill-after) if it did not.
    until(lambda: job_state_in_page(page, big.id) == "cancelled", "the cancel", 90)
    job = JobQueue(server["outputs"]).get(big.id)
    assert job.returncode == 130  # the trainer's own clean stop, not a kill
    status = runs.read_status(run_dir)
    assert status["status"] == "cancelled" and runs.latest_checkpoint(run_dir) is not None
    log_tail = page.locator("#log-tail textarea")
    until(lambda: "cancel requested" in log_tail.input_value(), "the log", 20)
    shot(page, "05-cancelled")


def test_the_runs_table_and_a_run_with_its_equity_plot(page, server, until, scaled):
    make_run(server["outputs"], "20250101T000000Z_fromcli")  # a run the command line wrote
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    # Only the tab's own refresh can show fromcli (written after the page loaded): once it shows, nothing
    # in flight can put an older pick back in the run dropdown.
    until(lambda: "fromcli" in table.inner_text() and "e2e-cancel" in table.inner_text(), "rows", 30)
    text = table.inner_text()
    assert text.count("done") >= 3 and "cancelled" in text
    sweep = jobs(server)[0]
    for rid in sweep.point_ids():  # both points of the sweep are runs of their own
        assert rid in text
    # Gradio also renders the first row in a hidden sizing row: click the visible cell
    table.get_by_text(sweep.point_ids()[1], exact=True).filter(visible=True).first.click()
    # the interactive (plotly) equity figure with a legend entry for each drawdown, the price with the
    # round trips, the sweep's verdict (the trainer writes stats.json after training) and its intervals
    page.locator("#equity-plot .js-plotly-plot").wait_for()
    until(lambda: "agent drawdown" in page.locator("#equity-plot").inner_text(), "the legend", 20)
    assert "buy_and_hold drawdown" in page.locator("#equity-plot").inner_text()
    page.locator("#price-plot .js-plotly-plot").wait_for()
    assert "long entry" in page.locator("#price-plot").inner_text() or "short entry" in page.locator(
        "#price-plot").inner_text()
    assert "done" in page.locator("#run-status").inner_text()
    assert "Verdict" in page.locator("#run-links").inner_text()
    assert "configuration" in page.locator("#run-links").inner_text()
    assert "sharpe" in page.locator("#intervals-table").inner_text()
    assert "buy_and_hold" in page.locator("#eval-table").inner_text()
    page.locator("#metrics-plot img").wait_for()
    # hovering the equity figure shows the values under the pointer (plotly's hover label)
    drag = page.locator("#equity-plot .nsewdrag").first
    drag.scroll_into_view_if_needed()

    def hovered() -> bool:
        box = drag.bounding_box()
        for frac in (0.45, 0.5):  # plotly draws its label on a pointer move inside the plot area
            page.mouse.move(box["x"] + box["width"] * frac, box["y"] + box["height"] * 0.5)
        label = "#equity-plot .hoverlayer .hovertext, #equity-plot .hoverlayer .legend"
        return page.locator(label).count() > 0

    until(hovered, "the hover label", 20)
    shot(page, "06-run-equity")
    page.locator("#equity-plot").screenshot(path=str(ARTIFACTS / "06b-equity-figure.png"))
    # a contract file as a download: Gradio serves the UI's copy, never the outputs folder itself
    page.get_by_text("Files", exact=True).first.click()
    page.locator("#file-btn").click()
    link = page.locator("#file-out a").first
    link.wait_for()
    href = link.get_attribute("href") or ""
    r = httpx.get(href if href.startswith("http") else server["url"].rstrip("/") + href, timeout=scaled(10))
    assert r.status_code == 200 and '"splits"' in r.text and str(server["outputs"]) not in href
    # filter
    search = page.locator("#runs-search input, #runs-search textarea").first
    type_into(page, search, "cancel")
    search.press("Enter")
    until(lambda: "fromcli" not in table.inner_text(), "the filter", 20)
    assert "e2e-cancel" in table.inner_text()


def test_compare_the_two_points_of_the_sweep(page, server):
    ids = jobs(server)[0].point_ids()
    page.get_by_role("tab", name="Compare").click()
    # The picker's choices come only with the tab's answer (the app was built before any run existed), so
    # each option is clicked after that answer and nothing in flight can undo the picks.
    for rid in ids:
        choose(page, "compare-pick", rid)
    page.keyboard.press("Escape")
    page.locator("#compare-btn").click()
    page.locator("#compare-plot .js-plotly-plot").wait_for()
    table = page.locator("#compare-table").inner_text()
    assert all(rid in table for rid in ids)
    assert "sharpe IQM [95 %]" in table
    verdicts = page.locator("#compare-verdicts").inner_text()
    assert verdicts.count("Verdict") == 2 and "configurations" in verdicts
    assert "drawdown" in page.locator("#compare-plot").inner_text()  # the drawdown panel's legend
    assert "0.005" in table and "0.01" in table and "total_return" in table
    shot(page, "07-compare")


def test_path_traversal_is_refused_in_the_page_and_over_http(page, server, until, scaled):
    page.goto(server["url"] + "?run=../../etc/passwd")
    until(lambda: "invalid run id" in page.locator("#run-error").inner_text(), "the refusal", 30)
    shot(page, "08-traversal-refused")
    outputs = server["outputs"]
    inside_file = outputs / jobs(server)[0].point_ids()[0] / runs.CONFIG_FILE
    for target in (f"{outputs}/../secret.txt", str(server["root"] / "secret.txt"), "/etc/passwd",
                   "..%2F..%2Fsecret.txt", f"{outputs}/%2E%2E/secret.txt", str(inside_file)):  # fmt: skip
        r = httpx.get(server["url"] + "gradio_api/file=" + target, timeout=scaled(10))
        assert 400 <= r.status_code < 500, (target, r.status_code)
        assert "TOPSECRET" not in r.text and "root:" not in r.text


def rewind_to_cancelled(src: Path, dest: Path, update: int) -> None:
    """A copy of a real run as a trainer stopped after ``update`` would leave it: cancelled, checkpointed."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(runs.EVAL_FILE, runs.TELEMETRY_FILE,
                                                             runs.EQUITY_FILE, "console.log"))  # fmt: skip
    latest = dest / runs.CHECKPOINT_DIR / runs.LATEST_CHECKPOINT
    meta = json.loads(latest.read_text())
    (latest.parent / meta["file"]).unlink()  # the later checkpoint never happened
    steps = meta["env_steps"] * update // meta["update"]
    older = latest.parent / f"ckpt_{update:09d}.msgpack"  # latest.json records its size and sha256
    latest.write_text(json.dumps({**meta, "file": older.name, "update": update, "env_steps": steps,
                                  "bytes": older.stat().st_size,
                                  "sha256": hashlib.sha256(older.read_bytes()).hexdigest()}))  # fmt: skip
    runs.write_status(dest, status="cancelled", pid=None, ended_at=runs.utc_now(), update=update,
                      env_steps=steps, progress=update / meta["update"])  # fmt: skip


def test_resume_a_cancelled_run_from_its_checkpoint_until_done(page, server, until):
    outputs = server["outputs"]
    # The resume queues behind any job still active: if the cancel above failed it would wait forever.
    assert [j.id for j in jobs(server) if j.active] == [], "a job still runs (see the cancel test)"
    sweep = JobQueue(outputs).point_paths(jobs(server)[0])  # 8 updates in chunks of 4: ckpts 4 and 8 kept
    rid = runs.run_dir_name("e2e-resume")
    run_dir = outputs / rid
    rewind_to_cancelled(sweep[0], run_dir, update=4)
    # A link to the run opens it with the run already picked: a Runs-tab refresh still in flight when a
    # user picks in the dropdown puts the empty pick back (on_runs_refresh sends the old value), and Resume
    # would then say "Pick a run".
    page.goto(server["url"] + f"?run={rid}")
    until(lambda: "cancelled" in page.locator("#run-status").inner_text(), "the cancelled run", 30)
    page.locator("#run-resume").click()
    msg = page.locator("#resume-msg")
    until(lambda: "resumes from update 4" in msg.inner_text(), "the resume message", 30)
    job = next(j for j in jobs(server) if j.extra.get("resume") == rid)
    assert job.argv == [sys.executable, "-m", "tradelab_jax.train", f"run.resume={run_dir}"]
    queue = JobQueue(outputs)
    until(lambda: not queue.get(job.id).active, "the resumed run to end", TRAIN_TIMEOUT_S)
    ended = queue.get(job.id)
    assert ended.state == "done" and ended.returncode == 0, f"the resume ended {ended.state}: {ended.error}"
    status = runs.read_status(run_dir)
    assert status["status"] == "done" and status["resumed_at"] and status["env_steps"] == 256
    assert [m["update"] for m in runs.read_metrics(run_dir)] == [4, 8]  # the chunk after the checkpoint
    assert (run_dir / runs.EVAL_FILE).is_file()
    page.get_by_role("tab", name="Launch").click()
    until(lambda: job_state_in_page(page, job.id) == "done", "the done badge", 20)
    assert "resumes from update 4" in page.locator(f".job[data-job='{job.id}']").inner_text()
    shot(page, "09-resumed-done")
    # A finished run is not resumed again: one sentence says why and what can be.
    page.get_by_role("tab", name="Runs").click()
    page.locator("#run-resume").click()
    until(lambda: "cannot be resumed: it is done" in msg.inner_text(), "the refusal", 30)
    assert "only a cancelled, failed or interrupted run with a checkpoint" in msg.inner_text()
    until(lambda: "done" in page.locator("#run-status").inner_text(), "the run view re-read", 30)
    shot(page, "10-resume-refused")
