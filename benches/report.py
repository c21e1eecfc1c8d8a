"""Run the CTRNN benchmarks and write ``benches/RESULTS.md`` (``make bench-report``).

Runs ``python -m pytest benches --benchmark-only --benchmark-json=<tmp>`` with this interpreter
(pytest's own output goes to stderr), reads the JSON, measures the machine's memory bandwidth
with a numpy copy, and writes the markdown report atomically (temporary file + rename). The
markdown is also printed to stdout.

    .venv/bin/python benches/report.py                     # run the benchmarks, write RESULTS.md
    .venv/bin/python benches/report.py --from-json b.json  # rebuild RESULTS.md from a saved run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benches" / "RESULTS.md"
COMMAND = "make bench-report"
SCRIPT_COMMAND = ".venv/bin/python benches/report.py"
TORCH_CANDIDATES = ("torch_eager", "torch_rnn", "torch_autograd", "torch_online")
CANDIDATE_ORDER = (
    "rnnlab",
    "numpy",
    "numpy_f32",
    "torch_eager",
    "torch_autograd",
    "torch_rnn",
)
DESCRIPTIONS = {
    "rnnlab": "`CTRNN.run` / `CTRNN.loss_and_grad` / `OnlineTrainer.process` (Rust kernels, "
    "float32; batch rows split over the cores; a single forward sequence with N ≥ 256 has its "
    "neurons split over the cores, a single gradient sequence runs on one thread)",
    "numpy": "the numpy reference `rnnlab.ctrnn.reference.forward` (computes in float64)",
    "numpy_f32": "the same Euler loop written in float32 numpy (denormal cases only)",
    "torch_eager": "`TorchCTRNN` (the same equations in torch, float32) under `no_grad`",
    "torch_autograd": "`TorchCTRNN` in float32: forward + MSE + `backward()`",
    "torch_rnn": '`torch.nn.RNN(16, N, nonlinearity="tanh")` under `no_grad`, or with a '
    "`Linear(N, 4)` head + MSE + `backward()` for the gradient cases: a different, "
    "discrete-time model, timed as context",
    "torch_online": "the online loop of `OnlineTrainer` written in torch (advance one frame "
    "under `no_grad`, then forward + MSE + `backward()` + Adam over the 100-frame window); "
    "the online group's µs / step column is µs per frame",
}
BANDWIDTH_BYTES = 256 * 2**20
CACHE_BANDWIDTH_BYTES = 4 * 2**20  # W at N = 1024 in float32: fits the last-level cache
NOISY_SHARE = 0.05  # flag the run when other processes took more of the machine than this


# ----------------------------------------------------------------------------- running
def _busy_cpu_seconds() -> float | None:
    """CPU time (all cores, all processes) spent busy since boot, from /proc/stat."""
    fields = _read("/proc/stat").split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_benchmarks(json_path: Path) -> tuple[float, float | None]:
    """Run the pytest-benchmark suite into ``json_path``.

    Returns its wall time in seconds and the CPU seconds that *other* processes used meanwhile
    (machine-wide busy time minus the pytest run's own; None where /proc/stat is unreadable).
    """
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "benches",
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=mean,stddev,rounds",
        "-p",
        "no:cacheprovider",
    ]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    busy_before = _busy_cpu_seconds()
    own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr, check=False)
    elapsed = time.perf_counter() - start
    busy_after = _busy_cpu_seconds()
    own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed with exit status {proc.returncode}; RESULTS.md unchanged")
    other = None
    if busy_before is not None and busy_after is not None:
        own = sum(getattr(own_after, f) - getattr(own_before, f) for f in ("ru_utime", "ru_stime"))
        other = max(0.0, busy_after - busy_before - own)
    return elapsed, other


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = 5) -> float:
    """Copy bandwidth in GB/s (read + write: 2 · bytes / time), best of ``repeats`` copies."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch every page first
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * nbytes / best / 1e9


# ----------------------------------------------------------------------------- machine
def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine_info() -> dict[str, str]:
    nproc = shutil.which("nproc")
    cores = (
        subprocess.run([nproc], capture_output=True, text=True, check=False).stdout.strip()
        if nproc
        else str(os.cpu_count())
    )
    model = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level = _read(str(index / "level")).strip()
        kind = _read(str(index / "type")).strip()
        size = _read(str(index / "size")).strip()
        if level and size and kind != "Instruction":
            caches.append(f"L{level} {size}")
    info = {
        "nproc": cores,
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "caches": ", ".join(caches) or "unknown",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }
    try:
        import torch

        info["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads by default)"
    except ImportError:
        info["torch"] = "not installed"
    try:
        import rnnlab

        info["rnnlab"] = str(getattr(rnnlab, "__version__", "unknown"))
    except ImportError:
        info["rnnlab"] = "not importable"
    git = shutil.which("git")
    if git:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if head:
            info["commit"] = head + (" (with uncommitted changes)" if dirty else "")
    return info


# ----------------------------------------------------------------------------- tables
def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def fmt_ratio(ratio: float) -> str:
    if ratio < 10:
        return f"{ratio:.2f}×"
    return f"{ratio:.1f}×" if ratio < 100 else f"{ratio:.0f}×"


def load_groups(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{group: {candidate: benchmark}} from pytest-benchmark's JSON (CTRNN-style benchmarks:
    those whose extra_info names a candidate; the feed benchmarks are tabulated separately)."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in data["benchmarks"]:
        if bench["extra_info"].get("kind") not in CTRNN_KINDS:
            continue
        candidate = bench["extra_info"]["candidate"]
        groups.setdefault(bench["group"], {})[candidate] = bench
    return groups


CTRNN_KINDS = ("forward", "loss_and_grad", "denormals", "denormals-control", "online")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def other_systems_section(data: dict[str, Any]) -> list[str]:
    """Every benchmark of the other systems (backends, graph network, gated RNNs, TWC,
    microcircuit): time per call and the numbers each benchmark records in extra_info. Their
    targets are discussed in the analysis and in each system's docs page."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in data["benchmarks"]:
        kind = bench["extra_info"].get("kind")
        if kind in CTRNN_KINDS or _is_feed(bench):
            continue
        name = bench["group"] or bench["name"].split("[")[0]
        groups.setdefault(name, []).append(bench)
    if not groups:
        return []
    out = [
        "",
        "## Other systems",
        "",
        "One table per benchmark group (`benches/test_backends_*.py`, `test_graphnet_*.py`, "
        "`test_gated_*.py`, `test_twc_*.py`, `test_microcircuit_*.py`): mean and median time "
        "per timed call and the numbers the benchmark records (rates, ratios, settings). The "
        "candidates of a group may time different amounts of work per call; compare the "
        "recorded rates.",
    ]
    skip = {"kind", "candidate"}
    for name in sorted(groups):
        out += ["", f"### {name}", ""]
        out += [
            "| candidate | mean per call | median | rounds | recorded |",
            "|---|---:|---:|---:|---|",
        ]
        for bench in groups[name]:
            info, stats = bench["extra_info"], bench["stats"]
            recorded = ", ".join(
                f"{key} {_format_value(value)}"
                for key, value in info.items()
                if key not in skip and isinstance(value, (int, float, str)) and len(str(value)) < 40
            )
            out.append(
                f"| `{info.get('candidate', bench['name'])}` | {fmt_time(stats['mean'])} | "
                f"{fmt_time(stats['median'])} | {stats['rounds']} | {recorded} |"
            )
    return out


def _is_feed(bench: dict[str, Any]) -> bool:
    return str(bench["extra_info"].get("kind", "")).startswith("feed")


FEED_DESCRIPTIONS = {
    "binary_chunked": "protocol v1, 1000 frames per message, f64",
    "binary_per_frame": "protocol v1, one frame per message",
    "seed_json": "the prototype's JSON, one frame per message",
}


def feed_section(data: dict[str, Any]) -> tuple[list[str], list[tuple[bool | None, str]]]:
    """The feed benchmarks' table and latency line, and their targets."""
    feed = [bench for bench in data["benchmarks"] if _is_feed(bench)]
    if not feed:
        return [], [(None, "feed throughput: not measured")]
    out = [
        "",
        "## Feed into a Python consumer",
        "",
        "`benches/test_feed_throughput.py`: a real `waitress` (push mode, as fast as possible, "
        "2 channels, loopback TCP) into `FeedClient`, every frame copied into a numpy array; "
        "each round includes the server's start and the end of stream. Rates from the median "
        "round; MB/s counts every message part received.",
        "",
        "| format | frames per round | frames/s | channel values/s | MB/s | wire bytes/frame |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    checks: list[tuple[bool | None, str]] = []
    for bench in feed:
        info = bench["extra_info"]
        if info["kind"] != "feed-throughput":
            continue
        name = info["candidate"]
        out.append(
            f"| `{name}` ({FEED_DESCRIPTIONS.get(name, '')}) | {info['frames']:,} | "
            f"{info['frames_per_second']:,.0f} | {info['channel_values_per_second']:,.0f} | "
            f"{info['megabytes_per_second']:.1f} | {info['wire_bytes_per_frame']:.1f} |"
        )
        if "target_channel_values_per_second" in info:
            target = info["target_channel_values_per_second"]
            value = info["channel_values_per_second"]
            checks.append(
                (
                    value >= target,
                    f"feed `{name}`: {value / 1e6:.1f} M channel values/s into numpy "
                    f"(target ≥ {target / 1e6:g} M)",
                )
            )
        if "target_frames_per_second" in info:
            target = info["target_frames_per_second"]
            value = info["frames_per_second"]
            checks.append(
                (
                    value >= target,
                    f"feed `{name}`: {value:,.0f} frames/s (target ≥ {target:,.0f})",
                )
            )
    for bench in feed:
        info = bench["extra_info"]
        if info["kind"] == "feed-latency":
            out += [
                "",
                f"Latency at {info['rate']:g} frames/s, one frame per message "
                f"({info['measured_frames']} frames after {info['warmup_frames']} of warm-up; "
                "receive time minus the frame's nominal time): "
                f"p50 {info['p50_ms']:.2f} ms, p90 {info['p90_ms']:.2f} ms, "
                f"p99 {info['p99_ms']:.2f} ms, max {info['max_ms']:.2f} ms.",
            ]
    return out, checks


def _group_key(name: str, benches: dict[str, dict[str, Any]]) -> tuple[int, int, int, str]:
    info = next(iter(benches.values()))["extra_info"]
    kinds = ("forward", "loss_and_grad", "denormals", "denormals-control", "online")
    kind = kinds.index(info["kind"]) if info["kind"] in kinds else len(kinds)
    return (kind, int(info["batch"]), int(info["n"]), name)


def _ordered(candidates: Iterable[str]) -> list[str]:
    known = [c for c in CANDIDATE_ORDER if c in candidates]
    return known + sorted(set(candidates) - set(known))


def ratio(benches: dict[str, dict[str, Any]], other: str, stat: str = "mean") -> float | None:
    """``other``'s time over rnnlab's (mean or median per call); None if either is missing."""
    if "rnnlab" not in benches or other not in benches:
        return None
    return benches[other]["stats"][stat] / benches["rnnlab"]["stats"][stat]


def group_table(benches: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| candidate | mean per call | ± std | median | rounds | µs / step "
        "| other / rnnlab (mean) | (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for candidate in _ordered(benches):
        bench = benches[candidate]
        stats, steps = bench["stats"], bench["extra_info"]["steps"]
        shown = []
        for stat in ("mean", "median"):
            r = ratio(benches, candidate, stat)
            shown.append("—" if candidate == "rnnlab" or r is None else fmt_ratio(r))
        lines.append(
            f"| `{candidate}` | {fmt_time(stats['mean'])} "
            f"| {fmt_time(stats['stddev'])} | {fmt_time(stats['median'])} | {stats['rounds']} "
            f"| {stats['mean'] / steps * 1e6:.2f} | {shown[0]} | {shown[1]} |"
        )
    return lines


def denormal_notes(benches: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    for candidate in _ordered(benches):
        info = benches[candidate]["extra_info"]
        if "subnormal_states" in info:
            notes.append(
                f"- {candidate}: {info['subnormal_states']} subnormal values among the "
                f"{info['frames'] * info['n']} states of the trajectory; final |s| max "
                f"{info['final_state_max']:.3g}"
            )
    return notes


# ----------------------------------------------------------------------------- targets
def targets(groups: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[bool | None, str]]:
    """(passed, text) per target; passed is None when the benchmark is missing."""
    checks: list[tuple[bool | None, str]] = []

    def find(kind: str, batch: int, n: int) -> dict[str, dict[str, Any]]:
        for benches in groups.values():
            info = next(iter(benches.values()))["extra_info"]
            if info["kind"] == kind and info["batch"] == batch and info["n"] == n:
                return benches
        return {}

    def at_least(benches: dict[str, dict[str, Any]], other: str, bound: float, what: str) -> None:
        r = ratio(benches, other)
        if r is None:
            checks.append((None, f"{what}: not measured"))
            return
        median = ratio(benches, other, "median")
        checks.append(
            (
                r >= bound,
                f"{what}: {fmt_ratio(r)} on the mean (median: {fmt_ratio(median or r)}; "
                f"target ≥ {bound:g}×)",
            )
        )

    fwd64 = find("forward", 1, 64)
    at_least(fwd64, "torch_rnn", 10, "forward N=64 B=1, rnnlab vs torch.nn.RNN")
    at_least(fwd64, "numpy", 8, "forward N=64 B=1, rnnlab vs numpy reference")
    for n in (64, 256):
        at_least(
            find("loss_and_grad", 1, n),
            "torch_autograd",
            10,
            f"loss_and_grad N={n} B=1, rnnlab vs torch autograd",
        )
    at_least(
        find("online", 1, 64), "torch_online", 20, "online training N=64, rnnlab vs torch loop"
    )
    for name, benches in sorted(groups.items(), key=lambda kv: _group_key(*kv)):
        for candidate in TORCH_CANDIDATES:
            if candidate in benches:
                at_least(benches, candidate, 1, f"not slower than torch: {name}, vs {candidate}")
    return checks


# ----------------------------------------------------------------------------- report
ANALYSIS_START = "<!-- analysis -->"
ANALYSIS_END = "<!-- /analysis -->"
ANALYSIS_PLACEHOLDER = (
    "(Analysis: written by hand between these markers; kept when the report is rebuilt.)"
)


def previous_analysis(path: Path) -> str:
    """The hand-written analysis between the markers of an existing report, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ANALYSIS_PLACEHOLDER
    start, end = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return ANALYSIS_PLACEHOLDER
    return text[start + len(ANALYSIS_START) : end].strip("\n") or ANALYSIS_PLACEHOLDER


def render(
    data: dict[str, Any],
    machine: dict[str, str],
    bandwidth_gbs: float,
    wall_s: float | None,
    other_cpu_s: float | None = None,
    analysis: str = ANALYSIS_PLACEHOLDER,
    cache_bandwidth_gbs: float | None = None,
) -> str:
    groups = load_groups(data)
    ordered = sorted(groups.items(), key=lambda kv: _group_key(*kv))
    stamp = dt.datetime.now(dt.timezone.utc)
    if data.get("datetime"):
        stamp = dt.datetime.fromisoformat(data["datetime"]).astimezone(dt.timezone.utc)
    date = stamp.strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# rnnlab benchmarks",
        "",
        f"Command: `{COMMAND}`, i.e. `{SCRIPT_COMMAND}`, which runs "
        "`python -m pytest benches --benchmark-only --benchmark-json=<tmp>` and writes this "
        "file. `make bench` runs the same benchmarks without writing it.",
        "",
        f"- date: {date}",
        f"- machine: {machine['nproc']} cores (`nproc`), {machine['cpu']}; "
        f"caches {machine['caches']}",
        f"- software: Python {machine['python']}, numpy {machine['numpy']}, "
        f"torch {machine['torch']}, rnnlab {machine['rnnlab']}"
        + (f" at commit {machine['commit']}" if "commit" in machine else ""),
        f"- {machine['os']}; load average before the run: {machine.get('load', 'unknown')}",
    ]
    if wall_s is not None:
        out.append(f"- wall time of the pytest run: {wall_s:.0f} s")
    if wall_s is not None and other_cpu_s is not None:
        cores = int(machine["nproc"]) if machine["nproc"].isdigit() else os.cpu_count() or 1
        share = other_cpu_s / (wall_s * cores)
        out.append(
            f"- other processes used {other_cpu_s:.0f} CPU-seconds during the run "
            f"({share:.0%} of the machine)"
            + (
                " — **the timings are disturbed; rerun on an idle machine**"
                if share > NOISY_SHARE
                else ""
            )
        )
    out += [
        "",
        "Setup: float32, T = 1000 frames per call, 1 Euler substep of dt = 0.1 per frame "
        "(1000 time steps), tanh, 16 inputs, 4 outputs with a linear readout, dense W, "
        "seeded inputs. torch runs with `torch.set_num_threads(2)`; rnnlab uses the same 2 "
        "threads where its kernels split work (see the `rnnlab` candidate). Each call is one "
        "whole sequence; µs / step = mean / 1000 (for "
        "B = 32 one step advances all 32 sequences). "
        '"other / rnnlab" is how many times longer the candidate takes than rnnlab '
        "(> 1: rnnlab is faster), on the mean per call (the targets' basis) and on the median "
        "(less sensitive to outlier rounds). Every benchmark first checks its output: rnnlab "
        "and the torch CTRNN against the numpy reference (forward, relative error < 1e-4), "
        "rnnlab's loss and gradients against torch autograd (float32, < 1e-4 and < 1e-3), and "
        "in the denormal cases every state of the trajectory against the reference (relative "
        "1e-4 while it is normal, within the flush-to-zero level below).",
        "",
        "Candidates:",
        "",
        *(f"- `{name}`: {text}" for name, text in DESCRIPTIONS.items()),
        "",
        ANALYSIS_START,
        analysis,
        ANALYSIS_END,
        "",
        "## Results",
    ]
    for name, benches in ordered:
        info = next(iter(benches.values()))["extra_info"]
        out += ["", f"### {name}", ""]
        if info["kind"].startswith("denormals"):
            out.append(
                "W = 0, zero input, τ = 1, tanh, s0 = "
                f"{info['s0']:g} in every neuron: the state decays as 0.9ᵏ"
                + (
                    " and stays in the normal float32 range (control)."
                    if info["kind"] == "denormals-control"
                    else " through the float32 subnormal range (below 1.18e-38)."
                )
            )
            out.append("")
        out += group_table(benches)
        if info["kind"].startswith("denormals"):
            notes = denormal_notes(benches)
            if notes:
                out += ["", *notes]
            if info["kind"] == "denormals":
                out += [
                    "",
                    "Under flush-to-zero the Euler increment a·(d − s) (a = dt/τ = 0.1) becomes 0 "
                    "once |a·s| < 1.18e-38, so rnnlab's state stops decaying near 1.2e-37 "
                    "instead of going on towards 0; the check allows an absolute error of "
                    "2 · 1.18e-38 / a there.",
                ]
        if info["kind"] == "forward" and info["n"] == 1024 and "rnnlab" in benches:
            n, steps = info["n"], info["steps"]
            flop = 2.0 * n * n * steps
            stats = benches["rnnlab"]["stats"]
            bound = bandwidth_gbs / 4.0 * 2.0
            out += [
                "",
                f"Matvec throughput of rnnlab at N = {n}: 2·N² = {2 * n * n / 1e6:.2f} MFLOP "
                f"per step, {flop / stats['mean'] / 1e9:.1f} GFLOP/s at the mean time "
                f"({flop / stats['min'] / 1e9:.1f} GFLOP/s at the best round). Memory-bandwidth "
                f"bound: W is 4·N² = {4 * n * n / 2**20:.0f} MiB of float32 read once per step; "
                f"a numpy copy of a 256 MiB array moves {bandwidth_gbs:.1f} GB/s (2 · bytes / "
                f"time), so streaming W from memory allows at most {bandwidth_gbs:.1f} / 4 B × "
                f"2 FLOP = {bound:.1f} GFLOP/s. (W is smaller than the last-level cache "
                f"listed above, so it need not come from DRAM.)",
            ]
            if cache_bandwidth_gbs:
                cache_bound = cache_bandwidth_gbs / 4.0 * 2.0
                out += [
                    "",
                    f"From the last-level cache: a numpy copy of a 4 MiB array (source and "
                    f"destination both cache-resident) moves {cache_bandwidth_gbs:.1f} GB/s on "
                    f"one core, so one core streaming W from the cache reaches at most "
                    f"{cache_bound:.1f} GFLOP/s. rnnlab splits the neurons of a single sequence "
                    f"over the cores (each reads its rows of W), so with k cores the bound is "
                    f"about k × {cache_bound:.1f} GFLOP/s while the shared cache keeps up.",
                ]
    checks = targets(groups)
    feed_lines, feed_checks = feed_section(data)
    out += feed_lines
    out += other_systems_section(data)
    checks += feed_checks
    out += ["", "## Targets", ""]
    for passed, text in checks:
        label = "PASS" if passed else ("n/a" if passed is None else "FAIL")
        out.append(f"- **{label}** {text}")
    failed = sum(1 for passed, _ in checks if passed is False)
    out += ["", f"{len(checks) - failed} of {len(checks)} targets pass.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-json", type=Path, help="use a saved pytest-benchmark JSON")
    parser.add_argument("--save-json", type=Path, help="also keep the benchmark JSON here")
    parser.add_argument("--output", type=Path, default=RESULTS, help="default: %(default)s")
    args = parser.parse_args(argv)

    machine = machine_info()
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text(encoding="utf-8"))
        run = data.get("report_run", {})
        if "load" not in run:
            run["load"] = f"not recorded (report rebuilt from {args.from_json.name})"
    else:
        load = " ".join(_read("/proc/loadavg").split()[:3]) or "unknown"
        with tempfile.TemporaryDirectory() as tmp:
            json_path = Path(tmp) / "benchmarks.json"
            wall_s, other_cpu_s = run_benchmarks(json_path)
            data = json.loads(json_path.read_text(encoding="utf-8"))
        run = {"load": load, "wall_s": wall_s, "other_cpu_s": other_cpu_s}
        # The bandwidth is measured right after the run, on the same machine, and saved with it.
        run["bandwidth_gbs"] = measure_bandwidth()
        run["cache_bandwidth_gbs"] = measure_bandwidth(CACHE_BANDWIDTH_BYTES, repeats=50)
        data["report_run"] = run
    if args.save_json is not None:
        args.save_json.write_text(json.dumps(data, indent=1), encoding="utf-8")
    machine["load"] = run["load"]
    bandwidth = run.get("bandwidth_gbs") or measure_bandwidth()
    text = render(
        data,
        machine,
        bandwidth,
        run.get("wall_s"),
        run.get("other_cpu_s"),
        analysis=previous_analysis(args.output),
        cache_bandwidth_gbs=run.get("cache_bandwidth_gbs"),
    )

    from rnnlab.atomic import write_text_atomic

    write_text_atomic(args.output, text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(args.output, 0o666 & ~umask)  # mkstemp made it 0600
    print(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
