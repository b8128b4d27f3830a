"""One training session: lay out the run directories, train (or resume), evaluate, write the contract."""

from __future__ import annotations

import os
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.fmt import cell as _cell
from tradelab_jax.fmt import fmt_int as _fmt_int
from tradelab_jax.fmt import fmt_pct as _fmt_pct
from tradelab_jax.io import atomic_write_json
from tradelab_jax.training.plan import RunPlan, plan_resume, plan_run
from tradelab_jax.training.signals import Interrupting, Stopped


def train_config(plain: dict[str, Any], out_dir: Path, *, should_stop=None) -> dict[str, Any]:
    """A run (``out_dir`` is its directory) or a packed sweep (``out_dir/<n>/`` per point); in a
    multi-process run (docs/clusters.md), this process's share of the sweep's points."""
    plan, proc = _my_share(plan_run(plain, out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    # The one-trainer lock from before the first file is written: two trainers aimed at one run.dir at the
    # same instant cannot both write its config and status.
    with _locks(plan, proc):
        return _start(plan, proc, should_stop=should_stop)


def _my_share(plan: RunPlan) -> tuple[RunPlan, Any]:
    """``(the points this process trains, its Process or None)``: every point in one process; in a
    multi-process run, whole blocks of ``run.point_block`` points per process (training.devices)."""
    from tradelab_jax.training.devices import block_size, ensure_joined

    proc = ensure_joined(plan.base["run"])
    if proc is None:
        return plan, None
    if not plan.packed:
        raise UserError("a multi-process run trains a packed sweep (sweep.* lists or cv folds), one share of "
                        "its points per process; a single run is one process")
    block = block_size(len(plan.points), plan.base["run"].get("point_block"))
    mine = proc.points(len(plan.points), block)
    if not len(mine):
        raise UserError(f"process {proc.index} of {proc.count} has no points to train: the sweep has "
                        f"{len(plan.points)} points in blocks of {block or 1}; use at most as many "
                        "processes as blocks")
    return plan.share(mine), proc


def _locks(plan: RunPlan, proc: Any):
    """The one-trainer locks this process holds: the run or sweep directory (process 0), or, for the
    other processes of a multi-process run, each of its own points' directories."""
    import contextlib

    from tradelab_jax.training.devices import leads

    if leads(proc):
        return runs.run_lock(plan.where)
    stack = contextlib.ExitStack()
    for d in plan.dirs:
        d.mkdir(parents=True, exist_ok=True)
        stack.enter_context(runs.run_lock(d))
    return stack


def _start(plan: RunPlan, proc: Any, *, should_stop) -> dict[str, Any]:
    from tradelab_jax.training.devices import leads

    out_dir = plan.where
    for d in plan.dirs:
        # A second guard where the run is written (the up-front run.dir check does not cover in-process
        # callers or tag-named folders): nothing stored is overwritten.
        if runs.holds_run(d):
            raise UserError(f"run directory {d} already holds a run ({runs.run_state(d, derive=False)}); "
                            "pick another run.tag or use run.resume to continue it")
    _meet_checked(plan, proc)  # every process has checked its directories before any writes
    for point in plan.points:
        point.dir.mkdir(parents=True, exist_ok=True)
        runs.write_config(point.dir, point.config)
        # With this process's pid from the start: a trainer killed while it loads data and compiles (many
        # seconds) leaves its points interrupted, not queued for ever.
        runs.write_status(point.dir, status="queued", progress=0.0, pid=os.getpid(), host=runs.host(),
                          started_at=None, ended_at=None, error=None)
    if plan.packed and leads(proc):  # the sweep's own files: process 0's
        atomic_write_json(out_dir / runs.PACKED_FILE, plan.packed_record())
    return _train(plan, proc, should_stop=should_stop)


def resume_dir(path: Path, *, runtime: dict[str, Any] | None = None, should_stop=None) -> dict[str, Any]:
    """Continue a run directory, or every point of a packed sweep directory (in a multi-process run, this
    process's share of them), from its last checkpoint."""
    from tradelab_jax.training.devices import leads
    from tradelab_jax.training.validate import check_resume

    plan, proc = _my_share(plan_resume(check_resume(path), runtime))  # neither done nor running
    _meet_checked(plan, proc)  # every process has checked the sweep before any marks its points running
    mine = plan.root is not None and leads(proc)  # the sweep's files: process 0's
    for d in [*plan.dirs, *([plan.root] if mine else [])]:
        (d / runs.CANCEL_FILE).unlink(missing_ok=True)
    with _locks(plan, proc):  # one trainer per run directory: a second is refused before it writes
        return _train(plan, proc, should_stop=should_stop)


def _meet_checked(plan: RunPlan, proc: Any) -> None:
    """A multi-process run's first meeting: every process has checked what it will write, and process 0
    has made the sweep's tracking records (the MLflow parent run its peers' points nest under)."""
    if proc is None:
        return
    if proc.index == 0:
        from tradelab_jax import tracking

        tracking.open_sweep(plan)
    proc.barrier("checked")


def _train(plan: RunPlan, proc: Any, *, should_stop) -> dict[str, Any]:
    from tradelab_jax.training.devices import PeerError

    dirs = plan.dirs
    try:
        with Interrupting():  # SIGTERM/SIGHUP in any phase end like Ctrl-C: cancelled, with the resume hint
            return _train_and_finish(plan, proc, should_stop)
    except PeerError as err:
        # A peer lost after this process's points were written (its `finished` meeting): they stay done;
        # the peer's own points say what became of them, and the sweep has no statistics.
        if not all(runs.run_state(d, derive=False) == "done" for d in dirs):
            _mark_ended(dirs, err)
        raise
    except BaseException as err:
        _mark_ended(dirs, err)
        if isinstance(err, KeyboardInterrupt):
            print(_stop_note(plan), file=sys.stderr)
        raise


def _mark_ended(dirs: list[Path], err: BaseException) -> None:
    """The points' status after ``err`` ended their training: cancelled (Ctrl-C, a signal) or failed."""
    message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    if isinstance(err, KeyboardInterrupt):
        state = "cancelled"
        message = f"stopped by {err}" if isinstance(err, Stopped) else "interrupted"
    else:
        state = "failed"
    for d in dirs:
        st = runs.read_status(d) or {}
        if st.get("status") not in runs.FINAL_STATES or st.get("status") == "done":
            runs.write_status(d, status=state, ended_at=runs.utc_now(), pid=None,
                              error=" ".join(message.split())[:2000])
            if state == "failed" and not isinstance(err, UserError):
                (d / "error.txt").write_text("".join(traceback.format_exception(err)), encoding="utf-8")


def _train_and_finish(plan: RunPlan, proc: Any, should_stop) -> dict[str, Any]:
    from tradelab_jax import tracking
    from tradelab_jax.training.devices import leads
    from tradelab_jax.training.runner import train_points

    loggers = tracking.for_plan(plan)
    try:
        result = train_points(plan, should_stop=should_stop, on_chunk=lambda recs: tracking.log_chunks(
            loggers, recs))
    except BaseException:
        tracking.close_all(loggers)
        raise
    if result.status == "cancelled":
        print(_stop_note(plan, update=result.update), file=sys.stderr)
    summaries, verdict = [], None
    if result.status == "done":
        summaries = finish(plan, result)
        tracking.log_finals(plan, loggers, summaries)
    tracking.close_all(loggers)
    tracking.record_cost(plan, loggers)
    if proc is not None:
        # The sweep's statistics need every point's evaluation: process 0 computes them once every
        # process has finished its share (done or cancelled).
        proc.barrier("finished")
    if leads(proc):
        verdict = sweep_stats(plan)
    if result.status == "done" and plan.base["run"].get("print_summary", True):
        print_summary(summaries, dirs=plan.dirs, labels=[point_label(p.values) for p in plan.points],
                      first=plan.whole.points.index(plan.points[0]), table=proc is None)
        if proc is not None and proc.index == 0:  # the whole sweep's table, every process's points
            whole = [runs.read_eval_summary(d) for d in plan.whole.dirs]
            if all(whole):
                print("\n".join(_points_table(whole, [point_label(p.values) for p in plan.whole.points])))
        if verdict:
            from tradelab_jax.stats.compute import STATS_FILE

            print(f"verdict: {verdict}\n  ({STATS_FILE} in {plan.where}; `tradelab report {plan.where}` "
                  "writes the HTML report)")
    return {"status": result.status, "dirs": [str(d) for d in plan.dirs], "result": result}


def sweep_stats(plan: RunPlan) -> str | None:
    """stats.json beside the run's or sweep's files (issue 13) once every point of the whole run is done;
    the verdict that ends the printed summary (None where there is none)."""
    from tradelab_jax.stats.compute import after_training

    if any(runs.run_state(d, derive=False) != "done" for d in plan.whole.dirs):
        return None
    return after_training(plan.where, plan.base)


def _stop_note(plan: RunPlan, update: int | None = None) -> str:
    """What a cancel (at ``update``) or a Ctrl-C left behind, and the command that continues it."""
    target = plan.where  # a packed sweep resumes as a whole
    if update is not None:
        return (f"cancelled after update {update}; the last checkpoint is kept. Continue with: tradelab "
                f"train run.resume={target}")
    if all(runs.latest_checkpoint(d) is None for d in plan.dirs):
        return (f"stopped before the first checkpoint: nothing to resume in {target} (it keeps the config "
                "and status); start the run again")
    return f"stopped; continue from the last checkpoint with: tradelab train run.resume={target}"


def run_info(plan: RunPlan, result: Any, index: int) -> dict[str, Any]:
    import jax

    cfg = plan.points[index].config
    info: dict[str, Any] = {
        "seed": int(cfg["seed"]),
        "seeds": sorted(set(plan.whole.seeds())),
        "points": len(plan.whole.points),
        "device": f"{jax.devices()[0].platform}:{getattr(jax.devices()[0], 'device_kind', '')}",
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "env_steps": int(result.timings["env_steps"]),
        "wall_s": round(result.timings["wall_s"], 3),
        "compile_s": round(result.timings["compile_s"], 3),
        "train_s": round(result.timings["train_s"], 3),
        "steps_per_s": round(result.timings["steps_per_s"], 1),
        "steps_per_s_all_points": round(result.timings["steps_per_s_all_points"], 1),
    }
    if cfg["env"].get("kind") == "gymnax":
        info["env_id"] = cfg["env"]["id"]
    else:
        from tradelab_jax.training.envs import dataset

        info["dataset_id"] = cfg["data"]["id"]
        info["dataset_checksum"] = dataset_checksum(dataset(cfg).market.manifest)
    return info


def dataset_checksum(manifest: dict[str, Any]) -> str:
    """sha256 over the manifest's per-file sha256 values (in file order): one id for the exact bars."""
    import hashlib

    h = hashlib.sha256()
    for entry in manifest.get("files", []):
        h.update(str(entry.get("sha256", "")).encode())
    return "sha256:" + h.hexdigest()


def finish(plan: RunPlan, result) -> list[dict[str, Any]]:
    """Evaluate, then write eval_summary.json, telemetry.parquet, equity.png and status ``done`` of the
    plan's points; their summaries (the sweep's stats.json follows: :func:`sweep_stats`)."""
    from tradelab_jax.training import evaluate

    summaries = []
    if plan.eval.enabled:
        print(_evaluation_note(plan), file=sys.stderr)  # seconds on a CPU after the bar reached 100%
        evals = evaluate.evaluate_points(plan.configs, result.params, swept=plan.swept("env"),
                                         blocks=result.blocks)
    else:
        evals = [{"splits": {}} for _ in plan.points]
    for i, point in enumerate(plan.points):
        d = point.dir
        summary = {"run": run_info(plan, result, i), **{k: v for k, v in evals[i].items()
                                                         if k not in ("telemetry", "curves")}}
        runs.write_eval_summary(d, summary)
        if evals[i].get("telemetry") is not None:
            evaluate.write_telemetry(d / runs.TELEMETRY_FILE, evals[i]["telemetry"])
        if evals[i].get("curves"):
            evaluate.plot_equity(d / runs.EQUITY_FILE, evals[i]["curves"], title=_title(point.config))
        runs.write_status(d, status="done", progress=1.0, ended_at=runs.utc_now(), pid=None)
        summaries.append(summary)
    return summaries


def _evaluation_note(plan: RunPlan) -> str:
    """What runs between the progress bar reaching 100% and the summary."""
    if (plan.base.get("env") or {}).get("kind") == "gymnax":
        return f"evaluating the greedy policy over {plan.eval.episodes} episodes"
    where = ("each fold's test window" if ((plan.base.get("cv") or {}).get("kind") or "none") != "none"
             else ", ".join(plan.eval.splits))
    return f"evaluating on {where}: the agent and the buy_and_hold, flat and random baselines"


def _title(cfg: dict[str, Any]) -> str:
    return f"{cfg['data']['id']}  seed={cfg['seed']}  risk_pct={cfg['env'].get('risk_pct')}"


def point_label(values: dict[str, Any]) -> str:
    """A sweep point's values on the axes, as a user would type them: ``seed=1 env.risk_pct=0.005``."""
    return " ".join(f"{k}={v}" for k, v in values.items())


def print_summary(summaries, stream=None, dirs=None, labels: list[str] | None = None, *, first: int = 0,
                  table: bool = True) -> None:
    """The test split (or the last evaluated split) of each point: agent vs the baselines; a sweep's points
    are headed by their index (``first`` + i: one process's share starts later) and values on the axes and
    followed by one table of every point (``table``)."""
    stream = stream or sys.stdout
    labels = labels or [""] * len(summaries)
    for i, s in enumerate(summaries):
        head = f"[{first + i}] " + (f"{labels[i]} " if labels[i] else "") if len(summaries) > 1 or first \
            else ""
        if dirs is not None:
            print(f"{head}run directory: {dirs[i]}", file=stream)
        if "mean_episode_return" in s:
            print(f"{head}{s['run'].get('env_id')}: greedy mean episode return "
                  f"{s['mean_episode_return']:.2f} over {s['episodes']} episodes", file=stream)
            continue
        splits = s.get("splits") or {}
        if not splits:
            continue
        name = "test" if "test" in splits else list(splits)[-1]
        lines = _split_table(name, splits[name], s.get("policies") or {})
        print(head + "\n".join(lines), file=stream)
    if len(summaries) > 1 and table:
        print("\n".join(_points_table(summaries, labels)), file=stream)


# The sweep table's columns: the agent's row of the test split (or the last evaluated one).
POINT_COLUMNS = (("total_return", "pct"), ("sharpe", "num"), ("max_drawdown", "pct"), ("trades", "int"),
                 ("exposure", "pct"))


def _points_table(summaries: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """One line per sweep point: its values and the agent's key metrics (or the greedy return)."""
    width = max(len(label) for label in labels) if any(labels) else 0
    gymnax = any("mean_episode_return" in s for s in summaries)
    columns = ("mean_episode_return",) if gymnax else tuple(field for field, _ in POINT_COLUMNS)
    split = next((("test" if "test" in s["splits"] else list(s["splits"])[-1])
                  for s in summaries if s.get("splits")), None)
    what = "greedy mean episode return" if gymnax else f"the agent on the {split} split"
    widths = [max(CELL_WIDTH, len(c)) for c in columns]
    lines = [f"sweep of {len(summaries)} points - {what}:",
             f"  {'point':<6}{'values':<{width + 2}}" + "  ".join(c.rjust(w) for c, w in zip(columns, widths,
                                                                                               strict=True))]
    for i, (s, label) in enumerate(zip(summaries, labels, strict=True)):
        if gymnax:
            cells = [_cell(s.get("mean_episode_return"), "num")]
        else:
            row = ((s.get("splits") or {}).get(split) or {}).get("agent") or {}
            cells = [_cell(row.get(field), kind) for field, kind in POINT_COLUMNS]
        lines.append(f"  {f'[{i}]':<6}{label:<{width + 2}}"
                     + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    # Seeds and folds are no choice (one configuration over starts or windows): only other configurations
    # make a best-of that flatters itself (docs/statistics.md).
    configs = {tuple((k, v) for k, v in _label_values(label) if k not in ("seed", "fold"))
               for label in labels}
    if len(configs) > 1:
        lines.append(f"  the best of {len(configs)} configurations is flattered by the choice itself: see "
                     "the deflated Sharpe and PBO in the verdict (stats.json) before trusting it")
    return lines


def _label_values(label: str) -> list[tuple[str, str]]:
    return [tuple(part.split("=", 1)) for part in label.split() if "=" in part]


# (header = the eval_summary.json field, kind): `pct` fields are fractions printed as percent.
SUMMARY_COLUMNS = (
    ("steps", "int"), ("terminated", "bool"), ("total_return", "pct"), ("sharpe", "num"),
    ("sortino", "num"), ("max_drawdown", "pct"), ("calmar", "num"), ("trades", "int"), ("win_rate", "pct"),
    ("fees_paid", "num"), ("exposure", "pct"),
)
SUMMARY_POLICIES = ("agent", "buy_and_hold", "flat", "random")
CELL_WIDTH = 10  # every formatted cell fits ("-1.84e+17%"); columns are joined by two spaces regardless


def _split_table(name: str, table: dict[str, Any], policies: dict[str, str]) -> list[str]:
    """Header line, column titles, one row per policy and the legend of one split's table."""
    # The split's bars and the asset's own return over them: the yardstick for the policies' rows (whose
    # `steps` stop early on a kill switch, and whose buy_and_hold is RiskGuard-sized, not the asset).
    facts = [f"{_fmt_int(table['bars'])} bars" if "bars" in table else "? bars"]
    if table.get("asset_return") is not None:  # absent from summaries written before it existed
        facts.append(f"asset {_fmt_pct(table['asset_return'], signed=True)}")
    lines = [f"{name} split ({', '.join(facts)}) - agent vs baselines:"]
    widths = [max(CELL_WIDTH, len(title)) for title, _ in SUMMARY_COLUMNS]
    titles = "  ".join(title.rjust(w) for (title, _), w in zip(SUMMARY_COLUMNS, widths, strict=True))
    lines.append(f"  {'policy':<14}{titles}")
    for policy in SUMMARY_POLICIES:
        row = table.get(policy)
        if row is None:
            continue
        cells = "  ".join(_cell(row.get(field), kind).rjust(w)
                          for (field, kind), w in zip(SUMMARY_COLUMNS, widths, strict=True))
        lines.append(f"  {policy:<14}{cells}")
    lines.append("  terminated: yes = the kill switch ended that policy's episode early (steps < bars)")
    if policies.get("buy_and_hold"):
        lines.append(f"  buy_and_hold: {policies['buy_and_hold']}")
    return lines
