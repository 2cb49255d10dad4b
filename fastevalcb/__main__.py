"""``fastevalcb`` command line (also ``python -m fastevalcb``).

fastevalcb report [RUN_DIR] [-o report.html] [--embed]
fastevalcb overhead --model model.keras --data val.npz --task classification [--stock]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastevalcb")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report",
        help="write a static HTML report of an offline run's tables",
        description="Write a static HTML page showing an offline W&B run's prediction "
        "tables, overlays and summary metrics; it opens from the file system, "
        "no server, no network.",
    )
    report.add_argument(
        "run_dir",
        nargs="?",
        default=None,
        help="an offline-run-* directory, its .wandb file, or a folder holding "
        "wandb/ (default: the latest offline run under ./wandb)",
    )
    report.add_argument(
        "-o",
        "--output",
        default="report.html",
        help="the HTML file (default: report.html); data goes to <name>_files/ next to it",
    )
    report.add_argument(
        "--embed", action="store_true", help="one self-contained HTML file: data and images inlined"
    )
    report.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_overhead(commands)
    args = parser.parse_args(argv)
    if args.command == "overhead":
        return _overhead(args)
    from fastevalcb.report import ReportError, build_report

    def report_command() -> int:
        print(f"wrote {build_report(args.run_dir, args.output, embed=args.embed)}")
        return 0

    return _guarded("report", args.debug, ReportError, report_command)


def _guarded(command: str, debug: bool, expected: Any, fn: Callable[[], int]) -> int:
    """``fn()``'s exit status; an ``expected`` error (bad input) prints its message and
    exits 2, any other one line (1), or its traceback with ``--debug``."""
    try:
        return fn()
    except expected as exc:
        print(f"fastevalcb {command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if debug:
            raise
        print(
            f"fastevalcb {command}: failed: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _add_overhead(commands: Any) -> None:
    overhead = commands.add_parser(
        "overhead",
        help="measure what logging costs on your own model and data, without training",
        description="Time, on the same samples and without training: the model's compiled "
        "forward pass alone, fastevalcb's log (training thread and until written, on a "
        "throwaway offline W&B run) and, with --stock, W&B's documented WandbEvalCallback "
        "subclass. Prints a table; --out writes JSON.",
    )
    overhead.add_argument("--model", required=True, help="a saved .keras model")
    overhead.add_argument(
        "--data",
        required=True,
        help="an .npz with x (images) and y (classification: (N,) class ids; segmentation: "
        "(N, H, W) masks), or boxes (N, M, 4) and labels (N, M) padded with -1 (detection)",
    )
    overhead.add_argument(
        "--task", required=True, choices=["classification", "detection", "segmentation"]
    )
    overhead.add_argument(
        "--class-names", default=None, help="comma-separated (default: class_0, class_1, ...)"
    )
    overhead.add_argument("--batch-size", type=int, default=32)
    overhead.add_argument("--max-samples", type=int, default=None, help="the first N samples")
    overhead.add_argument("--repeats", type=int, default=3, help="logs per side; the best counts")
    overhead.add_argument("--stock", action="store_true", help="also time stock's subclass")
    overhead.add_argument("--jit-compile", action="store_true", help="XLA-compile the step")
    overhead.add_argument(
        "--box-format", default=None, help="detection: the boxes' format (default: the model's)"
    )
    overhead.add_argument("--out", default=None, help="write the result as JSON here")
    overhead.add_argument("--debug", action="store_true", help="show tracebacks")


def _overhead(args: argparse.Namespace) -> int:
    from fastevalcb import overhead
    from fastevalcb.errors import FastEvalInputError

    names = args.class_names.split(",") if args.class_names else None
    options = {"box_format": args.box_format} if args.box_format else {}

    def overhead_command() -> int:
        result = overhead.measure(
            args.model,
            args.data,
            args.task,
            class_names=names,
            batch_size=args.batch_size,
            max_samples=args.max_samples,
            repeats=args.repeats,
            stock=args.stock,
            jit_compile=args.jit_compile,
            callback_options=options,
        )
        print(overhead.table(result))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
            print(f"wrote {args.out}")
        return 0

    # bad input (a missing key, labels the task refuses): its message, no traceback
    return _guarded(
        "overhead", args.debug, (overhead.OverheadError, FastEvalInputError), overhead_command
    )


if __name__ == "__main__":
    sys.exit(main())
