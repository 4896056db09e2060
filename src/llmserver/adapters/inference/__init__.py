"""Inference adapters: torch, MLX and remote HTTP backends, the demo model, the manager."""
