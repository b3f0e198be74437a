"""VQ image tokenizer (encoder, quantizer, decoder). Only the shared file helpers exist so far."""
