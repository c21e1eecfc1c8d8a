"""CURVE: workers with the keys get work; a client without the key, or with an unauthorised
key, gets no work and gets no message through (127.0.0.1 only)."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.backends.curve import keygen, load_worker_keys
from rnnlab.ctrnn.backends.distributed import DistributedBackend
from rnnlab.ctrnn.backends.wire import encode


def test_curve_pool_trains_and_shuts_out_clients_without_the_key(tmp_path):
    keygen(tmp_path)
    assert oct((tmp_path / "worker_secret.json").stat().st_mode)[-3:] == "600"
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(2, 12, 1)), rng.uniform(size=(2, 12, 1))
    expected = CTRNN(8, 1, 1, seed=1, backend="dense").loss_and_grad(
        x, y, dt=0.1, substeps=2, truncation=4
    )
    backend = DistributedBackend(workers=2, threads=1, heartbeat=0.2, curve_keys=str(tmp_path))
    context = zmq.Context()
    intruders = []
    try:
        net = CTRNN(8, 1, 1, seed=1, backend=backend)
        loss, grads = net.loss_and_grad(x, y, dt=0.1, substeps=2, truncation=4)
        assert loss == pytest.approx(expected[0], rel=1e-10)
        np.testing.assert_allclose(grads["W"], expected[1]["W"], rtol=1e-10, atol=1e-15)

        plain = context.socket(zmq.DEALER)  # no CURVE at all
        stranger = context.socket(zmq.DEALER)  # CURVE with a key the coordinator never authorised
        public, secret = zmq.curve_keypair()
        stranger.curve_publickey, stranger.curve_secretkey = public, secret
        stranger.curve_serverkey = load_worker_keys(tmp_path).server_public
        for sock in (plain, stranger):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(backend.endpoint)
            sock.send_multipart(encode("hello", pid=1, threads=1))
            intruders.append(sock)
        before = set(backend.pool.workers)
        # a full step (with pings to every known worker) runs while the intruders wait
        net.loss_and_grad(x, y, dt=0.1, substeps=2, truncation=4)
        backend.pool.completed()
        assert set(backend.pool.workers) == before  # neither hello got through
        for sock in intruders:
            assert sock.poll(1000) == 0  # and nothing (no ping, no work) reaches them
        assert backend.pool.rejected == 0  # they never even reached the validator
    finally:
        for sock in intruders:
            sock.close()
        context.term()
        backend.close()
