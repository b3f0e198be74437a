import numpy as np
import pytest
from PIL import Image, ImageFilter

from tools.image_metrics import gradient_energy, psnr, ssim


def square() -> Image.Image:
    image = np.full((64, 64, 3), 255, dtype=np.uint8)
    image[16:48, 16:48] = (200, 30, 30)
    return Image.fromarray(image)


def test_blur_lowers_gradient_energy_and_flat_has_none():
    sharp = square()
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert gradient_energy(sharp) > 1.5 * gradient_energy(blurred) > 0
    assert gradient_energy(Image.new("RGB", (64, 64), (10, 200, 30))) == 0


def test_psnr_falls_with_the_error():
    sharp = square()
    assert psnr(sharp, sharp) > 90
    noisy = np.asarray(sharp).astype(int) + np.random.default_rng(0).integers(-8, 9, (64, 64, 3))
    a = psnr(np.clip(noisy, 0, 255).astype(np.uint8), sharp)
    b = psnr(sharp.filter(ImageFilter.GaussianBlur(2)), sharp)
    assert 25 < a < 40 and b < a
    with pytest.raises(ValueError, match="shapes"):
        psnr(sharp, sharp.resize((32, 32)))


def test_ssim_is_one_for_the_same_image_and_falls_with_noise_and_blur():
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((32, 32, 3)) > 0.5).astype(np.uint8) * 255)
    assert ssim(image, image) == pytest.approx(1.0)
    noisy = [Image.fromarray(np.clip(np.asarray(image, float) + rng.normal(0, s, (32, 32, 3)), 0, 255)
                             .astype(np.uint8)) for s in (10, 40, 120)]
    values = [ssim(n, image) for n in noisy]
    assert 1 > values[0] > values[1] > values[2], values
    assert ssim(image.filter(ImageFilter.GaussianBlur(2)), image) < 0.9
    with pytest.raises(ValueError, match="cannot be compared"):
        ssim(image, image.resize((16, 16)))
