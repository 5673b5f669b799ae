from __future__ import annotations

import pytest

from shared.ingestion.extraction import extract
from tests.fixtures.documents import LIMITS

pytestmark = pytest.mark.unit

PAGE = """<!DOCTYPE html>
<html><head><meta charset="windows-1252"><title>Widget Guide</title>
<style>.secret-style { color: red }</style>
<script>var secretScript = 1;</script></head>
<body class="has-cookie-banner">
<header><a href="/">Home</a> <a href="/shop">Shop</a></header>
<nav><ul><li><a href="/a">Products</a></li><li><a href="/b">Pricing</a></li></ul></nav>
<div id="cookie-banner"><p>We use cookies to improve your experience.</p>
  <button>Accept all</button></div>
<div class="sidebar">Popular posts</div>
<main>
  <article>
    <header><h1>Widget Guide</h1></header>
    <p>Widgets help people <b>organise</b> their tools &amp; parts.<br>Caf\xe9 tested.</p>
    <h2>Installation</h2>
    <p>Mount the bracket, then slide the widget in.</p>
    <h3>Tools needed</h3>
    <ul><li>A screwdriver</li><li>Two <em>short</em> screws</li></ul>
    <h2>Sizes</h2>
    <table><tr><th>Model</th><th>Width</th></tr><tr><td>W-1</td><td>10 cm</td></tr></table>
    <pre>widget --install
  --force</pre>
    <form><label>Search the site</label><input name="q"></form>
    <div style="display: none">Hidden promo text</div>
    <!-- a comment -->
  </article>
</main>
<aside>Related articles</aside>
<footer>Copyright Widget Corp</footer>
</body></html>
""".encode("cp1252")


def test_html_keeps_main_content_in_sections() -> None:
    [doc] = extract(PAGE, "guide.html", "text/html", LIMITS, None)

    assert doc.title == "Widget Guide"
    assert doc.media_type == "text/html"
    assert [s.heading for s in doc.sections] == [
        "Widget Guide",
        "Widget Guide > Installation",
        "Widget Guide > Installation > Tools needed",
        "Widget Guide > Sizes",
    ]
    assert doc.sections[0].text == (
        "Widget Guide\n\nWidgets help people organise their tools & parts.\nCafé tested."
    )
    assert doc.sections[2].text == "Tools needed\n\n- A screwdriver\n- Two short screws"
    assert "Model | Width\nW-1 | 10 cm" in doc.sections[3].text
    assert "widget --install\n  --force" in doc.sections[3].text


@pytest.mark.parametrize(
    "boilerplate",
    [
        "Home",
        "Pricing",
        "cookies",
        "Accept all",
        "Popular posts",
        "secret",
        "Search the site",
        "Hidden promo",
        "a comment",
        "Related articles",
        "Copyright",
    ],
)
def test_html_drops_boilerplate(boilerplate: str) -> None:
    [doc] = extract(PAGE, "guide.html", None, LIMITS, None)
    assert boilerplate not in doc.text


def test_html_without_main_element_uses_body() -> None:
    page = b"<html><body><div>Intro text.</div><h2>Part</h2><div>Body text.</div></body></html>"
    [doc] = extract(page, "page.htm", None, LIMITS, None)
    assert [(s.heading, s.text) for s in doc.sections] == [
        (None, "Intro text."),
        ("Part", "Part\n\nBody text."),
    ]
    assert doc.title == "Part"
