"""``rnnlab graphnet ...``: train on a task, or animate a network (registered by rnnlab.cli)."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXAMPLES = """\
examples:
  rnnlab graphnet train --task association --trials 1000
  rnnlab graphnet train --task cartpole --episodes 200 --out /tmp/runs
  rnnlab graphnet train --task stream --duration 20
  rnnlab graphnet animate --out /tmp/graphnet.gif
  rnnlab graphnet animate --model runs/graphnet-association-<time>/model --trials 4
"""


def _train(args: argparse.Namespace) -> int:
    from rnnlab.errors import ConfigError
    from rnnlab.graphnet.train import TrainConfig, train

    try:
        extra = json.loads(args.net) if args.net else {}
    except json.JSONDecodeError as error:
        raise ConfigError(f"--net: not valid JSON ({error})") from None
    if not isinstance(extra, dict):
        raise ConfigError("--net: must be a JSON object of GraphNet settings")
    config = TrainConfig(
        task=args.task,
        seed=args.seed,
        trials=args.trials,
        patterns=args.patterns,
        episodes=args.episodes,
        eval_episodes=args.eval_episodes,
        bins=args.bins,
        cartpole_reward=args.reward,
        duration=args.duration,
        rate=args.rate,
        waitress_config=args.waitress_config,
        threads=args.threads,
        net=extra,
    )
    folder, metrics = train(config, root=args.out, progress=not args.no_progress)
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
    for key, value in shown.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    print(
        f"wrote {folder.path}/: reward.png edges.png weights.png graph.png metrics.json "
        "config.json model/"
    )
    return 0


def _animate(args: argparse.Namespace) -> int:
    import numpy as np

    from rnnlab.graphnet.drawing import Frame, write_animation
    from rnnlab.graphnet.model import GraphNet
    from rnnlab.graphnet.tasks import association_net, choose_action

    net = (
        GraphNet.load(args.model) if args.model else association_net(args.patterns, seed=args.seed)
    )
    rng = np.random.default_rng(args.seed)
    frames: list[Frame] = []
    first_output = net.n_nodes - net.n_outputs
    for trial in range(args.trials):
        pattern = trial % net.n_inputs
        net.reset_activity()
        observation = np.zeros((1, net.n_inputs))
        observation[0, pattern] = 1.0
        action = None
        for step in range(args.trial_steps):
            outputs, nodes = net.run_recording(observation)
            edges = net.edges()
            action = choose_action(outputs[0], rng)
            frames.append(
                Frame(
                    edges["source"],
                    edges["target"],
                    edges["weight"],
                    nodes[0],
                    f"trial {trial}, pattern {pattern}, step {step}",
                )
            )
            if action is not None:
                break
        if not args.frozen and action is not None:
            net.feedback(1.0 if action == pattern else -1.0, at=first_output + action)
    written = write_animation((net.n_inputs, net.n_hidden, net.n_outputs), frames, args.out)
    where = written[0] if len(written) == 1 else f"{len(written)} frames in {args.out}"
    print(f"wrote {where}")
    return 0


def register(systems: argparse._SubParsersAction[Any]) -> None:
    """Add ``rnnlab graphnet train|animate``."""
    graphnet = systems.add_parser(
        "graphnet",
        help="event-driven threshold graph networks that learn from reward",
        description=(
            "Graph network: nodes fire when the weighted sum of their incoming edge "
            "activations passes a threshold; reward feedback spreads backwards and reshapes "
            "weights (w *= tanh(signal·lr·activation) + 1); edges grow at random and weak or "
            "unreachable ones are pruned. See docs/graphnet.md."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = graphnet.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train on a task and write a run folder",
        description=(
            "Train a graph network on a task and write runs/graphnet-<task>-<time>/ with "
            "reward.png, edges.png (growth vs pruning), weights.png, graph.png, metrics.json, "
            "config.json and model/. Tasks: association (P one-hot patterns -> P actions, "
            "reward ±1), cartpole (gymnasium CartPole-v1, two action nodes; evaluated over "
            "--eval-episodes episodes against a random policy), stream (a live waitress feed; "
            "reward = sign agreement of the predicted next change)."
        ),
        epilog=(
            "examples:\n"
            "  rnnlab graphnet train --task association --patterns 4 --trials 1000\n"
            "  rnnlab graphnet train --task cartpole --episodes 200 --eval-episodes 100\n"
            "  rnnlab graphnet train --task stream --duration 30 --rate 200\n"
            "  rnnlab graphnet train --task association --net '{\"grow_prob\": 0.02}'\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--task", choices=("association", "cartpole", "stream"), default="association"
    )
    train.add_argument("--seed", type=int, default=0, help="seed of network and task (default 0)")
    train.add_argument("--trials", type=int, default=1000, help="association trials (1000)")
    train.add_argument("--patterns", type=int, default=4, help="association patterns (4)")
    train.add_argument("--episodes", type=int, default=200, help="CartPole training episodes")
    train.add_argument(
        "--eval-episodes", type=int, default=100, help="CartPole evaluation episodes (100)"
    )
    train.add_argument("--bins", type=int, default=6, help="CartPole bins per variable (6)")
    train.add_argument(
        "--reward",
        choices=("upright", "survival"),
        default="upright",
        help="CartPole feedback: dense 'upright' (default) or 'survival' (+ per step)",
    )
    train.add_argument("--duration", type=float, default=20.0, help="stream seconds (20)")
    train.add_argument("--rate", type=float, default=200.0, help="stream frames/s (200)")
    train.add_argument("--waitress-config", default=None, help="waitress config (shipped one)")
    train.add_argument("--threads", type=int, default=1, help="edge-pass worker threads (1)")
    train.add_argument("--net", default=None, help="extra GraphNet settings as a JSON object")
    train.add_argument("--out", default="runs", help="folder for the run folder (default runs)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=_train)

    animate = commands.add_parser(
        "animate",
        help="write a GIF (or PNG frames) of a network playing the association task",
        description=(
            "Present the association patterns in turn to a fresh network (or one saved in a "
            "run folder's model/) and draw every step: edge width ∝ weight, firing nodes in "
            "orange. Feedback is given after every trial unless --frozen. --out ending in "
            ".gif writes a GIF, anything else a folder of PNG frames."
        ),
        epilog=(
            "examples:\n"
            "  rnnlab graphnet animate --out graphnet.gif\n"
            "  rnnlab graphnet animate --trials 8 --out frames/\n"
            "  rnnlab graphnet animate --model runs/graphnet-association-X/model --frozen\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    animate.add_argument("--model", default=None, help="a saved GraphNet folder (default: new)")
    animate.add_argument("--patterns", type=int, default=4, help="patterns of a new network (4)")
    animate.add_argument("--trials", type=int, default=8, help="trials to show (8)")
    animate.add_argument("--trial-steps", type=int, default=4, help="steps per trial (4)")
    animate.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    animate.add_argument("--frozen", action="store_true", help="no feedback while animating")
    animate.add_argument("--out", default="graphnet.gif", help="output .gif or frame folder")
    animate.set_defaults(handler=_animate)
