"""DetectionEvalCallback end to end on a model whose boxes are known in advance.

The model predicts the same four boxes for every image (scores nudged by the image's
brightness so no two images tie), and each image's ground truth is chosen so every
per-image and summary metric can be worked out by hand.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from fastevalcb import DetectionEvalCallback, FastEvalInputError, FastEvalWarning
from tests.helpers import reference
from tests.helpers.detection import (
    EXPECTED,
    EXPECTED_MAP50,
    GT_BOXES,
    GT_CLASSES,
    NAMES,
    PRED_BOXES,
    PRED_CLASSES,
    PRED_SCORES,
    SIZE,
    Fixed,
    fit,
    fixed_detector,
    val_images,
)
from tests.helpers.tasks import EpochRecorder, pred_versions


def _nan_to_none(values):
    return [None if v is None or np.isnan(v) else v for v in values]


@pytest.mark.slow
@pytest.mark.fast_path
def test_per_image_and_summary_metrics_match_the_hand_computed_case(offline_run):
    run, read = offline_run
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    cb = DetectionEvalCallback(
        (val_images(), targets),
        NAMES,
        batch_size=3,
        verbose=0,
        score_threshold=0.05,
        ap_convention="voc",
    )
    fit(fixed_detector(), [cb], epochs=2)
    log = read()

    data = log.artifact("val")
    data_table = log.load_table(data, "val_data")
    assert data_table.columns == ["id", "image", "num_objects", "classes"]
    assert data_table.column("num_objects") == [2, 1, 0, 2]
    assert data_table.column("classes") == [["a", "b"], ["a"], [], ["a", "b"]]

    last = pred_versions(log, run.id)[-1]
    table = log.load_table(last, "eval_data")
    for name, expected in EXPECTED.items():
        got = _nan_to_none(table.column(name))
        assert got == pytest.approx(expected, abs=1e-6), name

    # Box layers are inline in the table JSON (wandb writes no file for them in
    # artifacts): three predictions with captions and scores, the ground truth kept.
    cell = table.column("image")[0]
    pred_boxes = cell["boxes"]["predictions"]
    assert [b["class_id"] for b in pred_boxes] == [0, 0, 1]
    assert pred_boxes[0]["position"] == {"minX": 2.0, "minY": 2.0, "maxX": 12.0, "maxY": 12.0}
    assert pred_boxes[0]["box_caption"].startswith("a 0.9")
    assert pred_boxes[0]["scores"]["score"] == round(0.9 + 0.01 * 200 / 255, 4)  # 4 decimals
    assert [b["class_id"] for b in cell["boxes"]["ground_truth"]] == [0, 1]
    # The image itself is a reference into the data artifact: nothing re-uploaded.
    assert last.entries[cell["path"]].is_reference
    assert last.entries[cell["path"]].referenced_client_id == data.client_id
    stored = [p for p, e in last.entries.items() if not e.is_reference]
    assert not [p for p in stored if p.endswith(".png")], stored

    row = [r for r in log.history() if "eval/mAP50" in r][-1]
    assert row["eval/mAP50"] == pytest.approx(EXPECTED_MAP50)  # VOC's; COCO's: test_metrics_*
    # means over classes at the max-F1 threshold (every prediction: a 1/8, b 2/4 precise)
    assert row["eval/precision"] == pytest.approx((1 / 8 + 2 / 4) / 2)
    assert row["eval/recall"] == pytest.approx((1 / 3 + 1) / 2)


@pytest.mark.slow
def test_deprecated_normalized_cxcywh_targets_and_tuple_outputs_via_adapter(offline_run):
    run, read = offline_run
    xyxy = GT_BOXES / SIZE
    cxcywh = np.concatenate(
        [(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], -1
    )

    def adapter(outputs):  # model boxes are xyxy pixels: convert to the targets' format
        b = outputs["boxes"] / SIZE
        boxes = np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], -1)
        return boxes, outputs["scores"], outputs["classes"]

    ds = tf.data.Dataset.from_tensor_slices((val_images(), (cxcywh, GT_CLASSES)))
    with pytest.warns(DeprecationWarning, match="box_format='rel_xyxy'"):
        cb = DetectionEvalCallback(
            ds,
            NAMES,
            box_format="cxcywh",
            normalized=True,
            adapter=adapter,
            verbose=0,
            score_threshold=0.05,
        )
    assert cb.box_format == cb.target_box_format == "rel_center_xywh"
    fit(fixed_detector(), [cb])
    table = read().load_table(pred_versions(read(), run.id)[-1], "eval_data")
    assert table.column("tp") == EXPECTED["tp"]
    assert table.column("fn") == EXPECTED["fn"]


@pytest.mark.parametrize(
    "targets, match",
    [
        (
            {"boxes": GT_BOXES[:, :, :3], "classes": GT_CLASSES},
            r"target boxes must have shape \(N, M, 4\)",
        ),
        (
            {"boxes": GT_BOXES, "classes": GT_CLASSES[:, :1]},
            r"target labels must have shape \(N, 2\)",
        ),
        (
            {"boxes": GT_BOXES, "classes": np.where(GT_CLASSES == 1, 2, GT_CLASSES)},
            r"target box label of sample 0 is 2, outside class_names \(2 classes",
        ),
        (GT_BOXES, "detection targets must be a dict"),
    ],
)
def test_bad_targets_fail_at_construction(offline_run, targets, match):
    with pytest.raises(FastEvalInputError, match=match):
        DetectionEvalCallback((val_images(), targets), NAMES)


def test_unreadable_model_outputs_fail_at_train_begin(offline_run):
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    cb = DetectionEvalCallback(
        (val_images(), targets),
        NAMES,
        adapter=lambda out: (out["boxes"][..., :2], out["scores"], out["classes"]),
    )
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match=r"predicted boxes must have shape \(B, K, 4\)"):
        fit(fixed_detector(), [cb, epochs])
    assert epochs.epochs == []


def test_predicted_classes_outside_class_names_fail_at_train_begin(offline_run):
    """The first batch's check is numpy alone (the kernels compile on the worker), and
    still names the sample and the class id, before epoch 1."""
    targets = {"boxes": GT_BOXES, "classes": np.minimum(GT_CLASSES, 0)}  # ids 0 and -1
    cb = DetectionEvalCallback((val_images(), targets), NAMES[:1])
    epochs = EpochRecorder()
    with pytest.raises(
        FastEvalInputError,
        match=r"a predicted class of sample \d+ is 1, "
        r"outside class_names \(1 classes",
    ):
        fit(fixed_detector(), [cb, epochs])
    assert epochs.epochs == []


@pytest.mark.slow
def test_adapter_failing_mid_training_warns_once_and_fit_goes_on(offline_run):
    run, read = offline_run
    calls = {"n": 0}

    def adapter(outputs):
        calls["n"] += 1
        if calls["n"] > 1:  # fine at the train-begin check, broken afterwards
            raise KeyError("scores_v2")
        return outputs

    cb = DetectionEvalCallback(
        (val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
        NAMES,
        adapter=adapter,
        verbose=2,
    )  # 2: prints at train end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(fixed_detector(), [cb], epochs=2)
    assert len(history.history["loss"]) == 2
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    assert "scores_v2" in ours[0]
    assert pred_versions(read(), run.id) == []


def test_ragged_targets_ask_for_padding(offline_run):
    boxes = tf.ragged.constant([[[1.0, 1, 5, 5]], [[1.0, 1, 5, 5], [2.0, 2, 6, 6]]], ragged_rank=1)
    classes = tf.ragged.constant([[0], [0, 1]])
    ds = tf.data.Dataset.from_tensor_slices((val_images()[:2], (boxes, classes))).batch(2)
    cb = DetectionEvalCallback(ds, NAMES, verbose=0)
    with pytest.raises(FastEvalInputError, match="must be padded arrays"):
        fit(fixed_detector(), [cb])


@pytest.mark.slow
def test_rows_past_num_detections_are_padding(offline_run):
    run, read = offline_run

    def adapter(outputs):  # only the first prediction counts; the rest carry junk classes
        classes = outputs["classes"].copy()
        classes[:, 1:] = 7
        return {**outputs, "classes": classes, "num_detections": np.ones(len(classes))}

    cb = DetectionEvalCallback(
        (val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
        NAMES,
        adapter=adapter,
        verbose=0,
    )
    fit(fixed_detector(), [cb])
    table = read().load_table(pred_versions(read(), run.id)[-1], "eval_data")
    assert table.column("num_predictions") == [1, 1, 1, 1]
    assert table.column("tp") == [1, 0, 0, 0]  # P0 matches A's box only


@pytest.mark.slow
def test_nan_inf_inverted_and_zero_area_boxes_are_counted_dropped_and_warned_once(offline_run):
    run, read = offline_run
    calls = {"n": 0}

    def adapter(outputs):  # clean at the train-begin check, then a model gone bad
        calls["n"] += 1
        if calls["n"] == 1:
            return outputs
        boxes, scores = outputs["boxes"].copy(), outputs["scores"].copy()
        boxes[1, 2, 0] = np.nan  # B: P2 has a NaN corner
        scores[2, 0] = np.inf  # C: P0 scores inf
        boxes[3, 1] = [12, 2, 2, 11]  # D: P1 inverted (x2 < x1)
        boxes[3, 2] = [20, 20, 20, 30]  # D: P2 zero-width
        return {**outputs, "boxes": boxes, "scores": scores}

    cb = DetectionEvalCallback(
        (val_images(), {"boxes": GT_BOXES, "classes": GT_CLASSES}),
        NAMES,
        adapter=adapter,
        verbose=0,
        score_threshold=0.05,
        drop_degenerate_boxes=True,
    )  # kept by default: test_metrics_*
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(fixed_detector(), [cb], epochs=2)
    log = read()
    versions = pred_versions(log, run.id)
    assert len(versions) == 2
    for version in versions:
        table = log.load_table(version, "eval_data")
        assert table.column("finite") == [True, False, False, True]
        assert table.column("num_predictions") == [3, 2, 2, 1]  # the bad boxes are dropped
        overlays = [cell["boxes"]["predictions"] for cell in table.column("image")]
        assert [len(boxes) for boxes in overlays] == [3, 2, 2, 1]
        assert overlays[3][0]["position"]["minX"] == 2.0  # D keeps P0 only
    rows = [r for r in log.history() if "eval/mAP50" in r]
    assert len(rows) == 2 and all(np.isnan(r["eval/mAP50"]) for r in rows)
    assert all(np.isnan(r["eval/precision"]) for r in rows)
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    nan = [m for m in ours if "non-finite" in m]
    bad = [m for m in ours if "inverted or zero-area" in m]
    assert len(nan) == 1 and len(bad) == 1, ours  # once per fit each
    assert (
        "2 of 4 detection samples had non-finite predictions (NaN/inf) (2 boxes or "
        "scores, dropped from the overlay and the metrics) at epoch 0 (step 2); first "
        "sample id 1." in nan[0]
    )
    assert (
        "2 predicted boxes in 1 samples were inverted or zero-area at epoch 0 (step 2); "
        "first sample id 3." in bad[0]
    )


# ---------------------------------------------------------------- Keras formats and layouts
K = 5  # output slots: P0, P1, P2 then two -1 padding slots, like KerasHub's predict


def _to_format(xyxy, fmt, size=SIZE):
    name = "center_xywh" if fmt == "cxcywh" else fmt
    if not hasattr(keras.utils, "bounding_boxes"):  # Keras < 3.8: our numpy twin, which
        from tests.helpers import (
            reference,  # tests/kernels/test_boxes.py checks against Keras' where it exists
        )

        return reference.convert_boxes(xyxy, "xyxy", name, (size, size)).astype(np.float32)
    return keras.ops.convert_to_numpy(
        keras.utils.bounding_boxes.convert_format(
            np.asarray(xyxy, np.float32), source="xyxy", target=name, height=size, width=size
        )
    )


def keras_hub_layout_detector(fmt, declare=True):
    """KerasHub ObjectDetector.predict's layout: {"boxes" in ``fmt``, "confidence",
    "labels", "num_detections"}, every slot past num_detections -1 (boxes, labels and
    confidence); ``declare``: the model carries ``bounding_box_format`` like KerasHub's."""
    boxes = np.full((K, 4), -1, np.float32)
    boxes[:3] = _to_format(PRED_BOXES[:3], fmt)
    scores = np.full(K, -1, np.float32)
    scores[:3] = PRED_SCORES[:3]
    labels = np.full(K, -1, np.float32)
    labels[:3] = PRED_CLASSES[:3]
    images = keras.Input((SIZE, SIZE, 3))
    aux = keras.layers.Dense(1, name="aux")(keras.layers.Flatten()(images))
    nudge = np.where(np.arange(K) < 3, 0.01, 0.0).astype(np.float32)  # padding stays -1

    outputs = {
        "aux": aux,
        "boxes": Fixed(boxes, name="boxes")(images, aux),
        "confidence": Fixed(scores, nudge=nudge, name="confidence")(images, aux),
        "labels": keras.layers.Lambda(lambda t: ops.cast(t, "int32"), name="labels")(
            Fixed(labels)(images, aux)
        ),
        "num_detections": keras.layers.Lambda(
            lambda t: ops.cast(t, "int32"), name="num_detections"
        )(Fixed(np.float32(3))(images, aux)),
    }
    model = keras.Model(images, outputs)
    if declare:
        model.bounding_box_format = fmt
    model.compile("sgd", loss={"aux": "mse"})
    return model


