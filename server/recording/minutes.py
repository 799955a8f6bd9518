"""The minutes draft (会议纪要草稿) of a session, as Markdown and as a Word document.

Both are made from a :class:`SessionRecord`: title, topic, time, venues by
level with attendance counts, the agenda items in order with their speakers
and durations, the members' micro-suggestions (with category, department,
status and reply) and the approved public questions and opinions of each item, and the chat as an
appendix. The secretariat edits the draft; it is in Chinese, like the session.

The DOCX is built with python-docx. Word and WPS pick a font per script, so
every style declares an East Asian font (宋体 for text, 黑体 for headings) and
the Chinese language besides the Latin one; without that, Word shows Chinese
in a fallback font.
"""

from __future__ import annotations

import io

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt
from docx.styles.style import BaseStyle

from server.rooms.models import Level
from server.rooms.suggestion_rules import STATUSES

from .session_record import SessionRecord
from .session_source import local_time

LEVEL_NAMES = {
    Level.NATIONAL: "全国",
    Level.PROVINCIAL: "省级",
    Level.CITY: "市级",
    Level.COUNTY: "县（区）级",
}
ENDED_BY = {
    "revoked": "主持人收回",
    "yielded": "发言人交还",
    "expired": "时间到",
    "replaced": "转给下一位",
    "left": "发言人离开",
    "session_ended": "会议结束",
    "recording_end": "录制结束",
    "speaking": "发言中",
}
#: Fonts declared for Chinese text (East Asian) and for Latin text and digits.
BODY_FONT, HEADING_FONT, LATIN_FONT = "宋体", "黑体", "Times New Roman"
NONE = "无"
KIND_NAMES = {"question": "提问", "opinion": "意见"}
#: Suggestion statuses in the minutes (the same labels as `server.rooms.suggestion_rules`).
STATUS_NAMES = {key: zh for key, (zh, _) in STATUSES.items()}


def duration_text(seconds: float) -> str:
    """``1分05秒`` / ``45秒``."""
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}分{rest:02d}秒" if minutes else f"{rest}秒"


def _clock(at: float | None) -> str:
    return local_time(at)[11:] if at is not None else ""


def _level(level: Level | None) -> str:
    return LEVEL_NAMES.get(level, "其他") if level is not None else "其他"


def _limit(seconds: int | None) -> str:
    return duration_text(seconds) if seconds else "不限"


class _Sections:
    """The minutes as plain rows, shared by the Markdown and the DOCX writers."""

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self.title = f"{record.title} 会议纪要（草稿）"
        span = f"{local_time(record.started_at)} 至 {_clock(record.ended_at)}"
        self.facts = [
            ("会议名称", record.title),
            ("主题", record.topic or NONE),
            ("计划时间", record.scheduled_start),
            ("记录时段", span),
            (
                "出席情况",
                f"应到 {record.attendance.invited} 人，实到 {record.attendance.attended} 人，"
                f"缺席 {record.attendance.absent} 人",
            ),
        ]
        self.venue_header = ["层级", "会场", "应到", "实到", "缺席", "缺席人员"]
        self.venue_rows = [
            [
                _level(level.level),
                venue.name + ("（主会场）" if venue.main else ""),
                str(venue.invited),
                str(venue.attended),
                str(venue.absent),
                "、".join(p.name for p in venue.participants if p.absent) or NONE,
            ]
            for level in record.attendance.levels
            for venue in level.venues
        ]
        self.speech_header = ["发言人", "会场", "开始", "时长", "限时", "超时", "结束方式"]
        self.chat_header = ["时间", "发言人", "内容"]
        self.chat_rows = [[_clock(c.at), c.name, c.text] for c in record.chat]

    def questions(self, index: int) -> list[str]:
        """The approved public questions and opinions of agenda item `index`, one line each."""
        lines = []
        for q in self.record.questions:
            if q.agenda_index != index:
                continue
            who = "，".join(part for part in (q.name, q.district) if part) or "匿名"
            line = f"[{KIND_NAMES.get(q.kind, q.kind)}] {q.text}（{who}，{_clock(q.at)}）"
            if q.answer:
                line += f" 答复：{q.answer}"
            lines.append(line)
        return lines

    def suggestions(self, index: int) -> list[str]:
        """The members' suggestions on agenda item `index`, one line each."""
        lines = []
        for s in self.record.suggestions:
            if s.agenda_index != index:
                continue
            line = f"[{s.category_label}] {s.title}：{s.body}（{s.name}，{_clock(s.at)}"
            if s.before_session:
                line += "，会前提交"
            line += "）"
            if s.department:
                line += f" 承办部门：{s.department}"
            line += f" 状态：{STATUS_NAMES.get(s.status, s.status)}"
            if s.reply:
                line += f" 答复：{s.reply}"
            lines.append(line)
        return lines

    def items(self) -> list[tuple[str, str, list[list[str]], str]]:
        """(heading, when, speech rows, planned speakers who did not speak) per agenda item."""
        found = []
        for item in self.record.speaking.items:
            heading = f"{item.index + 1}. {item.title}"
            when = (
                f"{_clock(item.start)}–{_clock(item.end)}，用时 {duration_text(item.seconds)}"
                if item.start is not None
                else "未进行"
            )
            if item.planned_minutes:
                over = (
                    f"，超时 {duration_text(item.overrun_seconds)}" if item.overrun_seconds else ""
                )
                when += f"（计划 {item.planned_minutes} 分钟{over}）"
            rows = [
                [
                    f"{s.name}（连线）" if s.on_stage else s.name,
                    s.venue_name,
                    _clock(s.start),
                    duration_text(s.duration),
                    _limit(s.time_limit_seconds),
                    duration_text(s.overrun_seconds) if s.overrun_seconds >= 0.5 else NONE,
                    ENDED_BY.get(s.ended_by, s.ended_by),
                ]
                for s in item.speeches
            ]
            missing = "、".join(p.name for p in item.not_spoken) or NONE
            found.append((heading, when, rows, missing))
        return found


