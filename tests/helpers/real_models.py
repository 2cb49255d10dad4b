"""Real model classes built small with random weights (nothing downloaded), shared by the
predictor tests and the task-callback tests: KerasHub detectors, segmenters and
classifiers with their preprocessors, a ``keras.applications`` classifier, a custom
``predict_step`` and a two-input model."""

from __future__ import annotations

import keras
import numpy as np

# The segmenters' converters rescale [0, 255] -> [-1, 1] (scale 1/127.5, offset -1), as
# presets do.
SCALE, OFFSET = 1 / 127.5, -1.0


def images(n, hw, seed=0):
    """`(n, H, W, 3)` float32 in [0, 255], what users feed a KerasHub preprocessor."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *hw, 3)).astype("float32")


def tiny_resnet(image_shape=(None, None, 3)):
    import keras_hub

    # ResNetBackbone insists on 64 filters for the stem and the first stack.
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=image_shape,
    )


def retinanet(bounding_box_format="yxyx", image_size=(32, 32), num_classes=3):
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=tiny_resnet(), min_level=3, max_level=5, use_p5=False
    )
    converter = keras_hub.layers.RetinaNetImageConverter(image_size=image_size, scale=1 / 255)
    preprocessor = keras_hub.models.RetinaNetObjectDetectorPreprocessor(image_converter=converter)
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        preprocessor=preprocessor,
        pre_logits_num_conv_layers=1,
        classification_head_prior_probability=0.3,  # random weights: scores near 0.3
    )


def nms_decoder(bounding_box_format, threshold, max_detections=20):
    import keras_hub

    return keras_hub.layers.NonMaxSuppression(
        bounding_box_format=bounding_box_format,
        from_logits=True,
        confidence_threshold=threshold,
        max_detections=max_detections,
    )


def deeplab(image_size, num_classes=3):
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=tiny_resnet(),
        spatial_pyramid_pooling_key="P4",
        upsampling_size=4,  # P4 (1/8 after the stem) -> P2 (1/2)
        dilation_rates=[1, 2],
        low_level_feature_key="P2",
        projection_filters=8,
    )
    converter = keras_hub.layers.DeepLabV3ImageConverter(
        image_size=image_size, scale=SCALE, offset=OFFSET
    )
    preprocessor = keras_hub.models.DeepLabV3ImageSegmenterPreprocessor(image_converter=converter)
    return keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor
    )


def segformer(image_size, num_classes=3):
    import keras_hub

    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1],
        num_layers=2,
        layerwise_num_heads=[1, 1],
        layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
        image_shape=(32, 32, 3),
        hidden_dims=[8, 16],
    )
    backbone = keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=8)
    converter = keras_hub.layers.SegFormerImageConverter(
        image_size=image_size, scale=SCALE, offset=OFFSET
    )
    preprocessor = keras_hub.models.SegFormerImageSegmenterPreprocessor(image_converter=converter)
    return keras_hub.models.SegFormerImageSegmenter(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor
    )


def resnet_classifier(image_size=(24, 24), num_classes=5):
    import keras_hub

    keras.utils.set_random_seed(0)
    converter = keras_hub.layers.ResNetImageConverter(image_size=image_size, scale=1 / 255)
    return keras_hub.models.ResNetImageClassifier(
        backbone=tiny_resnet(),
        num_classes=num_classes,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
    )


def mobilenet(num_classes=4):
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), classes=num_classes, alpha=0.75, minimalistic=True
    )


class Calibrated(keras.Model):
    """Temperature-calibrated classifier: ``predict`` returns probabilities."""

    temperature = 2.5

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return keras.ops.softmax(self(x, training=False) / self.temperature)


def calibrated_classifier(image_hw=(16, 16), num_classes=3):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((*image_hw, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return Calibrated(inputs, keras.layers.Dense(num_classes)(hidden))


def two_input_model(num_classes=3):
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    meta = keras.Input((4,), name="meta")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
    joined = keras.layers.Concatenate()([features, keras.layers.Dense(4)(meta)])
    return keras.Model({"image": image, "meta": meta}, keras.layers.Dense(num_classes)(joined))


def predict_static_batches(model, x, batch_size):
    """``model.predict`` in batches of static size (the last one smaller).

    KerasHub's NonMaxSuppression needs a static batch dim, which ``model.predict(x)`` on
    arrays does not give (it batches without ``drop_remainder``): that fails with
    "Expected int32, but got None". Full batches, then the rest as one batch of its own
    static size, is ``predict`` on the same samples.
    """
    import tensorflow as tf

    full = len(x) // batch_size * batch_size
    parts = [
        model.predict(
            tf.data.Dataset.from_tensor_slices(x[:full]).batch(batch_size, drop_remainder=True),
            verbose=0,
        )
    ]
    if full < len(x):
        # A new predict function: the cached one, retraced with reduce_retracing, would
        # relax the batch dim to None.
        model.make_predict_function(force=True)
        parts.append(model.predict(tf.data.Dataset.from_tensors(x[full:]), verbose=0))
    return keras.tree.map_structure(lambda *leaves: np.concatenate(leaves), *parts)
