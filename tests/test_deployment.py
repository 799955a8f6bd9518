"""docker-compose.yml is parsed and checked against the CLI (there is no Docker engine here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from server.cli import build_parser
from server.settings import ENV_VARS

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def test_compose_runs_yitang_with_a_persistent_redis() -> None:
    services = _compose()["services"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    yitang = services["yitang"]
    assert yitang["environment"]["REDIS_URL"].startswith("redis://")
    assert "redis" in yitang["depends_on"]


def test_compose_command_and_environment_match_the_cli() -> None:
    yitang = _compose()["services"]["yitang"]
    command = yitang["command"]
    assert command[:2] == ["yitang", "serve"]
    args = build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown flag
    assert args.command == "serve"
    assert (REPO / args.seed.removeprefix("/app/")).exists(), "the seed file is in the image"
    environment = yitang["environment"]
    assert set(environment) <= set(ENV_VARS), set(environment) - set(ENV_VARS)
    data_dir = environment["YITANG_DATA_DIR"]
    assert any(v.endswith(f":{data_dir}") for v in yitang["volumes"]), (
        "the data directory is a volume"
    )


def test_every_documented_environment_variable_is_a_serve_option() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    for variable, flag in ENV_VARS.items():
        assert flag in flags, f"{variable} maps to {flag}, which `yitang serve` lacks"
    readme = (REPO / "README.md").read_text()
    for variable in ENV_VARS:
        assert variable in readme, f"README does not document {variable}"


def test_an_optional_prometheus_scrapes_metrics_with_the_metrics_token() -> None:
    compose = _compose()
    prometheus = compose["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"], "not started by a plain `compose up`"
    config_mount = next(v for v in prometheus["volumes"] if v.endswith(":ro"))
    source, target = config_mount.split(":")[:2]
    assert f"--config.file={target}" in prometheus["command"]
    config = yaml.safe_load((REPO / source.removeprefix("./")).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    secret = prometheus["secrets"][0]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["environment"] == "YITANG_METRICS_TOKEN"
    environment = compose["services"]["yitang"]["environment"]
    assert "YITANG_METRICS_TOKEN" in environment
    # Prometheus scrapes each node process of the box on its own metrics port.
    base = int(environment["YITANG_METRICS_PORT"])
    targets = job["static_configs"][0]["targets"]
    assert targets[:2] == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]


def test_compose_runs_coturn_sharing_the_secret_with_yitang() -> None:
    services = _compose()["services"]
    coturn = " ".join(services["coturn"]["command"])
    environment = services["yitang"]["environment"]
    assert "--use-auth-secret" in coturn
    assert "--static-auth-secret=${YITANG_TURN_SECRET" in coturn
    assert environment["YITANG_TURN_SECRET"].startswith("${YITANG_TURN_SECRET")
    assert "--tls-listening-port=443" in coturn
    urls = environment["YITANG_TURN_URLS"].split(",")
    assert any(u.startswith("turns:") and ":443?transport=tcp" in u for u in urls)
    assert any(u.endswith("?transport=udp") for u in urls)
    # The flag parser accepts the URLs as they are (with the host variable substituted).
    host = "turn.example.org"
    for url in urls:
        build_parser().parse_args(
            [
                "serve",
                "--turn-secret",
                "s",
                "--turn-url",
                url.replace("${YITANG_TURN_HOST:-127.0.0.1}", host),
            ]
        )