def keras_hub_targets(fmt):
    """{"boxes", "labels"} in ``fmt``, padded with -1 boxes and labels."""
    boxes = np.where(GT_CLASSES[..., None] >= 0, _to_format(GT_BOXES, fmt), -1)
    return {"boxes": boxes.astype(np.float32), "labels": GT_CLASSES}


def _check_hand_case(table, size=SIZE):
    for name, expected in EXPECTED.items():
        assert _nan_to_none(table.column(name)) == pytest.approx(expected, abs=1e-6), name
    pred_boxes = table.column("image")[0]["boxes"]["predictions"]
    assert [b["class_id"] for b in pred_boxes] == [0, 0, 1]  # padding slots dropped
    assert pred_boxes[0]["position"] == {"minX": 2.0, "minY": 2.0, "maxX": 12.0, "maxY": 12.0}
    assert pred_boxes[0]["scores"]["score"] == round(0.9 + 0.01 * 200 / 255, 4)
    gt = table.column("image")[0]["boxes"]["ground_truth"]
    assert [b["position"] for b in gt][1] == {
        "minX": 20.0,
        "minY": 20.0,
        "maxX": 30.0,
        "maxY": 30.0,
    }


@pytest.mark.slow
def test_keras_hub_layout_in_the_model_s_yxyx_by_default(offline_run):
    """A model speaking KerasHub: dict outputs and targets, -1 padded, its own "yxyx"."""
    run, read = offline_run
    model = keras_hub_layout_detector("yxyx")
    cb = DetectionEvalCallback(
        (val_images(), keras_hub_targets("yxyx")), NAMES, verbose=0, ap_convention="voc"
    )
    assert cb.box_format is None  # unknown until the model is: targets checked, not converted
    fit(model, [cb])
    assert (cb.box_format, cb.target_box_format) == ("yxyx", "yxyx")
    log = read()
    _check_hand_case(log.load_table(pred_versions(log, run.id)[-1], "eval_data"))
    row = [r for r in log.history() if "eval/mAP50" in r][-1]
    assert row["eval/mAP50"] == pytest.approx(EXPECTED_MAP50)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt",
    [*reference.FORMATS, "cxcywh"],
)
def test_every_keras_box_format_round_trips(offline_run, fmt):
    run, read = offline_run
    cb = DetectionEvalCallback(
        (val_images(), keras_hub_targets(fmt)),
        NAMES,
        box_format=fmt,
        verbose=0,
        async_logging=False,
    )
    fit(keras_hub_layout_detector(fmt, declare=False), [cb])
    log = read()
    _check_hand_case(log.load_table(pred_versions(log, run.id)[-1], "eval_data"))


