"""`/metrics` after a real session: counters move by exactly what the clients did.

A real server (in this process, on the test Redis) and real aiortc peers; the
exposition is read with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from server.broadcast.http import BROADCASTS
from tests.conftest import free_port
from tests.helpers import ServerHandle, eventually, run_server
from tests.processes import server_process, valkey_server
from tests.session_peer import SessionPeer

REPO = Path(__file__).resolve().parents[1]
METRICS_TOKEN = "prometheus-reads-metrics-only"
#: `lower_hand` events sent at once: more than a connection's burst (40), so some are refused.
BURST = 60

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """One parsed scrape: samples by name and labels, and the names of every family."""

    def __init__(self, text: str) -> None:
        self.samples: Samples = {}
        self.names: set[str] = set()
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("_count", "_sum", "_created"),
        }
        for family in text_string_to_metric_families(text):
            self.names.add(family.name)
            self.names.update(family.name + s for s in suffixes.get(family.type, ()))
            for sample in family.samples:
                self.names.add(sample.name)
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """A sample's value (0 if absent: a series not yet created has counted nothing)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)


async def scrape(server: ServerHandle, key: str | None = None) -> Scrape:
    """GET /metrics with the API key (or `key`) and parse it."""
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    async with server.http.get(server.base_url + "/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(await response.text())


@pytest.fixture
async def metered(redis_client: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[ServerHandle]:
    """A server with a metrics token, sampling receiver reports often."""
    async with run_server(
        tmp_path / "data",
        free_port(),
        redis_url=redis_url,
        metrics_token=METRICS_TOKEN,
        metrics_sample_seconds=0.3,
    ) as handle:
        yield handle


async def test_metrics_need_the_metrics_token_or_the_api_key(metered: ServerHandle) -> None:
    url = metered.base_url + "/metrics"
    async with metered.http.get(url) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "metrics_key_missing"
    wrong = {"Authorization": "Bearer not-the-token"}
    async with metered.http.get(url, headers=wrong) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "metrics_key_invalid"
    with_token = await scrape(metered, METRICS_TOKEN)
    with_key = await scrape(metered)
    assert with_token.value("yitang_rooms_owned") == with_key.value("yitang_rooms_owned") == 0
    # The metrics token opens nothing else.
    status, _ = await metered.request(
        "GET", "/api/rooms", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 401
    status, spec = await metered.request("GET", "/api/openapi.json")
    assert set(spec["paths"]["/metrics"]) == {"get"}
    # A scraper that prefers OpenMetrics (Prometheus does) gets it.
    headers = {
        "Authorization": f"Bearer {METRICS_TOKEN}",
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    }
    async with metered.http.get(url, headers=headers) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        families = {f.name for f in openmetrics_families(await response.text())}
    assert {"yitang_rooms_owned", "yitang_socketio_events"} <= families


async def test_guessing_the_metrics_token_locks_the_address_out_and_is_counted(
    redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    async with run_server(
        tmp_path / "data",
        free_port(),
        redis_url=redis_url,
        admin_attempt_limit=2,
        admin_attempt_window_seconds=1.0,
    ) as server:
        url = server.base_url + "/metrics"
        wrong = {"Authorization": "Bearer guessed-wrong-token"}
        right = {"Authorization": f"Bearer {server.api_key}"}
        for _ in range(2):
            async with server.http.get(url, headers=wrong) as response:
                assert response.status == 401
        # Locked out: even the right key is refused until the lock-out ends (bounded wait).
        refused = 0
        async with asyncio.timeout(10):
            while True:
                async with server.http.get(url, headers=right) as response:
                    if response.status == 200:
                        text = await response.text()
                        break
                    assert response.status == 429
                    refused += 1
                await asyncio.sleep(0.05)  # the lock-out ends by the clock, with no event
        assert refused >= 1
        assert Scrape(text).value("yitang_rate_limit_refusals_total", scope="admin_api") == refused


async def test_a_session_moves_the_counters_by_what_it_did(metered: ServerHandle) -> None:
    before = await scrape(metered)
    room = (await metered.create_room())["id"]
    peers: list[SessionPeer] = []

    async def join(identity: str, role: str, venue: str, publish: bool) -> SessionPeer:
        token = await metered.token(room, identity, role, venue)
        peer = SessionPeer(metered.base_url, token, len(peers) + 1)
        peers.append(peer)
        await peer.join()
        if publish:
            await peer.publish()
        return peer

    try:
        host = await join("host", "host", "hunan", publish=True)
        city = await join("m1", "member", "zhuzhou", publish=True)
        county = await join("m2", "member", "shifeng", publish=False)
        await county.wait_for(lambda: county.frames_from("m1", "video") >= 10)
        await host.wait_for(lambda: host.frames_from("m1", "video") >= 10)

        # What the test does besides: one unknown event, one bad payload, a burst.
        client = county.signaling
        unknown = await client.emit_raw("no_such_event", {})
        bad = await client.emit_raw("chat", {"text": 5})
        burst = await asyncio.gather(*(client.emit_raw("lower_hand", {}) for _ in range(BURST)))
        assert unknown["error"]["code"] == "unknown_event"
        assert bad["error"]["code"] == "invalid_payload"
        outcomes: dict[str, int] = {}
        for ack in burst:
            outcome = "ok" if ack.get("ok") else ack["error"]["code"]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        refused = outcomes.get("rate_limited", 0)
        assert refused > 0, outcomes

        async def reports_sampled() -> bool:
            now = await scrape(metered)
            loss = now.value("yitang_receiver_loss_ratio_count", kind="video")
            return loss > 0 and now.value("yitang_receiver_rtt_seconds_count", kind="video") > 0

        await eventually(reports_sampled, "receiver reports sampled into loss and RTT histograms")
        after = await scrape(metered)

        def delta(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        events = "yitang_socketio_events_total"
        assert delta(events, event="join", outcome="ok") == 3
        assert delta(events, event="publish_offer", outcome="ok") == 2
        assert delta(events, event="unknown", outcome="unknown_event") == 1
        assert delta(events, event="chat", outcome="invalid_payload") == 1
        for outcome, count in outcomes.items():
            assert delta(events, event="lower_hand", outcome=outcome) == count, outcome
        assert delta("yitang_rate_limit_refusals_total", scope="event") == refused
        assert delta("yitang_socketio_connects_total", outcome="ok") == 3
        assert delta("yitang_join_seconds_count") == 3
        assert delta("yitang_room_ownership_changes_total", change="acquired") == 1
        # No client-chosen name becomes a label.
        assert not any(n == events and ("event", "no_such_event") in ls for n, ls in after.samples)

        assert after.value("yitang_rooms_owned") == 1
        assert after.value("yitang_socketio_connections") == 3
        assert after.value("yitang_participants", role="host", level="provincial") == 1
        assert after.value("yitang_participants", role="member", level="city") == 1
        assert after.value("yitang_participants", role="member", level="county") == 1
        assert after.total("yitang_participants") == 3
        assert after.value("yitang_published_tracks", kind="video") == 2
        assert after.value("yitang_published_tracks", kind="audio") == 2
        # Three receivers (each publisher receives the other), all aiortc, which offers the
        # AEAD AES-GCM profiles: each one's RTP is protected by the node's compiled AES-GCM.
        assert after.total("yitang_outbound_srtp_transports") == 3
        assert after.total("yitang_outbound_srtp_transports", protector="compiled") == 3
        profiles = {
            dict(ls)["profile"] for n, ls in after.samples if n == "yitang_outbound_srtp_transports"
        }
        assert profiles <= {"SRTP_AEAD_AES_256_GCM", "SRTP_AEAD_AES_128_GCM"}, profiles
        # At least the copies the test waited on: m1's video to the host and to m2.
        assert after.value("yitang_forwarded_tracks", kind="video", state="active") >= 2
        for kind in ("audio", "video"):
            assert after.value("yitang_media_packets_received_total", kind=kind) > 0
            assert after.value("yitang_media_packets_forwarded_total", kind=kind) > 0
            assert after.value("yitang_media_payload_bytes_forwarded_total", kind=kind) > 0
        # Loopback loses nothing and answers within the smallest buckets.
        loss_count = after.value("yitang_receiver_loss_ratio_count", kind="video")
        assert (
            after.value("yitang_receiver_loss_ratio_bucket", kind="video", le="0.0") == loss_count
        )
        assert after.value("yitang_receiver_rtt_seconds_bucket", kind="video", le="0.5") > 0
        assert after.value("yitang_media_transport_bytes_total", direction="in") > 0
        assert after.value("yitang_media_transport_bytes_total", direction="out") > 0
        assert after.total("yitang_redis_command_seconds_count") > 0
        assert after.value("process_resident_memory_bytes") > 0
        states = {dict(ls)["state"] for n, ls in after.samples if n == "yitang_render_jobs"}
        assert states == {"queued", "started", "deferred", "scheduled", "finished", "failed"}

        # A publisher leaves: its forwarders and senders go, the totals do not go down.
        forwarded = after.value("yitang_media_packets_forwarded_total", kind="video")
        peers.remove(city)
        await city.close()
        await host.wait_for(lambda: not host.tracks_from("m1", "video"))
        gone = await scrape(metered)
        assert gone.value("yitang_published_tracks", kind="video") == 1
        assert gone.value("yitang_media_packets_forwarded_total", kind="video") >= forwarded
    finally:
        for peer in peers:
            await peer.close()


async def test_a_broadcasting_room_moves_the_broadcast_states(server: ServerHandle) -> None:
    """The live broadcast's worker by state: running, paused by the host, restarted after
    it died, failed past its restarts, ended with the session."""
    service = server.app[BROADCASTS]
    idle = await scrape(server)
    assert {dict(ls)["state"] for n, ls in idle.samples if n == "yitang_broadcasts"} == {
        "running", "paused", "restarting", "failed", "ended"
    }  # fmt: skip
    assert idle.total("yitang_broadcasts") == 0
    assert idle.value("yitang_broadcast_restarts_total") == 0
    room_id = (await server.create_room(broadcast="public"))["id"]
    host = await server.client(room_id, "host", "host", "hunan")

    async def shows(state: str, count: float = 1) -> bool:
        scraped = await scrape(server)
        return (
            scraped.value("yitang_broadcasts", state=state) == count
            and scraped.total("yitang_broadcasts") == 1
        )

    try:
        await eventually(lambda: shows("running"), "one broadcast running", 40)
        await host.call("broadcast_pause")
        await eventually(lambda: shows("paused"), "the broadcast shown paused", 10)
        await host.call("broadcast_resume")
        await eventually(lambda: shows("running"), "the broadcast running again", 10)

        # The worker dies and is started again: one restart, running again.
        supervisor = service.broadcasts[room_id].supervisor
        first_pid = supervisor.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await eventually(
            lambda: supervisor.pid not in (None, first_pid), "a new worker is started", 10
        )
        restarted = await scrape(server)
        assert restarted.value("yitang_broadcast_restarts_total") == 1
        assert restarted.value("yitang_broadcasts", state="running") == 1

        # Past its restarts: failed (and the counter does not count a start that never was).
        supervisor.max_restarts = 0
        second_pid = supervisor.pid
        assert second_pid is not None
        os.kill(second_pid, signal.SIGKILL)
        await eventually(lambda: shows("failed"), "the broadcast shown failed", 10)
        assert (await scrape(server)).value("yitang_broadcast_restarts_total") == 1
    finally:
        await host.close()


async def test_the_grafana_dashboard_queries_only_exported_metrics(server: ServerHandle) -> None:
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exported = (await scrape(server)).names
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    queried = set()
    for panel in panels:
        for target in panel.get("targets", []):
            names = set(re.findall(r"\b((?:yitang|process)_[a-z0-9_]+)", target["expr"]))
            assert names, f"panel {panel['title']!r} queries no Yitang metric"
            missing = names - exported
            assert not missing, f"panel {panel['title']!r} queries {missing}, not exported"
            queried |= names
    assert len([p for p in panels if p.get("targets")]) >= 10
    assert "yitang_receiver_rtt_seconds_bucket" in queried


async def test_metrics_answer_while_redis_is_down_and_show_the_errors(tmp_path: Path) -> None:
    async with (
        valkey_server() as valkey,
        run_server(tmp_path / "data", free_port(), redis_url=valkey.url) as server,
    ):
        up = await scrape(server)
        assert "yitang_render_jobs" in up.names
        assert up.total("yitang_redis_errors_total") == 0
        await valkey.stop()
        try:
            status, _ = await server.request("GET", "/api/rooms")
            assert status >= 500  # (500 today; 503 would say more)
            down = await scrape(server)
        finally:
            await valkey.start()
        # Render-job states need Redis: left out, rather than stale or a failed scrape.
        assert "yitang_render_jobs" not in down.names
        errors = {
            dict(labels)["error"]: value
            for (name, labels), value in down.samples.items()
            if name == "yitang_redis_errors_total"
        }
        assert errors.get("connection", 0) >= 1, errors

        async def api_up() -> bool:
            return (await server.request("GET", "/api/rooms"))[0] == 200

        await eventually(api_up, "the REST API answers again")
        assert "yitang_render_jobs" in (await scrape(server)).names


def _free_port_pair() -> int:
    """A port p with p + 1 free as well (a box of two nodes serves metrics on both)."""
    for _ in range(50):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two consecutive free ports")


async def test_a_metrics_port_serves_metrics_alone(
    redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    metrics_port = free_port()
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, metrics_port=metrics_port
    ) as server:
        own = f"http://127.0.0.1:{metrics_port}"
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with server.http.get(own + "/metrics", headers=headers) as response:
            assert response.status == 200
            node = Scrape(await response.text()).samples
        main = await scrape(server)
        assert {ls for n, ls in node if n == "yitang_node_info"} == {
            ls for n, ls in main.samples if n == "yitang_node_info"
        }
        async with server.http.get(own + "/metrics") as response:
            assert response.status == 401
        async with server.http.get(own + "/api/rooms", headers=headers) as response:
            assert response.status == 404, "nothing but /metrics on the metrics port"


async def test_each_node_process_of_a_box_serves_its_own_metrics(tmp_path: Path) -> None:
    base = _free_port_pair()
    port = free_port()
    args = ("--workers", "2", "--metrics-port", str(base))
    async with server_process(tmp_path / "data", port, *args) as box:
        headers = {"Authorization": f"Bearer {box.api_key}"}
        nodes = set()
        async with aiohttp.ClientSession(headers=headers) as http:
            for metrics_port in (base, base + 1):
                url = f"http://127.0.0.1:{metrics_port}/metrics"

                async def answers(url: str = url) -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(url) as response:
                            return response.status == 200
                    return False

                await eventually(answers, f"metrics on {metrics_port}", within=30)
                async with http.get(url) as response:
                    scrape_ = Scrape(await response.text())
                samples = scrape_.samples
                nodes |= {dict(ls)["node"] for n, ls in samples if n == "yitang_node_info"}
                # Each node froze what it made while starting (no collection walks it
                # again) and times its collections: the one before freezing is counted.
                assert scrape_.value("yitang_gc_frozen_objects") > 10_000
                assert scrape_.value("yitang_gc_pause_seconds_count", generation="2") >= 1
        assert len(nodes) == 2, "two node processes, each with its own metrics"
        assert await box.stop() == 0


def test_a_worker_started_after_a_scrape_is_not_counted_as_a_restart() -> None:
    """A scrape can see a broadcast before its worker is started (0 starts, a loaded
    machine): that first start is no restart; the starts after it are."""
    from types import SimpleNamespace

    from server.metrics.broadcasts import BroadcastCollector

    supervisor = SimpleNamespace(starts=0, failed=False, process=None)
    broadcast = SimpleNamespace(supervisor=supervisor, ended=False, programme=None)
    service = SimpleNamespace(broadcasts={"room": broadcast})
    collector = BroadcastCollector(lambda: service)

    def restarts() -> float:
        (_, counter) = list(collector.collect())
        return float(counter.samples[0].value)

    assert restarts() == 0  # not started yet
    supervisor.starts = 1
    assert restarts() == 0  # its first start
    supervisor.starts = 2
    assert restarts() == 1  # it exited and was started again
    assert restarts() == 1
