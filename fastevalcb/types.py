"""One dataclass per task's predictions, validated once in ``__post_init__``.

Adapters build these from raw model outputs (``from_padded``, ``from_logits``), kernels in
:mod:`fastevalcb.kernels` compute them, and :mod:`fastevalcb.media` turns them into
``wandb.Image`` payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# What selects rows of the flat arrays: a boolean keep mask, an index array or a slice.
RowIndex = slice | npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]]


def _check(
    arr: npt.ArrayLike,
    name: str,
    dtype: npt.DTypeLike,
    shape: tuple[int | None, ...],
    shape_text: str,
) -> np.ndarray:
    """Return ``arr`` as a C-contiguous ``dtype`` array, or raise stating expected vs got."""
    a = np.asarray(arr)
    if a.ndim != len(shape) or any(w is not None and g != w for w, g in zip(shape, a.shape)):
        raise ValueError(f"{name} must have shape {shape_text}, got {tuple(a.shape)}")
    return np.ascontiguousarray(a, dtype=dtype)


@dataclass
class Detections:
    """Boxes of one image.

    Attributes:
        xyxy: ``(N, 4)`` float32 xyxy pixel boxes.
        class_id: ``(N,)`` int32 class ids.
        scores: ``(N,)`` float32 confidences, or None for ground truth.
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = _check(self.xyxy, "xyxy", np.float32, (None, 4), "(N, 4)")
        n = len(self.xyxy)
        self.class_id = _check(self.class_id, "class_id", np.int32, (n,), f"({n},)")
        if self.scores is not None:
            self.scores = _check(self.scores, "scores", np.float32, (n,), f"({n},)")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: RowIndex) -> Detections:
        """Select boxes with a boolean keep mask, an index array or a slice."""
        return Detections(
            self.xyxy[index],
            self.class_id[index],
            None if self.scores is None else self.scores[index],
        )


@dataclass
class PackedDetections:
    """Boxes of a batch of images in one flat structure.

    Image ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of the flat arrays.

    Attributes:
        offsets: ``(B + 1,)`` int64, non-decreasing, ``offsets[0] == 0``.
        xyxy: ``(N, 4)`` float32 xyxy pixel boxes, ``N == offsets[-1]``.
        class_id: ``(N,)`` int32.
        scores: ``(N,)`` float32, or None for ground truth.
    """

    offsets: np.ndarray
    xyxy: np.ndarray
    class_id: np.ndarray
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.offsets = _check(self.offsets, "offsets", np.int64, (None,), "(B + 1,)")
        if len(self.offsets) == 0 or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise ValueError(
                f"offsets must start at 0 and be non-decreasing, got {self.offsets[:8]}"
            )
        n = int(self.offsets[-1])
        self.xyxy = _check(self.xyxy, "xyxy", np.float32, (n, 4), f"({n}, 4)")
        self.class_id = _check(self.class_id, "class_id", np.int32, (n,), f"({n},)")
        if self.scores is not None:
            self.scores = _check(self.scores, "scores", np.float32, (n,), f"({n},)")

    @property
    def num_images(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return self.num_images

    def image(self, i: int) -> Detections:
        """Detections of image ``i`` (views into the flat arrays)."""
        s, e = int(self.offsets[i]), int(self.offsets[i + 1])
        return Detections(
            self.xyxy[s:e], self.class_id[s:e], None if self.scores is None else self.scores[s:e]
        )

    @classmethod
    def from_list(cls, detections: list[Detections]) -> PackedDetections:
        """Pack per-image :class:`Detections` (all with scores, or all without)."""
        counts = [len(d) for d in detections]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        with_scores = [d.scores is not None for d in detections]
        if any(with_scores) and not all(with_scores):
            raise ValueError("either every image has scores or none has")

        def cat(
            parts: list[np.ndarray], shape: tuple[int, ...], dtype: npt.DTypeLike
        ) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)

        return cls(
            offsets,
            cat([d.xyxy for d in detections], (0, 4), np.float32),
            cat([d.class_id for d in detections], (0,), np.int32),
            cat([d.scores for d in detections if d.scores is not None], (0,), np.float32)
            if detections and all(with_scores)
            else None,
        )

    @classmethod
    def concat(cls, parts: list[PackedDetections]) -> PackedDetections:
        """One packed batch of every image of ``parts``, in order."""
        if not parts:
            raise ValueError("concat needs at least one PackedDetections")
        with_scores = {p.scores is not None for p in parts}
        if len(with_scores) > 1:
            raise ValueError("either every part has scores or none has")
        counts = np.concatenate([np.diff(p.offsets) for p in parts])
        return cls(
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.scores for p in parts]) if with_scores == {True} else None,
        )

    def slice(self, start: int, stop: int) -> PackedDetections:
        """Images ``start:stop`` (views into the flat arrays)."""
        s, e = int(self.offsets[start]), int(self.offsets[stop])
        return PackedDetections(
            self.offsets[start : stop + 1] - s,
            self.xyxy[s:e],
            self.class_id[s:e],
            None if self.scores is None else self.scores[s:e],
        )

    @classmethod
    def from_padded(
        cls,
        boxes: npt.ArrayLike,
        class_id: npt.ArrayLike,
        scores: npt.ArrayLike | None = None,
        counts: npt.ArrayLike | None = None,
        box_format: str = "xyxy",
        image_size: tuple[int, int] | None = None,
        clip: bool = True,
        iou_threshold: float | None = None,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        num_classes: int | None = None,
    ) -> PackedDetections:
        """Post-process padded model outputs into a packed batch.

        Converts to xyxy pixels, clips to the image, then applies score threshold, class-wise
        NMS (when ``iou_threshold`` is set) and top-k with the kernels in
        :mod:`fastevalcb.kernels.nms`, and keeps the surviving rows in input order.

        Args:
            boxes: ``(B, M, 4)`` float boxes in ``box_format``.
            class_id: ``(B, M)`` integer class ids.
            scores: ``(B, M)`` float scores, or None for ground truth (no filtering).
            counts: ``(B,)`` valid boxes per image (leading rows); None = all ``M``.
            box_format: one of ``keras.utils.bounding_boxes``' formats
                (:data:`fastevalcb.kernels.BOX_FORMATS`, e.g. ``"yxyx"``, ``"rel_xyxy"``).
            image_size: ``(height, width)``; needed for ``rel_*`` formats and clipping.
            clip: clip boxes to the image (when ``image_size`` is given).
            iou_threshold: NMS IoU threshold, or None to skip NMS.
            score_threshold: drop lower scores, or None to keep all (NaN scores are always
                dropped).
            max_detections: keep the top-k scores per image, or None for all.
            num_classes: when given, class ids must lie in ``[0, num_classes)``.

        Returns:
            PackedDetections with xyxy float32 pixel boxes.
        """
        from fastevalcb.kernels import batched_nms_keep, clip_boxes, convert_boxes
        from fastevalcb.kernels._common import check_class_ids

        b = _check(boxes, "boxes", np.float32, (None, None, 4), "(B, M, 4)")
        nb, m = b.shape[:2]
        cid = _check(class_id, "class_id", np.int64, (nb, m), f"({nb}, {m})")
        cnt = (
            np.full(nb, m, np.int64)
            if counts is None
            else _check(counts, "counts", np.int64, (nb,), f"({nb},)")
        )
        if np.any((cnt < 0) | (cnt > m)):
            raise ValueError(f"counts must be in [0, {m}], got {cnt}")
        xyxy = convert_boxes(b, box_format, "xyxy", image_size)
        if clip and image_size is not None:
            xyxy = clip_boxes(xyxy, image_size)
        if scores is None:
            keep = np.arange(m)[None, :] < cnt[:, None]
            check_class_ids(np.where(keep, cid, 0), num_classes, "class_id")
            s = None
        else:
            s = _check(scores, "scores", np.float32, (nb, m), f"({nb}, {m})")
            keep = batched_nms_keep(
                xyxy,
                s,
                cid,
                cnt,
                iou_threshold=1.0 if iou_threshold is None else iou_threshold,
                score_threshold=-np.inf if score_threshold is None else score_threshold,
                max_detections=-1 if max_detections is None else max_detections,
                num_classes=num_classes,
            )
        offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
        return cls(offsets, xyxy[keep], cid[keep].astype(np.int32), None if s is None else s[keep])


