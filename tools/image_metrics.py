"""Image measures that need no caption: sharpness (gradient energy) and PSNR to a reference."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def _gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """An RGB image (PIL or H x W x 3 uint8) -> grey levels in [0, 1], float32."""
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32) / 255
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def gradient_energy(image: Image.Image | np.ndarray) -> float:
    """Mean squared Sobel gradient of the grey image (levels in [0, 1]): higher is sharper edges.

    Noise raises it too, so read it next to the same figure for clean renders of the same prompts."""
    gray = _gray(image)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(gx * gx + gy * gy))


def psnr(image: Image.Image | np.ndarray, reference: Image.Image | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two RGB images of one size, levels in [0, 255]."""
    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images of shapes {a.shape} and {b.shape} cannot be compared")
    mse = max(float(np.mean((a - b) ** 2)), 1e-10)
    return 10 * float(np.log10(255 ** 2 / mse))
