"""`sepconv evaluate` / `evaluate_run`: a finished run's accuracy, against views made with numpy."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

from helpers import image_folder_archive
from sepconv.cli import main
from sepconv._run_folder import read_history
from sepconv.data import Batches, load_cifar10, make_splits
from sepconv.training import evaluate_run, make_config, train

TINY = {"blocks": ((4, 1),)}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A two-epoch run of a one-block VGG on a tiny image-folder copy, 6 of its 24 training images held out."""
    folder = tmp_path_factory.mktemp("evaluate")
    archive = image_folder_archive(folder / "tiny.tar.gz", train_per_class=8, test_per_class=20)
    data = load_cifar10(archive, cache_dir=str(folder / "cache"), progress=False)
    config = make_config("tutorial", epochs=2, batch_size=8, validation=0.25, model_kwargs=TINY)
    train("vgg", config, out=str(folder / "run"), quiet=True, data=data, report=False)
    return str(folder / "run"), archive, data


def numpy_view(images, rows, cols, mirror):
    """Output pixel (i, j) shows input pixel (i + rows, j + cols), zero outside; then the left-right mirror."""
    pad = max(abs(rows), abs(cols))
    height, width = images.shape[1:3]
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    moved = padded[:, pad + rows : pad + rows + height, pad + cols : pad + cols + width]
    return moved[:, :, ::-1] if mirror else moved


def reference(model_path, x, y, shift):
    """plain / flip / flip+shift accuracies from `predict` on numpy views of the standardized images."""
    model = keras.saving.load_model(model_path, compile=False)
    images = Batches(x, y, batch_size=len(y), shuffle=False)[0][0]  # standardized as in training

    def accuracy(views):
        probabilities = sum(model.predict(numpy_view(images, *view), verbose=0) for view in views)
        return float(np.mean(probabilities.argmax(axis=1) == y))

    moves = [(0, 0), (shift, shift), (-shift, -shift), (shift, -shift), (-shift, shift)]
    return {
        "plain": accuracy([(0, 0, False)]),
        "flip": accuracy([(0, 0, False), (0, 0, True)]),
        f"flip+diag{shift}": accuracy([(r, c, m) for r, c in moves for m in (False, True)]),
    }


def random_model(seed):
    """An untrained model: its predictions change with every view, so each view's share shows."""
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(3, 3, strides=4),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    rng = np.random.default_rng(seed)  # numpy's draws: the same weights on every backend
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_evaluate_run_scores_the_asked_checkpoint_on_the_test_images(finished_run, tmp_path):
    folder, _, data = finished_run
    copy = shutil.copytree(folder, tmp_path / "run")
    random_model(4).save(copy / "vgg" / "best.keras")  # seeds whose views score 0.40 / 0.43 / 0.53 and
    random_model(1).save(copy / "vgg" / "final.keras")  # 0.17 / 0.25 / 0.32 (0.57 and 0.28 with 1-pixel shifts)
    result = evaluate_run(str(copy), checkpoint="best", tta_shift=2, data=data)
    expected = reference(str(copy / "vgg" / "best.keras"), data.x_test, data.y_test, shift=2)
    assert result["models"] == {"vgg": pytest.approx(expected, abs=1e-6)}
    assert len(set(expected.values())) == 3  # the views disagree, so a view left out or doubled would show
    assert reference(str(copy / "vgg" / "final.keras"), data.x_test, data.y_test, shift=2) != expected
    assert reference(str(copy / "vgg" / "best.keras"), data.x_test, data.y_test, shift=1)["flip+diag1"] != pytest.approx(
        expected["flip+diag2"]
    )
    assert (result["split"], result["images"], result["checkpoint"]) == ("the dataset's test set", 60, "best.keras")
    assert result["source"].startswith("image-folder PNG copy at ")


def test_evaluate_run_scores_the_held_out_images_as_training_did(finished_run):
    folder, _, data = finished_run
    result = evaluate_run(folder, split="validation", tta_shift=1, data=data)
    held_out = make_splits(data, validation=0.25, seed=0)  # the split the run made from its seed
    expected = reference(os.path.join(folder, "vgg", "final.keras"), held_out.x_val, held_out.y_val, shift=1)
    assert result["models"] == {"vgg": pytest.approx(expected, abs=1e-6)}
    history = read_history(os.path.join(folder, "history.csv"))["vgg"]
    assert result["models"]["vgg"]["plain"] == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
    assert result["images"] == 6 and result["split"].startswith("stratified hold-out from the training set (0.25")


