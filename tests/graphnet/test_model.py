"""GraphNet rules checked against hand-computed values (docs/graphnet.md, "one step")."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rnnlab
from rnnlab.graphnet import GraphNet


def chain(w01: float = 1.5, w12: float = 1.2, **settings: object) -> GraphNet:
    """Input 0 -> hidden 1 -> output 2."""
    return GraphNet.from_edges(1, 1, 1, [0, 1], [1, 2], [w01, w12], **settings)


def test_three_node_firing_and_decay_by_hand() -> None:
    net = chain(decay=0.5, threshold=1.0, spike=1.0)
    fired_outputs, fired_nodes = net.run_recording([[1.0], [0.0], [0.0], [0.0]])
    # t0: input fires; pool1 = 1 * 1.5.  t1: hidden fires (1.5 > 1); pool2 = 1 * 1.2.
    # t2: output fires (1.2 > 1).  t3: pool2 = 0.5 * 1.2 = 0.6 -> nothing fires.
    assert fired_nodes.tolist() == [
        [True, False, False],
        [False, True, False],
        [False, False, True],
        [False, False, False],
    ]
    assert fired_outputs[:, 0].tolist() == [False, False, True, False]
    edges = net.edges()
    assert edges["activation"].tolist() == [0.5**4, 0.5**3]
    assert net.potentials().tolist() == [0.0, 1.5 * 0.5**3, 1.2 * 0.5**2]


def test_threshold_is_strict_and_decay_changes_timing() -> None:
    # An edge of weight exactly 1.0 from a single spike does not pass threshold 1.0 ...
    net = chain(w01=1.0, decay=0.5)
    _, nodes = net.run_recording([[1.0], [0.0]])
    assert not nodes[1, 1]
    # ... but a held input accumulates activation 1, 1.5, 1.75: fires at t2 (1.5 > 1).
    net = chain(w01=1.0, decay=0.5)
    _, nodes = net.run_recording([[1.0]] * 3)
    assert nodes[:, 1].tolist() == [False, False, True]
    # With decay 0 only the current spike counts: never above 1.0.
    net = chain(w01=1.0, decay=0.0)
    _, nodes = net.run_recording([[1.0]] * 4)
    assert not nodes[:, 1].any()


def test_feedback_updates_exactly_the_edges_the_bfs_reaches() -> None:
    # inputs 0,1; hidden 2,3,4; output 5.  Reversed BFS from 5: level 0 = {5} (edges 2->5,
    # 3->5), level 1 = {2, 3} (edges 0->2, 4->3), level 2 = {0, 4} (0 has none; 1->4).
    # The edge 1->4 is reached only if the signal reaching 4 passes the floor.
    source = [0, 4, 2, 3, 1]
    target = [2, 3, 5, 5, 4]
    weight = [1.0, 0.8, 1.2, 0.9, 0.7]
    activation = [0.5, 0.25, 1.0, 0.5, 0.125]
    lr = 0.6
    net = GraphNet.from_edges(
        2, 3, 1, source, target, weight, activation, lr=lr, feedback_floor=1e-3
    )
    updated = net.feedback(0.8)
    assert updated == 5
    e = {
        (int(u), int(v)): k
        for k, (u, v) in enumerate(zip(net.edges()["source"], net.edges()["target"], strict=True))
    }
    w = net.edges()["weight"]

    def rule(weight: float, signal: float, a: float) -> tuple[float, float]:
        new = weight * (math.tanh(signal * lr * a) + 1.0)
        return new, signal * a * new

    w25, s2 = rule(1.2, 0.8, 1.0)
    w35, s3 = rule(0.9, 0.8, 0.5)
    w02, _ = rule(1.0, s2, 0.5)
    w43, s4 = rule(0.8, s3, 0.25)
    w14, _ = rule(0.7, s4, 0.125)
    expected = {(2, 5): w25, (3, 5): w35, (0, 2): w02, (4, 3): w43, (1, 4): w14}
    for pair, value in expected.items():
        assert w[e[pair]] == pytest.approx(value, rel=1e-14)

    # With a floor above the signal that reaches node 4, the edge 1->4 is not touched.
    net = GraphNet.from_edges(
        2, 3, 1, source, target, weight, activation, lr=lr, feedback_floor=abs(s4) * 1.01
    )
    assert net.feedback(0.8) == 4
    w = net.edges()["weight"]
    assert w[e[(1, 4)]] == 0.7
    assert w[e[(4, 3)]] == pytest.approx(w43, rel=1e-14)


def test_feedback_does_not_pass_signal_to_visited_nodes() -> None:
    # 0 -> 1 -> 2 (output) and 2 -> 1: node 2 is visited first, so 2->1 is updated (it enters
    # node 1) but its source gets nothing; every edge updated once.
    net = GraphNet.from_edges(1, 1, 1, [0, 1, 2], [1, 2, 1], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert net.feedback(1.0, at=2) == 3
    w = dict(
        zip(
            zip(net.edges()["source"].tolist(), net.edges()["target"].tolist(), strict=True),
            net.edges()["weight"].tolist(),
            strict=True,
        )
    )
    f = math.tanh(1.0) + 1.0
    assert w[(1, 2)] == pytest.approx(f)
    assert w[(0, 1)] == pytest.approx(math.tanh(f) + 1.0)
    assert w[(2, 1)] == pytest.approx(math.tanh(f) + 1.0)


def test_every_step_mode_advances_one_level_per_step() -> None:
    source, target, weight = [0, 1], [1, 2], [1.0, 1.0]
    net = GraphNet.from_edges(
        1, 1, 1, source, target, weight, [1.0, 1.0], feedback_mode="every_step", decay=1.0
    )
    assert net.feedback(1.0) == 0
    assert net.edges()["weight"].tolist() == [1.0, 1.0]  # nothing happens before a step
    net.run([[0.0]])
    w = net.edges()["weight"]
    assert w[1] == pytest.approx(math.tanh(1.0) + 1.0)
    assert w[0] == 1.0
    net.run([[0.0]])
    assert net.edges()["weight"][0] > 1.0
    assert net.feedback_updates == 2
    net.feedback_mode = "on_reward"
    assert net.feedback_mode == "on_reward"


def test_weights_are_capped_by_weight_max() -> None:
    net = GraphNet.from_edges(1, 1, 1, [0, 1], [1, 2], [1.0, 4.0], [1.0, 1.0], weight_max=5.0)
    net.feedback(10.0)
    assert net.edges()["weight"].max() == 5.0
    net = GraphNet.from_edges(1, 1, 1, [0, 1], [1, 2], [1.0, 4.0], [1.0, 1.0], weight_max=math.inf)
    net.feedback(10.0)
    assert net.edges()["weight"][1] == pytest.approx(4.0 * (math.tanh(10.0) + 1.0))


def test_prune_and_mega_prune() -> None:
    # inputs 0, 1; hidden 2, 3, 4; output 5.  0->2->5 and 1->2 reach the output; 3 and 4 form
    # an island fed by input 1 (1->3, 3->4, 4->3); 2->5 is weak.
    source = [0, 1, 2, 1, 3, 4]
    target = [2, 2, 5, 3, 4, 3]
    weight = [1.0, 0.5, 0.005, 1.0, 1.0, 1.0]
    net = GraphNet.from_edges(2, 3, 1, source, target, weight)
    assert net.used_nodes().tolist() == [True, True, True, False, False, True]
    assert net.mega_prune() == 3  # 1->3, 3->4, 4->3
    pairs = set(zip(net.edges()["source"].tolist(), net.edges()["target"].tolist(), strict=True))
    assert pairs == {(0, 2), (1, 2), (2, 5)}
    assert net.prune() == 1  # 2->5 (0.005 < 0.01)
    assert net.mega_prune() == 2  # now nothing reaches the output: 0->2, 1->2 go
    assert net.n_edges == 0
    assert net.used_nodes().tolist() == [True, True, False, False, False, True]  # inputs kept
    assert net.pruned_total == 6


def test_negative_feedback_prunes_automatically() -> None:
    net = GraphNet.from_edges(1, 1, 1, [0, 1], [1, 2], [1.0, 0.02], [0.0, 2.0], lr=2.0)
    net.feedback(-1.0)  # 0.02 * (tanh(-4) + 1) < 0.01
    assert net.n_edges == 1
    assert net.pruned_total == 1
    net = GraphNet.from_edges(
        1, 1, 1, [0, 1], [1, 2], [1.0, 0.02], [0.0, 2.0], lr=2.0, auto_prune=False
    )
    net.feedback(-1.0)
    assert net.n_edges == 2


def test_protected_edges_ignore_negative_feedback_and_pruning() -> None:
    net = GraphNet.from_edges(1, 1, 1, [0, 1], [1, 2], [1.0, 1.0], [0.0, 1.0], protect_after=2)
    net.feedback(0.5)
    net.feedback(0.5)
    protected_weight = net.edges()["weight"][1]
    assert net.edges()["streak"][1] == 2
    net.feedback(-1.0)  # protected: weight kept, streak 2 -> 1
    assert net.edges()["weight"][1] == protected_weight
    assert net.edges()["streak"][1] == 1
    net.feedback(-1.0)  # no longer protected: shrinks, streak reset
    assert net.edges()["weight"][1] < protected_weight
    assert net.edges()["streak"][1] == 0


def test_grow_adds_seeded_edges_without_duplicates_or_input_targets() -> None:
    a = GraphNet(3, 5, 2, density=0.0, grow_prob=0.5, seed=11)
    b = GraphNet(3, 5, 2, density=0.0, grow_prob=0.5, seed=11)
    grown = [a.grow() for _ in range(20)]
    assert [b.grow() for _ in range(20)] == grown
    assert sum(grown) == a.n_edges > 0
    e = a.edges()
    pairs = list(zip(e["source"].tolist(), e["target"].tolist(), strict=True))
    assert len(set(pairs)) == len(pairs)
    assert all(v >= 3 and u != v for u, v in pairs)
    assert ((e["weight"] >= 0.5) & (e["weight"] < 1.5)).all()
    assert all((a.edges()[k] == b.edges()[k]).all() for k in e)


def test_novelty_bonus_rewards_new_output_patterns_once() -> None:
    net = GraphNet.from_edges(1, 0, 1, [0], [1], [2.0], novelty_bonus=0.5, lr=1.0)
    net.run([[1.0], [1.0]])  # the output fires at t1: a new pattern -> +0.5 feedback
    first = net.edges()["weight"][0]
    assert first > 2.0
    net.run([[1.0]])  # same pattern again: no bonus
    assert net.edges()["weight"][0] == first
    assert net.state()["seen_patterns"].tolist() == [[True]]


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(rnnlab.ConfigError, match="feedback_mode"):
        GraphNet(2, 2, 2, feedback_mode="sometimes")
    with pytest.raises(rnnlab.ConfigError, match="decay"):
        GraphNet(2, 2, 2, decay=1.5)
    with pytest.raises(rnnlab.ConfigError, match="density"):
        GraphNet(2, 2, 2, density=-0.1)
    with pytest.raises(rnnlab.ConfigError, match="threads"):
        GraphNet(2, 2, 2, threads=0)
    with pytest.raises(rnnlab.ConfigError, match="edges"):
        GraphNet.from_edges(1, 1, 1, [1], [0], [1.0])  # into an input
    with pytest.raises(rnnlab.ConfigError, match="duplicate"):
        GraphNet.from_edges(1, 1, 1, [0, 0], [1, 1], [1.0, 1.0])
    net = GraphNet(2, 2, 2)
    with pytest.raises(rnnlab.ShapeError, match="observations"):
        net.run(np.zeros((3, 5)))
    with pytest.raises(rnnlab.ConfigError, match="at"):
        net.feedback(1.0, at=99)
    with pytest.raises(rnnlab.ConfigError, match="unknown setting"):
        net.configure(colour="red")
