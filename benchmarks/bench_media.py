"""Media building: the stock ``wandb.Image(img, boxes=/masks=)`` loop vs fastevalcb.media.

Both sides start from the same raw batches and stop at the same point: a
``list[wandb.Image]`` ready for ``wandb.Table.add_data`` (every file encoded, hashed and
staged in wandb's media temp folder; wandb does that eagerly in ``wandb.Image.__init__``).
What wandb does later (``bind_to_run``/``to_json`` when the table is logged) is the same
code for both since ours are ordinary ``wandb.Image`` objects; it is timed too, separately.

1. **Detection**: 1,000 images 256x256 RGB, 100 boxes each (padded model output).
   Stock: per-box dicts (``float()``/``int()``) + ``wandb.Image(img, boxes=...)``.
   Ours: ``PackedDetections.from_padded`` + ``detection_images``.
2. **Segmentation**: 500 images 256x256, 21 classes, logits in batches of 50.
   Stock: ``np.argmax`` + ``wandb.Image(img, masks={"predictions", "ground_truth"})``.
   Ours: ``SegmentationMasks.from_logits`` (numba) + ``segmentation_images``.
3. Issue 30's cases (detection: 300 images 128x128, 50 boxes each; segmentation: 100
   images 256x256, 21 classes), best of 3 interleaved runs, alone and beside a busy
   process per core.
4. Where the stock time goes (PNG encode vs box dicts vs validation vs JSON).
5. Kernels: cold compile vs cache load per kernel group, a fresh subprocess importing +
   warming up with a warm cache, and throughput vs the numpy twins.

Synthetic images: smooth colour gradients plus uniform noise in [0, 8) (sensor-like noise
keeps PNG sizes realistic: ~100 KB per 256x256 image at PIL's default level).

    python benchmarks/bench_media.py            # full sizes (~2-3 minutes on 2 cores)
    python benchmarks/bench_media.py --quick    # 100 detection / 50 segmentation images

Writes benchmarks/results/media.json and media.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import numpy as np  # noqa: E402
import wandb  # noqa: E402
from _machine import cpu_name  # noqa: E402
from wandb.sdk.data_types.helper_types.bounding_boxes_2d import BoundingBoxes2D  # noqa: E402

from fastevalcb import kernels  # noqa: E402
from fastevalcb.media import (  # noqa: E402
    build_images,
    detection_images,
    encode_images,
    segmentation_images,
)
from fastevalcb.media.png import default_backend  # noqa: E402
from fastevalcb.types import PackedDetections, SegmentationMasks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers: the numpy twins
from tests.helpers import reference  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SIZE = 256
NUM_DET_CLASSES = 20
NUM_SEG_CLASSES = 21
SEG_BATCH = 50


def clock(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# -- data ---------------------------------------------------------------------------------
def make_images(n, rng, size=SIZE):
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = (xx * (i % 7 + 1) + yy * (i % 5 + 2)) % 256
        images[i] = np.stack([base, (base * 2) % 256, 255 - base], -1)
        images[i] += rng.integers(0, 8, (size, size, 3), dtype=np.uint8)
    return images


def make_detections(n, m, rng, size=SIZE):
    xy = rng.uniform(0, size - 40, (n, m, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (n, m, 2))], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (n, m)).astype(np.float32)
    cls = rng.integers(0, NUM_DET_CLASSES, (n, m)).astype(np.int32)
    counts = np.full(n, m, np.int64)
    return boxes, scores, cls, counts


def seg_logits(batch, rng, size=SIZE):
    low = rng.standard_normal((batch, size // 16, size // 16, NUM_SEG_CLASSES), dtype=np.float32)
    logits = np.repeat(np.repeat(low, 16, axis=1), 16, axis=2)
    logits += 0.3 * rng.standard_normal(logits.shape, dtype=np.float32)
    return logits


# -- stock pattern ------------------------------------------------------------------------
def stock_box_dicts(boxes, scores, cls, labels):
    return [
        {
            "position": {
                "minX": float(b[0]),
                "maxX": float(b[2]),
                "minY": float(b[1]),
                "maxY": float(b[3]),
            },
            "class_id": int(c),
            "box_caption": f"{labels[int(c)]} {float(s):.2f}",
            "scores": {"score": float(s)},
            "domain": "pixel",
        }
        for b, s, c in zip(boxes, scores, cls)
    ]


def stock_detection(images, boxes, scores, cls, counts, labels):
    return [
        wandb.Image(
            images[i],
            boxes={
                "predictions": {
                    "box_data": stock_box_dicts(
                        boxes[i, : counts[i]], scores[i, : counts[i]], cls[i, : counts[i]], labels
                    ),
                    "class_labels": labels,
                }
            },
        )
        for i in range(len(images))
    ]


def stock_segmentation(images, logits_batches, gt, labels):
    out = []
    for b, logits in enumerate(logits_batches):
        pred = np.argmax(logits, axis=-1)
        for j in range(len(pred)):
            i = b * SEG_BATCH + j
            out.append(
                wandb.Image(
                    images[i],
                    masks={
                        "predictions": {"mask_data": pred[j], "class_labels": labels},
                        "ground_truth": {"mask_data": gt[i], "class_labels": labels},
                    },
                )
            )
    return out


# -- ours ---------------------------------------------------------------------------------
def fast_detection(images, boxes, scores, cls, counts, labels, size=SIZE):
    packed = PackedDetections.from_padded(
        boxes, cls, scores, counts, image_size=(size, size), clip=False, num_classes=NUM_DET_CLASSES
    )
    return detection_images(images, packed, labels)


def fast_segmentation(images, logits_batches, gt, labels):
    out = []
    for b, logits in enumerate(logits_batches):
        pred = SegmentationMasks.from_logits(logits)
        sl = slice(b * SEG_BATCH, b * SEG_BATCH + len(pred))
        out += segmentation_images(images[sl], pred, labels, ground_truth=gt[sl])
    return out


def fast_segmentation_reuse(base_images, logits_batches, labels):
    """What SegmentationEvalCallback does per epoch: the data table's images (already
    logged, with their ground-truth mask layer) get a new "predictions" mask layer."""
    out = []
    for b, logits in enumerate(logits_batches):
        pred = SegmentationMasks.from_logits(logits)
        sl = slice(b * SEG_BATCH, b * SEG_BATCH + len(pred))
        out += build_images(
            base_images[sl], masks={"predictions": pred}, class_labels=labels, keep_mask_data=False
        )
    return out


def serialize(images_list, tag):
    """Deferred wandb work: add to a Table and log it in an offline run (same for both)."""
    table = wandb.Table(columns=["image"])
    for img in images_list:
        table.add_data(img)
    run = wandb.run
    return clock(lambda: run.log({tag: table}))[0]


# -- issue 30's cases: alone, and beside a busy process per core -------------------------
ISSUE_DETECTION = (300, 128, 50)  # images, side, boxes each
ISSUE_SEGMENTATION = (100, 256)  # images, side (NUM_SEG_CLASSES classes)


@contextlib.contextmanager
def busy_cores(n):
    """``n`` processes spinning on the CPU while the block runs (another job sharing the
    cores: our thread pools lose more to it than stock's single thread)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)  # running before the clock starts
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def issue_cases(repeats):
    """Stock vs ours on issue 30's two cases, best of ``repeats`` interleaved runs each,
    with the machine to themselves and beside a busy process per core."""
    rng = np.random.default_rng(30)
    n, side, m = ISSUE_DETECTION
    det_images = make_images(n, rng, side)
    det = make_detections(n, m, rng, side)
    det_labels = {i: f"class_{i}" for i in range(NUM_DET_CLASSES)}
    n_seg, seg_side = ISSUE_SEGMENTATION
    seg_images = make_images(n_seg, rng, seg_side)
    logits = [
        seg_logits(min(SEG_BATCH, n_seg - s), rng, seg_side) for s in range(0, n_seg, SEG_BATCH)
    ]
    gt = np.concatenate([np.argmax(seg_logits(len(b), rng, seg_side), -1) for b in logits])
    gt = gt.astype(np.uint8)
    seg_labels = {i: f"class_{i}" for i in range(NUM_SEG_CLASSES)}
    cases = {
        f"detection, {n} imgs {side}x{side} x {m} boxes": (
            lambda: stock_detection(det_images, *det, det_labels),
            lambda: fast_detection(det_images, *det, det_labels, size=side),
        ),
        f"segmentation, {n_seg} imgs {seg_side}x{seg_side}, {NUM_SEG_CLASSES} classes": (
            lambda: stock_segmentation(seg_images, logits, gt, seg_labels),
            lambda: fast_segmentation(seg_images, logits, gt, seg_labels),
        ),
    }
    out = []
    for load in ("alone", "busy"):
        spinners = os.cpu_count() or 1
        with busy_cores(spinners) if load == "busy" else contextlib.nullcontext():
            for name, (stock, fast) in cases.items():
                fast()  # warm
                stock_s, fast_s = [], []
                for _ in range(repeats):
                    stock_s.append(clock(stock)[0])
                    fast_s.append(clock(fast)[0])
                out.append(
                    {
                        "case": name,
                        "load": load if load == "alone" else f"{spinners} busy processes",
                        "stock_s": min(stock_s),
                        "fast_s": min(fast_s),
                    }
                )
                print(json.dumps(out[-1]), flush=True)
    return out


# -- stock breakdown ----------------------------------------------------------------------
def stock_breakdown(images, boxes, scores, cls, labels, n):
    """Per-image ms of each part of the stock detection path, on the first n images."""
    t_img, _ = clock(lambda: [wandb.Image(images[i]) for i in range(n)])
    t_dicts, dicts = clock(
        lambda: [stock_box_dicts(boxes[i], scores[i], cls[i], labels) for i in range(n)]
    )
    payloads = [{"box_data": d, "class_labels": labels} for d in dicts]
    t_validate, _ = clock(lambda: [BoundingBoxes2D.validate(None, p) for p in payloads])
    t_b2d, _ = clock(lambda: [BoundingBoxes2D(p, "predictions") for p in payloads])
    ms = 1e3 / n
    return {
        "image_png_encode_ms": t_img * ms,
        "box_dicts_ms": t_dicts * ms,
        "box_validate_ms": t_validate * ms,
        "box_json_write_hash_ms": (t_b2d - t_validate) * ms,
        "box_total_ms": (t_dicts + t_b2d) * ms,
    }


# -- kernels ------------------------------------------------------------------------------
COLD_SCRIPT = """
import json, time
t0 = time.perf_counter()
import fastevalcb.kernels as k
t1 = time.perf_counter()
timings = k.warmup()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "warmup_s": t2 - t1, "per_group_s": timings}))
"""


def kernel_cold_start():
    """Compile in a fresh cache dir (cold), then again with that cache (warm), subprocesses."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, TF_CPP_MIN_LOG_LEVEL="3")
        res = {}
        for name in ("cold", "warm"):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", COLD_SCRIPT],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            res[name] = json.loads(out.strip().splitlines()[-1])
            res[name]["process_wall_s"] = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, numba"], check=True)
    res["baseline_python_numpy_numba_s"] = time.perf_counter() - start
    return res


def kernel_throughput(boxes, scores, cls, counts, logits):
    res = {}
    nb = min(len(boxes), 200)
    args = (boxes[:nb], scores[:nb], cls[:nb], counts[:nb], 0.5)
    t_fast, keep = clock(lambda: kernels.batched_nms_keep(*args))
    t_ref, ref_keep = clock(lambda: reference.batched_nms_keep(*args))
    assert (keep == ref_keep).all()
    res["nms_100_boxes_per_image_ms"] = {"numba": t_fast / nb * 1e3, "numpy": t_ref / nb * 1e3}
    t_fast, a = clock(lambda: kernels.logits_argmax(logits))
    t_ref, b = clock(lambda: np.argmax(logits, -1))
    assert (a == b).all()
    res["argmax_256x256x21_ms"] = {
        "numba": t_fast / len(logits) * 1e3,
        "numpy": t_ref / len(logits) * 1e3,
    }
    pred, gt = a[:10], a[::-1][:10]
    t_fast, _ = clock(lambda: kernels.segmentation_metrics(pred, gt, NUM_SEG_CLASSES))
    t_ref, _ = clock(lambda: reference.segmentation_metrics(pred, gt, NUM_SEG_CLASSES))
    res["seg_metrics_256x256_ms"] = {"numba": t_fast / 10 * 1e3, "numpy": t_ref / 10 * 1e3}
    return res


# -- report -------------------------------------------------------------------------------
def machine_info():
    cpu = cpu_name()
    import numba
    import PIL

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "wandb": wandb.__version__,
        "pillow": PIL.__version__,
        "loadavg_1min_at_start": os.getloadavg()[0],
        "png_backend": default_backend(1),
    }


def row(name, stock_s, fast_s, bold=False):
    ratio = f"{stock_s / fast_s:.1f}x"
    return f"| {name} | {stock_s:.2f} s | {fast_s:.2f} s | {f'**{ratio}**' if bold else ratio} |"


def write_markdown(r, path):
    m, d, s = r["machine"], r["detection"], r["segmentation"]
    b, k = r["stock_breakdown_per_image"], r["kernels"]
    lines = [
        f"# Media building benchmark{' (--quick)' if r['quick'] else ''}",
        "",
        f"Machine: {m['cores']} CPU cores ({m['cpu']}), Python {m['python']}, numpy {m['numpy']}, "
        f"numba {m['numba']}, wandb {m['wandb']}, Pillow {m['pillow']}; 1-min load average at "
        f"start {m['loadavg_1min_at_start']:.1f} (shared machine: other jobs may have been running).",
        "",
        "End point for both: `list[wandb.Image]` ready for a table (all PNG/JSON files encoded, "
        f"hashed and staged by then). Ours: level-1 PNGs ({m['png_backend']} deflate) on a "
        f"{m['cores']}-thread pool; box JSON byte-identical to stock.",
        "",
        "| task | stock | fastevalcb | ratio |",
        "|---|---:|---:|---:|",
        row(
            f"detection, {d['images']} imgs x {d['boxes_per_image']} boxes",
            d["stock_s"],
            d["fast_s"],
            bold=True,
        ),
        row(
            "detection, images pre-encoded once (per-epoch reuse)", d["stock_s"], d["fast_reuse_s"]
        ),
        row(
            f"segmentation, {s['images']} imgs 256x256, 21 classes (from logits)",
            s["stock_s"],
            s["fast_s"],
            bold=True,
        ),
        row(
            "segmentation, data-table images reused (what the callback does per epoch)",
            s["stock_s"],
            s["fast_reuse_s"],
        ),
        row(
            "deferred: add to Table + log (detection, same wandb code)",
            d["stock_serialize_s"],
            d["fast_serialize_s"],
        ),
        row(
            "deferred: add to Table + log (segmentation)",
            s["stock_serialize_s"],
            s["fast_serialize_s"],
        ),
        "",
        "**Issue 30's cases**, best of "
        f"{r['issue_cases_repeats']} interleaved runs, with the machine to themselves and "
        "beside a busy process per core (`while True: pass`):",
        "",
        "| case | load | stock | fastevalcb | ratio |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {c['case']} | {c['load']} | {c['stock_s']:.2f} s | {c['fast_s']:.2f} s | "
            f"**{c['stock_s'] / c['fast_s']:.1f}x** |"
            for c in r["issue_cases"]
        ),
        "",
        f"Image PNG bytes: stock {d['stock_png_kb']:.0f} KB/image (PIL level 6), ours "
        f"{d['fast_png_kb']:.0f} KB/image ({m['png_backend']} level 1, Sub filter).",
        "",
        "**Where the stock detection time goes** (per image, serial):",
        "",
        "| part | ms/image |",
        "|---|---:|",
        f"| image PNG encode + hash (`wandb.Image(img)`) | {b['image_png_encode_ms']:.2f} |",
        f"| per-box dicts, `float()`/`int()` on numpy scalars | {b['box_dicts_ms']:.2f} |",
        f"| `BoundingBoxes2D.validate` (per-box checks) | {b['box_validate_ms']:.2f} |",
        f"| box JSON dump + temp file + sha256 | {b['box_json_write_hash_ms']:.2f} |",
        "",
        "**Kernels** (fresh subprocesses; cold = empty numba cache, warm = cache on disk):",
        "",
        "| kernel group | cold compile | warm (cache load) |",
        "|---|---:|---:|",
    ]
    for g, cold in k["cold_start"]["cold"]["per_group_s"].items():
        lines.append(f"| {g} | {cold:.2f} s | {k['cold_start']['warm']['per_group_s'][g]:.3f} s |")
    cs = k["cold_start"]
    lines += [
        "",
        f"Fresh process, warm cache: `import fastevalcb.kernels` {cs['warm']['import_s']:.2f} s "
        f"(includes the package `__init__`) + `warmup()` {cs['warm']['warmup_s']:.2f} s; whole "
        f"process {cs['warm']['process_wall_s']:.2f} s (bare `python -c 'import numpy, numba'`: "
        f"{cs['baseline_python_numpy_numba_s']:.2f} s). "
        f"Cold: warmup {cs['cold']['warmup_s']:.1f} s.",
        "",
        "| kernel (cached) | numba | numpy twin | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, v in k["throughput"].items():
        lines.append(
            f"| {name} | {v['numba']:.3f} ms | {v['numpy']:.3f} ms "
            f"| {v['numpy'] / v['numba']:.1f}x |"
        )
    path.write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="100 detection / 50 segmentation images"
    )
    args = parser.parse_args()
    n_det, n_seg, n_boxes = (100, 50, 100) if args.quick else (1000, 500, 100)
    rng = np.random.default_rng(0)
    det_labels = {i: f"class_{i}" for i in range(NUM_DET_CLASSES)}
    seg_labels = {i: f"class_{i}" for i in range(NUM_SEG_CLASSES)}
    workdir = tempfile.mkdtemp(prefix="bench_media_")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.environ[var] = workdir
    kernels.warmup()

    images = make_images(max(n_det, n_seg), rng)
    boxes, scores, cls, counts = make_detections(n_det, n_boxes, rng)
    results = {"quick": args.quick, "machine": machine_info()}

    print(f"detection: {n_det} images x {n_boxes} boxes ...", flush=True)
    det_imgs = images[:n_det]
    det_args = (boxes, scores, cls, counts, det_labels)
    fast_detection(det_imgs[:4], boxes[:4], scores[:4], cls[:4], counts[:4], det_labels)  # warm
    t_stock, stock = clock(lambda: stock_detection(det_imgs, *det_args))
    t_fast, fast = clock(lambda: fast_detection(det_imgs, *det_args))
    encoded = encode_images(det_imgs)
    t_reuse, _ = clock(lambda: fast_detection(encoded, *det_args))
    det = {
        "images": n_det,
        "boxes_per_image": n_boxes,
        "stock_s": t_stock,
        "fast_s": t_fast,
        "fast_reuse_s": t_reuse,
        "stock_png_kb": np.mean([im._size for im in stock]) / 1e3,
        "fast_png_kb": np.mean([im._size for im in fast]) / 1e3,
    }

    print(f"segmentation: {n_seg} images ...", flush=True)
    seg_imgs = images[:n_seg]
    logits_batches = [
        seg_logits(min(SEG_BATCH, n_seg - start), rng) for start in range(0, n_seg, SEG_BATCH)
    ]
    gt = np.concatenate([np.argmax(seg_logits(len(lb), rng), -1) for lb in logits_batches])
    gt = gt.astype(np.uint8)
    t_sstock, sstock = clock(lambda: stock_segmentation(seg_imgs, logits_batches, gt, seg_labels))
    t_sfast, sfast = clock(lambda: fast_segmentation(seg_imgs, logits_batches, gt, seg_labels))
    base = build_images(seg_imgs, masks={"ground_truth": gt}, class_labels=seg_labels)
    t_sreuse, _ = clock(lambda: fast_segmentation_reuse(base, logits_batches, seg_labels))
    seg = {
        "images": n_seg,
        "classes": NUM_SEG_CLASSES,
        "stock_s": t_sstock,
        "fast_s": t_sfast,
        "fast_reuse_s": t_sreuse,
    }

    print("deferred serialization (Table + log, offline) ...", flush=True)
    run = wandb.init(project="bench_media", dir=workdir)
    det["stock_serialize_s"] = serialize(stock, "det_stock")
    det["fast_serialize_s"] = serialize(fast, "det_fast")
    seg["stock_serialize_s"] = serialize(sstock, "seg_stock")
    seg["fast_serialize_s"] = serialize(sfast, "seg_fast")
    run.finish()
    results["detection"], results["segmentation"] = det, seg

    print("issue 30's cases ...", flush=True)
    results["issue_cases_repeats"] = 1 if args.quick else 3
    results["issue_cases"] = issue_cases(results["issue_cases_repeats"])

    print("stock breakdown and kernels ...", flush=True)
    results["stock_breakdown_per_image"] = stock_breakdown(
        det_imgs, boxes, scores, cls, det_labels, min(n_det, 200)
    )
    results["kernels"] = {
        "cold_start": kernel_cold_start(),
        "throughput": kernel_throughput(boxes, scores, cls, counts, logits_batches[0]),
    }

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "media.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, RESULTS / "media.md")
    print((RESULTS / "media.md").read_text())


if __name__ == "__main__":
    main()