# --- Markdown -------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """A table cell: one line, pipes and Markdown markup escaped."""
    flat = " ".join(text.split())
    for char in ("\\", "|", "*", "_", "`", "[", "]", "<", ">", "#"):
        flat = flat.replace(char, "\\" + char)
    return flat


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def minutes_markdown(record: SessionRecord) -> str:
    """The minutes draft as Markdown."""
    sections = _Sections(record)
    lines = [f"# {_cell(sections.title)}", ""]
    lines += [f"- **{name}**：{_cell(value)}" for name, value in sections.facts]
    lines += ["", "## 参会会场", ""]
    lines += _table(sections.venue_header, sections.venue_rows)
    lines += ["", "## 议程与发言", ""]
    for index, (heading, when, rows, missing) in enumerate(sections.items()):
        lines += [f"### {_cell(heading)}", "", f"时间：{when}", ""]
        lines += _table(sections.speech_header, rows) if rows else ["（无发言）"]
        lines += ["", f"计划发言未发言：{_cell(missing)}", ""]
        lines += ["#### 建议", ""]
        suggestions = sections.suggestions(index)
        lines += [f"- {_cell(s)}" for s in suggestions] if suggestions else [NONE]
        lines += ["", "#### 公众提问（已审核）", ""]
        questions = sections.questions(index)
        lines += [f"- {_cell(q)}" for q in questions] if questions else [NONE]
        lines += [""]
    lines += ["## 附录：文字交流", ""]
    lines += _table(sections.chat_header, sections.chat_rows) if sections.chat_rows else [NONE]
    return "\n".join(lines) + "\n"


# --- DOCX -----------------------------------------------------------------------------------


def _declare_fonts(style: BaseStyle, east_asian: str, size: float | None = None) -> None:
    font = style.font  # type: ignore[attr-defined]
    font.name = LATIN_FONT
    if size is not None:
        font.size = Pt(size)
    rpr = style.element.get_or_add_rPr()
    fonts = rpr.get_or_add_rFonts()
    fonts.set(qn("w:eastAsia"), east_asian)
    for theme in ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme"):
        fonts.attrib.pop(qn(theme), None)
    lang = rpr.find(qn("w:lang"))
    if lang is None:
        lang = rpr.makeelement(qn("w:lang"), {})
        rpr.append(lang)
    lang.set(qn("w:val"), "en-US")
    lang.set(qn("w:eastAsia"), "zh-CN")


def _docx_table(document: object, header: list[str], rows: list[list[str]]) -> None:
    table = document.add_table(rows=1, cols=len(header))  # type: ignore[attr-defined]
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        cell.text = text
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for row in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, row, strict=True):
            cell.text = text


def minutes_docx(record: SessionRecord) -> bytes:
    """The minutes draft as a Word document (DOCX bytes)."""
    sections = _Sections(record)
    document = Document()
    document.core_properties.title = sections.title
    document.core_properties.language = "zh-CN"
    _declare_fonts(document.styles["Normal"], BODY_FONT, 11)
    for name in ("Title", "Heading 1", "Heading 2", "Heading 3"):
        _declare_fonts(document.styles[name], HEADING_FONT)
    heading = document.add_heading(sections.title, level=0)
    heading.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for name, value in sections.facts:
        paragraph = document.add_paragraph()
        paragraph.add_run(f"{name}：").bold = True
        paragraph.add_run(value)
    document.add_heading("参会会场", level=1)
    _docx_table(document, sections.venue_header, sections.venue_rows)
    document.add_heading("议程与发言", level=1)
    for index, (title, when, rows, missing) in enumerate(sections.items()):
        document.add_heading(title, level=2)
        document.add_paragraph(f"时间：{when}")
        if rows:
            _docx_table(document, sections.speech_header, rows)
        else:
            document.add_paragraph("（无发言）")
        document.add_paragraph(f"计划发言未发言：{missing}")
        document.add_heading("建议", level=3)
        for suggestion in sections.suggestions(index) or [NONE]:
            document.add_paragraph(suggestion)
        document.add_heading("公众提问（已审核）", level=3)
        for question in sections.questions(index) or [NONE]:
            document.add_paragraph(question)
    document.add_heading("附录：文字交流", level=1)
    if sections.chat_rows:
        _docx_table(document, sections.chat_header, sections.chat_rows)
    else:
        document.add_paragraph(NONE)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
