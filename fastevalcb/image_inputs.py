"""Which of a model's inputs is the image the tables show.

A multi-input model (``x`` a dict, tuple or list) has one image input, found by shape
(``(N, H, W, C)`` with ``C`` in 1, 3, 4, or grey ``(N, H, W)``) or named by ``image_key``;
:func:`image_input` returns its path and :func:`input_at` reads it from a batch. Works on
batches (arrays, tensors) and on specs (:class:`~fastevalcb.sources.SampleSpec`,
``tf.TensorSpec``, ``KerasTensor``) alike, so the predictor can resolve it before the first
batch.
"""

from __future__ import annotations

from typing import Any

from fastevalcb.errors import FastEvalInputError
from fastevalcb.sources import SampleSpec

IMAGE_CHANNELS = (1, 3, 4)
Path = tuple[Any, ...]  # dict keys / indices from the structure's root to a leaf


def _input_paths(structure: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    """``[(path, leaf), ...]`` for every leaf; a path is a tuple of dict keys / indices."""
    if isinstance(structure, dict):
        return [p for key in sorted(structure) for p in _input_paths(structure[key], path + (key,))]
    if isinstance(structure, (list, tuple)):
        return [p for i, item in enumerate(structure) for p in _input_paths(item, path + (i,))]
    return [(path, structure)]


def _path_name(path: Path) -> str:
    return "x" + "".join(f"[{key!r}]" for key in path)


def _sample_shape(leaf: Any) -> tuple[int | None, ...]:
    """Per-sample shape of an input leaf: a :class:`SampleSpec`'s own shape, else the
    leaf's shape (array, tensor, ``TensorSpec``, ``KerasTensor``) minus its batch dim."""
    if isinstance(leaf, SampleSpec):
        return tuple(leaf.shape)
    shape = getattr(leaf, "shape", None)
    if shape is None:
        return ()
    dims = tuple(None if d is None else int(d) for d in tuple(shape))
    return dims[1:]


def _is_string(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    kind = getattr(dtype, "kind", None)
    return dtype is not None and ("str" in str(dtype) or (kind is not None and kind in "USO"))


def is_image_shape(sample_shape: tuple[int | None, ...]) -> bool:
    """Whether a per-sample shape looks like one image (channels last).

    ``(H, W, C)`` with ``C`` in 1, 3, 4, or grey ``(H, W)``; ``H`` and ``W`` must be at
    least 2 (``None``, i.e. variable, counts as an image size).
    """
    if len(sample_shape) not in (2, 3):
        return False
    if any(d is not None and d < 2 for d in sample_shape[:2]):
        return False
    return len(sample_shape) == 2 or sample_shape[2] in IMAGE_CHANNELS


def _format_inputs(paths: list[tuple[Path, Any]]) -> str:
    return ", ".join(
        f"{_path_name(p)} (N, {', '.join(str(d) for d in _sample_shape(leaf))})".replace(
            "(N, )", "(N,)"
        )
        for p, leaf in paths
    )


def image_input(x_or_spec: Any, image_key: Any = None) -> Path:
    """Find the image among a model's inputs: the one a table displays.

    Args:
        x_or_spec: the inputs ``x`` of a batch (numpy arrays or tensors with a leading
            batch dim, possibly a dict / tuple / list of them), or a structure of
            :class:`SampleSpec` (per-sample shapes, as :meth:`Source.x_spec` returns),
            ``tf.TensorSpec`` or ``KerasTensor`` (batched shapes).
        image_key: names the image input: a dict key (``"image"``), a tuple / list
            index (``0``), or a full path for nested inputs (``("inputs", "image")``).
            Default ``None``: the only image-shaped input, i.e. the only leaf whose
            per-sample shape is ``(H, W, C)`` with ``C`` in 1, 3, 4 or ``(H, W)``, with
            ``H, W >= 2`` (see :func:`is_image_shape`).

    Returns:
        The image input's path: a tuple of dict keys / indices, ``()`` when ``x`` is a
        single array. :func:`input_at` reads the input at a path.

    Raises:
        FastEvalInputError: ``image_key`` names no input of ``x`` or a non-image one;
            or no ``image_key`` and no input / more than one input is image-shaped.
            The message names every input with its shape.
    """
    paths = [(p, leaf) for p, leaf in _input_paths(x_or_spec) if not _is_string(leaf)]
    listing = _format_inputs(_input_paths(x_or_spec))
    if image_key is not None:
        want = tuple(image_key) if isinstance(image_key, tuple) else (image_key,)
        found = [(p, leaf) for p, leaf in paths if p == want]
        if not found:
            raise FastEvalInputError(
                f"image_key={image_key!r} names no input of x; x has {listing}. Pass "
                "image_key= as one of those keys / indices"
            )
        path, leaf = found[0]
        if not is_image_shape(_sample_shape(leaf)):
            raise FastEvalInputError(
                f"image_key={image_key!r} names {_path_name(path)} of shape "
                f"(N, {', '.join(str(d) for d in _sample_shape(leaf))}), which is not an "
                "image: expected (N, H, W, C) with C in 1, 3, 4, or grey (N, H, W)"
            )
        return path
    images = [(p, leaf) for p, leaf in paths if is_image_shape(_sample_shape(leaf))]
    if len(images) == 1:
        return images[0][0]
    if not images:
        raise FastEvalInputError(
            "no input of x looks like an image ((N, H, W, C) with C in 1, 3, 4, or grey "
            f"(N, H, W)): x has {listing}. Pass image_key= naming the image input"
        )
    raise FastEvalInputError(
        f"x has {len(images)} image-shaped inputs, cannot tell which one to show: "
        f"{_format_inputs(images)}. Pass image_key= naming the image input "
        f"(one of {', '.join(repr(p[-1] if len(p) == 1 else p) for p, _ in images)})"
    )


def input_at(x: Any, path: Path) -> Any:
    """The input of ``x`` at ``path`` (from :func:`image_input`): ``x[k0][k1]...``."""
    for key in path:
        x = x[key]
    return x


def image_hw(x: Any, path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of the batched image input at ``path`` (``None`` if not static)."""
    shape = tuple(input_at(x, path).shape)
    if len(shape) < 3 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])
