"""Every wandb internal fastevalcb relies on, in one module, each checked before it is used.

fastevalcb writes what wandb would write, faster, by reaching past wandb's public API:
media files staged straight into an artifact, manifest entries kept as rows of arrays,
table and media JSON written from arrays. Each such *fast path* is named here
(:data:`FAST_PATHS`) and is used only when

* ``FASTEVALCB_SAFE`` is not set to a true value (``1``, ``true``, ``yes``), and
* the internals it needs exist in the installed wandb, and
* its one-time check in this process (:func:`fast`) found that it writes exactly what
  wandb's own public API writes for a tiny artifact of the same kind.

Otherwise the callers take wandb's public path (``Artifact.add_file``, ``add_reference``,
``Artifact.add(wandb.Table)``, wandb's own manifest digest and record), and one
:class:`~fastevalcb.errors.FastEvalWarning` per process and path names the wandb version and
the path. Nothing here changes a wandb class, module or the interpreter: the manifest fast
path is a subclass given to *our* artifacts' manifests only (:func:`scope_manifest`).

Every other module of fastevalcb reads and writes wandb objects through the functions
below; ``tests/tables/test_wandb_boundary.py`` fails when one touches a private wandb
name or imports ``wandb.sdk`` itself. Each function's docstring names the wandb source
file and attribute it relies on.
"""

from __future__ import annotations

import binascii
import errno
import hashlib
import importlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import wandb
from wandb.data_types import BoundingBoxes2D, Classes, ImageMask, Media, WBValue

# ---------------------------------------------------------------------------------
# Fast paths: which are on, checked once per process
# ---------------------------------------------------------------------------------
FAST_PATHS = {
    "manifest": "our artifacts' manifests hash their entry rows in bulk and go to wandb-core "
    "as wandb's manifest file above 1,000 entries (a manifest subclass)",
    "entries": "media files staged straight into an artifact, and manifest entries and "
    "data-table references kept as rows (wandb: Artifact.add_file / "
    "add_reference, one entry object per file)",
    "tables": "table and media JSON written column by column from arrays (wandb: "
    "Artifact.add(wandb.Table), wandb.Image.to_json per cell)",
    "links": "a pred table's column of a logged data table's row indices (get_index()) "
    "recorded as a reference entry to that table's file in the data artifact (wandb: "
    "Artifact.add of the linked table, which copies it once the data artifact left "
    "wandb's instance cache)",
}

_TRUE = ("1", "true", "yes", "on")


def safe_mode() -> bool:
    """``FASTEVALCB_SAFE`` is set: every fast path is off, wandb's public API writes all."""
    return os.environ.get("FASTEVALCB_SAFE", "").strip().lower() in _TRUE


_lock = threading.RLock()
_state: dict[str, bool] = {}  # path -> checked result, this process
_checks: dict[str, Callable[[], None]] = {}  # path -> check (raises when it differs)
_checking = threading.local()  # the paths this thread is checking now


def register_check(path: str, check: Callable[[], None]) -> None:
    """Set the one-time check of fast path ``path``: a function that writes a tiny artifact
    both ways and raises (any exception) when fastevalcb's result differs from wandb's."""
    if path not in FAST_PATHS:
        raise ValueError(f"unknown fast path {path!r}; known: {sorted(FAST_PATHS)}")
    _checks[path] = check


# A check that writes and meets one of these has learnt nothing about wandb.
_UNCHECKABLE_NOW = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR})


def fast(path: str) -> bool:
    """Whether fast path ``path`` may be used: not in safe mode, and its check passed.

    The check runs the first time a process asks (a few ms); a failing or missing check
    turns the path off for the process with one warning. A check stopped by a full disk
    decides nothing: the public path is used this time and the check runs again next time.
    """
    if safe_mode():
        return False
    found = _state.get(path)
    if found is not None:
        return found
    checking = _checking.__dict__.setdefault("paths", set())
    if path in checking:
        return True  # inside its own check: the fast path is what is being compared
    with _lock:
        if path in _state:
            return _state[path]
        check = _checks.get(path)
        checking.add(path)
        try:
            if check is None:
                raise RuntimeError("no check is registered for it")
            check()
        except OSError as exc:
            if exc.errno not in _UNCHECKABLE_NOW:
                _state[path] = False
                _warn_fallback(path, exc)
            return False  # a full disk is no verdict: the public path now, a check later
        except Exception as exc:  # noqa: BLE001 - any difference means: use wandb's path
            _state[path] = False
            _warn_fallback(path, exc)
        else:
            _state[path] = True
        finally:
            checking.discard(path)
        return _state[path]


