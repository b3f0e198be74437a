import os
import shutil

import pytest

HAVE_TESSERACT = shutil.which("tesseract") is not None

if os.environ.get("CI") and not HAVE_TESSERACT:  # CI must exercise OCR, never skip it
    raise RuntimeError("CI run without Tesseract: .ci/run installs tesseract-ocr before the tests")

needs_tesseract = pytest.mark.skipif(
    not HAVE_TESSERACT, reason="Tesseract OCR is not installed (apt-get install tesseract-ocr)"
)
