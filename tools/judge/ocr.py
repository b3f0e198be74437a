"""Read one line of rendered text with Tesseract (Debian package ``tesseract-ocr``, through ``pytesseract``).

Tesseract reads a lone word on a full canvas badly, so the caller crops the line; here it is scaled so that
letters are about 48 px tall, thresholded to black on white, padded, and read as a single line of A-Z.
"""

from __future__ import annotations

import os
import shutil
import string

import cv2
import numpy as np
import pytesseract

# Chosen by reading 250 tiny (64 px) words, sharp and 2x-blurred, in several settings: psm 13 (raw line) with
# a 0.7 threshold read 0.988 / 0.968; psm 7 at 0.5 read 0.98 / 0.84 (heavier strokes close the counters).
TARGET_LETTER_PX = 48
PAD_PX = 24
INK_THRESHOLD = 0.7
_CONFIG = f"--psm 13 -c tessedit_char_whitelist={string.ascii_uppercase}"


TESSERACT_ENV = "T2I_TESSERACT_CMD"  # the Tesseract program to run, when it is not `tesseract` on the PATH


class OCRUnavailable(RuntimeError):
    """Tesseract is not installed."""


def require_tesseract() -> None:
    """Point pytesseract at the Tesseract program (``$T2I_TESSERACT_CMD``, read at every call, or ``tesseract``)
    and fail clearly when there is none."""
    command = os.environ.get(TESSERACT_ENV) or "tesseract"
    if shutil.which(command) is None:
        raise OCRUnavailable(
            f"the judge reads text with Tesseract OCR, which is not installed (looked for {command!r}): "
            "install the system package tesseract-ocr (Debian/Ubuntu: apt-get install tesseract-ocr), "
            f"or set {TESSERACT_ENV} to its path"
        )
    pytesseract.pytesseract.tesseract_cmd = command


def read_line(ink: np.ndarray) -> str:
    """Read the letters in ``ink``, a float (H, W) map in [0, 1] where 1 is text and 0 background."""
    require_tesseract()
    scale = max(1.0, TARGET_LETTER_PX / max(ink.shape[0], 1))
    big = cv2.resize(ink.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    page = np.where(big > INK_THRESHOLD, 0, 255).astype(np.uint8)  # black text on white, as Tesseract expects
    page = cv2.copyMakeBorder(page, PAD_PX, PAD_PX, PAD_PX, PAD_PX, cv2.BORDER_CONSTANT, value=255)
    text = pytesseract.image_to_string(page, config=_CONFIG)
    return "".join(ch for ch in text.upper() if ch in string.ascii_uppercase)
