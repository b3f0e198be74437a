import os
import shutil

import pytest

from tools.judge.ocr import TESSERACT_ENV

HAVE_TESSERACT = shutil.which(os.environ.get(TESSERACT_ENV) or "tesseract") is not None

if os.environ.get("CI") and not HAVE_TESSERACT:  # CI must exercise OCR, never skip it
    raise RuntimeError("CI run without Tesseract: .ci/run installs tesseract-ocr before the tests")

# A test that reads text with Tesseract says so with this mark: it is skipped where Tesseract is missing (a
# newcomer's machine) and runs everywhere else. Every other test runs as if Tesseract were missing, also on CI,
# where it is installed: a test that needs OCR and does not say so fails there, not on a newcomer's machine.
needs_tesseract = pytest.mark.tesseract


def pytest_configure(config):
    config.addinivalue_line("markers", "tesseract: the test reads text with Tesseract OCR (skipped without it)")


def pytest_collection_modifyitems(config, items):
    if HAVE_TESSERACT:
        return
    skip = pytest.mark.skip(reason="Tesseract OCR is not installed (apt-get install tesseract-ocr)")
    for item in items:
        if item.get_closest_marker("tesseract"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _hide_tesseract_unless_marked(request, monkeypatch):
    if not request.node.get_closest_marker("tesseract"):
        # The judge reads this variable at every call, and subprocesses inherit it.
        monkeypatch.setenv(TESSERACT_ENV, "/nonexistent/tesseract-hidden-by-tests/tesseract")
