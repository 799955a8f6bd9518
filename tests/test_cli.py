"""The `yitang` command: help for every command, and the admin commands against a live server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from server import credentials
from tests.helpers import ServerHandle
from tests.processes import REPO


async def _yitang(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["room"],
        ["room", "create"],
        ["room", "list"],
        ["token"],
        ["seed"],
        ["worker"],
        ["loadtest"],
        ["archive"],
        ["archive", "render"],
    ],
)
async def test_help(command: list[str]) -> None:
    code, out, _ = await _yitang(*command, "--help")
    assert code == 0
    assert "usage: yitang" in out


async def test_admin_commands_against_a_running_server(
    server: ServerHandle, tmp_path: Path
) -> None:
    admin = ("--server", server.base_url, "--api-key", server.api_key)
    code, out, err = await _yitang(
        "room", "create", *admin, "--id", "cli-room", "--title", "城市更新协商会",
        "--venue", "hunan:省政协主会场:provincial:main", "--venue", "shifeng:石峰区会场:county",
        "--agenda", "开场=host", "--agenda", "发言=m1,m2",
    )  # fmt: skip
    assert code == 0, err
    room = json.loads(out)
    assert room["id"] == "cli-room"
    assert [a["planned_speakers"] for a in room["agenda"]] == [["host"], ["m1", "m2"]]

    code, out, err = await _yitang("room", "list", *admin)
    assert code == 0, err
    assert out.startswith("cli-room\tscheduled\t0 present")

    code, out, err = await _yitang(
        "token",
        "cli-room",
        *admin,
        "--identity",
        "m1",
        "--name",
        "委员",
        "--role",
        "member",
        "--venue",
        "shifeng",
    )
    assert code == 0, err
    token, url = out.split()
    assert url == f"{server.base_url}/join?token={token}"

    code, _, err = await _yitang(
        "token", "cli-room", *admin, "--identity", "m1", "--role", "member", "--venue", "nowhere"
    )
    assert code == 1
    assert "unknown_venue" in err

    # The same identity as the host: refused, so a typo cannot demote anyone; --replace does it.
    as_host = ("--identity", "m1", "--role", "host", "--venue", "hunan")
    code, _, err = await _yitang("token", "cli-room", *admin, *as_host)
    assert code == 1
    assert "409 identity_taken" in err and "--replace" in err
    code, _, err = await _yitang("token", "cli-room", *admin, *as_host, "--replace")
    assert code == 0, err

    code, out, err = await _yitang(
        "seed", str(REPO / "seeds" / "zhuzhou-qingshuitang.json"), *admin
    )
    assert code == 0, err
    assert "created zhuzhou-qingshuitang" in out
    assert out.count("/join?token=") == 11
    code, out, _ = await _yitang("seed", str(REPO / "seeds" / "zhuzhou-qingshuitang.json"), *admin)
    assert code == 0 and "already exists" in out


async def test_wrong_api_key_is_reported(server: ServerHandle) -> None:
    code, _, err = await _yitang("room", "list", "--server", server.base_url, "--api-key", "wrong")
    assert code == 1
    assert "401 api_key_invalid" in err


def test_a_generated_api_key_never_looks_like_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One URL-safe key in 64 starts with "-", and `--api-key -Xy…` is then read as an
    # option: the key a node generates must work on the command line.
    drawn = iter(["-leading-dash", "Ok_key-with-dash-inside"])
    monkeypatch.setattr(credentials.secrets, "token_urlsafe", lambda nbytes: next(drawn))
    assert credentials.load_api_key(tmp_path, None) == "Ok_key-with-dash-inside"
    assert (tmp_path / credentials.API_KEY_FILE).read_text().strip() == "Ok_key-with-dash-inside"
