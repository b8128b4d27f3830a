"""RunPod's Python SDK (``runpod``), used with guard rails.

Pods are created, read, stopped and terminated by ``runpod.create_pod``, ``get_pod``, ``get_pods``,
``stop_pod`` and ``terminate_pod``. The SDK sends ``POST {RUNPOD_API_BASE_URL}/graphql`` with
``{"query": "<GraphQL text>"}`` and ``Authorization: Bearer <runpod.api_key>``. Three things about it are
handled here:

- ``import runpod`` reads an API key from ``~/.runpod/config.toml``; this module always overwrites
  ``runpod.api_key`` with ``$RUNPOD_API_KEY`` for the duration of a call (and refuses to run without it),
  so a key in that file is never used.
- The SDK pastes values into the GraphQL text between double quotes without escaping them. Every value it
  will interpolate is checked here first (:func:`check_interpolated`): printable ASCII without ``"`` or
  ``\\``, so no value can end its string literal. User-controlled free text (the train overrides) never
  reaches the GraphQL text at all: it travels inside the base64-encoded start-up script.
- The endpoint is the SDK's own ``RUNPOD_API_BASE_URL``; ``--api-url`` sets it for the call only, and
  either is validated (https, or http to a loopback test server).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from tradelab_jax.errors import UserError
from tradelab_jax.net import is_loopback

DEFAULT_API_BASE = "https://api.runpod.io"
ENV_API_BASE = "RUNPOD_API_BASE_URL"  # read by runpod.api.graphql.run_graphql_query on every call
ENV_API_KEY = "RUNPOD_API_KEY"
INSTALL_HINT = "`tradelab pod` needs RunPod's Python SDK: pip install -e '.[pods]' (or pip install runpod)"

# A value inside a GraphQL "..." literal that cannot end or escape it: printable ASCII bar '"' and '\'.
_GQL_SAFE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]{0,65536}$")
_API_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]{1,512}$")


def sdk() -> Any:
    """The ``runpod`` module, or a one-line :class:`UserError` saying how to install it."""
    try:
        import runpod
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return runpod


def sdk_installed() -> bool:
    """Whether the SDK can be imported: a dry-run then shows the exact HTTP requests it would send."""
    try:
        sdk()
    except UserError:
        return False
    return True


def api_base(flag: str | None = None) -> str:
    base = (flag or os.environ.get(ENV_API_BASE) or DEFAULT_API_BASE).rstrip("/")
    parsed = urllib.parse.urlparse(base)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise UserError(
            f"invalid RunPod API URL {base!r}: use https://host[:port] (default {DEFAULT_API_BASE})"
        )
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise UserError(
            f"refusing to send the RunPod API key over plain http to {parsed.hostname}: use https:// "
            "(http is allowed only for 127.0.0.1 / localhost test servers)"
        )
    return base


def api_key_from_env(required: bool = True) -> str:
    key = os.environ.get(ENV_API_KEY, "").strip()
    if not key and required:
        raise UserError(
            f"no RunPod API key: export {ENV_API_KEY}=... (create one under Settings > API Keys in the "
            "RunPod console); it is read from the environment only"
        )
    if key and not _API_KEY.match(key):
        raise UserError(f"{ENV_API_KEY} does not look like a RunPod API key (unexpected characters)")
    return key


def gql_safe(value: str, what: str, *, show: bool = True) -> str:
    """``value`` if the SDK can paste it between double quotes without changing the request."""
    if not isinstance(value, str) or not _GQL_SAFE.match(value):
        shown = f" {value!r}" if show else ""
        raise UserError(
            f"{what}{shown} cannot be sent to RunPod: use printable ASCII without '\"', '\\' or newlines"
        )
    return value


def check_interpolated(kwargs: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> None:
    """Refuse any ``create_pod`` argument that the SDK's string pasting could turn into GraphQL syntax."""
    for name, value in kwargs.items():
        if name == "env":
            for key, val in (value or {}).items():
                gql_safe(key, "pod environment variable name")
                gql_safe(val, f"the value of pod environment variable {key}", show=key not in secret_keys)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if value < 0:
                raise UserError(f"{name} must not be negative, got {value}")
        elif isinstance(value, str):
            gql_safe(value, name)
        else:
            raise UserError(f"unexpected {name} value of type {type(value).__name__} for RunPod")


