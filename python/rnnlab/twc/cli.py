"""Command-line subcommands of this system (registered by rnnlab.cli): ``rnnlab twc ...``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  rnnlab twc validate                              # numpy reference vs torch, asserting
  rnnlab twc train --algo es --seed 0              # CMA-ES over the 40 parameters
  rnnlab twc train --algo td3 --dynamics straight_through --steps 200000 --seed 0
  rnnlab twc train --algo ddpg --steps 50000
  rnnlab twc eval runs/twc-td3-.../best.safetensors --episodes 100
  rnnlab twc eval params.json --backend gymnasium  # effective-parameter JSON
  rnnlab twc import-xml TWFiuriBaseFIU.xml --out params.json   # FIURI engine (Ariel) XML
  rnnlab twc export-xml params.json --out model.xml
"""


def _threads(algo: str = "es") -> None:
    import torch

    if algo in ("td3", "ddpg"):
        # The 400-300 critics at batch 256 are matrix products: more threads help (43 vs 67 ms
        # per update with 2 threads vs 1 on the 2-core development machine).
        env = os.environ.get("RNNLAB_NUM_THREADS", "").strip()
        torch.set_num_threads(int(env) if env.isdigit() and int(env) >= 1 else os.cpu_count() or 1)
    else:
        torch.set_num_threads(1)  # the circuit is tiny: extra threads only add overhead


def _write_episode_plots(folder: Any, circuit: Any, label: str) -> None:
    from rnnlab.twc.plots import circuit_figure, traces_figure
    from rnnlab.twc.rollout import EVAL_FIRST_SEED, run_gymnasium_episode

    _, _, _, trace = run_gymnasium_episode(circuit, EVAL_FIRST_SEED, record=True)
    folder.save_figure(
        f"traces-{label}.png",
        traces_figure(
            circuit.wiring.neuron_names, trace, f"{label} policy, seed {EVAL_FIRST_SEED}"
        ),
    )
    folder.save_figure(f"circuit-{label}.png", circuit_figure(circuit, f"TWC ({label})"))


def _save_policy(folder: Any, name: str, circuit: Any, extra: dict[str, Any]) -> None:
    from safetensors.torch import save as save_tensors

    from rnnlab.atomic import write_atomic

    data = save_tensors({k: v.contiguous() for k, v in circuit.state_dict().items()})

    def write_weights(file: Any) -> None:
        file.write(data)

    write_atomic(folder / f"{name}.safetensors", write_weights)
    folder.write_json(
        f"{name}.json",
        {"circuit": circuit.config(), "parameters": circuit.parameters_json(), **extra},
    )


