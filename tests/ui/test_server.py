"""The Gradio server itself (in-process, no browser): login enforcement and the file route's refusals."""

from __future__ import annotations

import socket

import httpx
import pytest

from tradelab_jax.ui import forms
from tradelab_jax.ui.jobs import JobQueue

from .runs_factory import make_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(outputs, tmp_path):
    from tradelab_jax.ui.app import CSS, build_app

    make_run(outputs, "20251126T110000Z_alpha")
    (tmp_path / "secret.txt").write_text("TOPSECRET")
    choices = forms.Choices(datasets=(forms.Dataset("binance_btcusdt_1m", "BTC"),), feature_sets=("default",))
    demo = build_app(outputs, JobQueue(outputs), choices)
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, auth=("alice", "pw"), allowed_paths=[],
                        prevent_thread_lock=True, quiet=True, css=CSS)  # fmt: skip
    yield f"http://127.0.0.1:{port}/", outputs, tmp_path
    demo.close()


def test_login_is_required_everywhere_when_auth_is_set(served, scaled):
    url, outputs, _ = served
    timeout = scaled(10)  # an HTTP answer of the in-process server; the budget only catches a hang
    assert httpx.get(url + "config", timeout=timeout).status_code == 401
    assert httpx.get(url + "gradio_api/info", timeout=timeout).status_code in (401, 403)
    run_file = outputs / "20251126T110000Z_alpha" / "eval_summary.json"
    r = httpx.get(url + "gradio_api/file=" + str(run_file), timeout=timeout)
    assert r.status_code in (401, 403) and "splits" not in r.text
    with httpx.Client(base_url=url, timeout=timeout) as client:
        assert client.post("login", data={"username": "alice", "password": "wrong"}).status_code == 400
        assert client.post("login", data={"username": "alice", "password": "pw"}).status_code == 200
        assert client.get("config").status_code == 200
        # logged in, the file route still serves nothing from outputs/ or above it
        for target in (str(run_file), f"{outputs}/../secret.txt", "/etc/passwd"):
            r = client.get("gradio_api/file=" + target)
            assert r.status_code == 403, target
            assert "TOPSECRET" not in r.text and "splits" not in r.text
