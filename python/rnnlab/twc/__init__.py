"""rnnlab.twc (under construction)."""
