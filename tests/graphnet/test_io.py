"""networkx conversion, save/load round trips and drawings."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import rnnlab
from rnnlab.graphnet import GraphNet
from rnnlab.graphnet.drawing import Frame, write_animation


def trained_net() -> GraphNet:
    net = GraphNet(
        4,
        10,
        3,
        density=0.3,
        grow_prob=0.02,
        novelty_bonus=0.2,
        protect_after=3,
        seed=4,
        feedback_mode="every_step",
    )
    rng = np.random.default_rng(1)
    for _ in range(5):
        net.run((rng.random((4, 4)) > 0.5).astype(float))
        net.feedback(1.0, at=net.output_ids[0])
    return net


def test_networkx_export_has_the_same_edges_and_weights() -> None:
    net = trained_net()
    graph = net.to_networkx()
    e = net.edges()
    assert graph.number_of_nodes() == net.n_nodes
    assert graph.number_of_edges() == net.n_edges
    for k in range(net.n_edges):
        data = graph.edges[int(e["source"][k]), int(e["target"][k])]
        assert data["weight"] == e["weight"][k]
        assert data["activation"] == e["activation"][k]
    assert [graph.nodes[v]["kind"] for v in (0, 4, 14)] == ["input", "hidden", "output"]
    fired = net.fired_nodes()
    assert [graph.nodes[v]["fired"] for v in graph.nodes] == fired.tolist()


def test_from_networkx_round_trip_and_hand_built_graph() -> None:
    net = trained_net()
    back = GraphNet.from_networkx(net.to_networkx())
    for key, value in net.edges().items():
        np.testing.assert_array_equal(back.edges()[key], value, err_msg=key)
    assert back.config == net.config

    graph = nx.DiGraph()
    graph.add_nodes_from([(0, {"kind": "input"}), (1, {"kind": "hidden"}), (2, {"kind": "output"})])
    graph.add_edge(1, 2, weight=1.2)
    graph.add_edge(0, 1, weight=1.5)
    built = GraphNet.from_networkx(graph, decay=0.5)
    assert built.run([[1.0], [0.0], [0.0]])[:, 0].tolist() == [False, False, True]
    graph.nodes[0]["kind"] = "output"
    with pytest.raises(rnnlab.ConfigError, match="ordered"):
        GraphNet.from_networkx(graph)


def test_save_load_round_trip_continues_identically(tmp_path: Path) -> None:
    net = trained_net()
    net.feedback(0.7, at=net.output_ids)  # a wave in flight (every_step mode)
    net.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "graphnet.json",
        "graphnet.npz",
    ]
    meta = json.loads((tmp_path / "model" / "graphnet.json").read_text())
    assert meta["n_edges"] == net.n_edges
    loaded = GraphNet.load(tmp_path / "model")
    assert loaded.config == net.config
    assert loaded.steps == net.steps
    rng = np.random.default_rng(9)
    for _ in range(5):
        observations = (rng.random((4, 4)) > 0.5).astype(float)
        np.testing.assert_array_equal(net.run(observations), loaded.run(observations))
        net.feedback(-0.5)
        loaded.feedback(-0.5)
    for key, value in net.edges().items():
        np.testing.assert_array_equal(loaded.edges()[key], value, err_msg=key)
    assert net.state()["rng_state"] == loaded.state()["rng_state"]
    assert net.grown_total == loaded.grown_total


def test_load_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(rnnlab.ConfigError, match=r"graphnet\.json"):
        GraphNet.load(tmp_path)
    (tmp_path / "graphnet.json").write_text('{"format": "other"}')
    with pytest.raises(rnnlab.ConfigError, match="not a graphnet save"):
        GraphNet.load(tmp_path)


def test_draw_with_matplotlib_and_animation(tmp_path: Path) -> None:
    net = trained_net()
    path = net.draw(tmp_path / "graph.png", engine="matplotlib")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    e = net.edges()
    frames = [
        Frame(e["source"], e["target"], e["weight"], np.arange(net.n_nodes) % (k + 2) == 0)
        for k in range(3)
    ]
    counts = (net.n_inputs, net.n_hidden, net.n_outputs)
    gif = write_animation(counts, frames, tmp_path / "run.gif")
    assert gif[0].read_bytes()[:6] == b"GIF89a"
    pngs = write_animation(counts, frames, tmp_path / "frames")
    assert [p.name for p in pngs] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    with pytest.raises(rnnlab.ConfigError, match="engine"):
        net.draw(tmp_path / "x.png", engine="svgwriter")
