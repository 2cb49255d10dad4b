"""``fastevalcb`` command line (also ``python -m fastevalcb``).

fastevalcb report [RUN_DIR] [-o report.html] [--embed]
"""

from __future__ import annotations

import argparse
import sys


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
    args = parser.parse_args(argv)
    from fastevalcb.report import ReportError, build_report

    try:
        out = build_report(args.run_dir, args.output, embed=args.embed)
    except ReportError as exc:
        print(f"fastevalcb report: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"fastevalcb report: failed: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