def disable(path: str, why: BaseException | str) -> None:
    """Turn fast path ``path`` off for this process (an internal went missing in use)."""
    with _lock:
        if _state.get(path) is not False:
            _state[path] = False
            _warn_fallback(path, why)


def reset_checks() -> None:
    """Forget every check's result (tests: a monkeypatched wandb is checked afresh)."""
    with _lock:
        _state.clear()


def _warn_fallback(path: str, why: BaseException | str) -> None:
    from fastevalcb.errors import FastEvalWarning

    cause = f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else why
    warnings.warn(
        f"fastevalcb: wandb {wandb.__version__} does not match fastevalcb's fast path "
        f"{path!r} ({FAST_PATHS[path]}): {cause}. fastevalcb uses wandb's public API for "
        "it in this process instead: the same records, written more slowly.",
        FastEvalWarning,
        stacklevel=3,
    )


def _optional(module: str, name: str) -> Any:
    """``module.name`` of the installed wandb, or None when this release has no such name."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


# wandb-internal names, looked up once; None where this wandb release has none.
ArtifactManifestEntry = _optional(
    "wandb.sdk.artifacts.artifact_manifest_entry", "ArtifactManifestEntry"
)
LogicalPath = _optional("wandb.sdk.lib.paths", "LogicalPath")
_get_staging_dir = _optional("wandb.sdk.artifacts.staging", "get_staging_dir")
_dtypes = _optional("wandb.sdk.data_types", "_dtypes")
_json_helper = _optional("wandb.sdk.data_types.utils", "_json_helper")
_MEDIA_TMP = _optional("wandb.sdk.data_types._private", "MEDIA_TMP")
_json_util = _optional("wandb.sdk.lib", "json_util")
_JSONEncoderUncompressed = _optional("wandb.util", "JSONEncoderUncompressed")
_interface = _optional("wandb.sdk.interface", "interface")
_telemetry = _optional("wandb.sdk.lib", "telemetry")
_xxh128 = _optional("wandb.sdk.lib.hashutil", "_xxh128")
_ForeignIndexType = _optional("wandb.sdk.data_types.table", "_ForeignIndexType")
_TableLinkMixin = _optional("wandb.sdk.data_types.table", "_TableLinkMixin")


# ---------------------------------------------------------------------------------
# Media objects: reading them, and building them from files we already wrote
# ---------------------------------------------------------------------------------
class FileInfo(NamedTuple):
    """A media object's file: what ``Media._set_file`` records."""

    path: str
    sha256: str  # hex
    size: int  # bytes


BOXES_SUFFIX = "." + BoundingBoxes2D.type_name() + ".json"  # ".boxes2D.json"
MASK_SUFFIX = "." + ImageMask.type_name() + ".png"  # ".mask.png"
IMAGE_SUFFIX = ".png"
IMAGE_DIR = wandb.Image.get_media_subdir()  # "media/images": where artifacts keep images
MASK_DIR = ImageMask.get_media_subdir()  # "media/images/mask"
TABLE_TYPE = getattr(wandb.Table, "_log_type", "table")  # Table._log_type: its JSON "_type"
MASK_TYPE = getattr(ImageMask, "_log_type", "mask")  # ImageMask._log_type


def media_tmp_dir() -> str:
    """wandb's media staging directory, where ``wandb.Image`` writes its temp files
    (``wandb/sdk/data_types/_private.py``: ``MEDIA_TMP``); a folder of ours without it."""
    if _MEDIA_TMP is not None:
        return _MEDIA_TMP.name
    global _OWN_TMP
    if _OWN_TMP is None:
        import tempfile

        _OWN_TMP = tempfile.mkdtemp(prefix="fastevalcb-media-")
    return _OWN_TMP


_OWN_TMP: str | None = None


def payload_json(payload: dict) -> bytes:
    """The bytes ``JSONMetadata.__init__`` writes for ``payload`` (``wandb/sdk/data_types/
    base_types/json_metadata.py``: ``util.json_dump_uncompressed``, through
    ``wandb/sdk/lib/json_util.py``'s ``dumps`` and ``wandb.util.JSONEncoderUncompressed``)."""
    if _json_util is None or _JSONEncoderUncompressed is None:
        import json

        return json.dumps(payload).encode("utf-8")
    return _json_util.dumps(payload, cls=_JSONEncoderUncompressed).encode("utf-8")


