"""rnnlab.gated (under construction)."""