@dataclass
class SegmentationMasks:
    """Class maps of a batch of images.

    Attributes:
        masks: ``(B, H, W)`` uint8 class ids.
        num_classes: classes the ids must lie in, ``[0, num_classes)``; at most 256.
    """

    masks: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        m = np.asarray(self.masks)
        if m.ndim != 3:
            raise ValueError(f"masks must have shape (B, H, W), got {tuple(m.shape)}")
        if not 1 <= self.num_classes <= 256:
            raise ValueError(
                f"num_classes must be in [1, 256] for uint8 masks, got {self.num_classes}"
            )
        from fastevalcb.kernels._common import check_class_ids

        check_class_ids(m, self.num_classes, "masks")
        self.masks = np.ascontiguousarray(m, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.masks)

    @classmethod
    def from_logits(cls, logits: npt.ArrayLike) -> SegmentationMasks:
        """Argmax of ``(B, H, W, C)`` logits, ``C <= 256``."""
        from fastevalcb.kernels import logits_argmax

        masks = logits_argmax(logits)
        return cls(masks, int(np.shape(logits)[-1]))


@dataclass
class ClassPredictions:
    """Classification results of a batch.

    Attributes:
        pred: ``(B,)`` int32 predicted class.
        confidence: ``(B,)`` float32 probability of ``pred``.
        topk_ids: ``(B, k)`` int32, best first.
        topk_scores: ``(B, k)`` float32.
        correct: ``(B,)`` bool, or None without labels.
    """

    pred: np.ndarray
    confidence: np.ndarray
    topk_ids: np.ndarray
    topk_scores: np.ndarray
    correct: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.pred = _check(self.pred, "pred", np.int32, (None,), "(B,)")
        n = len(self.pred)
        self.confidence = _check(self.confidence, "confidence", np.float32, (n,), f"({n},)")
        self.topk_ids = _check(self.topk_ids, "topk_ids", np.int32, (n, None), f"({n}, k)")
        k = self.topk_ids.shape[1]
        self.topk_scores = _check(
            self.topk_scores, "topk_scores", np.float32, (n, k), f"({n}, {k})"
        )
        if self.correct is not None:
            self.correct = _check(self.correct, "correct", np.bool_, (n,), f"({n},)")

    def __len__(self) -> int:
        return len(self.pred)

    @classmethod
    def from_logits(
        cls,
        logits: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        k: int = 1,
        from_logits: bool = True,
    ) -> ClassPredictions:
        """Summarise ``(B, C)`` logits (or probabilities) with optional ``(B,)`` labels."""
        from fastevalcb.kernels import classification_summary

        pred, conf, ids, vals, correct = classification_summary(logits, labels, k, from_logits)
        return cls(pred, conf, ids, vals, correct if labels is not None else None)
