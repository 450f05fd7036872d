"""Test accuracy of a finished run's final model, plain and with flip TTA: no choice made on test.

    python final_eval.py runs/budget60-dsc_resnet10 > final-eval.json   # CIFAR-10: SEPCONV_DATA or keras.datasets
    python final_eval.py runs/budget60-dsc_resnet-bf16 dsc_resnet > final-eval.json   # another model's run
"""

import json
import sys

import keras

import sepconv  # noqa: F401 (registers the layers and losses the run's model uses)
from sepconv.data import Batches, load_cifar10
from sepconv.training._loop import flip_tta_accuracy

name = sys.argv[2] if len(sys.argv) > 2 else "dsc_resnet10"
model = keras.saving.load_model(f"{sys.argv[1]}/{name}/final.keras")
data = load_cifar10(progress=False)
test = Batches(data.x_test, data.y_test, batch_size=128, shuffle=False, data_format="channels_last")
model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
plain = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
print(json.dumps({"final_test_accuracy": plain, "final_test_accuracy_flip_tta": flip_tta_accuracy(model, test)}))
