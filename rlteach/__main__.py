"""The rlteach command line: ``python -m rlteach --help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  python -m rlteach train ppo                  PPO on CartPole-v1, seed 0, log + curve + checkpoint in runs/ppo
  python -m rlteach train ppo --env Acrobot-v1 --seed 1 --steps 50000 --out runs/acro
  python -m rlteach train ppo --out runs/acro --resume     continue an interrupted run
  python -m rlteach train sac --env Hopper-v5 --device cuda    train on the GPU
  python -m rlteach evaluate runs/acro/checkpoint.pt --episodes 20
  python -m rlteach list                       registered benchmark entries
  python -m rlteach bench                      every entry, 5 seeds, report in bench-results/
  python -m rlteach bench --algo NAME --seeds 3 --quick
  python -m rlteach bench --estimators         time rlteach's GAE (loop and vectorised) against TorchRL's
  python -m rlteach bench --losses             time every loss's forward+backward against TorchRL's
  python -m rlteach bench --losses --out benchmarks    ... and write losses.md / losses.json there
  python -m rlteach bench --costs              collection against its floor, FPS and buffer scaling
  python -m rlteach bench --compare sb3 --algo ppo-cartpole --seeds 3
                                               the same tasks with Stable-Baselines3 (RL-Zoo hyper-parameters)

`python -m rlteach COMMAND --help` describes each command's options.
"""

TRAIN_EPILOG = """algorithms (--resume needs a resumable recipe):
{algorithms}

examples:
  python -m rlteach train a2c --seed 3 --out runs/a2c-3
  python -m rlteach train ppo --env Pendulum-v1 --steps 200000 --out runs/pendulum
  python -m rlteach train ppo --out runs/pendulum --resume   (after Ctrl-C or a crash)
  python -m rlteach train mappo --steps 20000 --out runs/mappo   (multi-agent: simple spread)
  python -m rlteach train sac --env HalfCheetah-v5 --device cuda   (networks and replay on the GPU)

Writes OUT/log.csv (env_steps, seconds, mean_return per evaluation; seconds exclude
evaluation), OUT/curve.png and OUT/checkpoint.pt (saved atomically every --checkpoint-every
frames at a batch boundary, and at the end). A resumed run ends bit-identical to an
uninterrupted one with the same options on the same device (--resume continues on the saved
device; --device may change it, at the price of bit-identity).
"""


def _algorithms_help() -> str:
    try:
        from rlteach.train import describe_trainable

        return describe_trainable()
    except Exception as err:  # a broken recipe must not break --help
        return f"  (could not load the recipes: {type(err).__name__}: {err})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rlteach",
        description="rlteach: deep reinforcement learning you can read, test and run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="list the registered benchmark entries")

    train = sub.add_parser(
        "train",
        help="train one algorithm once, with a CSV log, a learning curve and checkpoints",
        description="Train ALGO with a progress bar; write a CSV log, a learning-curve PNG and "
        "checkpoints into --out; --resume continues an interrupted run exactly.",
        epilog=TRAIN_EPILOG.format(algorithms=_algorithms_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("algo", metavar="ALGO", help="algorithm, e.g. ppo, a2c, reinforce")
    train.add_argument(
        "--env",
        help="Gymnasium task id (default: the recipe's first task; multi-agent recipes "
        "train on their own task only)",
    )
    train.add_argument("--seed", type=int, help="seed (default 0)")
    train.add_argument("--steps", type=int, help="environment steps (default: the recipe's)")
    train.add_argument("--out", help="output folder (default runs/ALGO)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--eval-every", type=int, help="frames between evaluations")
    train.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default 10)")
    train.add_argument(
        "--checkpoint-every", type=int, help="frames between checkpoints (default: --eval-every)"
    )
    train.add_argument(
        "--stop-when-solved",
        action="store_true",
        default=None,
        help="stop at the first evaluation at or above the solved threshold",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="set a field of the recipe's config, e.g. --set critic_cells=256,256 --set "
        "bootstrap_truncated=false (repeatable; kept in the checkpoint)",
    )
    train.add_argument(
        "--device",
        help="where the networks, batches and replay buffer live: cpu, cuda, cuda:N (an NVIDIA "
        "GPU, when PyTorch finds one) or mps (default: cpu; with --resume, the device the run "
        "was saved on)",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="mean return of a checkpoint's deterministic policy",
        description="Run the deterministic policy saved in CHECKPOINT (a checkpoint.pt or its "
        "folder) for --episodes episodes on its task and report the mean return.",
    )
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    evaluate.add_argument(
        "--seed", type=int, default=10_000, help="episode k starts from seed + k (default 10000)"
    )
    evaluate.add_argument(
        "--device", default="cpu", help="where the policy runs: cpu (default), cuda, cuda:N or mps"
    )

    bench = sub.add_parser(
        "bench",
        help="train registered recipes over seeds and write a results table and curves",
        description="Train every selected recipe once per seed; write results.md, results.json "
        "and learning-curve PNGs to --out. Seconds exclude evaluation time.",
    )
    bench.add_argument("--algo", nargs="+", metavar="NAME", help="entries to run (default: all)")
    bench.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="NAME",
        help="entries to leave out of the selection",
    )
    bench.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    bench.add_argument("--quick", action="store_true", help="the small CI/classroom budgets")
    bench.add_argument(
        "--out",
        help="output folder (default bench-results; with --losses, written only when given)",
    )
    bench.add_argument(
        "--compare",
        choices=["sb3"],
        help="also train the same tasks with this library (needs `pip install rlteach[bench]`)",
    )
    bench.add_argument(
        "--losses",
        action="store_true",
        help="instead of training, time every loss's forward+backward against TorchRL's "
        "(same networks and batch, 1 torch thread, median of repeats)",
    )
    bench.add_argument(
        "--estimators",
        action="store_true",
        help="instead of training, time the value estimators against TorchRL's",
    )
    bench.add_argument(
        "--costs",
        action="store_true",
        help="instead of training, measure the collection path against its floor (1, 8, 32 "
        "environments), frames per second against the number of environments (1 to 64) and "
        "the replay buffer's sample time against its size (10^3 to 10^6); with --out, write "
        "costs.md and costs.json there",
    )
    return parser


