"""One worker of the loopback multi-worker tests (tests/test_distributed.py); a script.

``python -m tests.helpers.multiworker_worker CONFIG.json``, from the repository root: trains
a tiny tf_keras CNN for 2 epochs with one fastevalcb callback and writes what it saw to
``config["out"]`` (JSON). With
``TF_CONFIG`` set it trains under ``MultiWorkerMirroredStrategy`` and only the chief calls
``wandb.init()``, as a user would; without it, the same fit runs in one process (the
reference run). A hang dumps every thread's stack (faulthandler) and exits.

Config keys:

* ``out``: where the result JSON goes; ``multi_worker``: train under MWMS (TF_CONFIG set);
* ``callback``: ``"classification"`` or ``"stock"`` (wandb's documented subclass);
* ``mode`` (``multi_worker_eval``), ``log_every_n_batches``, ``strict``, ``async_logging``;
* ``fail_log``: the chief's first pred-version write raises; ``fail_data``: the chief's
  data table write raises;
* ``keras``: ``"tf_keras"`` or ``"keras3"`` (the refusal), with ``load_tf_keras`` and
  ``set_model_first``;
* ``in_scope``: construct the callback inside ``strategy.scope()``;
* ``hang_after_s``: faulthandler's own deadline; ``skip_fit``: this task index stays alive
  without training (the harness' hang test).
"""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
import traceback
import warnings

VAL = 11  # validation samples: batches of 4, 4, 3 (the last one padded, split unevenly)
TRAIN = 16
BATCH = 8  # 2 training steps per epoch


def main(config: dict) -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    faulthandler.dump_traceback_later(config.get("hang_after_s", 180), exit=True)
    result: dict = {"error": None, "warnings": [], "epochs": []}
    try:
        _train(config, result)
    except Exception as exc:  # reported to the test, which asserts on it
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        with open(config["out"], "w") as f:
            json.dump(result, f, default=str)
    return 0 if result["error"] is None else 3


def _train(config: dict, result: dict) -> None:
    import tensorflow as tf

    if config.get("keras") == "keras3":
        import keras as k

        if config.get("load_tf_keras"):  # loaded, though the model is Keras 3
            import tf_keras  # noqa: F401
    else:
        import tf_keras as k
    import wandb

    from fastevalcb import ClassificationEvalCallback, distributed, tables
    from fastevalcb.synthetic import make_shapes

    strategy = (
        tf.distribute.MultiWorkerMirroredStrategy()
        if config.get("multi_worker")
        else tf.distribute.get_strategy()
    )
    role = distributed.role_of(strategy)
    result.update(is_chief=role.is_chief, task_type=role.task_type, task_id=role.task_id)
    if role.is_chief:
        wandb.init(project="fastevalcb-multiworker")
    result["has_run"] = wandb.run is not None

    if config.get("fail_log") and role.is_chief:
        real = tables.log_pred_artifact
        calls = []

        def fail_first(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise OSError("injected: the first pred-version write fails")
            return real(*args, **kwargs)

        tables.log_pred_artifact = fail_first

    if config.get("fail_data") and role.is_chief:

        def fail_data(*args, **kwargs):
            raise OSError("injected: the data table write fails")

        tables.log_data_artifact = fail_data

    shapes = make_shapes(TRAIN + VAL, 16, seed=3)
    x, y = shapes.images[:TRAIN], shapes.labels[:TRAIN]
    x_val, y_val = shapes.images[TRAIN:], shapes.labels[TRAIN:]
    with strategy.scope():
        k.utils.set_random_seed(0)
        model = k.Sequential(
            [
                k.Input((16, 16, 3)),
                k.layers.Rescaling(1 / 255),
                k.layers.Conv2D(4, 3, padding="same", activation="relu"),
                k.layers.GlobalAveragePooling2D(),
                k.layers.Dense(3),
            ]
        )
        # Learning rate 0: every process keeps the seeded weights, so the multi-worker run
        # and the one-process reference predict from the same weights.
        model.compile(
            k.optimizers.SGD(0.0), k.losses.SparseCategoricalCrossentropy(from_logits=True)
        )

    def make():
        if config["callback"] == "stock":
            from tests.helpers.callbacks import DocsClfCallback

            return DocsClfCallback(
                (x_val, y_val),
                ["idx", "image", "label"],
                ["epoch", "idx", "image", "label", "pred"],
            )
        return ClassificationEvalCallback(
            (x_val, y_val),
            shapes.class_names,
            batch_size=4,
            log_every_n_batches=config.get("log_every_n_batches"),
            strict=bool(config.get("strict")),
            multi_worker_eval=config.get("mode", "sharded"),
            async_logging=config.get("async_logging", True),
            verbose=0,
        )

    if "skip_fit" in config and config["skip_fit"] == role.task_id:
        import time

        time.sleep(600)  # alive but never training: the others wait in a collective
    if config.get("in_scope"):
        with strategy.scope():
            callback = make()
    else:
        callback = make()

    class Epochs(k.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            result["epochs"].append(epoch)

    if config.get("set_model_first"):
        callback.set_model(model)  # what fit's CallbackList does first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(
                x,
                y,
                epochs=2,
                batch_size=BATCH,
                shuffle=False,
                verbose=0,
                callbacks=[Epochs(), callback],
            )
            if hasattr(callback, "flush"):
                callback.flush()
        finally:
            result["warnings"] = [str(w.message) for w in caught if "fastevalcb" in str(w.message)]
            result["logged_versions"] = callback.logged_versions
            if wandb.run is not None:
                result["run_id"] = wandb.run.id
                wandb.finish()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        sys.exit(main(json.load(f)))
