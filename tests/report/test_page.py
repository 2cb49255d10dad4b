"""The report in a real browser: Chromium opens it from file:// and we drive it.

Each step asserts on the DOM against what the offline run recorded (read back with
OfflineRun): row counts, row order, overlay elements present or absent, mask pixels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastevalcb.report import build_report
from tests.helpers.report import open_report, ready, rendered

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")


def _cells(page, key: str) -> list[str]:
    return page.eval_on_selector_all(f'td[data-key="{key}"]', "els => els.map(e => e.textContent)")


def _count(page) -> int:
    return int(page.get_attribute("#count", "data-rows"))


def _act(page, action) -> None:
    before = ready(page)
    action()
    rendered(page, before)


def _versions(run):
    return [run.load_table(art, "eval_data") for art in run.artifacts(type="evaluation")]


def _natural_widths(page) -> list[int]:
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=10_000)
    return page.eval_on_selector_all(".img img", "els => els.map(e => e.naturalWidth)")


def _set_range(page, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value
    )


def test_classification_version_sort_filter_worst_and_compare(task_runs, page, tmp_path):
    run = task_runs["classification"]
    first, latest = _versions(run)
    open_report(page, build_report(run.run_dir, tmp_path / "report.html"))

    # First paint: the latest version, every row, metrics plotted.
    assert page.input_value("#version") == "1"
    assert _count(page) == len(latest.rows) == 24
    assert set(_cells(page, "a:epoch")) == {str(latest.rows[0][0])}
    plotted = page.eval_on_selector_all("svg.metric", "els => els.map(e => e.dataset.metric)")
    assert "eval/accuracy" in plotted

    # Switch version.
    _act(page, lambda: page.select_option("#version", "0"))
    assert set(_cells(page, "a:epoch")) == {str(first.rows[0][0])}
    ids = [int(v) for v in _cells(page, "a:id")]
    assert ids == first.column("id")

    # Sort by confidence: ascending, then descending; ids follow the recorded values.
    conf = dict(zip(first.column("id"), first.column("confidence")))
    _act(page, lambda: page.click('th[data-key="a:confidence"]'))
    ids = [int(v) for v in _cells(page, "a:id")]
    assert ids == sorted(conf, key=lambda i: (conf[i], i))
    _act(page, lambda: page.click('th[data-key="a:confidence"]'))
    ids = [int(v) for v in _cells(page, "a:id")]
    assert [conf[i] for i in ids] == sorted(conf.values(), reverse=True)

    # Filter a class (equality on the label column) and a boolean.
    _act(page, lambda: page.select_option('select[data-filter="a:label"]', "ellipse"))
    assert set(_cells(page, "a:label")) == {"ellipse"}
    assert _count(page) == first.column("label").count("ellipse")
    _act(page, lambda: page.select_option('select[data-filter="a:correct"]', "false"))
    expected = [r for r in first.rows if r[4] == "ellipse" and r[7] is False]
    assert _count(page) == len(expected)
    assert set(_cells(page, "a:correct")) <= {"false"}

    # Worst k: the highest-confidence mistakes, k of them.
    page.fill("#worst-k", "5")
    _act(page, lambda: page.select_option("#worst", "highest-confidence mistakes"))
    mistakes = sorted((r for r in first.rows if r[7] is False), key=lambda r: (-r[6], r[2]))
    assert [int(v) for v in _cells(page, "a:id")] == [r[2] for r in mistakes[:5]]

    # Compare v0 with v1 joined on id: changed predictions only.
    _act(page, lambda: page.select_option("#worst", ""))
    _act(page, lambda: page.select_option("#compare", "1"))
    assert _count(page) == 24
    assert _cells(page, "b:pred") and len(_cells(page, "b:pred")) == 24
    _act(page, lambda: page.check("#changed"))
    pred1 = dict(zip(latest.column("id"), latest.column("pred")))
    changed = [r[2] for r in first.rows if r[5] != pred1[r[2]]]
    assert [int(v) for v in _cells(page, "a:id")] == changed
    for a, b in zip(_cells(page, "a:pred"), _cells(page, "b:pred")):
        assert a != b
    assert page.errors == []


def test_detection_boxes_layers_classes_and_threshold(task_runs, page, tmp_path):
    run = task_runs["detection"]
    latest = _versions(run)[-1]
    image = latest.columns.index("image")
    preds = [row[image]["boxes"]["predictions"] for row in latest.rows]
    gts = [row[image]["boxes"]["ground_truth"] for row in latest.rows]
    scores = [b["scores"]["score"] for boxes in preds for b in boxes]
    open_report(page, build_report(run.run_dir, tmp_path / "report.html"))
    boxes = lambda layer: page.locator(f"rect.box.{layer}").count()  # noqa: E731

    assert _count(page) == 24
    assert boxes("predictions") == len(scores) > 0
    assert boxes("ground_truth") == sum(map(len, gts))
    captions = page.eval_on_selector_all(".img svg text", "els => els.map(e => e.textContent)")
    assert any(c.split()[-1].replace(".", "").isdigit() for c in captions)  # "ellipse 0.46"

    # Layer toggle: predictions off, then on again.
    _act(page, lambda: page.uncheck('input.layer[data-layer="boxes:predictions"]'))
    assert boxes("predictions") == 0 and boxes("ground_truth") == sum(map(len, gts))
    _act(page, lambda: page.check('input.layer[data-layer="boxes:predictions"]'))
    assert boxes("predictions") == len(scores)

    # Score threshold slider: only predictions scoring at least the threshold stay.
    t = float(np.median(scores))
    _act(page, lambda: _set_range(page, "#threshold", round(t, 2)))
    assert page.text_content("#threshold-value") == f"{round(t, 2):.2f}"
    shown = page.eval_on_selector_all(
        "rect.box.predictions", "els => els.map(e => +e.dataset.score)"
    )
    assert len(shown) == sum(s >= round(t, 2) for s in scores)
    assert min(shown) >= round(t, 2)
    assert boxes("ground_truth") == sum(map(len, gts))  # ground truth has no score
    _act(page, lambda: _set_range(page, "#threshold", 0))

    # Per-class toggle: class 1 (ellipse) hidden in both layers.
    n1 = sum(b["class_id"] == 1 for boxes in preds + gts for b in boxes)
    assert page.locator('rect.box[data-class="1"]').count() == n1 > 0
    _act(page, lambda: page.uncheck('input.class[data-class="1"]'))
    assert page.locator('rect.box[data-class="1"]').count() == 0
    _act(page, lambda: page.check('input.class[data-class="1"]'))

    # Filter rows by a class present in the image's boxes; sort by ap50.
    _act(page, lambda: page.select_option('select[data-filter="a:image"]', "2"))
    with_2 = [
        row[2]
        for row, p, g in zip(latest.rows, preds, gts)
        if any(b["class_id"] == 2 for b in p + g)
    ]
    assert [int(v) for v in _cells(page, "a:id")] == with_2
    _act(page, lambda: page.click('th[data-key="a:ap50"]'))
    ap = [float(v) for v in _cells(page, "a:ap50") if v != "–"]
    assert ap == sorted(ap)

    _act(page, lambda: page.select_option('select[data-filter="a:image"]', ""))

    # Compare with v0: its image column, with v0's predicted boxes, next to this one's.
    first = _versions(run)[0]
    preds0 = [row[image]["boxes"]["predictions"] for row in first.rows]
    _act(page, lambda: page.select_option("#compare", "0"))
    heads = page.eval_on_selector_all("thead th[data-key]", "els => els.map(e => e.dataset.key)")
    assert heads[heads.index("a:image") + 1] == "b:image"
    assert boxes("predictions") == len(scores) + sum(map(len, preds0))
    _act(page, lambda: page.select_option("#compare", ""))
    page.set_viewport_size({"width": 1200, "height": 720})
    page.evaluate("window.scrollTo(0, 0)")
    shot = page.screenshot(path=str(tmp_path / "report.png"))
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    if os.environ.get("FASTEVALCB_SCREENSHOT"):
        shutil.copy(tmp_path / "report.png", os.environ["FASTEVALCB_SCREENSHOT"])
    assert page.errors == []


def test_segmentation_masks_are_drawn_per_layer_and_class(task_runs, page, tmp_path):
    from PIL import Image

    run = task_runs["segmentation"]
    arts = run.artifacts(type="evaluation")
    latest = run.load_table(arts[-1], "eval_data")
    image = latest.columns.index("image")
    open_report(page, build_report(run.run_dir, tmp_path / "report.html"))

    masks = lambda layer: page.locator(f'canvas.mask[data-layer="{layer}"]').count()  # noqa: E731
    assert masks("ground_truth") == masks("predictions") == 24
    legend = page.eval_on_selector_all(
        "input.class", "els => els.map(e => [e.dataset.class, e.checked])"
    )
    assert dict(legend) == {"0": False, "1": True, "2": True, "3": True}  # background off

    # The first ground-truth canvas colours exactly the mask's non-background pixels.
    cell = latest.rows[0][image]["masks"]["ground_truth"]
    _, entry = run.resolve(arts[-1], cell["path"])
    mask = np.asarray(Image.open(entry.local_path))
    alpha = page.eval_on_selector(
        'canvas.mask[data-layer="ground_truth"]',
        """c => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const a = []; for (let i = 3; i < d.length; i += 4) a.push(d[i]); return a; }""",
    )
    assert np.array_equal(np.array(alpha).reshape(mask.shape) > 0, mask > 0)

    _act(page, lambda: page.uncheck('input.layer[data-layer="masks:predictions"]'))
    assert masks("predictions") == 0 and masks("ground_truth") == 24
    # Background on: every pixel of the ground-truth mask is coloured.
    _act(page, lambda: page.check('input.class[data-class="0"]'))
    alpha = page.eval_on_selector(
        'canvas.mask[data-layer="ground_truth"]',
        """c => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""",
    )
    assert alpha == mask.size
    assert page.errors == []


def test_embedded_report_is_one_file(task_runs, page, tmp_path):
    run = task_runs["detection"]
    html = build_report(run.run_dir, tmp_path / "one.html", embed=True)
    assert not (tmp_path / "one_files").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.html"]
    moved = tmp_path / "elsewhere" / "copy.html"
    moved.parent.mkdir()
    shutil.move(html, moved)  # nothing it needs is next to it
    open_report(page, moved)
    assert _count(page) == 24
    srcs = page.eval_on_selector_all(".img img", "els => els.map(e => e.src)")
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert set(_natural_widths(page)) == {32}
    _act(page, lambda: page.select_option("#version", "0"))
    assert set(_cells(page, "a:epoch")) == {"0"}


def test_file_report_loads_only_the_version_it_shows(task_runs, page, tmp_path):
    run = task_runs["classification"]
    html = build_report(run.run_dir, tmp_path / "report.html")
    open_report(page, html)

    def scripts():
        return sorted(
            Path(s).name
            for s in page.eval_on_selector_all(
                "script[src]", "els => els.map(e => e.getAttribute('src'))"
            )
        )

    assert scripts() == ["app.js", "images.js", "meta.js", "t0v1.js"]
    assert set(_natural_widths(page)) == {32}  # the staged files opened by relative path
    _act(page, lambda: page.select_option("#version", "0"))
    assert "t0v0.js" in scripts()


def test_missing_data_files_still_give_a_page_that_says_so(task_runs, page, tmp_path):
    run = task_runs["classification"]
    html = build_report(run.run_dir, tmp_path / "report.html")
    (tmp_path / "report_files" / "t0v0.js").unlink()
    open_report(page, html)
    _act(page, lambda: page.select_option("#version", "0"))
    assert "cannot load report_files/t0v0.js" in page.text_content("#error")
    assert page.evaluate("document.body.dataset.ready") == "error"
    shutil.rmtree(tmp_path / "report_files")
    page.goto(html.as_uri())
    assert "data files (report_files/ next to this page) are missing" in " ".join(
        page.text_content("#boot").split()
    )


def test_drop_in_base_tables_with_stock_boxes_and_masks(offline_run, page, tmp_path):
    """A WandbEvalCallback subclass written the stock way: wandb.Image with box_data
    (normalized) and mask_data payloads, one new image per pred row."""
    import keras
    import wandb

    from fastevalcb import WandbEvalCallback

    names = {0: "bg", 1: "cat", 2: "dog"}
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (6, 20, 20, 3)).astype("uint8")
    y = np.arange(6) % 3

    class StockStyle(WandbEvalCallback):
        def __init__(self):
            super().__init__(["id", "image", "label"], ["epoch", "id", "image", "label", "pred"])

        def add_ground_truth(self, logs=None):
            for i in range(len(x)):
                self.data_table.add_data(i, wandb.Image(x[i]), names[int(y[i])])

        def add_model_predictions(self, epoch, logs=None):
            for i in self.data_table_ref.get_index():
                box = {
                    "position": {"minX": 0.1, "minY": 0.1, "maxX": 0.6, "maxY": 0.5},
                    "class_id": int(y[i]),
                    "box_caption": names[int(y[i])],
                    "scores": {"score": 0.25 + 0.1 * i},
                }
                mask = np.zeros((20, 20), np.uint8)
                mask[:10] = y[i]
                image = wandb.Image(
                    x[i],
                    boxes={"predictions": {"box_data": [box], "class_labels": names}},
                    masks={"predictions": {"mask_data": mask, "class_labels": names}},
                )
                self.pred_table.add_data(epoch, i, image, names[int(y[i])], names[(i + epoch) % 3])

    _, read = offline_run
    model = keras.Sequential(
        [keras.Input((20, 20, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((6, 3)), epochs=2, verbose=0, callbacks=[StockStyle()])
    run = read()
    open_report(page, build_report(run.run_dir, tmp_path / "r.html"))
    assert _count(page) == 6
    assert page.locator("rect.box.predictions").count() == 6
    first = page.eval_on_selector(
        "rect.box.predictions", "r => [+r.getAttribute('x'), +r.getAttribute('width')]"
    )
    assert first == pytest.approx([2.0, 10.0])  # normalized 0.1..0.6 of 20 px
    assert page.locator('canvas.mask[data-layer="predictions"]').count() == 6
    assert [int(v) for v in _cells(page, "a:id")] == list(range(6))
    _act(page, lambda: _set_range(page, "#threshold", 0.5))
    assert page.locator("rect.box.predictions").count() == 3  # scores .55, .65, .75
    _act(page, lambda: page.select_option("#compare", "0"))
    _act(page, lambda: page.check("#changed"))
    assert _count(page) == 6  # every pred moved on by one class


def test_a_run_without_tables_shows_its_metrics_and_says_so(offline_run, page, tmp_path):
    run, read = offline_run
    for step in range(3):
        run.log({"eval/global_step": step, "eval/loss": 1.0 / (step + 1)})
    html = build_report(read().run_dir, tmp_path / "r.html")
    open_report(page, html)
    assert "this run logged no tables" in page.text_content("#problems")
    assert page.eval_on_selector_all("svg.metric", "els => els.map(e => e.dataset.metric)") == [
        "eval/loss"
    ]
    assert page.locator("svg.metric circle").count() == 3