def test_a_box_format_contradicting_the_model_s_fails_before_epoch_1(offline_run):
    cb = DetectionEvalCallback((val_images(), keras_hub_targets("xyxy")), NAMES, box_format="xyxy")
    epochs = EpochRecorder()
    with pytest.raises(
        FastEvalInputError,
        match=r"box_format='xyxy', but Functional.predict returns 'yxyx' boxes.*"
        r"target_box_format='xyxy'",
    ):
        fit(keras_hub_layout_detector("yxyx"), [cb, epochs])
    assert epochs.epochs == []


@pytest.mark.slow
def test_targets_in_another_format_than_the_model_s(offline_run):
    run, read = offline_run
    cb = DetectionEvalCallback(
        (val_images(), keras_hub_targets("rel_xywh")),
        NAMES,
        target_box_format="rel_xywh",
        verbose=0,
    )
    fit(keras_hub_layout_detector("yxyx"), [cb])
    assert (cb.box_format, cb.target_box_format) == ("yxyx", "rel_xywh")
    log = read()
    _check_hand_case(log.load_table(pred_versions(log, run.id)[-1], "eval_data"))


def test_pixel_targets_called_relative_fail_at_construction(offline_run):
    with pytest.raises(
        FastEvalInputError,
        match=r"'rel_yxyx': fractions of the image, but sample 0 has a "
        r"coordinate of 30; .* 'yxyx'",
    ):
        DetectionEvalCallback(
            (val_images(), keras_hub_targets("yxyx")), NAMES, box_format="rel_yxyx"
        )


