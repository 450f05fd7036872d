"""Test accuracy of a finished run's final model, plain, with flip TTA and with the mirrors of
1-pixel shifts (`--tta-shift 1`, chosen on a held-out split): no choice made on test.
`sepconv evaluate RUN` computes the same three figures; this script is kept for the runs that used it.

    python final_eval.py runs/budget60-dsc_resnet10 > final-eval.json   # CIFAR-10: SEPCONV_DATA or keras.datasets
    python final_eval.py runs/budget60-dsc_resnet-bf16 dsc_resnet > final-eval.json   # another model's run
    python final_eval.py runs/wall60-dsc_resnet9-bf16 dsc_resnet9 --tta-shift > final-eval.json
"""

import argparse
import json

import keras

import sepconv  # noqa: F401 (registers the layers and losses the run's model uses)
from sepconv.data import Batches, load_cifar10
from sepconv.training._loop import tta_accuracy

parser = argparse.ArgumentParser(description="Test accuracy of a run's final model.")
parser.add_argument("run", help="run folder")
parser.add_argument("model", nargs="?", default="dsc_resnet10", help="model name (a subfolder of the run)")
parser.add_argument("--tta-shift", action="store_true", help="also score the mirrors of 1-pixel shifts")
args = parser.parse_args()
model = keras.saving.load_model(f"{args.run}/{args.model}/final.keras")
data = load_cifar10(progress=False)
test = Batches(data.x_test, data.y_test, batch_size=128, shuffle=False, data_format="channels_last")
model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
plain = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
scores = {"final_test_accuracy": plain, "final_test_accuracy_flip_tta": tta_accuracy(model, test)}
if args.tta_shift:  # runs scored before the option existed keep their two numbers
    scores["final_test_accuracy_tta_shift1"] = tta_accuracy(model, test, 1)
print(json.dumps(scores))