def media_file(media: Media) -> FileInfo | None:
    """``(path, sha256, size)`` of a file-backed media object, or None (``Media._path``,
    ``_sha256``, ``_size`` in ``wandb/sdk/data_types/base_types/media.py``)."""
    if not media.file_is_set():
        return None
    return FileInfo(media._path, media._sha256, media._size)


def media_path(media: Media) -> str | None:
    """``Media._path``: the local file of a media object."""
    return getattr(media, "_path", None)


def image_layers(image: wandb.Image) -> tuple[dict, dict]:
    """The ``(boxes, masks)`` layers of an image, keyed by layer name (``Image._boxes``,
    ``Image._masks`` in ``wandb/sdk/data_types/image.py``)."""
    return dict(image._boxes or {}), dict(image._masks or {})


def image_size(image: wandb.Image) -> tuple[int, int]:
    """``(width, height)`` of an image (``Image._width``, ``_height``)."""
    return image._width, image._height


def image_classes(image: wandb.Image) -> Classes | None:
    """The image's class set (``Image._classes``), or None."""
    return image._classes


def image_caption(image: wandb.Image) -> str | None:
    """``Image._caption``."""
    return image._caption


def image_grouping(image: wandb.Image) -> Any:
    """``Image._grouping`` (a grouped image serializes otherwise)."""
    return image._grouping


def is_plain_image(value: Any) -> bool:
    """A ``wandb.Image`` without boxes, masks or class set (all such share one type)."""
    return isinstance(value, wandb.Image) and not (value._boxes or value._masks or value._classes)


def box_layer(boxes: BoundingBoxes2D) -> tuple[Any, dict]:
    """``(box_data, class_labels)`` of a box layer (``BoundingBoxes2D._val``,
    ``_class_labels`` in ``wandb/sdk/data_types/helper_types/bounding_boxes_2d.py``)."""
    return boxes._val, boxes._class_labels


def mask_labels(mask: ImageMask) -> dict:
    """A mask layer's ``class_labels`` (``ImageMask._val``)."""
    return mask._val.get("class_labels")


def class_set(classes: Classes) -> list[dict]:
    """The ``[{"id", "name"}, ...]`` of a ``Classes`` (``Classes._class_set``)."""
    return classes._class_set


def release_pixels(cell: Any) -> None:
    """Drop the pixel arrays a logged image keeps (its media files hold them now):
    ``Image._free_ram`` and a mask's ``_val["mask_data"]``."""
    if not isinstance(cell, wandb.Image):
        return
    free = getattr(cell, "_free_ram", None)
    if free is not None:
        free()
    for mask in (getattr(cell, "_masks", None) or {}).values():
        val = getattr(mask, "_val", None)
        if isinstance(val, dict) and "mask_data" in val:
            mask._val = {k: v for k, v in val.items() if k != "mask_data"}


# ``wandb.Image(array, boxes=..., masks=...)`` does all its work eagerly and serially in the
# constructor (PIL PNG encode holding the GIL, per-box validation, a JSON temp file, a PNG
# per mask). The builders below make the *same* objects (same classes, same attributes,
# same temp-file layout) from files ``fastevalcb.media`` wrote and hashed on worker
# threads, so wandb binds, copies and serializes them as if it had made them itself.
# Attribute names follow ``Image._initialize_from_data`` / ``_set_initialization_meta``,
# ``JSONMetadata``, ``ImageMask.__init__`` and ``Media._set_file``; the "tables" check
# compares their JSON with stock-built objects'.
def _set_file(media: Media, file: FileInfo, extension: str | None) -> None:
    """``Media._set_file(path, is_tmp=True, extension)`` with the hash already computed."""
    media._path, media._sha256, media._size = file
    media._is_tmp = True
    media._extension = extension


def new_boxes2d(
    key: str, box_data: list, class_labels: dict, file: FileInfo | None
) -> BoundingBoxes2D:
    """A ``BoundingBoxes2D`` whose JSON ``file`` was already written.

    The file must hold :func:`payload_json` of ``{"box_data": ..., "class_labels": ...}``.
    ``file=None``: no file, for images that only go into artifact tables (which inline
    ``box_data``; ``wandb.log`` needs the file).
    """
    boxes = BoundingBoxes2D.__new__(BoundingBoxes2D)
    Media.__init__(boxes)
    boxes._val = box_data
    if file is not None:
        _set_file(boxes, file, BOXES_SUFFIX)
    boxes._key = key
    boxes._class_labels = class_labels
    return boxes