def test_targets_with_both_labels_and_classes_are_ambiguous(offline_run):
    targets = {"boxes": GT_BOXES, "labels": GT_CLASSES, "classes": GT_CLASSES}
    with pytest.raises(FastEvalInputError, match="has both 'labels' and 'classes'"):
        DetectionEvalCallback((val_images(), targets), NAMES)


@pytest.mark.slow
def test_default_keeps_every_prediction_and_score_threshold_is_opt_in(offline_run):
    run, read = offline_run
    targets = {"boxes": GT_BOXES, "classes": GT_CLASSES}
    keep_all = DetectionEvalCallback(
        (val_images(), targets), NAMES, verbose=0, data_artifact_name="a"
    )
    top_two = DetectionEvalCallback(
        (val_images(), targets),
        NAMES,
        verbose=0,
        data_artifact_name="b",
        metrics_prefix="top",
        max_detections=2,
        score_threshold=0.75,
    )
    fit(fixed_detector(), [keep_all, top_two])
    versions = pred_versions(read(), run.id)
    counts = sorted(
        tuple(read().load_table(v, "eval_data").column("num_predictions")) for v in versions
    )
    assert counts == [(2, 2, 2, 2), (4, 4, 4, 4)]  # P3 (.01) kept by default


@pytest.mark.slow
def test_detections_from_a_real_retinanet_predict():
    """The dict a KerasHub RetinaNetObjectDetector's predict returns (random weights, no
    download) is read as KerasHub means it: its bounding_box_format, -1 slots dropped."""
    keras_hub = pytest.importorskip("keras_hub")
    from fastevalcb.tasks.detection import detections_from_outputs, model_box_formats

    keras.utils.set_random_seed(0)
    size = 64
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(size, size, 3),
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=4, use_p5=False, image_shape=(size, size, 3)
    )
    x = np.random.RandomState(0).uniform(0, 1, (4, size, size, 3)).astype("float32")
    for fmt in ("yxyx", "xyxy"):
        model = keras_hub.models.RetinaNetObjectDetector(
            backbone=backbone, num_classes=3, bounding_box_format=fmt, pre_logits_num_conv_layers=1
        )
        for w in model.box_head.weights:  # boxes = anchors: finite, of many sizes
            w.assign(np.zeros(w.shape, "float32"))
        assert model_box_formats(model) == (fmt, fmt)
        model.prediction_decoder = keras_hub.layers.NonMaxSuppression(
            bounding_box_format=fmt, from_logits=True, confidence_threshold=0.0, max_detections=8
        )
        scores = model.predict(x, verbose=0)["confidence"]
        model.prediction_decoder = keras_hub.layers.NonMaxSuppression(
            bounding_box_format=fmt,
            from_logits=True,
            max_detections=8,
            confidence_threshold=float(np.median(scores)),
        )
        out = model.predict(x, verbose=0)
        counts = out["num_detections"]
        assert counts.min() < 8 and counts.max() > 0, counts  # some -1 padding to drop
        assert (out["labels"][np.arange(8)[None] >= counts[:, None]] == -1).all()

        dets = detections_from_outputs(out, 4, (size, size), box_format=fmt, num_classes=3)
        assert np.diff(dets.offsets).tolist() == counts.tolist()
        valid = np.arange(8)[None] < counts[:, None]
        xyxy = keras.ops.convert_to_numpy(
            keras.utils.bounding_boxes.convert_format(out["boxes"], source=fmt, target="xyxy")
        )
        np.testing.assert_allclose(dets.xyxy, xyxy[valid], atol=1e-4)  # as COCO scores them
        clipped = detections_from_outputs(
            out, 4, (size, size), box_format=fmt, num_classes=3, clip=True
        )
        np.testing.assert_allclose(clipped.xyxy, np.clip(xyxy[valid], 0, size), atol=1e-4)
        np.testing.assert_array_equal(dets.scores, out["confidence"][valid])
        np.testing.assert_array_equal(dets.class_id, out["labels"][valid])


