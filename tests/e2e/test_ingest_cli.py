"""`quarry ingest` on a folder holding every supported format, scans included: every document
reaches `ready`, and text that exists only inside the scans is found by search."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import docx
import pytest
from typer.testing import CliRunner

from functions.cli import app
from shared.container import Container
from shared.settings import Settings
from tests.fixtures.documents import image_bytes, pdf_with_scanned_page, text_image, text_pdf
from tests.fixtures.search import search

pytestmark = pytest.mark.e2e

SCANNED_PNG = ["The lighthouse keeper logs", "every storm in a red book."]
SCANNED_PDF = ["Copper kettles must be", "descaled every month."]


def write_corpus(folder: Path) -> set[str]:
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "plain.txt").write_text("Bees communicate by dancing in the hive.")
    (folder / "guide.md").write_text("# Garden\n\n## Roses\nPrune roses in late winter.\n")
    (folder / "page.html").write_text(
        "<html><body><nav>Home | About</nav><div id='cookie-banner'>We use cookies</div>"
        "<main><h1>Volcanoes</h1><p>Basalt forms when lava cools quickly.</p></main>"
        "<script>track()</script></body></html>"
    )
    (folder / "report.pdf").write_bytes(text_pdf(["Quarterly revenue grew in the north."]))
    document = docx.Document()
    document.add_heading("Onboarding", level=1)
    document.add_paragraph("New staff receive a laptop on their first day.")
    buffer = io.BytesIO()
    document.save(buffer)
    (folder / "onboarding.docx").write_bytes(buffer.getvalue())
    (folder / "scan.png").write_bytes(image_bytes(text_image(SCANNED_PNG, min_height=400)))
    scan = text_image(SCANNED_PDF, min_height=400)
    (folder / "scanned.pdf").write_bytes(pdf_with_scanned_page("A page with a text layer.", scan))
    records = [
        {"_id": "rec-1", "title": "Tides", "text": "Spring tides follow the full moon."},
        {"_id": "rec-2", "title": "Owls", "text": "Owls hunt silently at night."},
    ]
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return {
        "notes/plain.txt",
        "guide.md",
        "page.html",
        "report.pdf",
        "onboarding.docx",
        "scan.png",
        "scanned.pdf",
        "records.jsonl",
    }


def test_ingest_every_format_then_find_the_scanned_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    files = write_corpus(tmp_path / "docs")
    runner = CliRunner()
    assert runner.invoke(app, ["kb", "create", "mixed"]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(tmp_path / "docs"), "--kb", "mixed", "--json"])
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert {r["file"] for r in rows} == files, result.output
    assert all(r["status"] == "ready" for r in rows), result.output
    assert result.exit_code == 0

    doctor = runner.invoke(app, ["doctor", "--kb", "mixed"])
    assert doctor.exit_code == 0, doctor.output

    async def top_document(query: str) -> str:
        container = Container(Settings(_env_file=None, data_dir=tmp_path / "data"))  # type: ignore[call-arg]
        try:
            tenant = await container.kb_repository.ensure_tenant("default")
            kb = await container.kb_service.get(tenant, "mixed")
            return (await search(container, tenant, kb, query))[0].chunk.document
        finally:
            await container.aclose()

    assert asyncio.run(top_document("who logs every storm in a red book")) == "scan.png"
    assert asyncio.run(top_document("how often are copper kettles descaled")) == "scanned.pdf"
    assert asyncio.run(top_document("when do spring tides happen")) == "rec-1"


def test_ingest_reports_failures_and_exits_nonzero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ok.txt").write_text("Fine content.")
    (folder / "empty.txt").write_text("")
    (folder / "fake.pdf").write_bytes(b"PK\x03\x04 a zip pretending")
    (folder / "movie.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    runner = CliRunner()
    runner.invoke(app, ["kb", "create", "kb1"])
    result = runner.invoke(app, ["ingest", str(folder), "--kb", "kb1", "--json"])
    assert result.exit_code == 1
    rows = {r["file"]: r for r in map(json.loads, result.output.splitlines()) if r}
    assert rows["ok.txt"]["status"] == "ready"
    assert rows["empty.txt"]["code"] == "empty_document"
    assert rows["fake.pdf"]["code"] == "type_mismatch"
    assert rows["movie.mp4"]["code"] == "unsupported_type"
    missing = runner.invoke(app, ["ingest", str(folder), "--kb", "nope"])
    assert missing.exit_code == 2
    assert "kb_not_found" in missing.output
