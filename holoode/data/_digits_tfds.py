"""A TFDS builder for the embedded digits (imported only when it is built)."""

import numpy as np
import tensorflow_datasets as tfds

from ._digits import load_digits


class HoloodeDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8×8 digits with holoode's fixed train/test split."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-learn's 8x8 handwritten digits, grey levels 0..16.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            # Keep the embedded order, so that example i matches load("digits")[i].
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        from PIL import Image

        source = load_digits(split)
        images, labels = source.get(np.arange(len(source)))
        levels = np.rint(images[..., 0] * 16).astype(np.uint8)
        for i, (image, label) in enumerate(zip(levels, labels)):
            # A PIL image is PNG-encoded by PIL, not by TensorFlow.
            yield i, {"image": Image.fromarray(image), "label": int(label)}