def new_image_mask(
    key: str, mask: Any, class_labels: dict, file: FileInfo, keep_data: bool = True
) -> ImageMask:
    """An ``ImageMask`` whose PNG ``file`` (mode L, pixels = ``mask``) was already written.

    ``keep_data=False`` does not keep the mask array (wandb only reads it in
    ``ImageMask.__init__``; the file holds the pixels), so memory stays bounded.
    """
    m = ImageMask.__new__(ImageMask)
    Media.__init__(m)
    m._val = (
        {"mask_data": mask, "class_labels": class_labels}
        if keep_data
        else {"class_labels": class_labels}
    )
    m._key = key
    _set_file(m, file, MASK_SUFFIX)
    return m


def new_image(
    file: FileInfo,
    width: int,
    height: int,
    boxes: dict[str, BoundingBoxes2D] | None = None,
    masks: dict[str, ImageMask] | None = None,
    caption: str | None = None,
    classes_cache: dict | None = None,
) -> wandb.Image:
    """A ``wandb.Image`` backed by the PNG ``file`` we already wrote: what
    ``wandb.Image(pixels, caption=caption, boxes=boxes, masks=masks)`` makes.

    ``classes_cache``: images of one table batch share their ``Classes`` object through it,
    so adding them to the artifact adds the class set once, not once per image.
    """
    img = wandb.Image.__new__(wandb.Image)
    Media.__init__(img, caption=caption)
    img._grouping = None
    img._width = width
    img._height = height
    img._image = None
    img._classes = None
    img._boxes = boxes or None
    img._masks = masks or None
    img._file_type = None
    img.format = "png"
    _set_file(img, file, None)
    total: dict = {}
    for b in (boxes or {}).values():
        total.update(b._class_labels)
    for m in (masks or {}).values():
        total.update(m._val["class_labels"])
    if total:
        key = tuple(total.items())
        classes = None if classes_cache is None else classes_cache.get(key)
        if classes is None:
            classes = Classes([{"id": k, "name": v} for k, v in total.items()])
            if classes_cache is not None:
                classes_cache[key] = classes
        img._classes = classes
    return img


def image_file_json(image: wandb.Image, entry_path: str) -> dict[str, Any]:
    """What ``Image.to_json(artifact)`` writes for the image's own file once it is the
    artifact's entry ``entry_path`` (its layers and class set aside)."""
    out = {
        "path": entry_path,
        "sha256": image._sha256,
        "_type": "image-file",
        "format": image.format,
        "width": image._width,
        "height": image._height,
    }
    if image._caption is not None:
        out["caption"] = image._caption
    return out


def json_helper(value: Any, artifact: wandb.Artifact) -> Any:
    """wandb's own JSON of a table cell (``wandb/sdk/data_types/utils.py``:
    ``_json_helper``, what ``Table.to_json`` calls per cell)."""
    return _json_helper(value, artifact)


# ---------------------------------------------------------------------------------
# Table column types (``wandb/sdk/data_types/_dtypes.py``)
# ---------------------------------------------------------------------------------
def column_type_map(table: wandb.Table) -> dict[str, Any]:
    """The table's column types by name (``Table._column_types.params["type_map"]``)."""
    return table._column_types.params["type_map"]


def share_column_types(table: wandb.Table, source: wandb.Table) -> None:
    """``table`` takes ``source``'s column types (``Table._column_types`` in
    ``wandb/sdk/data_types/table.py``), shared, not copied; nothing if ``source`` has none."""
    column_types = getattr(source, "_column_types", None)
    if column_types is not None:
        table._column_types = column_types


def merge_type(col_type: Any, value: Any, allow_mixed: bool) -> Any | None:
    """``col_type`` widened by ``value``'s type as ``Table`` does (``Type.assign``); a
    union when mixed types are allowed; None when they don't mix."""
    merged = col_type.assign(value)
    if isinstance(merged, _dtypes.InvalidType):
        if not allow_mixed:
            return None
        merged = _dtypes.UnionType([col_type, _dtypes.TypeRegistry.type_of(value)])
    return merged


def is_table_link(value: Any) -> bool:
    """Whether ``value`` is a link into a table: a ``Table.get_index()`` /
    ``iterrows()`` / ``index_ref()`` value (``_TableIndex``) or a key (``_TableKey``), both
    ``_TableLinkMixin`` (``wandb/sdk/data_types/table.py``)."""
    return _TableLinkMixin is not None and isinstance(value, _TableLinkMixin)


