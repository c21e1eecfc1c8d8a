"""Worker threads over the work queue give bit-identical results to one thread."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.graphnet import GraphNet


def play(threads: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    net = GraphNet(16, 400, 8, density=0.06, grow_prob=0.01, seed=5, threads=threads, decay=0.8)
    assert net.n_edges > 10_000  # several work-queue chunks of 2048 edges
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(10):
        observations = (rng.random((10, 16)) > 0.7).astype(float)
        outputs.append(net.run(observations))
        net.feedback(float(rng.choice([-1.0, 1.0])), at=net.output_ids[:2])
    return np.concatenate(outputs), net.edges(), net.potentials()


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_threaded_runs_equal_single_threaded(threads: int) -> None:
    single = play(1)
    threaded = play(threads)
    assert single[0].any()
    np.testing.assert_array_equal(single[0], threaded[0])
    for key, value in single[1].items():
        np.testing.assert_array_equal(value, threaded[1][key], err_msg=key)
    np.testing.assert_array_equal(single[2], threaded[2])
