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


def ssim(image: Image.Image | np.ndarray, reference: Image.Image | np.ndarray) -> float:
    """Structural similarity of two RGB images of one size (Wang et al. 2004: an 11x11 Gaussian window with
    sigma 1.5, K1 = 0.01, K2 = 0.03), on the grey levels; 1 for identical images."""
    a, b = _gray(image).astype(np.float64), _gray(reference).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images of shapes {a.shape} and {b.shape} cannot be compared")
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
