"""Runner: tasks, results.npz arrays, save/load/re-plot round trip, CLI entry points."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rnnlab.cli import main as rnnlab_main
from rnnlab.microcircuit.params import TEMPLATE, params_from_dict
from rnnlab.microcircuit.runner import load_model, run_task, save_result

SMALL = {
    **TEMPLATE,
    "layers": [2, 3, 2, 2],
    "activation": "logistic",
    "eta_fw": [1.0, 1.0, 0.5],
    "eta_bw": [20.0, 20.0],
    "eta_IP": [1.0, 1.0],
    "eta_PI": [0.5, 0.5],
    "alpha": [1e-3, 1e-3],
    "noise_scale": [0.05, 0.05],
    "dataset_size": 4,
    "Tpres": 0.2,
    "epochs": 3,
    "settling_time": 0.5,
    "rec_per_steps": 10,
    "random_seed": [1, 2, 3],
}


def test_fw_bw_series_shapes_and_teacher():
    params = params_from_dict(SMALL)
    result = run_task(params, "fw_bw", compare="BP", progress=False, log=lambda _m: None)
    s = result.series
    n_records = (50 + 3 * 4 * 20) // 10
    assert s["angle_B_WT"].shape == (3, n_records, 2)
    assert s["angle_B_RHS"].shape == (3, n_records, 2)
    assert s["angle_jacobians"].shape == (3, n_records, 2)
    assert s["angle_BPI_negB"].shape == (3, n_records, 2)
    assert s["angle_WIP_W"].shape == (3, n_records, 2)
    assert s["angle_dW_BP"].shape == (3, n_records, 3)
    assert s["MSE"].shape == (3, n_records)
    assert s["WPP_layer1"].shape == (3, n_records, 2, 3)
    assert s["teacher_WPP_layer0"].shape == (3, 2)
    assert np.all((s["angle_B_WT"] >= 0) & (s["angle_B_WT"] <= 180))
    np.testing.assert_allclose(s["time_ms"][0], np.arange(1, n_records + 1) * 10 * 0.01)
    # during settling nothing learns and the SPS holds exactly
    assert np.all(s["angle_BPI_negB"][:, :5] < 1e-5)
    # one target per sample (the teacher's prospective output voltage), different per sample
    assert s["teacher_targets"].shape == (4, 2)
    assert np.all(np.isfinite(s["teacher_targets"]))
    assert np.all(s["teacher_targets"].std(axis=0) > 0)


def test_reference_backend_gives_the_same_run():
    small = {
        **SMALL,
        "epochs": 1,
        "layers": [2, 2, 1],
        "eta_fw": [1.0, 1.0],
        "eta_bw": [5.0],
        "eta_IP": [1.0],
        "eta_PI": [0.5],
        "alpha": [1e-3],
        "noise_scale": [0.05],
    }
    params = params_from_dict(small)
    fast = run_task(params, "fw_bw", backend="fast", progress=False, log=lambda _m: None)
    ref = run_task(params, "fw_bw", backend="reference", progress=False, log=lambda _m: None)
    np.testing.assert_allclose(fast.state, ref.state, atol=1e-10, rtol=0)
    np.testing.assert_allclose(fast.series["MSE"], ref.series["MSE"], atol=1e-10, rtol=1e-9)


def test_bw_only_keeps_w_fixed_and_learns_b():
    params = params_from_dict({**SMALL, "epochs": 2})
    result = run_task(params, "bw_only", progress=False, log=lambda _m: None)
    w = result.series["WPP_layer1"]
    np.testing.assert_array_equal(w[:, 0], w[:, -1])
    b = result.series["BPP_layer0"]
    assert np.max(np.abs(b[:, -1] - b[:, 0])) > 0
    assert "MSE" not in result.series


def test_bw_only_compare_bp_replays_recorded_b():
    params = params_from_dict({**SMALL, "epochs": 2})
    result = run_task(params, "bw_only", compare="BP", progress=False, log=lambda _m: None)
    angles = result.series["angle_dW_BP"]
    times = result.series["angle_dW_BP_time_ms"]
    assert angles.shape == (3, times.size, 3)
    assert np.all(times > params["settling_time"])
    assert np.all((angles >= 0) & (angles <= 180))
    # the output layer needs no feedback: its update is close to the ANN's
    assert np.all(angles[:, :, 2] < 45)


def test_cli_run_save_load_replot_round_trip(tmp_path):
    folder = tmp_path / "run01"
    folder.mkdir()
    one_hidden = {
        **SMALL,
        "epochs": 1,
        "layers": [2, 2, 1],
        "eta_fw": [1.0, 1.0],
        "eta_bw": [5.0],
        "eta_IP": [1.0],
        "eta_PI": [0.5],
        "alpha": [1e-3],
        "noise_scale": [0.05],
    }
    (folder / "params.json").write_text(json.dumps(one_hidden))
    args = [
        "microcircuit",
        "run",
        "--params",
        str(folder / "params.json"),
        "--task",
        "fw_bw",
        "--no-progress",
    ]
    assert rnnlab_main([*args, "--no-plots"]) == 0
    for name in ("results.npz", "model.npz", "run.log"):
        assert (folder / name).exists(), name
    assert not (folder / "MSE.png").exists()
    saved = dict(np.load(folder / "results.npz"))
    assert rnnlab_main([*args, "--load", str(folder / "model.npz")]) == 0
    for name in (
        "MSE.png",
        "WPP_layer0.png",
        "WPP_layer1.png",
        "BPP_layer0.png",
        "WIP_layer0.png",
        "BPI_layer0.png",
        "angle_B_WT_layer0.png",
        "angle_B_WT_layer0_mean.png",
        "angle_B_RHS_layer0_mean.png",
        "replot.log",
    ):
        assert (folder / name).exists(), name
    loaded = load_model(folder / "model.npz")
    assert loaded.task == "fw_bw"
    for key, value in saved.items():
        np.testing.assert_array_equal(loaded.series[key], value)
    # saving again what was loaded writes identical series
    save_result(loaded, tmp_path / "again")
    again = np.load(tmp_path / "again" / "results.npz")
    np.testing.assert_array_equal(again["angle_B_WT"], saved["angle_B_WT"])


def test_cli_reports_bad_params(tmp_path, capsys):
    (tmp_path / "params.json").write_text(json.dumps({**SMALL, "eta_fw": [1.0]}))
    code = rnnlab_main(
        [
            "microcircuit",
            "run",
            "--params",
            str(tmp_path / "params.json"),
            "--task",
            "bw_only",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "eta_fw" in capsys.readouterr().err


def test_template_command_writes_a_runnable_file(tmp_path):
    assert rnnlab_main(["microcircuit", "template", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "params.json").read_text())["layers"] == [1, 1, 1]


@pytest.mark.parametrize("argv", [["--help"]])
def test_module_entry_point_has_help(argv):
    out = subprocess.run(
        [sys.executable, "-m", "rnnlab.microcircuit.runner", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--params" in out.stdout
    assert "examples:" in out.stdout
