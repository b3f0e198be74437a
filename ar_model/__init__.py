"""Text-conditioned autoregressive decoder over image tokens (not built yet)."""
