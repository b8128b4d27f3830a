"""The start-up script really runs (with stub tools) and no train override can inject a command."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tradelab_jax.pod.spec import DOCKER_ARGS, SCRIPT_ENV, ScriptSpec, encode_script, render_script

RECORDER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
"""
VENV_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && touch "$3/bin/activate"; fi
exit 0
"""


def _stubs(tmp: Path) -> Path:
    bin_dir = tmp / "stub-bin"
    bin_dir.mkdir()
    for name, text in {
        "tradelab": RECORDER,
        "git": RECORDER,
        "pip": RECORDER,
        "runpodctl": RECORDER,
        "apt-get": RECORDER,
        "python3": VENV_PYTHON,
        "python": RECORDER,
        "sleep": "#!/usr/bin/env bash\nexit 0\n",
    }.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return bin_dir


def test_overrides_with_shell_metacharacters_reach_train_verbatim(tmp_path, scaled):
    ws = tmp_path / "ws"
    marks = tmp_path / "marks"
    marks.mkdir()
    overrides = (
        "ppo.lr=3e-4",
        f"tag=x; touch {marks}/semicolon",
        f"name=$(touch {marks}/subst)",
        f"q=`touch {marks}/backtick`",
        f"a='b\"c' && touch {marks}/and",
        f"multi=1\ntouch {marks}/newline",
        f"glob=* | tee {marks}/pipe",
        "dollar=$HOME ${PATH}",
    )
    script = render_script(
        ScriptSpec(
            "https://github.com/example/tradelab_jax.git", "v1.2", "cuda12", overrides, str(ws), "stop"
        )
    )
    bin_dir = _stubs(tmp_path)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.jsonl"),
        "RUNPOD_POD_ID": "pod0001",
        SCRIPT_ENV: encode_script(script),
        "HOME": str(tmp_path),
    }
    # Run it the way the pod does: RunPod splits dockerArgs into argv, bash decodes and runs the script.
    argv = shlex.split(DOCKER_ARGS)
    assert argv[:2] == ["bash", "-c"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=scaled(60), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    tradelab = [c[1:] for c in calls if c[0] == "tradelab"]
    assert tradelab[0] == ["train", *overrides]  # each override is exactly one argument, unexpanded
    assert tradelab[1] == [
        "archive",
        "push",
        "--newer-than",
        f"{ws}/.tradelab-train-start",
        "--allow-running",
    ]
    assert tradelab[2] == ["pod", "stop", "pod0001"]
    assert ["git", "-C", f"{ws}/tradelab_jax", "fetch", "-q", "--depth", "1", "origin", "v1.2"] in calls
    assert ["pip", "install", "-q", "-e", f"{ws}/tradelab_jax[pods]", "jax[cuda12]"] in calls
    assert list(marks.iterdir()) == []  # nothing injected ran
    assert "training exited with 0" in (ws / "tradelab-pod.log").read_text()
    assert (ws / ".tradelab-done").exists()

    # A restarted container sees the done marker and does not train again.
    (tmp_path / "calls.jsonl").unlink()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=scaled(60), cwd=tmp_path)
    assert proc.returncode == 0 and not (tmp_path / "calls.jsonl").exists()
    Path("/tmp/tradelab-pod.sh").unlink(missing_ok=True)  # where the start command decodes the script


def test_script_is_valid_bash_for_every_exit_mode(tmp_path):
    for on_exit in ("stop", "terminate", "sleep"):
        script = render_script(
            ScriptSpec("https://example.org/r.git", "main", "", ("a=1",), "/workspace", on_exit)
        )
        path = tmp_path / f"{on_exit}.sh"
        path.write_text(script)
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