def link_type(col_type: Any, link: Any) -> Any | None:
    """The type ``Table.add_data`` casts a column to when a row puts ``link`` in it: the
    link's own type (``foreignIndex`` of its table for a ``_TableIndex``), not optional
    (``Table.cast(column, type_of(link), optional=False)``), provided what the column held
    so far (``col_type``: numbers, before the first link) fits it; None when it does not.

    A union's ``none`` option is the table's starting type (every column is optional
    until typed), not a value seen, and is not held against the cast.
    """
    cast = _dtypes.TypeRegistry.type_of(link)
    options = (
        col_type.params["allowed_types"] if isinstance(col_type, _dtypes.UnionType) else [col_type]
    )
    for option in options:
        if isinstance(option, (_dtypes.NoneType, _dtypes.UnknownType)):
            continue
        if isinstance(cast.assign_type(option), _dtypes.InvalidType):
            return None
    return cast


def linked_tables(type_map: dict[str, Any]) -> list[wandb.Table]:
    """The tables that columns of row indices link to: the ``table`` of every
    ``foreignIndex`` column type, alone or in a union (``_ForeignIndexType.params``), once
    each. Serializing such a type adds its table to the artifact (``Artifact.add``)."""
    if _ForeignIndexType is None:
        return []
    found: dict[int, wandb.Table] = {}
    for col_type in type_map.values():
        options = (
            col_type.params["allowed_types"]
            if isinstance(col_type, _dtypes.UnionType)
            else [col_type]
        )
        for option in options:
            if isinstance(option, _ForeignIndexType):
                table = option.params["table"]
                found.setdefault(id(table), table)
    return list(found.values())


def column_types_json(type_map: dict[str, Any], artifact: wandb.Artifact) -> dict[str, Any]:
    """The ``column_types`` JSON of a table (``TypedDictType(type_map).to_json``)."""
    return _dtypes.TypedDictType(type_map).to_json(artifact)


# ---------------------------------------------------------------------------------
# Artifacts: staging, entries, references
# ---------------------------------------------------------------------------------
def staging_dir() -> str:
    """wandb's artifact staging directory (``wandb/sdk/artifacts/staging.py``:
    ``get_staging_dir``), where ``add_file`` copies files before they are logged."""
    return _get_staging_dir()


def client_id(artifact: wandb.Artifact) -> str:
    """An artifact's client id (``Artifact._client_id``): what ``wandb-client-artifact://``
    references name before the artifact has a server id (offline, always)."""
    return artifact._client_id


def added_local_paths(artifact: wandb.Artifact) -> dict:
    """``Artifact._added_local_paths``: local file -> its entry (``get_added_local_path_name``
    reads it)."""
    return artifact._added_local_paths


def set_added_local_paths(artifact: wandb.Artifact, paths: dict) -> None:
    """Replace ``Artifact._added_local_paths`` (by a dict that also resolves row files)."""
    artifact._added_local_paths = paths


def replace_entries(artifact: wandb.Artifact, entries: dict) -> None:
    """Replace the artifact's ``manifest.entries`` dict, past pydantic's field validation
    (``wandb/sdk/artifacts/artifact_manifest.py``: ``ArtifactManifest.entries``)."""
    object.__setattr__(artifact.manifest, "entries", entries)


def wandb_adds(artifact: wandb.Artifact, obj: Any, path: str) -> bool:
    """Whether ``Artifact.add(obj)`` at ``path`` does something other than add a new file:
    ``obj`` is added already (``Artifact._added_objs``), is logged in another artifact
    (``WBValue._get_artifact_entry_ref_url``), or ``path`` is taken."""
    return (
        id(obj) in artifact._added_objs
        or obj._get_artifact_entry_ref_url() is not None
        or artifact.manifest.get_entry_by_path(path) is not None
    )


def add_staged(artifact: wandb.Artifact, obj: Any, path: str, staged: str, digest: str) -> Any:
    """What ``Artifact.add(obj, path)`` records for ``obj``'s file ``staged``, already in
    wandb's staging dir with entry digest ``digest``: ``Artifact._add_local_file`` of it as
    it is ("immutable", ``skip_cache`` False), ``obj`` kept in ``_added_objs`` and pointed at
    its entry (``WBValue._set_artifact_target``)."""
    entry = artifact._add_local_file(
        LogicalPath(path), staged, digest=digest, skip_cache=False, policy="immutable"
    )
    artifact._added_objs[id(obj)] = (obj, entry)
    if obj._artifact_target is None:
        obj._set_artifact_target(artifact, entry.path)
    return entry


def added_entry(artifact: wandb.Artifact, obj: Any) -> Any | None:
    """The entry ``Artifact.add`` made for ``obj`` in ``artifact`` (``Artifact._added_objs``),
    or None."""
    found = artifact._added_objs.get(id(obj))
    return None if found is None else found[1]


