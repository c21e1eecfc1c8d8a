"""StructuralPlasticity: moves keep the synapse count, worse losses roll back exactly, and fit
continues from the changed structure."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError
from rnnlab.ctrnn import CTRNN, StructuralPlasticity


def test_worse_loss_rolls_the_move_back_and_better_loss_keeps_it():
    net = CTRNN(6, 1, 1, density=0.5, seed=0)
    mask0, w0 = net.params["mask"].copy(), net.params["W"].copy()
    plasticity = StructuralPlasticity(net, every=4, patience=2, seed=1)
    assert [plasticity.step(1.0) for _ in range(4)] == [None, None, None, "move"]
    move = plasticity.history[-1]
    (i, j, w_removed), (k, m, w_added) = move["removed"], move["added"]
    assert mask0[i, j] == 1
    assert mask0[k, m] == 0
    assert w_removed == w0[i, j]
    assert net.params["mask"][i, j] == 0
    assert net.params["W"][i, j] == 0
    assert net.params["mask"][k, m] == 1
    assert net.params["W"][k, m] == w_added
    assert net.params["mask"].sum() == mask0.sum()
    # the loss grows after the move: rolled back exactly, then a new move is made
    assert [plasticity.step(2.0) for _ in range(4)][-1] == "rollback"
    rolled = plasticity.history[-2]
    assert rolled["event"] == "rollback"
    assert rolled["loss_before"] == 1.0
    assert rolled["loss_after"] == 2.0
    undo_new = plasticity.history[-1]
    expected_mask, expected_w = mask0.copy(), w0.copy()
    (a, b, _), (c, d, fresh) = undo_new["removed"], undo_new["added"]
    expected_mask[a, b], expected_w[a, b] = 0, 0
    expected_mask[c, d], expected_w[c, d] = 1, fresh
    np.testing.assert_array_equal(net.params["mask"], expected_mask)
    np.testing.assert_array_equal(net.params["W"], expected_w)
    # the loss falls: the move is kept
    assert [plasticity.step(0.5) for _ in range(4)][-1] == "keep"
    assert [h["event"] for h in plasticity.history] == ["move", "rollback", "move", "keep", "move"]
    assert net.structure_version == 4  # three moves and one rollback


def test_fit_picks_up_structural_moves():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(30, 1)), rng.uniform(size=(30, 1))
    net = CTRNN(8, 1, 1, density=0.4, seed=2, backend="threaded", threads=2)
    plasticity = StructuralPlasticity(net, every=5, patience=3, seed=0)
    history = net.fit(
        x,
        y,
        dt=0.1,
        substeps=2,
        epochs=20,
        lr=1e-2,
        truncation=5,
        callback=lambda epoch, loss: plasticity.step(loss),
    )
    assert len(plasticity.history) == 4 + 3  # 4 moves, 3 judged
    assert np.all(np.isfinite(history["loss"]))
    assert np.all(net.params["W"][net.params["mask"] == 0] == 0)
    assert net.params["mask"].sum() == round(0.4 * 64)


def test_plasticity_needs_absent_synapses():
    with pytest.raises(ConfigError, match="density strictly between"):
        StructuralPlasticity(CTRNN(4, 1, 1, density=1.0))
    with pytest.raises(ConfigError, match="patience"):
        StructuralPlasticity(CTRNN(4, 1, 1, density=0.5), every=2, patience=3)
