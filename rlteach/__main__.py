"""The rlteach command line: ``python -m rlteach --help``."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  python -m rlteach list                       registered benchmark entries
  python -m rlteach bench                      every entry, 5 seeds, report in bench-results/
  python -m rlteach bench --algo NAME --seeds 3 --quick
  python -m rlteach bench --estimators         time rlteach's GAE (loop and vectorised) against TorchRL's
  python -m rlteach bench --losses             time ClipPPOLoss forward+backward (batch 4096) against TorchRL's
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rlteach",
        description="rlteach: deep reinforcement learning you can read, test and run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="list the registered benchmark entries")

    bench = sub.add_parser(
        "bench",
        help="train registered recipes over seeds and write a results table and curves",
        description="Train every selected recipe once per seed; write results.md, results.json "
        "and learning-curve PNGs to --out. Seconds exclude evaluation time.",
    )
    bench.add_argument("--algo", nargs="+", metavar="NAME", help="entries to run (default: all)")
    bench.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    bench.add_argument("--quick", action="store_true", help="the small CI/classroom budgets")
    bench.add_argument("--out", default="bench-results", help="output folder (default bench-results)")
    bench.add_argument(
        "--losses",
        action="store_true",
        help="instead of training, time ClipPPOLoss forward+backward against TorchRL's",
    )
    bench.add_argument(
        "--estimators",
        action="store_true",
        help="instead of training, time the value estimators against TorchRL's",
    )
    return parser


def _list() -> int:
    from rlteach.bench import REGISTRY
    from rlteach.recipes import load_all

    load_all()
    if not REGISTRY:
        print("No recipes are registered yet.")
        return 0
    for entry in REGISTRY.values():
        print(f"{entry.name:24s} {entry.algo:12s} {entry.env_id:14s} solved at ≥ {entry.threshold:g}")
    return 0


def _bench(args) -> int:
    if args.losses:
        from rlteach.objectives._timing import time_losses

        for row in time_losses():
            print(
                f"{row['name']:48s} rlteach {row['rlteach_seconds'] * 1e3:7.2f} ms   TorchRL "
                f"{row['torchrl_seconds'] * 1e3:7.2f} ms   ratio {row['ratio']:.2f}"
            )
        return 0
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
    try:
        rows = run_bench(args.algo, seeds=args.seeds, quick=args.quick, out_dir=args.out)
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    from rlteach.bench import markdown_table

    print(markdown_table(rows))
    print(f"Written to {args.out}/ (results.md, results.json, one PNG per entry).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "bench":
        return _bench(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
