"""What the task examples share: their command line, and printing what the run recorded."""

from __future__ import annotations

import argparse
import tempfile

from fastevalcb.offline import OfflineRun


def parse_args(doc: str, samples: int, val_samples: int, epochs: int) -> argparse.Namespace:
    """``--samples``, ``--val-samples``, ``--epochs`` and ``--dir`` (where wandb/ goes)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--val-samples", type=int, default=val_samples)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--dir", default=None, help="where wandb/ goes (default: a temp dir)")
    args = parser.parse_args()
    args.dir = args.dir or tempfile.mkdtemp(prefix="fastevalcb-example-")
    return args


def report(run_dir: str, columns: list[str], rows: int = 3) -> None:
    """Summarise the latest offline run under ``run_dir`` (read back from disk)."""
    record = OfflineRun.latest(run_dir).wait_complete()
    print(f"\noffline run: {record.run_dir}")
    for art in record.artifacts():
        refs = sum(e.is_reference for e in art.entries.values())
        print(
            f"  {art.qualified_name:<28} type={art.type:<10} aliases={sorted(art.aliases)} "
            f"stored={art.stored_bytes():>8} B  reference entries={refs}"
        )
    last = record.artifacts(type="evaluation")[-1]
    table = record.load_table(last, "eval_data")
    print(f"\n{last.qualified_name}: {len(table.rows)} rows, columns {table.columns}")
    for row in table.rows[:rows]:
        cells = dict(zip(table.columns, row))
        print("  " + ", ".join(f"{c}={_short(cells[c])}" for c in columns))
    metrics = [r for r in record.history() if r.get("eval/global_step") is not None]
    for row in metrics:
        shown = {
            k: round(v, 3)
            for k, v in row.items()
            if k.startswith("eval/")
            and "/iou/" not in k
            and isinstance(v, (int, float))
            and k not in ("eval/epoch", "eval/global_step")
        }
        print(f"  step {row['eval/global_step']}: {shown}")
    print(f"\nlook at it now, no account needed: python -m fastevalcb report {record.run_dir}")
    print(f"sync later with: wandb sync {record.run_dir}")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)