@pytest.mark.slow
def test_d_fine_predicts_yxyx_whatever_its_bounding_box_format_says():
    """keras_hub 0.32's D-FINE builds yxyx boxes in predict even when set to "xyxy" (and
    reads rel_center_xywh targets): model_box_formats says so, and the boxes read back
    are the model's raw normalized center boxes in xyxy pixels."""
    pytest.importorskip("keras_hub")
    import keras_hub
    from keras_hub.src.models.d_fine.d_fine_backbone import DFineBackbone
    from keras_hub.src.models.d_fine.d_fine_object_detector import DFineObjectDetector
    from keras_hub.src.models.hgnetv2.hgnetv2_backbone import HGNetV2Backbone

    from fastevalcb.tasks.detection import detections_from_outputs, model_box_formats

    size = 64
    keras.utils.set_random_seed(0)
    hgnet = HGNetV2Backbone(
        stem_channels=[3, 16, 16],
        stackwise_stage_filters=[
            [16, 16, 64, 1, 3, 3],
            [64, 32, 256, 1, 3, 3],
            [256, 64, 512, 2, 3, 5],
            [512, 128, 1024, 1, 3, 5],
        ],
        apply_downsample=[False, True, True, True],
        use_lightweight_conv_block=[False, False, True, True],
        depths=[1, 1, 2, 1],
        hidden_sizes=[64, 256, 512, 1024],
        embedding_size=16,
        use_learnable_affine_block=True,
        hidden_act="relu",
        image_shape=(size, size, 3),
        out_features=["stage3", "stage4"],
    )
    backbone = DFineBackbone(
        backbone=hgnet,
        decoder_in_channels=[32, 32],
        encoder_hidden_dim=32,
        num_denoising=0,
        num_labels=3,
        hidden_dim=32,
        learn_initial_query=False,
        num_queries=10,
        anchor_image_size=(size, size),
        feat_strides=[16, 32],
        num_feature_levels=2,
        encoder_in_channels=[512, 1024],
        encode_proj_layers=[1],
        num_attention_heads=2,
        encoder_ffn_dim=32,
        num_encoder_layers=1,
        hidden_expansion=0.34,
        depth_multiplier=0.5,
        eval_idx=-1,
        num_decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        decoder_n_points=[2, 2],
        lqe_hidden_dim=8,
        num_lqe_layers=1,
        out_features=["stage3", "stage4"],
        image_shape=(size, size, 3),
    )
    model = DFineObjectDetector(backbone=backbone, num_classes=3, bounding_box_format="xyxy")
    model.prediction_decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="xyxy",
        from_logits=True,
        confidence_threshold=0.0,
        iou_threshold=1.0,
        max_detections=10,
    )  # keep all 10 queries
    assert model_box_formats(model) == ("yxyx", "rel_center_xywh")

    x = np.random.RandomState(0).uniform(0, 1, (2, size, size, 3)).astype("float32")
    out = model.predict(x, verbose=0)
    dets = detections_from_outputs(out, 2, (size, size), box_format="yxyx", num_classes=3)
    as_set = detections_from_outputs(out, 2, (size, size), box_format="xyxy", num_classes=3)
    raw = keras.ops.convert_to_numpy(model(x)["pred_boxes"])  # (2, 10, 4) rel center_xywh
    for i in range(2):
        want = np.clip(
            keras.ops.convert_to_numpy(
                keras.utils.bounding_boxes.convert_format(
                    raw[i], "rel_center_xywh", "xyxy", height=size, width=size
                )
            ),
            0,
            size,
        )
        got = dets.image(i).xyxy
        assert len(got) == 10
        distance = np.abs(got[:, None] - want[None]).max(axis=2).min(axis=1)
        assert distance.max() < 1e-3
        wrong = np.abs(as_set.image(i).xyxy[:, None] - want[None]).max(axis=2).min(axis=1)
        assert wrong.max() > 1.0  # read as its setting says, the boxes would be transposed