def deploy_queries(kwargs: dict[str, Any]) -> list[str]:
    """The GraphQL texts ``runpod.create_pod(**kwargs)`` sends, built by the SDK's own functions.

    ``create_pod`` first checks the GPU type (``gpuTypes``) and then sends ``podFindAndDeployOnDemand``.
    Its own defaults fill the arguments not given, exactly as a call would.
    """
    from runpod.api.mutations.pods import generate_pod_deployment_mutation
    from runpod.api.queries.gpus import generate_gpu_query

    rp = sdk()
    full = {
        n: p.default
        for n, p in inspect.signature(rp.create_pod).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    full.update(kwargs)
    builder = inspect.signature(generate_pod_deployment_mutation).parameters
    return [
        generate_gpu_query(full["gpu_type_id"], 1),
        generate_pod_deployment_mutation(**{k: v for k, v in full.items() if k in builder}),
    ]


class RunPodAPI:
    """Create, read, stop and terminate pods through the SDK, with one-sentence errors."""

    def __init__(self, api_key: str, base_url: str):
        self._key = api_key
        self.base_url = base_url

    def shown_request(self, query: str) -> dict[str, Any]:
        """One request as the SDK sends it, for --dry-run: the Authorization header masked."""
        from runpod.user_agent import USER_AGENT

        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Authorization": "Bearer ***",
        }
        return {
            "method": "POST",
            "url": f"{self.base_url}/graphql",
            "headers": headers,
            "body": {"query": query},
        }

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """``runpod`` with this key and endpoint, restored afterwards (tests call main() repeatedly)."""
        rp = sdk()
        old_key, old_base = rp.api_key, os.environ.get(ENV_API_BASE)
        rp.api_key = self._key
        os.environ[ENV_API_BASE] = self.base_url
        try:
            yield rp
        finally:
            rp.api_key = old_key
            if old_base is None:
                os.environ.pop(ENV_API_BASE, None)
            else:
                os.environ[ENV_API_BASE] = old_base

    def _call(self, fn_name: str, /, *args: Any, **kwargs: Any) -> Any:
        import requests

        with self._session() as rp:  # a missing SDK is one sentence here, not an ImportError below
            from runpod import error as rp_error

            fn: Callable[..., Any] = getattr(rp, fn_name)
            try:
                return fn(*args, **kwargs)
            except rp_error.AuthenticationError:
                raise UserError(
                    f"RunPod rejected the API key in {ENV_API_KEY}: check that it is current and has "
                    "read/write access"
                ) from None
            except rp_error.QueryError as err:
                message = self._scrub(str(err.message or "unknown error"))
                raise UserError(f"RunPod refused the request: {message[:300]}") from None
            except (requests.ConnectionError, requests.Timeout) as err:
                reason = type(err).__name__
                raise UserError(
                    f"cannot reach the RunPod API at {self.base_url} ({reason}): check the network and "
                    f"{ENV_API_BASE} / --api-url"
                ) from None
            except requests.JSONDecodeError:
                raise UserError(f"the RunPod API at {self.base_url} did not answer with JSON") from None
            except requests.RequestException as err:
                raise UserError(f"request to the RunPod API failed: {type(err).__name__}") from None
            except ValueError as err:  # create_pod's own checks, e.g. an unknown GPU type
                if "No GPU found" in str(err):
                    raise UserError(
                        f"RunPod has no GPU type {args[0] if args else kwargs.get('gpu_type_id')!r}: use an "
                        "id from RunPod's GPU types list, e.g. 'NVIDIA GeForce RTX 4090'"
                    ) from None
                raise UserError(f"RunPod SDK refused the request: {self._scrub(str(err))[:300]}") from None
            except (KeyError, TypeError, IndexError):
                raise UserError(
                    f"the RunPod API at {self.base_url} gave an answer without the expected data; try again "
                    "later"
                ) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def create(self, kwargs: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> dict[str, Any]:
        check_interpolated(kwargs, secret_keys)
        return self._call("create_pod", **kwargs) or {}

    def pod(self, pod_id: str) -> dict[str, Any] | None:
        return self._call("get_pod", gql_safe(pod_id, "pod id"), api_key=self._key)

    def pods(self) -> list[dict[str, Any]]:
        return self._call("get_pods", api_key=self._key) or []

    def stop(self, pod_id: str) -> dict[str, Any]:
        return self._call("stop_pod", gql_safe(pod_id, "pod id")) or {}

    def terminate(self, pod_id: str) -> None:
        self._call("terminate_pod", gql_safe(pod_id, "pod id"))
