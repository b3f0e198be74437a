"""The judge: scores an image against its caption with classical image analysis and Tesseract OCR."""

from .detect import Detections, FoundShape, FoundText, detect
from .verdict import TextRead, Verdict, check, score

__all__ = ["Detections", "FoundShape", "FoundText", "TextRead", "Verdict", "check", "detect", "score"]