def _list() -> int:
    from rlteach.bench import REGISTRY, select
    from rlteach.recipes import load_all

    load_all()
    if not REGISTRY:
        print("No recipes are registered yet.")
        return 0
    for entry in select(None):  # in the book's order
        print(
            f"{entry.name:20s} {entry.algo:10s} {entry.env_id:18s} solved at ≥ {entry.threshold:g}"
        )
    return 0


def _bench(args) -> int:
    if args.losses:
        from rlteach.bench_losses import losses_table, time_losses, write_losses

        try:
            rows = time_losses(progress=True)
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(losses_table(rows))
        if args.out:
            write_losses(rows, args.out)
            print(f"Written to {args.out}/ (losses.md, losses.json).")
        return 0
    if args.costs:
        return _costs(args)
    if args.estimators:
        from rlteach.value._timing import time_estimators

        for row in time_estimators():
            ratio = row.get("ratio_vs_torchrl")
            ratio = "" if ratio is None else f"  ratio vs TorchRL {ratio:.2f}"
            print(f"{row['name']:40s} {row['seconds'] * 1e3:9.3f} ms{ratio}")
        return 0

    from rlteach.bench import REGISTRY, run_bench
    from rlteach.recipes import load_all

    load_all()
    if not REGISTRY:
        print(
            "No recipes are registered yet: the algorithm chapters register theirs in "
            "rlteach/recipes/. Nothing to run.",
            file=sys.stderr,
        )
        return 0
    if args.seeds < 1:
        print(f"--seeds must be at least 1, got {args.seeds}.", file=sys.stderr)
        return 2
    args.out = args.out or "bench-results"
    try:
        rows = run_bench(
            args.algo,
            seeds=args.seeds,
            quick=args.quick,
            out_dir=args.out,
            compare=args.compare,
            skip=args.skip,
        )
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from rlteach.bench import compare_table, markdown_table

    print(markdown_table(rows))
    if args.compare:
        print(compare_table(rows))
    print(f"Written to {args.out}/ (results.md, results.json, one PNG per entry).")
    return 0


def _costs(args) -> int:
    import json

    from rlteach.bench import machine_description
    from rlteach.costs import costs_markdown, measure_costs

    report = measure_costs(quick=args.quick)
    report["machine"] = machine_description()
    text = costs_markdown(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "costs.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "costs.md").write_text(f"Machine: {report['machine']}\n\n{text}\n")
        print(f"Written to {out}/ (costs.md, costs.json).")
    return 0


def _remove_if_empty_and_new(folders: list[Path]) -> None:
    """Remove the folders this run created (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()  # only succeeds on an empty folder
        except OSError:
            return


def _train(args) -> int:
    from rlteach.checkpoint import CHECKPOINT_NAME
    from rlteach.train import TrainError, parse_set_options, train_run

    out = Path(args.out or f"runs/{args.algo}")
    # the folders a failed run must not leave behind empty: those that do not exist yet
    new_folders = [p for p in (out, *out.parents) if not p.exists()]
    try:
        train_run(
            args.algo,
            env_id=args.env,
            seed=args.seed,
            steps=args.steps,
            out=out,
            resume=args.resume,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            checkpoint_every=args.checkpoint_every,
            stop_when_solved=args.stop_when_solved,
            progress=not args.no_progress,
            device=args.device,
            overrides=parse_set_options(args.set),
        )
    except (TrainError, ValueError, FileNotFoundError) as err:
        _remove_if_empty_and_new(new_folders)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _remove_if_empty_and_new(new_folders)
        if (out / CHECKPOINT_NAME).is_file():
            how = f"continue with: python -m rlteach train {args.algo} --out {out} --resume"
        else:
            how = "no checkpoint was saved yet, so start it again (without --resume)"
        print(f"\ninterrupted: {how}", file=sys.stderr)
        return 130
    except OSError as err:  # the machine's fault: disk full, folder made read-only, ...
        _remove_if_empty_and_new(new_folders)
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"error: could not write the run's files{where}: {err.strerror or err}. Free some "
            f"space or choose another --out folder; a run with a checkpoint can be continued "
            f"with --resume.",
            file=sys.stderr,
        )
        return 1
    return 0


def _evaluate(args) -> int:
    from rlteach.train import TrainError, evaluate_checkpoint

    try:
        mean, std, data = evaluate_checkpoint(
            args.checkpoint, args.episodes, args.seed, device=args.device
        )
    except (TrainError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written; run the evaluation again.", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"error: could not read {args.checkpoint}: {err.strerror or err}.", file=sys.stderr)
        return 1
    meta = data["meta"]
    from rlteach.envs_multiagent import MULTIAGENT_TASKS

    kind = "team return" if meta["env_id"] in MULTIAGENT_TASKS else "return"
    print(
        f"{meta.get('algo', '?')} on {meta['env_id']} after {data['frames']:,} frames: mean "
        f"{kind} {mean:.2f} ± {std:.2f} over {args.episodes} episodes (deterministic policy, "
        f"seeds {args.seed}..{args.seed + args.episodes - 1})."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "bench":
        return _bench(args)
    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        return _evaluate(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
