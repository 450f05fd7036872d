"""Reports from a hand-written run folder: figures, Markdown table, self-contained HTML."""

import base64
import csv
import io
import json
import os
import re

import pytest
from PIL import Image

from sepconv.report import load_run, plot_histories, render_markdown, save_figure, write_report
from sepconv.report._plots import plot_accuracy_vs_params, plot_model_accuracy, plot_time_per_epoch

COLUMNS = ("model", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s", "images_per_s", "lr")
MODELS = {  # name: (params, MACs, per-epoch (accuracy, val_accuracy, seconds))
    "vgg": (1_186_378, 153_634_816, [(0.40, 0.45, 30.0), (0.55, 0.52, 20.0), (0.62, 0.58, 22.0)]),
    "vgg_separable": (174_821, 21_172_224, [(0.35, 0.40, 25.0), (0.48, 0.47, 10.0), (0.55, 0.50, 12.0)]),
}


def write_run(folder, models=MODELS, preset="quick", train_images=5000, load_average=0.5):
    """A run folder as `sepconv.training` writes it, with made-up numbers."""
    os.makedirs(folder, exist_ok=True)
    config = {
        "recipe": "tutorial", "preset": preset, "epochs": 3, "batch_size": 128, "optimizer": "adam", "lr": 0.001,
        "schedule": "constant", "warmup_epochs": 0.0, "momentum": 0.9, "weight_decay": 0.0, "label_smoothing": 0.0,
        "augment": False, "train_size": train_images, "validation": "test", "val_size": 2000, "seed": 0,
        "data": None, "model_kwargs": {},
    }  # fmt: skip
    environment = {
        "backend": "tensorflow", "device": "CPU", "cpu": "Test CPU, 2 usable cores", "python": "3.11.7",
        "platform": "Linux", "versions": {"keras": "3.15.1"}, "git": {"commit": "abc123", "dirty": False},
        "command": "sepconv compare --preset quick", "time": "2025-01-01T00:00:00+00:00", "cores": 2,
        "load_average": load_average,
    }  # fmt: skip
    record = {
        "models": list(models),
        "config": config,
        "rerun": "sepconv compare vgg vgg_separable --recipe tutorial --preset quick",
        "data": {
            "source": "synthetic <copy> | test", "validation": "the test set", "train_images": train_images,
            "val_images": 2000, "test_images": 10000, "splits": "train: 5,000 images", "fingerprint": "0123",
            "class_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        },  # fmt: skip
        "environment": environment,
        "resumed": [],
    }
    rows, results = [], []
    for name, (params, macs, epochs) in models.items():
        for epoch, (acc, val_acc, seconds) in enumerate(epochs, start=1):
            rows.append([name, epoch, 2 - acc, acc, 2 - val_acc, val_acc, seconds, train_images / seconds, 0.001])
        timed = [e for e in range(2, len(epochs) + 1)] or [1]
        seconds = sorted(epochs[e - 1][2] for e in timed)
        median = (seconds[(len(seconds) - 1) // 2] + seconds[len(seconds) // 2]) / 2
        best = max(range(len(epochs)), key=lambda i: epochs[i][1])
        results.append(
            {
                "model": name, "params": params, "macs": macs, "epochs": len(epochs),
                "train_time_s": sum(e[2] for e in epochs), "median_epoch_time_s": median, "median_images_per_s": train_images / median, "timed_epochs": timed,
                "best_epoch": best + 1, "best_val_accuracy": epochs[best][1],
                "final_val_accuracy": epochs[-1][1], "final_accuracy": epochs[-1][0],
                "train_val_gap": epochs[-1][0] - epochs[-1][1], "test_accuracy": None,
            }  # fmt: skip
        )
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(record, f)
    notes = {"timing": "timing note", "gap": "gap note", "macs": "MACs note"}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"models": results, "notes": notes}, f)
    with open(os.path.join(folder, "history.csv"), "w", newline="") as f:
        csv.writer(f).writerows([COLUMNS] + rows)
    return folder


@pytest.fixture
def run_folder(tmp_path):
    return write_run(str(tmp_path / "run"))


def test_write_report_files(run_folder):
    paths = write_report(run_folder)
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(
        ["accuracy_vgg.png", "accuracy_vgg_separable.png", "accuracy_all.png", "loss.png",
         "accuracy_vs_params.png", "time_per_epoch.png", "report.md", "report.html"]  # fmt: skip
    )
    for path in paths:
        if path.endswith(".png"):
            with Image.open(path) as image:
                assert image.format == "PNG" and image.width >= 400 and image.height >= 300
                image.verify()
    assert not [n for n in os.listdir(run_folder) if n.endswith(".tmp")]


def test_markdown_table_and_notes(run_folder):
    write_report(run_folder)
    text = open(os.path.join(run_folder, "report.md"), encoding="utf-8").read()
    assert "> **Quick preset: 5,000 training images, 3 epochs, 2,000 validation images." in text
    header = ("| model | params | MACs | epochs | training (min) | time/epoch (s) | img/s | best val acc (epoch) "
              "| final val acc | train-val gap |")
    assert header in text
    # Epochs 2-3: vgg (20 + 22) / 2 = 21 s, 5000 / 21 = 238 img/s; vgg_separable 11 s, 455 img/s.
    # Training: vgg 30 + 20 + 22 = 72 s = 1.2 min; vgg_separable 25 + 10 + 12 = 47 s = 0.8 min.
    assert "| vgg | 1,186,378 | 153.63M | 3 | 1.2 | 21.00 | 238 | 0.5800 (3) | 0.5800 | +0.0400 |" in text
    assert "| vgg_separable | 174,821 | 21.17M | 3 | 0.8 | 11.00 | 455 | 0.5000 (3) | 0.5000 | +0.0500 |" in text
    # Relative to vgg: 174821 / 1186378 = 0.147, 21172224 / 153634816 = 0.138, 11 / 21 = 0.52, 50% - 58%.
    assert "| vgg_separable | 0.147x | 0.138x | 0.52x | -8.0 points |" in text
    assert "![vgg: training and validation accuracy per epoch](accuracy_vgg.png)" in text
    assert "sepconv compare vgg vgg_separable --recipe tutorial --preset quick" in text
    assert "Git commit: abc123" in text
    assert "synthetic <copy> \\| test" not in text  # pipes are escaped only inside tables
    assert "Data: synthetic <copy> | test (fingerprint 0123)" in text


def test_no_quick_note_and_single_epoch_note(tmp_path):
    models = {"vgg": (10, 20, [(0.5, 0.4, 3.0)])}
    folder = write_run(str(tmp_path / "run"), models=models, preset=None)
    write_report(folder)
    text = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "Quick preset" not in text and "Relative to" not in text
    assert "Only one epoch for vgg: its time includes tracing and compilation." in text
    assert "chance level" not in text and "busy" not in text


def test_time_budget_tta_shift_and_results_without_training_time(tmp_path):
    folder = write_run(str(tmp_path / "run"), preset=None)
    record = json.loads(open(os.path.join(folder, "config.json")).read())
    record["config"].update(time_budget=2.5, tta=True, tta_shift=1)
    results = json.loads(open(os.path.join(folder, "results.json")).read())
    del results["models"][1]["train_time_s"]  # results.json written before the column existed
    results["models"][0].update(test_accuracy=0.5, test_accuracy_tta=0.625, budget_elapsed_s=147.0)
    for name, value in (("config.json", record), ("results.json", results)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(value, f)
    write_report(folder)
    text = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "batch 128, as many epochs as fit in 2.5 min of wall clock per model." in text
    assert "| test acc (best model) | test acc, TTA (mirrors of shifts by 1 px) |" in text
    assert "| vgg_separable | 174,821 | 21.17M | 3 | - | 11.00 |" in text
    assert "| 0.5000 | 0.6250 |" in text and "| - | - |" in text  # vgg_separable was not tested
    wall = "Wall clock of the training under the 2.5-minute budget (steps, validation, checkpoints), in minutes: vgg 2.5."
    assert wall in text


def test_distribution_note_follows_the_last_start(tmp_path):
    folder = write_run(str(tmp_path / "run"), preset=None)
    one = {"devices": 1, "processes": 1, "devices_per_process": 1, "device_names": ["cpu:0"],
           "keras_distribution": None, "per_device_batch_size": 128}  # fmt: skip
    two = {**one, "devices": 2, "processes": 2, "device_names": ["cpu:0", "cpu:1"],
           "keras_distribution": "DataParallel", "per_device_batch_size": 64}  # fmt: skip
    record = json.loads(open(os.path.join(folder, "config.json")).read())
    resumed = {**record["environment"], "time": "2025-01-02T00:00:00+00:00", "distribution": two}
    record.update(distribution=one, resumed=[resumed])
    results = json.loads(open(os.path.join(folder, "results.json")).read())
    for r in results["models"]:
        r.update(devices=2, processes=2, median_images_per_s_per_device=r["median_images_per_s"] / 2)
    for name, value in (("config.json", record), ("results.json", results)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(value, f)
    write_report(folder)
    text = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert ("Started on 1 device(s), 1 process(es) (1 per process), 128 images per device per step; resumed on "
            "2 device(s), 2 process(es) (1 per process), 64 images per device per step; img/s per device: vgg 119, "
            "vgg_separable 227 (medians may mix epochs on different device counts).") in text  # fmt: skip


def test_chance_level_and_busy_machine_notes(tmp_path):
    models = {"vgg": (10, 20, [(0.1, 0.1, 3.0), (0.1, 0.12, 3.0)])}
    folder = write_run(str(tmp_path / "run"), models=models, load_average=8.07)
    write_report(folder)
    text = open(os.path.join(folder, "report.md"), encoding="utf-8").read()
    assert "- vgg did not get beyond chance level (1/10 = 0.10) in this run." in text
    assert "(1-minute load average 8.07 on 2 usable cores): times are longer than on an idle machine." in text


def test_html_is_self_contained(run_folder):
    write_report(run_folder)
    page = open(os.path.join(run_folder, "report.html"), encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(", page)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 6
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(source[len(prefix):]))) as image:
            assert image.format == "PNG"
    assert "synthetic &lt;copy&gt; | test" in page  # escaped, not markup
    assert "<td>vgg_separable</td>" in page and '<td class="num">174,821</td>' in page


def test_tutorial_figure_plots_the_history(run_folder):
    run = load_run(run_folder)
    figure, caption = plot_model_accuracy(run, "vgg")
    (ax,) = figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("epoch", "accuracy", "vgg")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["accuracy"].get_xdata()) == [1, 2, 3]
    assert list(lines["accuracy"].get_ydata()) == [0.40, 0.55, 0.62]
    assert list(lines["val_accuracy"].get_ydata()) == [0.45, 0.52, 0.58]


def test_scatter_and_bar_values(run_folder):
    run = load_run(run_folder)
    figure, _ = plot_accuracy_vs_params(run)
    points = [tuple(c.get_offsets()[0]) for c in figure.axes[0].collections]
    assert points == [(1_186_378, 0.58), (174_821, 0.50)]
    figure, _ = plot_time_per_epoch(run)
    assert [round(p.get_height(), 6) for p in figure.axes[0].patches] == [21.0, 11.0]


def test_histories_of_several_folders(run_folder, tmp_path):
    """One line pair per (folder, model); an unfinished folder (history.csv only) plots too."""
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    rows = [COLUMNS, ("dsc_resnet9_half", 1, 1.5, 0.3, 1.6, 0.35, 60, 750, 0.1)]
    rows.append(("dsc_resnet9_half", 2, 1.2, 0.5, 1.3, 0.55, 60, 750, 0.1))
    with open(unfinished / "history.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    figure = plot_histories({"done": run_folder, "going": str(unfinished)})
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert sorted(lines) == ["done vgg train", "done vgg val", "done vgg_separable train", "done vgg_separable val",
                             "going train", "going val"]  # fmt: skip
    assert list(lines["going val"].get_xdata()) == [1, 2] and list(lines["going val"].get_ydata()) == [0.35, 0.55]
    assert list(lines["done vgg_separable train"].get_ydata()) == [0.35, 0.48, 0.55]
    assert lines["going train"].get_linestyle() == "--" and lines["going val"].get_linestyle() == "-"
    path = save_figure(figure, str(tmp_path / "curves.png"))
    assert Image.open(path).format == "PNG"
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "run", "unfinished"]  # no temporary left behind


def test_histories_errors(run_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds history\.csv; this one does not\. Received: folder="):
        plot_histories({"empty": str(tmp_path / "none")})
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "history.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ValueError, match=r"history\.csv holds no finished epoch yet\. Received: folder=.*started'$"):
        plot_histories({"started": str(tmp_path / "started")})
    with pytest.raises(ValueError, match=r"has no column val_top5\. Received: metric='top5'$"):
        plot_histories({"done": run_folder}, metric="top5")
    with pytest.raises(ValueError, match=r"^folders must name at least one run folder\. Received: folders=\{\}$"):
        plot_histories({})


def test_missing_run_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has config\.json; this one does not\. Received: folder="):
        write_report(str(tmp_path))


def test_unknown_block_kind():
    with pytest.raises(ValueError, match=r"^Unknown report block kind\. Received: kind='video'$"):
        render_markdown([("video", "x")])