def test_evaluate_run_errors_name_the_argument(finished_run, tmp_path):
    folder, _, data = finished_run
    with pytest.raises(FileNotFoundError, match=r"^folder must be a run folder holding config\.json\. Received: "):
        evaluate_run(str(tmp_path), data=data)
    with pytest.raises(ValueError, match=r"^split must be one of 'test', 'validation'\. Received: split='heldout'$"):
        evaluate_run(folder, split="heldout", data=data)
    copy = shutil.copytree(folder, tmp_path / "unfinished")
    os.remove(copy / "vgg" / "final.keras")
    with pytest.raises(FileNotFoundError, match=r"^no final\.keras for vgg \(an unfinished run: finish it with "
                                                r"`sepconv train --resume`, or score best\.keras: --checkpoint best\)\. "
                                                r"Received: folder="):  # fmt: skip
        evaluate_run(str(copy), data=data)
    other = load_cifar10(image_folder_archive(tmp_path / "other.tar.gz", train_per_class=8), cache_dir=str(tmp_path))
    other = type(other)(other.x_train[::-1].copy(), other.y_train[::-1].copy(), data.x_test, data.y_test,
                        other.class_names, "reordered")  # fmt: skip
    with pytest.raises(ValueError, match=r"^the data differ from those the run started with .*Received: "
                                         r"data='reordered'$"):  # fmt: skip
        evaluate_run(folder, split="validation", data=other)
    assert evaluate_run(folder, split="test", data=other)["images"] == 60  # the test set is not the run's to check


def test_cli_evaluate_prints_a_table_and_writes_json(finished_run, tmp_path, monkeypatch, capsys):
    folder, archive, data = finished_run
    monkeypatch.setenv("SEPCONV_CACHE", str(tmp_path / "cache"))
    output = tmp_path / "scores" / "test.json"
    assert main(["evaluate", folder, "--data", archive, "--output", str(output)]) == 0
    table = capsys.readouterr().out
    expected = reference(os.path.join(folder, "vgg", "final.keras"), data.x_test, data.y_test, shift=1)
    saved = json.loads(output.read_text())
    assert saved["models"] == {"vgg": pytest.approx(expected, abs=1e-6)}
    assert (saved["split"], saved["checkpoint"], saved["tta_shift"]) == ("the dataset's test set", "final.keras", 1)
    record = json.load(open(os.path.join(folder, "config.json")))
    assert saved["fingerprint"] == record["data"]["fingerprint"] and saved["batch_size"] == 500
    assert saved["environment"]["backend"] == keras.backend.backend() and "git" in saved["environment"]
    assert "flip+diag1" in table and f"{expected['flip']:.4f}" in table
    assert "Images: the dataset's test set; image-folder PNG copy at" in table
    assert main(["evaluate", folder, "--data", archive, "--split", "validation", "--tta-shift", "0", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["models"]["vgg"]) == ["plain", "flip"]


def test_cli_evaluate_scores_a_keras_file_on_the_test_set(finished_run, tmp_path, monkeypatch, capsys):
    folder, archive, data = finished_run
    monkeypatch.setenv("SEPCONV_CACHE", str(tmp_path / "cache"))
    path = os.path.join(folder, "vgg", "best.keras")
    assert main(["evaluate", path, "--data", archive, "--tta-shift", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = reference(path, data.x_test, data.y_test, shift=2)
    assert result["models"] == {keras.saving.load_model(path).name: pytest.approx(expected, abs=1e-6)}
    assert (result["model_file"], result["images"], result["split"]) == (path, 60, "the dataset's test set")
    assert main(["evaluate", path, "--data", archive, "--split", "validation"]) == 2
    assert capsys.readouterr().err == (
        "sepconv evaluate: error: a .keras file is scored on the test set; --split validation and --checkpoint best "
        f"need a run folder. Received: RUN={path}\n"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--split", "heldout"], "--split must be one of 'test', 'validation'. Received: --split='heldout'"),
        (["--tta-shift", "-1"], "--tta-shift must be non-negative. Received: --tta-shift=-1"),
        (["--checkpoint", "last"], "--checkpoint must be one of 'final', 'best'. Received: --checkpoint='last'"),
    ],
)
def test_cli_evaluate_bad_flags_are_one_line_errors(finished_run, capsys, argv, message):
    folder, archive, _ = finished_run
    assert main(["evaluate", folder, "--data", archive, *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("sepconv evaluate: error: ") and err.count("\n") == 1
    assert message in err
