"""``tradelab ui`` arguments: loopback by default, share off, auth from the flag or the environment."""

from __future__ import annotations

import pytest

import tradelab_jax.ui as ui
from tradelab_jax import cli
from tradelab_jax.errors import UserError


class _FakeBlocks:
    def __init__(self, seen):
        self.seen = seen

    def queue(self, **kwargs):
        return self

    def launch(self, **kwargs):
        self.seen.update(kwargs)


@pytest.fixture
def launched(monkeypatch, outputs):
    seen: dict = {}
    import tradelab_jax.ui.app as app

    monkeypatch.setattr(
        app,
        "build_app",
        lambda out, queue, choices=None: (seen.update(outputs=out, queue=queue), _FakeBlocks(seen))[1],
    )
    monkeypatch.delenv(ui.AUTH_ENV, raising=False)

    def run(*argv):
        seen.clear()
        assert ui.main([*argv, "--outputs", str(outputs), "--no-worker"]) == 0
        return seen

    return run


def test_defaults_bind_loopback_without_share_or_auth(launched, capsys, outputs):
    seen = launched()
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == 7860
    assert seen["share"] is False and seen["auth"] is None and seen["allowed_paths"] == []
    assert seen["outputs"] == outputs.resolve()
    assert "warning" not in capsys.readouterr().err


def test_another_address_without_auth_warns(launched, capsys):
    seen = launched("--host", "0.0.0.0", "--port", "8123")
    assert seen["server_name"] == "0.0.0.0" and seen["server_port"] == 8123
    err = capsys.readouterr().err
    assert "warning: binding 0.0.0.0 without authentication" in err and "TRADELAB_UI_AUTH" in err


def test_auth_from_flag_or_environment_silences_the_warning(launched, capsys, monkeypatch):
    assert launched("--host", "0.0.0.0", "--auth", "alice:s3:cret")["auth"] == ("alice", "s3:cret")
    monkeypatch.setenv(ui.AUTH_ENV, "bob:pw")
    assert launched("--host", "10.0.0.5")["auth"] == ("bob", "pw")
    assert "warning" not in capsys.readouterr().err


def test_share_only_when_asked(launched, capsys):
    assert launched("--share")["share"] is True
    assert "public link without authentication" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["alice", ":pw", "alice:", ""])
def test_bad_auth_values(value):
    if value == "":
        assert ui.parse_auth(value) is None
        return
    with pytest.raises(UserError, match="USER:PASSWORD"):
        ui.parse_auth(value)


def test_loopback_detection():
    assert ui.is_loopback("127.0.0.1") and ui.is_loopback("::1") and ui.is_loopback("localhost")
    assert (
        not ui.is_loopback("0.0.0.0") and not ui.is_loopback("192.168.1.2") and not ui.is_loopback("example")
    )


def test_dispatcher_routes_ui_and_reports_user_errors(capsys, outputs):
    assert cli.main(["ui", "--port", "0", "--outputs", str(outputs)]) == 2
    assert "invalid --port 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["ui", "--help"])
    assert exc.value.code == 0 and "--auth" in capsys.readouterr().out
