"""Plain text and Markdown."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from shared.ingestion.documents import ExtractedDocument, ExtractedSection
from shared.ingestion.extraction.base import ExtractionLimits, empty_document
from shared.ingestion.extraction.decode import decode_text
from shared.ingestion.extraction.detect import Kind
from shared.ingestion.extraction.outline import Outline
from shared.ports.ocr import OcrEngine

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*[\"']?(.*?)[\"']?[ \t]*$", re.MULTILINE)


def title_from_name(name: str) -> str:
    return PurePosixPath(name).stem or name


def extract_txt(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    text = decode_text(data).strip()
    if not text:
        raise empty_document()
    section = ExtractedSection(text)
    return [ExtractedDocument(name, title_from_name(name), Kind.TXT.value, [section])]


def extract_markdown(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    text = decode_text(data).strip()
    front_title = None
    if front_matter := _FRONT_MATTER.match(text + "\n"):
        title_match = _FRONT_MATTER_TITLE.search(front_matter.group(1))
        front_title = title_match.group(1) if title_match else None
        text = text[front_matter.end() :].strip()
    if not text:
        raise empty_document()
    outline = _parse(text.split("\n"))
    title = front_title or outline.first_heading or title_from_name(name)
    return [ExtractedDocument(name, title, Kind.MARKDOWN.value, outline.sections())]


def _parse(lines: list[str]) -> Outline:
    outline = Outline()
    block: list[str] = []
    fence: str | None = None
    for line in lines:
        if fence is not None:  # inside a code block nothing is a heading, blank lines included
            block.append(line)
            if line.strip().startswith(fence):
                outline.paragraph("\n".join(block))
                block, fence = [], None
            continue
        if fence_match := _FENCE.match(line):
            outline.paragraph("\n".join(block))
            block, fence = [line], fence_match.group(1)
        elif heading := _ATX_HEADING.match(line):
            outline.paragraph("\n".join(block))
            block = []
            outline.heading(len(heading.group(1)), heading.group(2) or "")
        elif (underline := _SETEXT_UNDERLINE.match(line)) and len(block) == 1:
            outline.heading(1 if underline.group(1)[0] == "=" else 2, block[0])
            block = []
        elif line.strip():
            block.append(line.rstrip())
        else:
            outline.paragraph("\n".join(block))
            block = []
    outline.paragraph("\n".join(block))
    return outline
