"""The tree's layers, checked: no package imports one above it, and the domain stands alone.

edges (signaling, http) -> cluster -> rooms -> media; state and recording
serve rooms through its ports. Nothing reaches back up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: What each package may import (besides itself and the standard library / third parties).
ALLOWED: dict[str, set[str]] = {
    "server.media": set(),
    "server.rooms": {"server.media", "server.ratelimit"},
    "server.state": {"server.rooms"},
    "server.recording": {"server.rooms", "server.state", "server.media", "server.logging_setup"},
    "server.cluster": {"server.rooms", "server.state", "server.media", "server.log_context"},
    "signaling": {
        "server.rooms",
        "server.cluster",
        "server.catalog",
        "server.ratelimit",
        "server.log_context",
    },
    # The pre-session check: probe peers (media's ICE policy), results in Redis.
    "server.precheck": {"server.media", "server.rooms", "server.state", "server.ratelimit"},
    # Reads the layers below at scrape time; nothing below imports it (edges get callbacks).
    "server.metrics": {
        "server.rooms",
        "server.cluster",
        "server.media",
        "server.state",
        "server.recording",
    },
}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "signaling" else ".".join(parts[:2])


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("server", "signaling")}


def test_no_package_imports_one_it_may_not() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        folder = REPO / package.replace(".", "/")
        for path in folder.rglob("*.py"):
            for module in _imports(path):
                target = _package_of(module)
                if target != package and target not in allowed:
                    wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert wrong == []


def test_importing_the_domain_imports_no_recording_redis_or_signaling() -> None:
    code = (
        "import sys, server.rooms.actor, server.rooms.commands\n"
        "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] if m.startswith('server.')"
        " else m.split('.')[0] for m in sys.modules"
        " if m.startswith(('server.', 'signaling', 'redis', 'rq'))}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out))
    assert loaded <= {"server.rooms", "server.media", "server.ratelimit"}, loaded
