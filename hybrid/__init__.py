"""Diffusion refiner and diffusion-only baseline (not built yet)."""