def set_added_entry(artifact: wandb.Artifact, obj: Any, entry: Any) -> None:
    """Make ``entry`` (already in the manifest) what ``Artifact.add(obj, ...)`` returns in
    ``artifact``: ``Artifact.add`` looks an object up in ``Artifact._added_objs`` before it
    serializes it, as for an object it added itself (``obj`` is kept there, as wandb keeps
    it, until :func:`clear_added_objs`). ``obj`` is not pointed at the entry
    (``_artifact_target``): another artifact adding it does not reference this one."""
    artifact._added_objs[id(obj)] = (obj, entry)


def clear_added_objs(artifact: wandb.Artifact, release_targets: bool = False) -> None:
    """Drop the objects a logged artifact keeps (``Artifact._added_objs``: its table and
    media objects).

    ``release_targets``: each of them that ``Artifact.add`` pointed at ``artifact``
    (``WBValue._artifact_target``) points nowhere again. Added to another artifact later,
    wandb would store it as a ``wandb-client-artifact://`` reference to ``artifact``, which
    ``add_reference`` resolves through wandb's instance cache and refuses (``TypeError``)
    once ``artifact`` left it (:func:`uncache`): a data table that every pred version's
    index column links to, copied into the first by wandb's own path, would fail every
    later version. Released, each version writes its own copy.
    """
    if release_targets:
        for obj, _entry in artifact._added_objs.values():
            target = getattr(obj, "_artifact_target", None)
            if target is not None and target.artifact is artifact:
                obj._artifact_target = None
    artifact._added_objs.clear()


def release_table(table: wandb.Table) -> None:
    """Break the table <-> artifact cycle once the artifact is logged
    (``WBValue._artifact_target``): left alone, a logged version's table, its media objects
    and the artifact's manifest wait for a full garbage collection."""
    if hasattr(table, "_artifact_target"):
        table._artifact_target = None


def logged_table_artifact(value: Any) -> wandb.Artifact | None:
    """The artifact ``run.log`` wrote a table into (``WBValue._artifact_target``; wandb's
    ``run_table`` artifact of ``data_types/utils.py: _log_table_artifact``): ``value`` is a
    ``wandb.Table`` or a chart holding one (``CustomChart.table``); None for anything else."""
    table = getattr(value, "table", value)
    if not isinstance(table, wandb.Table):
        return None
    target = getattr(table, "_artifact_target", None)
    return getattr(target, "artifact", None)


def keeps_own_files(artifact: wandb.Artifact) -> bool:
    """Whether the artifact keeps files in its own temp dir (``Artifact._tmp_dir``, wandb <
    0.21's ``new_file``), deleted with the artifact: it must stay alive until upload."""
    tmp = getattr(artifact, "_tmp_dir", None)
    return tmp is not None and any(
        str(entry.local_path or "").startswith(tmp.name)
        for entry in artifact.manifest.entries.values()
    )


def cleanup_tmp_dir(artifact: wandb.Artifact) -> None:
    """Remove the artifact's own temp dir now (``Artifact._tmp_dir``, a
    ``TemporaryDirectory`` that ``new_file`` writes to; since wandb 0.21 each file is copied
    into staging when added), not when the collector finds it."""
    tmp = getattr(artifact, "_tmp_dir", None)
    if tmp is not None:
        tmp.cleanup()


def artifact_cache_by_client_id() -> dict:
    """wandb's capped cache of ``Artifact`` objects by client id
    (``wandb/sdk/artifacts/artifact_instance_cache.py``:
    ``artifact_instance_cache_by_client_id`` since wandb 0.21; before, one
    ``artifact_instance_cache`` keyed by client id and server id alike)."""
    module = importlib.import_module("wandb.sdk.artifacts.artifact_instance_cache")
    cache = getattr(module, "artifact_instance_cache_by_client_id", None)
    return cache if cache is not None else module.artifact_instance_cache  # empty is falsy


def uncache(artifact: wandb.Artifact) -> None:
    """Drop a logged artifact from wandb's instance cache: each cached artifact holds an
    entry per file and its table; wandb needs it only to resolve client-id references it
    adds itself through ``add_reference``."""
    cache = artifact_cache_by_client_id()
    cid = artifact._client_id
    if cache.get(cid) is artifact:
        del cache[cid]


