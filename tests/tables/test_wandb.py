"""fastevalcb.tables._wandb: canaries for the wandb internals the fast paths rely on, and the
media objects built from our own files (``new_image`` & co.) against stock's.

If a wandb release changes one of these, these tests fail first and say which.
"""

from __future__ import annotations

import numpy as np
import wandb

from fastevalcb.media import build_images
from fastevalcb.tables import ColumnarTable
from fastevalcb.types import PackedDetections


# --- wandb internals canaries ---------------------------------------------------------
def test_wandb_internals_we_rely_on_exist(wandb_env):
    art = wandb.Artifact("a", "x")
    assert isinstance(art._client_id, str) and len(art._client_id) > 20
    assert isinstance(art._added_local_paths, dict)
    image = wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))
    entry = art.add(ColumnarTable(["img"]), "empty")
    assert entry.path == "empty.table.json"
    table = ColumnarTable(["img"])
    table.add_data(image)
    art.add(table, "t")
    name = art.get_added_local_path_name(image._path)
    assert name is not None and name.startswith("media/images/")
    assert art._added_local_paths[image._path].path == name
    image._free_ram()
    assert image._image is None and image.image is not None  # reloads from its file
    # tables._wandb.scope_manifest reads the size past which wandb sends a manifest as its
    # file; the end-to-end check is test_large_manifests_go_as_wandbs_manifest_file.
    from wandb.sdk.interface import interface

    assert isinstance(interface.MANIFEST_FILE_SIZE_THRESHOLD, int)


# -- media objects built from our files (tables.new_image & co.) mirror stock's -----
def test_objects_have_exactly_the_stock_attributes():
    img = np.zeros((6, 8, 3), np.uint8)
    labels = {0: "a", 1: "b"}
    det = PackedDetections([0, 1], [[1, 1, 4, 4]], [1], [0.5])
    mask = np.zeros((1, 6, 8), np.uint8)
    (fast,) = build_images(
        img[None], boxes={"predictions": det}, masks={"m": mask}, class_labels=labels
    )
    stock = wandb.Image(
        img,
        boxes={"predictions": {"box_data": [], "class_labels": labels}},
        masks={"m": {"mask_data": mask[0], "class_labels": labels}},
    )
    pairs = [
        (fast, stock),
        (fast._boxes["predictions"], stock._boxes["predictions"]),
        (fast._masks["m"], stock._masks["m"]),
        (fast._classes, stock._classes),
    ]
    for f, s in pairs:
        assert type(f) is type(s)
        assert set(vars(f)) == set(vars(s)), type(s).__name__
        for k in vars(s):
            assert type(getattr(f, k)) is type(getattr(s, k)), (type(s).__name__, k)
    assert fast._classes._class_set == stock._classes._class_set
    assert (fast._width, fast._height, fast.format) == (stock._width, stock._height, stock.format)
    assert fast._boxes["predictions"]._extension == stock._boxes["predictions"]._extension
    assert fast._masks["m"]._extension == stock._masks["m"]._extension


# --- the run's lifetime (wandb internals: Run._teardown_hooks, TeardownHook, _is_finished) --
def test_wandb_teardown_hooks_we_rely_on_exist(wandb_env):
    """``Run._finish`` calls EARLY hooks while the run still logs, then marks it finished."""
    from wandb.sdk.wandb_run import TeardownHook, TeardownStage

    assert TeardownHook._fields == ("call", "stage") and TeardownStage.EARLY < TeardownStage.LATE
    run = wandb.init(project="canary", dir=str(wandb_env / "run"))
    assert isinstance(run._teardown_hooks, list)
    assert run._is_finished is False
    seen = []
    run._teardown_hooks.append(
        TeardownHook(call=lambda: seen.append(run._is_finished), stage=TeardownStage.EARLY)
    )
    run.finish()
    assert seen == [False] and run._is_finished is True
