"""HTML: the main content only, in sections by heading.

Boilerplate goes first: scripts, styles, forms, navigation, page headers and footers, asides, and
elements whose role, id or class marks them as cookie banners, menus, ads or pop-ups. Then the main
element (``<main>``, ``role="main"``, or a single ``<article>``; else ``<body>``) is walked in
document order into headings and paragraphs.

trafilatura was tried first (2.3.1): on short pages it merges everything into one paragraph, drops
a leading ``<h1>``, and returns the link text of a page that is only navigation, so headings and
``no_text`` could not be relied on.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString, PreformattedString

from shared.ingestion.documents import ExtractedDocument
from shared.ingestion.extraction.base import ExtractionLimits, no_text
from shared.ingestion.extraction.detect import Kind
from shared.ingestion.extraction.outline import Outline
from shared.ingestion.extraction.plain import title_from_name
from shared.ports.ocr import OcrEngine

_DROP = ["script", "style", "noscript", "template", "head", "nav", "aside", "form", "iframe"]
_DROP += ["svg", "canvas", "button", "select", "textarea", "input", "dialog", "object", "embed"]
# A page's header and footer are chrome; an article's own header holds its title.
_CHROME = ["header", "footer"]
_KEEP = {"html", "body", "main", "article"}
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}
_BOILERPLATE_ROLES |= {"dialog", "alertdialog", "menu", "menubar", "toolbar"}
_BOILERPLATE_NAME = re.compile(
    r"cookie|consent|gdpr|(?:^|[-_\s])(?:banner|nav|navbar|menu|sidebar|breadcrumbs?|advert|ads?"
    r"|popup|modal|newsletter|social|share|skip-link)(?:$|[-_\s])"
)
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"address", "article", "blockquote", "body", "caption", "center", "details", "div"}
_BLOCKS |= {"dl", "fieldset", "figcaption", "figure", "hr", "html", "main", "ol", "p", "section"}
_BLOCKS |= {"summary", "ul"}
# Items of a list are lines of one paragraph, not paragraphs of their own.
_LINES = {"li", "dt", "dd"}


def extract_html(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    soup = BeautifulSoup(data, "lxml")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    _remove_boilerplate(soup)
    walker = _Walker()
    walker.walk(_main_element(soup))
    walker.end_block()
    sections = walker.outline.sections()
    if not sections:
        raise no_text("html")
    title = page_title or walker.outline.first_heading or title_from_name(name)
    return [ExtractedDocument(name, title, Kind.HTML.value, sections)]


def _remove_boilerplate(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(_CHROME):
        if tag.find_parent(["article", "main"]) is None:
            tag.decompose()
    for tag in soup.find_all(True):
        if not tag.decomposed and tag.name not in _KEEP and _is_boilerplate(tag):
            tag.decompose()


def _is_boilerplate(tag: Tag) -> bool:
    if tag.get("role") in _BOILERPLATE_ROLES or tag.get("aria-hidden") == "true":
        return True
    if tag.has_attr("hidden") or "display:none" in str(tag.get("style", "")).replace(" ", ""):
        return True
    names = " ".join([str(tag.get("id", "")), *tag.get_attribute_list("class")]).lower()
    return bool(_BOILERPLATE_NAME.search(names))


def _main_element(soup: BeautifulSoup) -> Tag:
    main = soup.find("main") or soup.find(role="main")
    if isinstance(main, Tag):
        return main
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    return soup.body or soup


class _Walker:
    """Turns the element tree into headings and paragraphs; inline text is gathered into lines."""

    def __init__(self) -> None:
        self.outline = Outline()
        self._lines: list[str] = []
        self._line: list[str] = []

    def walk(self, element: Tag) -> None:
        for child in element.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, PreformattedString):  # comments, CDATA, doctypes
                    self._line.append(str(child))
            elif isinstance(child, Tag):
                self._element(child)

    def _element(self, tag: Tag) -> None:
        if tag.name in _HEADINGS:
            self.end_block()
            self.outline.heading(int(tag.name[1]), tag.get_text(" "))
        elif tag.name == "pre":
            self.end_block()
            self.outline.paragraph(tag.get_text())
        elif tag.name == "table":
            self.end_block()
            self.outline.paragraph(_table_text(tag))
        elif tag.name == "br":
            self._end_line()
        elif tag.name in _LINES:
            self._end_line()
            self._line.append("- " if tag.name == "li" else "")
            self.walk(tag)
            self._end_line()
        elif tag.name in _BLOCKS:
            self.end_block()
            self.walk(tag)
            self.end_block()
        else:
            self.walk(tag)

    def _end_line(self) -> None:
        line = " ".join("".join(self._line).split())
        if line and line != "-":
            self._lines.append(line)
        self._line = []

    def end_block(self) -> None:
        self._end_line()
        self.outline.paragraph("\n".join(self._lines))
        self._lines = []


def _table_text(table: Tag) -> str:
    rows = []
    for row in table.find_all("tr"):
        cells = [cell.get_text(" ", strip=True) for cell in row.find_all(["th", "td"])]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
