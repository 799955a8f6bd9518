"""The minutes draft of a recorded session: DOCX read back by python-docx, LibreOffice to PDF,
and the Markdown form checked by content."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import docx
import pytest
import redis.asyncio as aioredis
from docx.oxml.ns import qn

from tests.helpers import ServerHandle, require_tool
from tests.recording.recording_kit import recording_server
from tests.recording.session_scenario import CHAT_M1, CHAT_M2, run_recorded_session

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
async def server(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ServerHandle]:
    async with recording_server(tmp_path / "data", redis_url) as handle:
        yield handle


async def download(server: ServerHandle, path: str) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with server.http.get(server.base_url + path, headers=headers) as response:
        return response.status, response.content_type, await response.read()


def has_chinese_font() -> bool:
    """Whether fontconfig knows a font covering Chinese."""
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(
        ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False
    )
    return bool(listed.stdout.strip())


async def to_pdf(source: Path, out_dir: Path) -> Path:
    """Convert with LibreOffice headless (its own profile, bounded in time)."""
    profile = out_dir / "lo-profile"
    process = await asyncio.create_subprocess_exec(
        "soffice",
        f"-env:UserInstallation=file://{profile}",
        "--headless",
        "--convert-to",
        "pdf",
        "--outdir",
        str(out_dir),
        str(source),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(150):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")
    return out_dir / (source.stem + ".pdf")


async def test_minutes_draft_as_docx_and_markdown(server: ServerHandle, tmp_path: Path) -> None:
    run = await run_recorded_session(server)
    base = f"/api/recordings/{run.recording_id}/minutes"

    status, content_type, body = await download(server, f"{base}?format=docx")
    assert status == 200 and content_type == DOCX_TYPE
    document = docx.Document(io.BytesIO(body))
    headings = [
        (p.style.name, p.text)
        for p in document.paragraphs
        if p.style is not None and p.style.name.startswith(("Heading", "Title"))
    ]
    assert headings[0] == ("Title", "清水塘新城建设专题协商会 会议纪要（草稿）")
    assert ("Heading 1", "参会会场") in headings and ("Heading 1", "附录：文字交流") in headings
    assert [text for style, text in headings if style == "Heading 2"] == [
        "1. 开场",
        "2. 情况通报",
        "3. 协商发言",
    ]
    # Suggestions and public questions: sections present (this session has none of either).
    assert [text for style, text in headings if style == "Heading 3"].count("建议") == 3
    texts = [p.text for p in document.paragraphs]
    assert "出席情况：应到 4 人，实到 3 人，缺席 1 人" in texts
    assert "计划发言未发言：王芳" in texts

    tables = [[[cell.text for cell in row.cells] for row in t.rows] for t in document.tables]
    venues = tables[0]
    assert venues[0] == ["层级", "会场", "应到", "实到", "缺席", "缺席人员"]
    assert ["全国", "全国政协会场", "1", "0", "1", "王芳"] in venues
    assert ["县（区）级", "石峰区政协会场", "1", "1", "0", "无"] in venues
    speeches = [row for table in tables[1:-1] for row in table[1:]]
    assert [(row[0], row[1], row[6]) for row in speeches] == [
        ("陈静怡", "石峰区政协会场", "时间到"),
        ("李明", "株洲市政协会场", "时间到"),
        ("陈静怡", "石峰区政协会场", "主持人收回"),
    ]
    assert speeches[0][4] == "1秒" and speeches[0][5] in ("2秒", "3秒")  # limit, overrun
    chat = tables[-1]
    assert [row[1:] for row in chat[1:]] == [["陈静怡", CHAT_M1], ["李明", CHAT_M2]]

    # Chinese fonts are declared, so Word and WPS do not fall back to a Latin font.
    for style_name, font in (("Normal", "宋体"), ("Heading 1", "黑体"), ("Title", "黑体")):
        fonts = document.styles[style_name].element.rPr.rFonts
        assert fonts.get(qn("w:eastAsia")) == font, style_name
    assert document.core_properties.language == "zh-CN"

    status, content_type, body = await download(server, f"{base}?format=md")
    assert status == 200 and content_type == "text/markdown"
    markdown = body.decode("utf-8")
    assert markdown.startswith("# 清水塘新城建设专题协商会 会议纪要（草稿）\n")
    for expected in (
        "- **出席情况**：应到 4 人，实到 3 人，缺席 1 人",
        "| 全国 | 全国政协会场 | 1 | 0 | 1 | 王芳 |",
        "### 2. 情况通报",
        "### 3. 协商发言",
        "计划发言未发言：王芳",
        "#### 公众提问（已审核）",
        f"| 陈静怡 | {CHAT_M1} |",
        "## 附录：文字交流",
    ):
        assert expected in markdown, expected
    assert markdown.index("### 2. 情况通报") < markdown.index("| 陈静怡 | 石峰区政协会场 |")

    for bad in ("pdf", ""):
        status, _, body = await download(server, f"{base}?format={bad}")
        assert status == 422, body

    require_tool("soffice", "scripts/ensure-libreoffice")
    path = tmp_path / "minutes.docx"
    status, _, body = await download(server, f"{base}?format=docx")
    path.write_bytes(body)
    pdf = await to_pdf(path, tmp_path)
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF-") and len(content) > 1000
    # With a Chinese font installed (scripts/ensure-chromium adds Noto CJK), the Chinese
    # text is set in it rather than as missing glyphs.
    if has_chinese_font():
        assert b"CJK" in content