def _train_es(args: argparse.Namespace, folder: Any) -> dict[str, Any]:
    from tqdm import tqdm

    from rnnlab.twc.evolution import EvolutionConfig, evolution_config_json, train_evolution
    from rnnlab.twc.plots import return_curve_figure
    from rnnlab.twc.rollout import evaluate

    config = EvolutionConfig(
        generations=args.generations,
        population=args.population,
        episodes_per_candidate=args.episodes_per_candidate,
        sigma=args.sigma,
        seed=args.seed,
        dynamics=args.dynamics,
        delay=args.delay,
        encoder=args.encoder,
        random_search=args.random_search,
        time_limit_s=args.time_limit if args.time_limit else float("inf"),
    )
    folder.write_json("config.json", {"algo": "es", **evolution_config_json(config)})
    bar = tqdm(total=config.generations, disable=args.no_progress, desc="CMA-ES")

    def on_generation(record: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(fit=f"{record['fitness_best']:.1f}", best=record.get("best_eval", ""))

    result = train_evolution(config, on_generation)
    bar.close()
    history = result.history
    evaluated = [r for r in history if "best_eval" in r]
    folder.save_figure(
        "returns.png",
        return_curve_figure(
            {
                "best candidate (train fitness)": (
                    [r["generation"] for r in history],
                    [r["fitness_best"] for r in history],
                ),
                "best on 100 selection seeds": (
                    [r["generation"] for r in evaluated],
                    [r["best_eval"] for r in evaluated],
                ),
            },
            "generation",
        ),
    )
    best_eval = evaluate(result.best, 100).summary()
    final_eval = evaluate(result.final, 100).summary()
    _save_policy(folder, "best", result.best, {"eval": best_eval, "selection": result.best_eval})
    _save_policy(folder, "final", result.final, {"eval": final_eval})
    folder.write_json("history.json", history)
    return {
        "algo": "es",
        "best": best_eval,
        "best_on_selection_seeds": result.best_eval,
        "final": final_eval,
        "seconds": result.seconds,
        "seconds_to_target": result.seconds_to_target,
        "generations": len(history),
        "policy": result.best,
    }


def _train_td3(args: argparse.Namespace, folder: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from tqdm import tqdm

    from rnnlab.twc.plots import return_curve_figure
    from rnnlab.twc.td3 import TD3Config, TD3Trainer, load_policy

    if args.resume:
        trainer = TD3Trainer.resume(Path(args.resume), "final")
        if args.steps:
            trainer.config.total_steps = args.steps
    else:
        config = TD3Config(
            algo=args.algo,
            total_steps=args.steps,
            n_envs=args.envs,
            warmup_steps=min(args.warmup, args.steps),
            warmup_actions=args.warmup_actions,
            dynamics=args.dynamics,
            delay=args.delay,
            encoder=args.encoder,
            seed=args.seed,
            init_from=args.init_from,
            exploration=args.exploration,
            prioritized=args.prioritized,
            sampling=args.sampling,
            stored_state=args.stored_state,
            batch_size=args.batch_size,
            updates_per_step=args.updates_per_step,
            eval_every_steps=args.eval_every,
        )
        trainer = TD3Trainer(config)
    folder.write_json("config.json", asdict(trainer.config))
    started = time.perf_counter()
    reached: dict[str, float] = {}
    bar = tqdm(
        total=trainer.config.total_steps,
        initial=trainer.env_steps,
        disable=args.no_progress,
        desc=trainer.config.algo.upper(),
    )

    def on_eval(t: TD3Trainer, summary: dict[str, float]) -> None:
        bar.set_postfix(eval=f"{summary['mean_return']:.1f}")
        if summary["mean_return"] > t.best_eval:
            t.best_eval = summary["mean_return"]
            t.save(folder.path, "best")
        if summary["mean_return"] >= 90.0 and "seconds" not in reached:
            reached["seconds"] = time.perf_counter() - started
            reached["env_steps"] = t.env_steps

    with _graceful_interrupt() as interrupted:
        print(
            f"training into {folder.path}/ (Ctrl-C stops after the current step and saves)",
            file=sys.stderr,
            flush=True,
        )
        trainer.train(
            on_eval=on_eval,
            progress=bar,
            time_limit_s=args.time_limit if args.time_limit else float("inf"),
            stop_requested=lambda: bool(interrupted),
        )
    bar.close()
    if interrupted:
        print(
            f"interrupted at {trainer.env_steps} env steps: saving 'final'; continue with "
            f"--resume {folder.path}",
            file=sys.stderr,
            flush=True,
        )
    trainer.save(folder.path, "final")
    if not (folder / "best.safetensors").exists():
        trainer.save(folder.path, "best")
    best = load_policy(folder / "best.safetensors")
    final = load_policy(folder / "final.safetensors")
    from rnnlab.twc.rollout import evaluate

    evals = [h for h in trainer.history if "eval_return" in h]
    episodes = [h for h in trainer.history if "train_return" in h]
    folder.save_figure(
        "returns.png",
        return_curve_figure(
            {
                "training episodes": (
                    [h["env_steps"] for h in episodes],
                    [h["train_return"] for h in episodes],
                ),
                f"eval ({trainer.config.eval_episodes} selection seeds)": (
                    [h["env_steps"] for h in evals],
                    [h["eval_return"] for h in evals],
                ),
            },
            "environment steps",
        ),
    )
    return {
        "algo": trainer.config.algo,
        "best": evaluate(best, 100).summary(),
        "final": evaluate(final, 100).summary(),
        "seconds": time.perf_counter() - started,
        "seconds_to_first_eval_90": reached.get("seconds"),
        "env_steps": trainer.env_steps,
        "updates": trainer.updates,
        "interrupted": bool(interrupted),
        "policy": best,
    }


@contextlib.contextmanager
def _graceful_interrupt() -> Iterator[list[int]]:
    """While active, the first Ctrl-C (SIGINT) only appends to the yielded list, so a training
    loop can stop at a consistent point and save; a second one interrupts as usual."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def _train(args: argparse.Namespace) -> int:
    _threads(args.algo)
    from rnnlab.run_folder import RunFolder

    folder = RunFolder.create(args.out, f"twc-{args.algo}-seed{args.seed}")
    metrics = _train_es(args, folder) if args.algo == "es" else _train_td3(args, folder)
    policy = metrics.pop("policy")
    _write_episode_plots(folder, policy, "best")
    folder.write_json("metrics.json", metrics)
    best, final = metrics["best"], metrics["final"]
    print(
        f"best:  {best['mean_return']:.2f} ± {best['std_return']:.2f} "
        f"(success {best['success_rate']:.0%}, {best['mean_steps']:.0f} steps)\n"
        f"final: {final['mean_return']:.2f} ± {final['std_return']:.2f} "
        f"(success {final['success_rate']:.0%}, {final['mean_steps']:.0f} steps)\n"
        f"{metrics['seconds']:.0f} s; wrote {folder.path}/"
    )
    return 130 if metrics.get("interrupted") else 0


def _eval(args: argparse.Namespace) -> int:
    _threads()
    from rnnlab.twc.rollout import evaluate
    from rnnlab.twc.td3 import load_policy

    paths = [Path(args.checkpoint)]
    if paths[0].is_dir():
        paths = [paths[0] / f"{n}.safetensors" for n in ("best", "final")]
        paths = [p for p in paths if p.exists()]
        if not paths:
            print(f"rnnlab: no best/final.safetensors in {args.checkpoint}", file=sys.stderr)
            return 2
    for path in paths:
        circuit = load_policy(path, dynamics=args.dynamics)
        started = time.perf_counter()
        summary = evaluate(circuit, args.episodes, args.first_seed, args.backend).summary()
        print(
            f"{path}: {summary['mean_return']:.2f} ± {summary['std_return']:.2f} over "
            f"{summary['episodes']} episodes (seeds {args.first_seed}..), success "
            f"{summary['success_rate']:.0%}, mean steps {summary['mean_steps']:.1f} "
            f"[{args.backend}, {time.perf_counter() - started:.1f} s]"
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    _threads()
    from rnnlab.atomic import write_text_atomic
    from rnnlab.run_folder import RunFolder
    from rnnlab.twc.validation import run_validation, validation_figure

    result = run_validation(seed=args.seed, runs=args.runs, steps=args.steps)
    table = result.table()
    print(table)
    folder = RunFolder.create(args.out, "twc-validate")
    write_text_atomic(folder / "comparison.txt", table + "\n")
    folder.write_json("metrics.json", {"rows": result.rows, "passed": result.passed})
    folder.save_figure("comparison.png", validation_figure(result))
    print(f"wrote {folder.path}/")
    if not result.passed:
        print("rnnlab: torch dynamics do NOT match the reference", file=sys.stderr)
        return 1
    return 0


def _import_xml(args: argparse.Namespace) -> int:
    import json

    from rnnlab.atomic import write_json_atomic
    from rnnlab.twc.ariel_xml import read_ariel_xml

    obj = read_ariel_xml(
        args.file, ariel_loader_quirk=args.ariel_loader_quirk, check_twc=not args.no_check_twc
    )
    if args.out is None:
        print(json.dumps(obj, indent=2))
        return 0
    write_json_atomic(args.out, obj)
    kinds = [s["type"] for s in obj["synapses"]]
    counts = ", ".join(f"{kinds.count(k)} {k}" for k in ("EX", "IN", "GJ"))
    mode = "engine loader quirk: T = internalstate, d = 0" if args.ariel_loader_quirk else "th/df"
    print(
        f"{args.file}: {len(obj['neurons'])} neurons, {len(kinds)} synapses ({counts}), "
        f"{len(obj['interfaces'])} interfaces [{mode}]; wrote {args.out}"
    )
    return 0


def _export_xml(args: argparse.Namespace) -> int:
    import json

    from rnnlab.errors import ConfigError
    from rnnlab.twc.ariel_xml import write_ariel_xml

    try:
        obj = json.loads(Path(args.params).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{args.params}: cannot read a parameters JSON ({error})") from error
    if isinstance(obj, dict) and "neurons" not in obj and isinstance(obj.get("parameters"), dict):
        obj = obj["parameters"]  # a checkpoint .json: {"circuit": ..., "parameters": ...}
    if not isinstance(obj, dict):
        raise ConfigError(f"{args.params}: expected a JSON object with neurons and synapses")
    write_ariel_xml(obj, args.out)
    print(f"wrote {args.out}")
    return 0


def register(systems: argparse._SubParsersAction[Any]) -> None:
    """Add ``rnnlab twc train|eval|validate|import-xml|export-xml``."""
    twc = systems.add_parser(
        "twc",
        help="tap-withdrawal circuit with FIURI neurons (MountainCarContinuous)",
        description=(
            "The C. elegans tap-withdrawal circuit (11 neurons, 26 synapses) with FIURI neurons "
            "in PyTorch: exact / soft / straight-through dynamics, CMA-ES, TD3 and DDPG training "
            "on MountainCarContinuous, evaluation, reference validation and FIURI engine XML "
            "import/export."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = twc.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a TWC policy (es, td3 or ddpg)",
        description=(
            "Train a TWC policy on MountainCarContinuous-v0. Writes config.json, metrics.json, "
            "returns.png, traces-best.png, circuit-best.png and the best/final checkpoints "
            "(.safetensors + .json; TD3/DDPG also -resume.pt and -replay.npz) into "
            "<out>/twc-<algo>-seed<seed>/. best/final are scored over 100 fixed seeds."
        ),
        epilog=(
            "examples:\n  rnnlab twc train --algo es --seed 0 --time-limit 900\n"
            "  rnnlab twc train --algo td3 --steps 200000 --exploration ou --stored-state\n"
            "  rnnlab twc train --algo td3 --resume runs/twc-td3-seed0 --steps 300000\n"
            "  rnnlab twc train --algo td3 --init-from examples/twc/es_seed0_final.json "
            "--warmup 0  # fine-tune\n"
            "  rnnlab twc train --algo td3 --dynamics soft --sampling episode --envs 1 "
            "--updates-per-step 2  # upstream's recipe\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--algo", choices=("es", "td3", "ddpg"), default="es")
    train.add_argument(
        "--dynamics",
        choices=("exact", "soft", "straight_through"),
        default=None,
        help="neuron dynamics (default: exact for es, straight_through for td3/ddpg)",
    )
    train.add_argument("--delay", type=int, choices=(0, 1), default=1, help="sensor-motor delay")
    train.add_argument("--encoder", choices=("faithful", "improved"), default="faithful")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs", help="folder for the run folder (default runs)")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument(
        "--time-limit", type=float, default=0.0, help="seconds of training, 0 = none (all algos)"
    )
    es = train.add_argument_group("es (CMA-ES)")
    es.add_argument("--generations", type=int, default=300)
    es.add_argument("--population", type=int, default=16)
    es.add_argument("--episodes-per-candidate", type=int, default=8)
    es.add_argument("--sigma", type=float, default=0.3)
    es.add_argument("--random-search", type=int, default=2048, help="start-point candidates")
    rl = train.add_argument_group("td3 / ddpg")
    rl.add_argument("--steps", type=int, default=200_000, help="environment steps")
    rl.add_argument("--envs", type=int, default=8, help="parallel environments")
    rl.add_argument("--warmup", type=int, default=10_000)
    rl.add_argument(
        "--warmup-actions",
        choices=("uniform", "noise"),
        default="uniform",
        help="warm-up actions: uniform random (upstream) or the exploration noise around 0",
    )
    rl.add_argument("--batch-size", type=int, default=256)
    rl.add_argument("--updates-per-step", type=float, default=0.5)
    rl.add_argument("--exploration", choices=("gaussian", "ou"), default="ou")
    rl.add_argument("--prioritized", action="store_true", help="prioritised sequence replay")
    rl.add_argument(
        "--sampling",
        choices=("transition", "episode"),
        default="transition",
        help="sequence starts uniform over transitions, or upstream's uniform episode first",
    )
    rl.add_argument("--stored-state", action="store_true", help="R2D2-style stored states")
    rl.add_argument("--eval-every", type=int, default=5000)
    rl.add_argument("--resume", default=None, help="run folder with final-resume.pt")
    rl.add_argument(
        "--init-from",
        default=None,
        help="start the actor from a policy (.json, .safetensors or FIURI-engine .xml)",
    )
    train.set_defaults(handler=_train_dispatch)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a checkpoint over fixed seeds",
        description=(
            "Deterministic evaluation over episodes with seeds first_seed + i: mean ± std "
            "return, success rate, mean steps. CHECKPOINT is a .safetensors (with its .json), "
            "a parameters .json, or a run folder (then best and final are both reported)."
        ),
        epilog=(
            "examples:\n  rnnlab twc eval runs/twc-es-seed0\n"
            "  rnnlab twc eval runs/twc-td3-seed0/final.safetensors --backend gymnasium\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--first-seed", type=int, default=42)
    evaluate.add_argument("--backend", choices=("batched", "gymnasium"), default="gymnasium")
    evaluate.add_argument("--dynamics", choices=("exact", "soft", "straight_through"), default=None)
    evaluate.set_defaults(handler=_eval)

    validate = commands.add_parser(
        "validate",
        help="numpy reference vs torch dynamics (asserting)",
        description=(
            "Run the independent numpy reference and the torch circuits (exact float64/32, "
            "straight-through, soft) on random parameters over MountainCar trajectories and "
            "i.i.d. observations with resets; print a comparison table, write comparison.txt, "
            "metrics.json and comparison.png. Exits 1 unless exact float64 and straight-through "
            "match bit for bit and float32 within 1e-5."
        ),
        epilog="examples:\n  rnnlab twc validate\n  rnnlab twc validate --runs 30 --steps 300\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--runs", type=int, default=10)
    validate.add_argument("--steps", type=int, default=300)
    validate.add_argument("--out", default="runs")
    validate.set_defaults(handler=_validate)

    import_xml = commands.add_parser(
        "import-xml",
        help="FIURI engine (Ariel) XML model -> parameters JSON",
        description=(
            "Read a model XML of the original FIURI engine (BiMPuRLE / Ariel: <Model>, "
            "<NeuralNetwork>, <neuron th df>, <connection connType ...>, <Interfaces>) and write "
            "the effective-parameter JSON that TWC.from_parameters and `rnnlab twc eval` take "
            "(printed to stdout without --out). ChemEx -> EX, ChemIn -> IN, SGJ/AGJ -> GJ. "
            "By default T = th and d = df (the fix); --ariel-loader-quirk reproduces the engine's "
            "loader (T = internalstate, d = 0, testWeight). A file with the TWC's neurons must "
            "have the shipped TWC wiring unless --no-check-twc."
        ),
        epilog=(
            "examples:\n  rnnlab twc import-xml TWFiuriBaseFIU.xml --out params.json\n"
            "  rnnlab twc eval params.json --episodes 100\n"
            "  rnnlab twc import-xml model.xml --ariel-loader-quirk   # print the JSON\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_xml.add_argument("file", help="the engine's model .xml")
    import_xml.add_argument("--out", default=None, help="parameters .json to write (atomic)")
    import_xml.add_argument(
        "--ariel-loader-quirk",
        action="store_true",
        help="load as the engine does: T = internalstate, d = 0 (default: T = th, d = df)",
    )
    import_xml.add_argument(
        "--no-check-twc",
        action="store_true",
        help="do not require the shipped TWC wiring for files with the TWC's neurons",
    )
    import_xml.set_defaults(handler=_import_xml)

    export_xml = commands.add_parser(
        "export-xml",
        help="parameters JSON -> FIURI engine (Ariel) XML model",
        description=(
            "Write an effective-parameter JSON (from import-xml, circuit.parameters_json() or a "
            "checkpoint .json) as a model XML of the original FIURI engine. EX -> ChemEx, "
            "IN -> ChemIn, GJ -> AGJ (or SGJ if the JSON says so); sensory neurons without "
            "parameters get th = df = 0; a TWC without interfaces gets IN1, IN2, OUT1."
        ),
        epilog=(
            "examples:\n  rnnlab twc export-xml params.json --out model.xml\n"
            "  rnnlab twc export-xml runs/twc-es-seed0/best.json --out best.xml\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export_xml.add_argument("params", help="parameters .json (or a checkpoint .json)")
    export_xml.add_argument("--out", required=True, help="model .xml to write (atomic)")
    export_xml.set_defaults(handler=_export_xml)


def _train_dispatch(args: argparse.Namespace) -> int:
    if args.resume and args.algo == "es":
        print(
            "rnnlab: --resume needs --algo td3 or ddpg (ES runs are not resumable)", file=sys.stderr
        )
        return 2
    if args.dynamics is None:
        args.dynamics = "exact" if args.algo == "es" else "straight_through"
    return _train(args)
