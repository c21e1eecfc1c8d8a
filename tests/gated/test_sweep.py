"""The sweep folder: ids, init idempotence, concurrent workers, SIGKILL resume, corrupt results,
retry limit, status, examine and derive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnlab import ConfigError
from rnnlab.cli import main
from rnnlab.gated.sweep import Sweep, architecture_id, grid_configs, systematic_01_configs

TINY_TRAINING = {
    "steps": 24,
    "batch_size": 2,
    "window": 13,
    "log_every": 4,
    "eval_windows": 1,
    "eval_length": 8,
    "device": "cpu",
    "lr": 0.01,
}


def tiny_grid(n_seeds: int) -> dict:
    return {
        "grid": {
            "use_state_gate": [True, False],
            "use_new_state": [True, False],
            "use_old_state": [True, False],
            "n_layers": [1],
            "state_size": [4],
            "seeds": list(range(n_seeds)),
        }
    }


def worker_command(sweep_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rnnlab",
        "sweep",
        "train",
        "--dir",
        str(sweep_dir),
        "--no-progress",
        *extra,
    ]


def test_systematic_01_has_the_432_upstream_configs(tmp_path: Path, capsys) -> None:
    configs = systematic_01_configs()
    assert len(configs) == 432
    assert len({c["arch_id"] for c in configs}) == 432
    first, last = configs[0], configs[-1]
    # note §3.1: the first entry is all-True, 1 layer, S = 32, with the stored upstream id
    assert first["arch_id"].startswith("b9f71f91")
    assert first["arch_id"].endswith("309d64")
    assert all(first["arch"][k] for k in first["arch"] if k.startswith("use_"))
    assert (first["arch"]["n_layers"], first["arch"]["state_size"]) == (1, 32)
    assert last["arch"]["use_old_state"]
    assert not last["arch"]["use_new_state"]
    assert (last["arch"]["n_layers"], last["arch"]["state_size"]) == (3, 256)
    assert sum(c["arch"]["state_size"] == 32 for c in configs) == 144
    assert all(c["arch"]["use_residual"] for c in configs if c["arch"]["state_size"] == 32)
    # the CLI writes it, and running it again adds nothing
    assert main(["sweep", "init", "--preset", "systematic-01", "--dir", str(tmp_path)]) == 0
    assert main(["sweep", "init", "--preset", "systematic-01", "--dir", str(tmp_path)]) == 0
    assert "432 configs (0 added)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "configs.json").read_text())
    assert len(saved["configs"]) == 432
    assert saved["training"]["steps"] == 10_989


def test_ids_hash_architecture_fields_only_and_duplicates_collapse() -> None:
    arch = {
        "use_input_gate": False,
        "use_forget_gate": True,
        "use_output_gate": False,
        "use_state_gate": True,
        "use_new_state": True,
        "use_old_state": False,
        "use_residual": True,
        "n_layers": 2,
        "state_size": 256,
    }
    import hashlib

    expected = hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()
    assert architecture_id(arch) == expected
    grid = {"grid": {"use_new_state": [True, True], "n_layers": [1], "state_size": [8]}}
    assert len(grid_configs(grid)) == 1
    with pytest.raises(ConfigError, match="bogus"):
        grid_configs({"grid": {"bogus": [1], "n_layers": [1], "state_size": [8]}})
    with pytest.raises(ConfigError, match="n_layers"):
        grid_configs({"grid": {"state_size": [8]}})


def test_grid_toml_init_is_idempotent(tmp_path: Path) -> None:
    toml = tmp_path / "grid.toml"
    toml.write_text(
        "[training]\nsteps = 24\nbatch_size = 2\n\n"
        "[grid]\nuse_new_state = [true, false]\nuse_old_state = [true, false]\n"
        "n_layers = [1, 2]\nstate_size = [4]\nseeds = [0, 1]\n\n"
        "[[exclude]]\nn_layers = 2\nuse_old_state = true\n"
    )
    folder = tmp_path / "sweep"
    assert main(["sweep", "init", "--grid", str(toml), "--dir", str(folder)]) == 0
    data = json.loads((folder / "configs.json").read_text())
    # (NS,OS) ∈ {TT, TF, FT} × layers {1, 2} minus layers 2 with OS → 3 + 1 = 4 archs × 2 seeds
    assert len(data["configs"]) == 8
    assert data["training"]["steps"] == 24
    assert main(["sweep", "init", "--grid", str(toml), "--dir", str(folder)]) == 0
    assert len(json.loads((folder / "configs.json").read_text())["configs"]) == 8


def test_missing_data_file_fails_at_init(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "sweep",
            "init",
            "--preset",
            "systematic-01",
            "--dir",
            str(tmp_path / "s"),
            "--data",
            str(tmp_path / "enwik8"),
        ]
    )
    assert code == 2
    assert "enwik8.zip" in capsys.readouterr().err


def test_four_concurrent_workers_finish_each_config_exactly_once(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path)
    assert sweep.init(grid_configs(tiny_grid(8)), TINY_TRAINING) == 48
    data = sweep.load()
    data["configs"] = data["configs"][:40]
    (tmp_path / "configs.json").write_text(json.dumps(data))
    processes = [
        subprocess.Popen(worker_command(tmp_path), stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0]
    finished = [
        line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("done ")
    ]
    ids = [c["run_id"] for c in data["configs"]]
    assert sorted(finished) == sorted(ids)  # every config once, none twice
    for run_id in ids:
        folder = tmp_path / "runs" / run_id
        assert sorted(p.name for p in folder.glob("claim.*")) == ["claim.1"]
        assert sweep.read_result(run_id)[0] is not None
    assert {s.status for s in sweep.states()} == {"done"}


def test_sigkilled_worker_resumes_from_its_checkpoint_and_completes_once(tmp_path: Path) -> None:
    training = {**TINY_TRAINING, "steps": 1000, "window": 51, "checkpoint_every_s": 0.0}
    sweep = Sweep(tmp_path)
    sweep.init(grid_configs(tiny_grid(1))[:1], training)
    run_id = sweep.load()["configs"][0]["run_id"]
    folder = tmp_path / "runs" / run_id
    process = subprocess.Popen(worker_command(tmp_path), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (folder / "checkpoint.json").exists():  # wait for the condition, bounded
        assert process.poll() is None, "the worker ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert sweep.read_result(run_id)[0] is None
    assert sweep.run_state(run_id, 120.0).status == "stale"  # same host, dead pid
    from rnnlab.gated.sweep import run_worker

    assert run_worker(tmp_path) == [run_id]  # the restarted worker (here: this process)
    result = sweep.read_result(run_id)[0]
    assert result is not None
    assert result["attempt"] == 2
    assert result["resumed_from_step"] >= 50
    assert result["steps"] == 1000
    assert not (folder / "checkpoint.json").exists()
    assert run_worker(tmp_path) == []  # nothing left to do


def test_corrupt_result_is_detected_and_redone(tmp_path: Path) -> None:
    from rnnlab.gated.sweep import run_worker

    sweep = Sweep(tmp_path)
    sweep.init(grid_configs(tiny_grid(1))[:2], TINY_TRAINING)
    assert len(run_worker(tmp_path)) == 2
    first, second = (c["run_id"] for c in sweep.load()["configs"])
    path = tmp_path / "runs" / first / "result.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # a truncated (partial) file
    tampered = json.loads((tmp_path / "runs" / second / "result.json").read_text())
    tampered["payload"]["val_loss"] = 0.1  # edited without its checksum
    (tmp_path / "runs" / second / "result.json").write_text(json.dumps(tampered))
    assert {s.status for s in sweep.states()} == {"stale"}
    assert sorted(run_worker(tmp_path)) == sorted([first, second])
    assert all(sweep.read_result(r)[0]["attempt"] == 2 for r in (first, second))
    assert (tmp_path / "runs" / first / "result.corrupt.1").exists()


def test_stale_runs_are_retried_up_to_the_limit_then_failed(tmp_path: Path) -> None:
    import random

    sweep = Sweep(tmp_path)
    sweep.init(grid_configs(tiny_grid(1))[:1], TINY_TRAINING, max_attempts=2, stale_after_s=1.0)
    run_id = sweep.load()["configs"][0]["run_id"]
    folder = tmp_path / "runs" / run_id
    rng = random.Random(0)
    assert sweep.claim_next("w", rng) is not None  # attempt 1, by this live process
    assert sweep.claim_next("w", rng) is None  # running: nobody else may take it
    old = time.time() - 10
    os.utime(folder / "claim.1", (old, old))  # its heartbeat is now 10 s old
    config_attempt = sweep.claim_next("w", rng)
    assert config_attempt is not None
    assert config_attempt[1] == 2
    os.utime(folder / "claim.2", (old, old))
    assert sweep.claim_next("w", rng) is None
    assert (folder / "failed.json").exists()
    assert sweep.run_state(run_id, 1.0).status == "failed"


def test_status_examine_and_derive(tmp_path: Path, capsys) -> None:
    from rnnlab.gated.sweep import run_worker

    sweep = Sweep(tmp_path / "s1")
    sweep.init(grid_configs(tiny_grid(1)), TINY_TRAINING)
    assert main(["sweep", "status", "--dir", str(sweep.path)]) == 0
    assert "pending 6" in capsys.readouterr().out
    run_worker(sweep.path)
    assert main(["sweep", "status", "--dir", str(sweep.path)]) == 0
    out = capsys.readouterr().out
    assert "done 6" in out
    assert "ETA" in out
    assert main(["sweep", "examine", "--dir", str(sweep.path), "--threshold", "9"]) == 0
    folder = sweep.path / "examine"
    for name in ("results_all.png", "hyperparameters.png", "filtered_below_9.png", "report.md"):
        assert (folder / name).stat().st_size > 1000, name
    report = (folder / "report.md").read_text()
    assert "use_state_gate × use_new_state" in report or "×" in report
    assert report.count("| ") > 20
    # experiment 02 form: 6 archs × top 0.5 → 3, each + S=8, + 2 layers at S=4 and 8
    assert (
        main(
            [
                "sweep",
                "derive",
                "--dir",
                str(sweep.path),
                "--out",
                str(tmp_path / "s2"),
                "--top",
                "0.5",
                "--state-size",
                "8",
                "--layers",
                "2",
                "--steps",
                "30",
            ]
        )
        == 0
    )
    derived = Sweep(tmp_path / "s2").load()
    assert len(derived["configs"]) == 12
    assert derived["training"]["steps"] == 30
    # experiment 03 form: top 2 × 3 seeds
    assert (
        main(
            [
                "sweep",
                "derive",
                "--dir",
                str(sweep.path),
                "--out",
                str(tmp_path / "s3"),
                "--top",
                "2",
                "--repeats",
                "3",
            ]
        )
        == 0
    )
    repeats = Sweep(tmp_path / "s3").load()["configs"]
    assert len(repeats) == 6
    assert len({c["arch_id"] for c in repeats}) == 2
    assert sorted({c["seed"] for c in repeats}) == [0, 1, 2]


def test_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "rnnlab sweep demo" in capsys.readouterr().out