def file_hasher(artifact: wandb.Artifact) -> Any:
    """A new hashlib-like object for the digest ``add_file`` computes for a file of
    ``artifact``: md5, or xxh128 where the artifact uses it (``Artifact.digest_algorithm``,
    ``wandb/sdk/lib/hashutil.py``)."""
    if "XXH128" in str(getattr(artifact, "digest_algorithm", "")):
        return _xxh128()
    return hashlib.md5(usedforsecurity=False)


def manifest_hasher(manifest: Any) -> Any:
    """The hasher ``ArtifactManifestV1.digest`` starts from: its header fed to md5, or to
    xxh128 where the manifest uses it (``_DIGEST_HEADER``, ``digest_algorithm``)."""
    header = getattr(manifest, "_DIGEST_HEADER", b"wandb-artifact-manifest-v1\n")
    if "XXH128" in str(getattr(manifest, "digest_algorithm", "")):
        return _xxh128(header)
    return hashlib.md5(header, usedforsecurity=False)


def b64_digest(hasher: Any) -> str:
    """The entry digest of what ``hasher`` was fed (base64, as wandb writes it)."""
    return binascii.b2a_base64(hasher.digest(), newline=False).decode()


def new_entry(
    path: str, digest: str, size: int, local_path: str | None = None, ref: str | None = None
) -> Any:
    """The manifest entry ``Artifact._add_local_file`` makes for a staged local file, or
    ``add_reference`` for a reference (``ref``)
    (``wandb/sdk/artifacts/artifact_manifest_entry.py``: ``ArtifactManifestEntry``).

    ``path`` must already be a normal POSIX entry name (``media/images/<hex>.png``), as
    every name we make is. Built as pydantic's ``model_construct`` builds it (no
    validation, no ``LogicalPath`` pathlib round trip), from values of the types the
    validators would produce; the "entries" check compares it with a validated one.
    """
    fields = {
        "path": str.__new__(LogicalPath, path),
        "digest": digest,
        "ref": ref,
        "birth_artifact_id": None,
        "size": size,
        "extra": {},
        "local_path": local_path,
        "skip_cache": False,
    }
    if _ENTRY_TEMPLATE is None:  # wandb releases before pydantic entries
        return ArtifactManifestEntry(**fields)
    entry = object.__new__(ArtifactManifestEntry)
    object.__setattr__(entry, "__dict__", fields)
    for name, value in _ENTRY_TEMPLATE.items():
        # Every field is set, so pydantic never adds to the fields-set: one set serves all
        # entries. Private attributes are per entry.
        object.__setattr__(entry, name, value.copy() if isinstance(value, dict) else value)
    return entry


def validated_entry(
    path: str, digest: str, size: int, local_path: str | None = None, ref: str | None = None
) -> Any:
    """The same entry through wandb's public constructor (validated)."""
    return ArtifactManifestEntry(
        path=path, digest=digest, size=size, local_path=local_path, ref=ref
    )


def _entry_template() -> dict[str, Any] | None:
    """The pydantic bookkeeping ``model_construct`` gives a new entry."""
    construct = getattr(ArtifactManifestEntry, "model_construct", None)
    if construct is None or LogicalPath is None:
        return None
    entry = construct(
        path=LogicalPath("a"),
        digest="",
        ref=None,
        birth_artifact_id=None,
        size=0,
        extra={},
        local_path=None,
        skip_cache=False,
    )
    return {
        name: getattr(entry, name)
        for name in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
    }


_ENTRY_TEMPLATE = _entry_template() if ArtifactManifestEntry is not None else None


# ---------------------------------------------------------------------------------
# Our manifests: a subclass on our artifacts only
# ---------------------------------------------------------------------------------
MANIFEST_FILE_ENTRIES = 1_000
"""Our manifests of more entries go to wandb-core as wandb's own manifest file (which wandb
uses above ``MANIFEST_FILE_SIZE_THRESHOLD`` entries): the protobuf record is built whole,
a message per entry, and is most of a large version's transient memory."""

_manifest_classes: dict[type, type] = {}


