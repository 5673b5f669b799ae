from __future__ import annotations

import pytest

from shared.adapters.rapidocr_ocr import RapidOcrEngine


@pytest.fixture(scope="session")
def ocr_engine() -> RapidOcrEngine:
    """One real engine for the session: its models load once (about 2 s)."""
    return RapidOcrEngine(intra_op_threads=2)
