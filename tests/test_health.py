"""Liveness never depends on Redis or draining; readiness does (LiveKit #4663).

Redis failing under a running node is in tests/test_embedded_supervision.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from server import appkeys
from tests.helpers import ServerHandle

REPO = Path(__file__).resolve().parents[1]


async def _get(server: ServerHandle, path: str) -> tuple[int, dict[str, Any]]:
    async with server.http.get(server.base_url + path) as response:
        return response.status, dict(await response.json())


async def test_a_healthy_node_is_live_and_ready(server: ServerHandle) -> None:
    status, body = await _get(server, "/healthz")
    assert (status, body["status"], body["redis"]) == (200, "ok", "ok")
    status, body = await _get(server, "/readyz")
    assert status == 200
    assert body == {
        "status": "ready",
        "node": server.app[appkeys.NODE].id,
        "redis": "ok",
        "draining": False,
        "reasons": [],
    }


async def test_a_draining_or_failed_node_is_live_but_not_ready(server: ServerHandle) -> None:
    readiness = server.app[appkeys.READINESS]
    readiness.draining = True
    status, body = await _get(server, "/readyz")
    assert (status, body["status"], body["reasons"]) == (503, "not_ready", ["draining"])
    assert body["draining"] is True
    status, body = await _get(server, "/healthz")
    assert (status, body["status"]) == (200, "ok")
    readiness.draining = False
    assert (await _get(server, "/readyz"))[0] == 200

    readiness.fail("the test says so")
    status, body = await _get(server, "/readyz")
    assert (status, body["reasons"]) == (503, ["failed"])
    assert "the test says so" not in str(body), "details stay in the log"
    assert (await _get(server, "/healthz"))[0] == 200


async def test_openapi_describes_liveness_and_readiness(server: ServerHandle) -> None:
    _, spec = await _get(server, "/api/openapi.json")
    ready = spec["paths"]["/readyz"]["get"]
    assert {"200", "503"} <= set(ready["responses"])
    schema = ready["responses"]["503"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/ReadyStatus")
    assert "security" not in ready and "401" not in ready["responses"]
    assert "429" in spec["paths"]["/api/rooms"]["post"]["responses"]


def test_compose_checks_liveness_not_readiness() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    check = " ".join(compose["services"]["yitang"]["healthcheck"]["test"])
    # A failing container health check gets the container replaced: it must not follow Redis.
    assert "/healthz" in check and "/readyz" not in check
