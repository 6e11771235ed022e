"""Networks: backbones, heads, Net composition, checkpoints."""
