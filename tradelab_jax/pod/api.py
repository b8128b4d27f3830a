"""A small client for RunPod's GraphQL API (the endpoint and operations RunPod's Python SDK uses).

Why not the SDK itself: ``runpod`` 1.12 pulls in ~40 packages (fastapi[all], paramiko, opentelemetry,
sentry-sdk, ...), reads an API key from ``~/.runpod/config.toml`` on import, and pastes values into the
GraphQL text unescaped (a ``"`` in a start command or env value breaks or rewrites the request). This
client sends the same requests — ``POST {RUNPOD_API_BASE_URL}/graphql`` with ``Authorization: Bearer``
— but with GraphQL variables, so every value is JSON-encoded, and reads the key from the environment only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from tradelab_jax import __version__
from tradelab_jax.errors import UserError

DEFAULT_API_BASE = "https://api.runpod.io"
ENV_API_BASE = "RUNPOD_API_BASE_URL"  # the SDK's own override, honoured the same way
ENV_API_KEY = "RUNPOD_API_KEY"

POD_FIELDS = """
    id name desiredStatus imageName gpuCount costPerHr lastStatusChange uptimeSeconds
    machine { gpuDisplayName }
    runtime { uptimeInSeconds }
"""
DEPLOY = (
    "mutation tradelabDeploy($input: PodFindAndDeployOnDemandInput!) {\n"
    "  podFindAndDeployOnDemand(input: $input) { id name imageName desiredStatus costPerHr machineId "
    "machine { podHostId gpuDisplayName } }\n}"
)
POD = f"query tradelabPod($input: PodFilter!) {{\n  pod(input: $input) {{{POD_FIELDS}  }}\n}}"
PODS = f"query tradelabPods {{\n  myself {{\n    pods {{{POD_FIELDS}    }}\n  }}\n}}"
STOP = "mutation tradelabStop($input: PodStopInput!) {\n  podStop(input: $input) { id desiredStatus }\n}"
TERMINATE = "mutation tradelabTerminate($input: PodTerminateInput!) {\n  podTerminate(input: $input)\n}"


def api_base(flag: str | None = None) -> str:
    base = (flag or os.environ.get(ENV_API_BASE) or DEFAULT_API_BASE).rstrip("/")
    parsed = urllib.parse.urlparse(base)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise UserError(
            f"invalid RunPod API URL {base!r}: use https://host[:port] (default {DEFAULT_API_BASE})"
        )
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise UserError(
            f"refusing to send the RunPod API key over plain http to {parsed.hostname}: use https:// "
            "(http is allowed only for 127.0.0.1 / localhost test servers)"
        )
    return base


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_from_env(required: bool = True) -> str:
    key = os.environ.get(ENV_API_KEY, "").strip()
    if not key and required:
        raise UserError(
            f"no RunPod API key: export {ENV_API_KEY}=... (create one under Settings > API Keys in the "
            "RunPod console); it is read from the environment only"
        )
    return key


@dataclass(frozen=True)
class GraphQLRequest:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]

    def shown(self) -> dict[str, Any]:
        """The request as printed by --dry-run: the Authorization header masked."""
        headers = {k: ("Bearer ***" if k == "Authorization" else v) for k, v in self.headers.items()}
        return {"method": "POST", "url": self.url, "headers": headers, "body": self.body}


class RunPodAPI:
    """``deploy``, ``pod``, ``pods``, ``stop`` and ``terminate`` over RunPod's GraphQL endpoint."""

    def __init__(self, api_key: str, base_url: str, timeout_s: float = 30.0):
        self._key = api_key
        self.base_url = base_url
        self.timeout_s = timeout_s

    def request(self, query: str, variables: dict[str, Any] | None = None) -> GraphQLRequest:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tradelab_jax/{__version__}",
            "Authorization": f"Bearer {self._key}",
        }
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return GraphQLRequest(f"{self.base_url}/graphql", headers, body)

    def call(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        req = self.request(query, variables)
        http = urllib.request.Request(
            req.url, data=json.dumps(req.body).encode(), headers=req.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(http, timeout=self.timeout_s) as resp:
                payload = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise UserError(
                    f"RunPod rejected the API key in {ENV_API_KEY} (HTTP {err.code}): check that it is "
                    "current and has read/write access"
                ) from None
            payload = _json_or_none(err)
            if not payload or "errors" not in payload:
                raise UserError(
                    f"the RunPod API at {self.base_url} answered HTTP {err.code}; try again later"
                ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(
                f"cannot reach the RunPod API at {self.base_url} ({reason}): check the network and "
                f"{ENV_API_BASE} / --api-url"
            ) from None
        except ValueError:
            raise UserError(f"the RunPod API at {self.base_url} did not answer with JSON") from None
        if payload.get("errors"):
            message = str(payload["errors"][0].get("message", "unknown error"))
            raise UserError(f"RunPod refused the request: {self._scrub(message)[:300]}")
        return payload.get("data") or {}

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def deploy(self, deploy_input: dict[str, Any]) -> dict[str, Any]:
        return self.call(DEPLOY, {"input": deploy_input})["podFindAndDeployOnDemand"] or {}

    def pod(self, pod_id: str) -> dict[str, Any] | None:
        return self.call(POD, {"input": {"podId": pod_id}}).get("pod")

    def pods(self) -> list[dict[str, Any]]:
        return (self.call(PODS).get("myself") or {}).get("pods") or []

    def stop(self, pod_id: str) -> dict[str, Any]:
        return self.call(STOP, {"input": {"podId": pod_id}}).get("podStop") or {}

    def terminate(self, pod_id: str) -> None:
        self.call(TERMINATE, {"input": {"podId": pod_id}})


def _json_or_none(err: urllib.error.HTTPError) -> dict[str, Any] | None:
    try:
        data = json.loads(err.read() or b"null")
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None
