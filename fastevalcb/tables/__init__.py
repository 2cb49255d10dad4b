"""Tables, artifacts and media references: the one package that talks to wandb.

Every private wandb name and internal import lives in :mod:`~fastevalcb.tables._wandb`,
a named function each, and every fast path it enables is checked once per process against
wandb's own public-API result, falling back to wandb's path with one warning when they
differ (``FASTEVALCB_SAFE=1`` forces the public path everywhere).

One stage per module, each depending only on those above it:

* ``_wandb``: the wandb internals, media objects built from files we already wrote, and
  the fast-path checks.
* ``staging``: :class:`Stager`, media files written straight into an artifact's staging,
  and :class:`~fastevalcb.tables.staging.EntryRows`, the manifest entries of many files
  kept as rows (an int per file, not an entry object; wandb reads them as views).
* ``references``: a data table's files as arrays (:class:`MediaFiles`, :class:`ImageColumn`,
  :class:`LayeredImages`)
  and the reference entries pred versions get (:class:`MediaIndex`; a column of the data
  table's row indices: :class:`DataTableLink`).
* ``columnar``: :class:`ColumnarTable`, :class:`ScalarTable` (charts' tables) and the JSON /
  type helpers every table shares.
* ``streamed``: :class:`StreamedTable`, serialized into its artifact batch by batch.
* ``artifacts``: logging the data and pred artifacts, summary metrics, the run's lifetime.

How references work, online and offline alike:

* The data table is added to a ``wandb.Artifact``; wandb stages every media file and
  remembers, per artifact, which local file became which entry
  (``Artifact.get_added_local_path_name``).
* A pred-table artifact never copies those files. For every media cell whose file is
  already an entry of the data artifact, the pred artifact gets a *reference* entry
  with the same name whose ``ref`` is ``wandb-client-artifact://<data client id>/<name>``
  (what wandb's local-artifact storage handler produces).
  wandb-core's ``ArtifactSaver.resolveClientIDReferences`` turns those into
  ``wandb-artifact://<server id>/<name>`` when the version is uploaded, live or by
  ``wandb sync`` of an offline run.

This package exports what the rest of fastevalcb uses (``callback``, ``media``, ``tasks``,
``worker`` and the public ``ColumnarTable`` / ``TableSchemaError``); anything else is
imported from its module (``fastevalcb.tables.references.CLIENT_REF_SCHEME``).
"""

from fastevalcb.tables import checks as _checks  # noqa: E402,F401 - registers the checks
from fastevalcb.tables._wandb import (
    BOXES_SUFFIX,
    IMAGE_DIR,
    IMAGE_SUFFIX,
    MASK_DIR,
    MASK_SUFFIX,
    image_layers,
    image_size,
    media_file,
    media_tmp_dir,
    new_boxes2d,
    new_image,
    new_image_mask,
    payload_json,
    record_feature,
    release_table,
    share_column_types,
)
from fastevalcb.tables.artifacts import (
    add_table,
    data_table_link,
    define_step_metrics,
    log_data_artifact,
    log_metrics,
    log_pred_artifact,
    on_run_finish,
    pred_artifact,
    run_finished,
)
from fastevalcb.tables.columnar import (
    ColumnarTable,
    JSONText,
    ScalarTable,
    TableSchemaError,
    validate_columns,
)
from fastevalcb.tables.references import (
    DataTableLink,
    ImageColumn,
    LayeredImages,
    MediaFiles,
    MediaIndex,
)
from fastevalcb.tables.staging import Stager
from fastevalcb.tables.streamed import StreamedTable, num_rows

__all__ = [
    "BOXES_SUFFIX",
    "ColumnarTable",
    "ScalarTable",
    "DataTableLink",
    "IMAGE_DIR",
    "IMAGE_SUFFIX",
    "ImageColumn",
    "JSONText",
    "LayeredImages",
    "MASK_DIR",
    "MASK_SUFFIX",
    "MediaFiles",
    "MediaIndex",
    "Stager",
    "StreamedTable",
    "TableSchemaError",
    "add_table",
    "data_table_link",
    "define_step_metrics",
    "image_layers",
    "image_size",
    "log_data_artifact",
    "log_metrics",
    "log_pred_artifact",
    "media_file",
    "media_tmp_dir",
    "new_boxes2d",
    "new_image",
    "new_image_mask",
    "num_rows",
    "on_run_finish",
    "payload_json",
    "pred_artifact",
    "record_feature",
    "release_table",
    "run_finished",
    "share_column_types",
    "validate_columns",
]