def scope_manifest(
    artifact: wandb.Artifact,
    digest_lines: Callable[[], Iterator[str]],
) -> None:
    """Make ``artifact``'s manifest (ours alone) hash ``digest_lines()`` in bulk and report
    its length as above wandb's file threshold when it has more than
    :data:`MANIFEST_FILE_ENTRIES` entries.

    wandb-core reads the manifest either way; only how the Python side hands it over
    changes: ``InterfaceBase._make_artifact_manifest`` (``wandb/sdk/interface/interface.py``)
    writes the manifest file when ``len(manifest) > MANIFEST_FILE_SIZE_THRESHOLD``, with its
    own writer, from the entries. The subclass is set on this one manifest object
    (``__class__``); no wandb class, module or other artifact changes.
    """
    manifest = artifact.manifest
    base = type(manifest)
    if base in _manifest_classes.values():
        object.__setattr__(manifest, "_fastevalcb_lines", digest_lines)
        return
    cls = _manifest_classes.get(base)
    if cls is None:
        threshold = int(_interface.MANIFEST_FILE_SIZE_THRESHOLD)

        def digest(self: Any) -> str:
            hasher = manifest_hasher(self)
            for text in self._fastevalcb_lines():
                hasher.update(text.encode("utf-8"))
            return hasher.hexdigest()

        def length(self: Any) -> int:
            n = len(self.entries)
            return max(n, threshold + 1) if n > MANIFEST_FILE_ENTRIES else n

        namespace: dict[str, Any] = {
            "digest": digest,
            "__len__": length,
            "__module__": __name__,
            "__qualname__": base.__qualname__,
        }
        if hasattr(base, "model_fields"):  # pydantic: a model subclass keeps its layout
            namespace["__slots__"] = ()
        cls = _manifest_classes[base] = type(base.__name__, (base,), namespace)
    object.__setattr__(manifest, "__class__", cls)
    try:
        object.__setattr__(manifest, "_fastevalcb_lines", digest_lines)
    except (AttributeError, TypeError):  # pydantic private-attr storage
        manifest.__dict__["_fastevalcb_lines"] = digest_lines


def write_manifest_file(manifest: Any) -> str:
    """wandb's own manifest file of ``manifest`` (``InterfaceBase.
    _write_artifact_manifest_file``: gzip'd JSON lines in the staging dir); its path."""
    return _interface.InterfaceBase._write_artifact_manifest_file(None, manifest)


def manifest_file_threshold() -> int:
    """wandb's ``MANIFEST_FILE_SIZE_THRESHOLD`` (``wandb/sdk/interface/interface.py``)."""
    return int(_interface.MANIFEST_FILE_SIZE_THRESHOLD)


# ---------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------
def on_run_finish(run: Any, fn: Callable[[], None]) -> bool:
    """Call ``fn()`` when ``run`` finishes, while it still accepts ``log``/``log_artifact``.

    ``run.finish()``, ``wandb.finish()`` and ``wandb.init(reinit="finish_previous")`` all
    end in ``Run._finish``, which first calls the run's ``EARLY`` teardown hooks
    (``wandb/sdk/wandb_run.py``: ``Run._teardown_hooks``, ``TeardownHook``,
    ``TeardownStage``). ``fn`` must not raise.

    Returns:
        False when this wandb has no such hooks (the caller flushes at train end instead).
    """
    hook, stage = (
        _optional("wandb.sdk.wandb_run", "TeardownHook"),
        _optional("wandb.sdk.wandb_run", "TeardownStage"),
    )
    hooks = getattr(run, "_teardown_hooks", None)
    if hook is None or stage is None or not isinstance(hooks, list):
        return False
    hooks.append(hook(call=fn, stage=stage.EARLY))
    return True


def run_finished(run: Any) -> bool:
    """Whether ``run`` has finished (``Run._is_finished``: its ``log`` raises)."""
    return bool(getattr(run, "_is_finished", False))


def record_feature(run: Any, feature: str) -> bool:
    """Record a telemetry feature in the run, as wandb's own integrations do
    (``wandb/sdk/lib/telemetry.py``: ``context(run=...)``, ``tel.feature.<name> = True``;
    stock ``WandbEvalCallback.__init__`` records ``keras_wandb_eval_callback``).

    Returns:
        Whether it was recorded (False: this wandb has no such feature).
    """
    if _telemetry is None or run is None:
        return False
    try:
        with _telemetry.context(run=run) as tel:
            setattr(tel.feature, feature, True)
    except (AttributeError, ValueError, TypeError):
        return False
    return True


def record_class() -> Any:
    """The protobuf message class of an offline run's ``.wandb`` log records
    (``wandb/proto/wandb_internal_pb2.py``: ``Record``)."""
    return importlib.import_module("wandb.proto.wandb_internal_pb2").Record


__all__ = [
    "BOXES_SUFFIX",
    "FAST_PATHS",
    "FileInfo",
    "IMAGE_DIR",
    "IMAGE_SUFFIX",
    "MASK_DIR",
    "MASK_SUFFIX",
    "MASK_TYPE",
    "TABLE_TYPE",
    "WBValue",
    "disable",
    "fast",
    "register_check",
    "safe_mode",
]
