"""Structural plasticity: try moving one synapse, keep the move if the loss does not worsen.

The seed's UPowerNetwork ``alter`` (reference note §2.6) removed one synapse and added another
at random, and undid the oldest change when the loss trend grew; it was never called, divided by
zero on a zero loss sum, and picked its candidates only among the output neurons' inputs. Here
the move is explicit and logged:

- every ``every`` training steps, if a move is pending it is judged: the mean loss over the last
  ``patience`` steps is compared with the mean over the ``patience`` steps before the move; if it
  grew, the move is rolled back (the removed synapse returns with its old weight, the added one
  is removed), else it is kept;
- then a new move is made: one present synapse (chosen uniformly) is removed and one absent
  synapse (chosen uniformly) is added with a fresh weight drawn from U(−b, b), b the network's
  Xavier bound. The number of synapses never changes.

Only the structure is rolled back: the other weights keep what training did in the meantime.
Feed it the loss of every step, e.g. ``net.fit(..., callback=lambda epoch, loss:
plasticity.step(loss))`` (``fit`` picks up the changed parameters) or from an online loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rnnlab.ctrnn.model import CTRNN
from rnnlab.errors import ConfigError

__all__ = ["StructuralPlasticity"]


class StructuralPlasticity:
    """Try-and-roll-back add/remove-one-synapse moves on ``net`` (see the module docstring).

    Args:
        net: the network whose ``mask`` and ``W`` are changed in place.
        every: steps between decisions (each decision judges the pending move and makes a new one).
        patience: steps averaged before and after a move (at most ``every``).
        seed: seed of the move choices and fresh weights.

    ``history`` lists every event as a dict: ``{"step", "event": "move" | "keep" | "rollback",
    "removed": (i, j, weight), "added": (i, j, weight), "loss_before", "loss_after"}``.
    """

    def __init__(self, net: CTRNN, *, every: int = 50, patience: int = 20, seed: int = 0) -> None:
        for name, value in (("every", every), ("patience", patience)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        if patience > every:
            raise ConfigError(f"patience: must be <= every ({every}), got {patience}")
        mask = net.params["mask"]
        if not (np.any(mask == 0) and np.any(mask == 1)):
            raise ConfigError(
                "net: structural plasticity needs both present and absent synapses "
                "(a density strictly between 0 and 1)"
            )
        self.net, self.every, self.patience = net, every, patience
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.losses: list[float] = []
        self.history: list[dict[str, Any]] = []
        self._pending: dict[str, Any] | None = None
        synapses = float(mask.sum())
        fan = synapses / net.n_neurons
        self.bound = math.sqrt(6.0 / (fan + fan))

    def _mean(self, values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    def step(self, loss: float) -> str | None:
        """Record one step's loss; every ``every`` steps judge the pending move and make a new
        one. Returns the decision (``"keep"``/``"rollback"``) or ``"move"``, else None."""
        self.losses.append(float(loss))
        self.losses = self.losses[-2 * self.every :]
        self.steps += 1
        if self.steps % self.every:
            return None
        decision = None
        if self._pending is not None:
            after = self._mean(self.losses[-self.patience :])
            before = self._pending["loss_before"]
            decision = "rollback" if after > before else "keep"
            if decision == "rollback":
                self._undo(self._pending)
            self.history.append(
                {**self._pending, "step": self.steps, "event": decision, "loss_after": after}
            )
            self._pending = None
        self._move()
        return decision or "move"

    def _move(self) -> None:
        params = self.net.params
        mask, w = params["mask"], params["W"]
        present = np.flatnonzero(mask.ravel() == 1)
        absent = np.flatnonzero(mask.ravel() == 0)
        out = int(self.rng.choice(present))
        into = int(self.rng.choice(absent))
        n = self.net.n_neurons
        removed = (out // n, out % n, float(w.flat[out]))
        fresh = float(self.rng.uniform(-self.bound, self.bound))
        added = (into // n, into % n, fresh)
        mask.flat[out], w.flat[out] = 0, 0
        mask.flat[into], w.flat[into] = 1, fresh
        self.net.structure_version += 1
        self._pending = {
            "removed": removed,
            "added": added,
            "loss_before": self._mean(self.losses[-self.patience :]),
        }
        self.history.append({**self._pending, "step": self.steps, "event": "move"})

    def _undo(self, move: dict[str, Any]) -> None:
        params = self.net.params
        i, j, weight = move["removed"]
        params["mask"][i, j], params["W"][i, j] = 1, weight
        k, m, _ = move["added"]
        params["mask"][k, m], params["W"][k, m] = 0, 0
        self.net.structure_version += 1
