"""Data (bytes, split, embedded corpus, n-gram entropies) and online training / resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab import ConfigError
from rnnlab.gated.data import (
    embedded_corpus,
    load_corpus,
    ngram_conditional_entropies,
    sample_windows,
    split_bytes,
)
from rnnlab.gated.train import TrainConfig, build_model, evaluate_loss, train_run

TINY = TrainConfig(
    steps=120,
    batch_size=4,
    window=31,
    log_every=10,
    eval_windows=2,
    lr=0.01,
    eval_length=40,
    device="cpu",
    checkpoint_every_s=0.0,
)
ARCH = {
    "n_layers": 1,
    "state_size": 8,
    "use_new_state": True,
    "use_state_gate": True,
    "use_forget_gate": True,
    "use_residual": True,
}


def test_split_is_contiguous_and_deterministic() -> None:
    data = np.arange(1000, dtype=np.int64).astype(np.uint8)
    parts = split_bytes(data)
    assert (parts.train.size, parts.validation.size, parts.test.size) == (900, 50, 50)
    np.testing.assert_array_equal(np.concatenate([parts.train, parts.validation, parts.test]), data)
    with pytest.raises(ConfigError, match="split"):
        split_bytes(data, (0.5, 0.5, 0.5))


def test_missing_enwik8_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mattmahoney\.net/dc/enwik8\.zip"):
        load_corpus(tmp_path / "enwik8")
    with pytest.raises(ConfigError, match="no file"):
        load_corpus(tmp_path / "other.bin")
    (tmp_path / "file.bin").write_bytes(bytes(range(256)))
    assert load_corpus(tmp_path / "file.bin").tolist() == list(range(256))


def test_embedded_corpus_is_deterministic_ascii() -> None:
    a = embedded_corpus(5000)
    assert np.array_equal(a, embedded_corpus(5000))
    assert a.dtype == np.uint8
    assert a.max() < 128
    assert bytes(a[:20]).startswith(b"== Record 1:")


def test_ngram_entropies_against_hand_computed_values() -> None:
    # period-2 "abab...": H0 = ln 2, H1 = H2 = 0
    abab = np.frombuffer(b"ab" * 500, dtype=np.uint8)
    h = ngram_conditional_entropies(abab, 2)
    assert h[0] == pytest.approx(math.log(2), abs=1e-12)
    assert abs(h[1]) < 1e-9
    assert abs(h[2]) < 1e-9
    # "aab" repeated: H0 = H(2/3, 1/3); after 'a' the next is a or b equally often (half of the
    # a's are followed by b), after 'b' always 'a': H1 = (2/3)·ln 2; order 2 determines it
    aab = np.frombuffer(b"aab" * 400, dtype=np.uint8)
    h = ngram_conditional_entropies(aab, 2)
    assert h[0] == pytest.approx(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3), abs=1e-3)
    assert h[1] == pytest.approx((2 / 3) * math.log(2), abs=1e-3)
    assert abs(h[2]) < 1e-3


def test_sample_windows_are_contiguous_slices() -> None:
    data = np.arange(200).astype(np.uint8)
    windows = sample_windows(data, 5, 10, np.random.default_rng(0))
    assert windows.shape == (5, 10)
    assert np.all(np.diff(windows, axis=1) == 1)
    with pytest.raises(ConfigError, match="window"):
        sample_windows(data, 1, 500, np.random.default_rng(0))


def test_training_is_seeded_and_lowers_the_loss() -> None:
    corpus = embedded_corpus(20_000)
    a = train_run(ARCH, TINY, seed=1, corpus=corpus)
    b = train_run(ARCH, TINY, seed=1, corpus=corpus)
    assert a["curve_ema"] == b["curve_ema"]
    assert a["val_loss"] == b["val_loss"]
    assert a["steps"] == 120  # honoured exactly, not rounded to whole windows
    assert len(a["curve_ema"]) == 12
    assert a["curve_mean"][-1] < a["curve_mean"][0] - 1.0  # from ≈5.5 nats (lr 0.01)
    assert a["min_ema"] == min(a["curve_ema"])
    assert a["mean_last_k"] == pytest.approx(np.mean(a["curve_mean"][-10:]))
    assert a["untrained_parameters"] == []


def test_ema_is_the_upstream_recursion() -> None:
    corpus = embedded_corpus(20_000)
    config = TrainConfig(
        steps=30, batch_size=2, window=11, log_every=1, eval_windows=1, eval_length=8, device="cpu"
    )
    result = train_run(ARCH, config, seed=0, corpus=corpus)
    ema = 3.0
    for loss, logged in zip(result["curve_mean"], result["curve_ema"], strict=False):
        ema = 0.95 * ema + 0.05 * loss
        assert logged == pytest.approx(ema, rel=1e-12)


def test_old_state_only_run_reports_its_untrained_recurrence() -> None:
    arch = {"n_layers": 1, "state_size": 8, "use_new_state": False, "use_old_state": True}
    result = train_run(arch, TINY, seed=0, corpus=embedded_corpus(20_000))
    # the recurrence gets no gradient, and (no IG, no RES) neither does the embedding: the
    # read-out sees only the previous state, so the current input never reaches the loss
    assert result["untrained_parameters"] == [
        "embedding",
        "embedding_bias",
        "layers.0.combined_weight",
        "layers.0.combined_bias",
    ]


def test_truncated_bptt_takes_one_step_per_segment() -> None:
    corpus = embedded_corpus(20_000)
    k1 = train_run(ARCH, TINY, seed=2, corpus=corpus)
    k5 = train_run(
        ARCH,
        TrainConfig(**{**TINY.as_dict(), "truncation": 5, "split": TINY.split}),
        seed=2,
        corpus=corpus,
    )
    assert k5["steps"] == 120
    assert k5["curve_ema"] != k1["curve_ema"]
    # same first window, same initial weights: the first logged losses agree for the first
    # segment only up to the first update, so they differ but are both finite and decreasing
    assert all(math.isfinite(v) for v in k5["curve_mean"])


def test_evaluation_state_zeroed_control_is_a_no_memory_model() -> None:
    corpus = embedded_corpus(20_000)
    model = build_model(ARCH, seed=0)
    carried = evaluate_loss(model, corpus, windows=2, length=30)
    zeroed = evaluate_loss(model, corpus, windows=2, length=30, zero_state=True)
    # zeroed equals feeding each byte separately from a zero state
    starts = np.linspace(0, corpus.size - 30, 2).astype(np.int64)
    total = 0.0
    with torch.no_grad():
        for start in starts:
            for j in range(29):
                logits, _ = model(torch.tensor([int(corpus[start + j])]), model.initial_state(1))
                total += float(
                    torch.nn.functional.cross_entropy(
                        logits, torch.tensor([int(corpus[start + j + 1])])
                    )
                )
    assert zeroed == pytest.approx(total / 58, rel=1e-6)
    assert carried != zeroed


def test_resume_from_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    corpus = embedded_corpus(20_000)
    full = train_run(ARCH, TINY, seed=4, corpus=corpus)

    class StopError(Exception):
        pass

    def stop_at_second(step: int) -> None:
        if step >= 60:
            raise StopError

    with pytest.raises(StopError):
        train_run(ARCH, TINY, seed=4, corpus=corpus, folder=tmp_path, on_checkpoint=stop_at_second)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["checkpoint-60.safetensors"]
    resumed = train_run(ARCH, TINY, seed=4, corpus=corpus, folder=tmp_path)
    assert resumed["resumed_from_step"] == 60
    assert resumed["curve_ema"] == full["curve_ema"]
    assert resumed["val_loss"] == full["val_loss"]
    # a checkpoint whose tensor file does not match its JSON is ignored (fresh start)
    current = json.loads((tmp_path / "checkpoint.json").read_text())["tensors_file"]
    (tmp_path / current).write_bytes(b"garbage")
    again = train_run(ARCH, TINY, seed=4, corpus=corpus, folder=tmp_path)
    assert again["resumed_from_step"] == 0
    assert again["curve_ema"] == full["curve_ema"]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="tpu")
    with pytest.raises(ConfigError, match=r"training\.bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_adam_matches_torch_adam() -> None:
    from rnnlab.gated.train import Adam

    ours = build_model(ARCH | {"use_new_state": False, "use_old_state": True}, seed=0).double()
    theirs = build_model(ARCH | {"use_new_state": False, "use_old_state": True}, seed=0).double()
    adam = Adam(list(ours.named_parameters()), lr=0.01)
    reference = torch.optim.Adam(theirs.parameters(), lr=0.01)
    tokens = torch.tensor([1, 7, 200])
    for _ in range(5):
        for model, optimizer in ((ours, adam), (theirs, reference)):
            optimizer.zero_grad()
            logits, _ = model(tokens, [torch.ones(3, 8, dtype=torch.float64)])
            torch.nn.functional.cross_entropy(logits, tokens.flip(0)).backward()
            optimizer.step()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=False):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=name)
    assert "layers.0.combined_weight" not in adam.steps  # no gradient → skipped, as in torch
