"""Graph network: an event-driven threshold network that grows, prunes and learns from reward.

- :class:`GraphNet` — the network (Rust core): run, feedback, grow/prune/mega-prune,
  networkx conversion, save/load, drawing.
- :mod:`rnnlab.graphnet.reference` — a pure-Python/networkx implementation of the same rules.
- :mod:`rnnlab.graphnet.tasks` — the association task, CartPole-v1 and the waitress stream.

See ``docs/graphnet.md`` for the model and every choice made where the seed notes were open.
"""

from __future__ import annotations

from rnnlab.graphnet.model import FEEDBACK_MODES, GraphNet, make_config

__all__ = ["FEEDBACK_MODES", "GraphNet", "make_config"]
