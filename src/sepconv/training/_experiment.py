"""`train`, `compare` and `resume`: models trained on identical data, into one run folder.

Every model of a run gets the same training subset, validation set, batch order and
augmentation (all fixed by `config.seed`), the same optimizer, schedule and loss, and
starts from weights drawn after `keras.utils.set_random_seed(config.seed)`.
"""

import dataclasses
import hashlib
import os

import numpy as np

from sepconv import _provenance
from sepconv import _run_folder as layout
from sepconv.data import stratified_subset
from sepconv.models import check_model_arguments, check_model_name
from sepconv.training._config import TrainConfig, rerun_command
from sepconv.training._distribution import scaling, start as start_distribution
from sepconv.training._loop import budget_epochs, fit_model, training_batches
from sepconv.training._results import GAP_NOTE, MACS_NOTE, TIMING_NOTE, summarize

DEFAULT_MODELS = ("vgg", "vgg_separable")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What `train`, `compare` and `resume` return.

    Attributes:
        folder: the run folder (see `sepconv._run_folder` for its layout).
        config: the `TrainConfig` of the run.
        models: model name -> summary (params, MACs, median time per epoch, best and
            final validation accuracy, ...), as in `results.json`.
        history: model name -> list of per-epoch rows, as in `history.csv`.
    """

    folder: str
    config: TrainConfig
    models: dict
    history: dict


def train(model_name, config=None, *, out=None, quiet=False, data=None, report=True, distribution=None):
    """Trains one model; see `compare`."""
    return compare([model_name], config, out=out, quiet=quiet, data=data, report=report, distribution=distribution)


def compare(model_names=DEFAULT_MODELS, config=None, *, out=None, quiet=False, data=None, report=True,
            distribution=None):  # fmt: skip
    """Trains each model in turn on identical data, order, optimizer and schedule.

    With `config.time_budget`, each model's step time is measured before any trains and
    each gets the epochs that fit (`sepconv.training._loop.budget_epochs`), its schedule
    spanning them.

    Args:
        model_names: names from `sepconv.models.list_models()`.
        config: a `TrainConfig` (default: the tutorial recipe).
        out: run folder to create; default `runs/<timestamp>-<models>`.
        quiet: one printed line per epoch instead of progress bars.
        data: a `sepconv.data.Cifar10` to use instead of loading `config.data`.
        report: write report.md, report.html and the plots at the end.
        distribution: a `DistributionConfig` (devices, processes) or None for one device;
            `config.batch_size` is the global batch. Only process 0 writes files.

    Returns:
        A `RunResult`.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig. Received: config={type(config).__name__}")
    names = [model_names] if isinstance(model_names, str) else list(model_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"model_names must be distinct model names, at least one. Received: model_names={names}")
    for name in names:
        check_model_name(name, argument="model")
        check_model_arguments(name, config.model_kwargs, argument="model_kwargs")
    _check_distributed_options(config, distribution)
    placement = start_distribution(distribution, config.batch_size)
    folder = layout.check_new_folder(out or layout.default_folder(names, now=placement.start_time()))
    placement.barrier("run folder checked")  # before process 0 writes into it
    splits = run_splits(config, data, quiet)
    budgets = _budgets(folder, names, config, splits, placement, quiet)
    if placement.writer:
        os.makedirs(folder, exist_ok=True)
        layout.write_json(
            os.path.join(folder, layout.CONFIG),
            {
                "models": names,
                "config": config.to_dict(),
                "rerun": rerun_command(names, config),
                "data": _describe(splits),
                "environment": _provenance.environment(),
                "distribution": placement.to_dict(config.batch_size),
                "resumed": [],
            },
        )
    return _train_all(folder, names, config, splits, quiet, report, placement, budgets)


def resume(folder, *, quiet=False, data=None, report=True, distribution=None):
    """Continues the run in `folder` to its final epoch, with its saved config and data.

    Finished models are kept, an interrupted one continues from its last checkpoint with
    its history, and models not started yet are trained. `data` is as in `compare`; it
    must give the same training and validation arrays as the original run. Every process
    of a distributed run resumes from the same folder; `distribution` may differ from the
    original run's (it does not change what is computed) if an epoch keeps its steps.
    """
    record_path = os.path.join(folder, layout.CONFIG)
    if not os.path.isfile(record_path):
        raise FileNotFoundError(f"resume needs a run folder holding config.json. Received: resume={folder!r}")
    record = layout.read_json(record_path)
    config = TrainConfig.from_dict(record["config"])
    _check_distributed_options(config, distribution)
    placement = start_distribution(distribution, config.batch_size)
    splits = run_splits(config, data, quiet)
    check_same_data(record, splits, f"resume={folder!r}")
    budgets = _budgets(folder, record["models"], config, splits, placement, quiet)
    if placement.writer:
        record["resumed"].append({**_provenance.environment(), "distribution": placement.to_dict(config.batch_size)})
        layout.write_json(record_path, record)
    return _train_all(folder, record["models"], config, splits, quiet, report, placement, budgets)


def check_same_data(record, splits, received):
    """Raises unless `splits` hold the training and validation arrays of the run `record` describes."""
    if _describe(splits)["fingerprint"] != record["data"]["fingerprint"]:
        raise ValueError(
            "the data differ from those the run started with (training or validation arrays); "
            f"point data at the original copy ({record['data']['source']}). Received: {received}"
        )


def _check_distributed_options(config, distribution):
    if config.time_budget and distribution is not None and distribution.enabled:
        raise ValueError(
            "time_budget needs one process without keras.distribution (each process would measure its own "
            f"step time). Received: time_budget={config.time_budget}, devices={distribution.devices}, "
            f"num_processes={distribution.num_processes}"
        )
    if config.ema_momentum and distribution is not None and distribution.multi_process:
        raise ValueError(
            "ema_momentum needs one process (Keras swaps the weight average in by fetching each weight to the "
            f"host, which a multi-process array forbids). Received: ema_momentum={config.ema_momentum}, "
            f"num_processes={distribution.num_processes}"
        )


def _budgets(folder, names, config, splits, placement, quiet):
    """`{name: (epochs, step_s)}` for the models a time budget has not sized yet, all measured first."""
    if not config.time_budget:
        return {}
    budgets = {}
    for name in names:
        state_path = os.path.join(folder, name, layout.STATE)
        if os.path.exists(state_path) and "epochs" in layout.read_json(state_path):
            continue
        if not quiet:
            print(f"{name}: timing training steps for the {config.time_budget:g}-minute budget", flush=True)
        budgets[name] = budget_epochs(name, config, splits, training_batches(splits, config, placement))
    return budgets


def _train_all(folder, names, config, splits, quiet, report, placement, budgets):
    print(f"run folder: {folder}\n{splits.describe()}", flush=True)
    states = {}

    def write_history():
        rows = []
        for name in names:
            path = os.path.join(folder, name, layout.STATE)
            if os.path.exists(path):
                rows.extend(layout.read_json(path)["history"])
        layout.write_history(os.path.join(folder, layout.HISTORY), rows)

    for index, name in enumerate(names, start=1):
        states[name] = fit_model(
            name,
            splits,
            config,
            os.path.join(folder, name),
            quiet=quiet,
            label=f"{name} [{index}/{len(names)}]",
            on_saved=write_history,
            test_data=config.validation != "test",
            placement=placement,
            budget=budgets.get(name),
        )
    summaries = {name: summarize(state) for name, state in states.items()}
    summaries = {name: {**summary, **scaling(summary, placement)} for name, summary in summaries.items()}
    if not placement.writer:
        return RunResult(folder, config, summaries, {name: state["history"] for name, state in states.items()})
    write_history()
    layout.write_json(
        os.path.join(folder, layout.RESULTS),
        {"models": list(summaries.values()), "notes": {"timing": TIMING_NOTE, "gap": GAP_NOTE, "macs": MACS_NOTE}},
    )
    if report:
        from sepconv.report import write_report

        write_report(folder)
    return RunResult(
        folder=folder,
        config=config,
        models=summaries,
        history={name: state["history"] for name, state in states.items()},
    )


def run_splits(config, data, quiet):
    """The run's `Splits`: `config.train_size`, `config.validation`, capped at `config.val_size`."""
    from sepconv.data import Cifar10, load_cifar10, make_splits

    if data is None:
        data = load_cifar10(config.data, progress=not quiet)
    elif not isinstance(data, Cifar10):
        raise TypeError(f"data must be a sepconv.data.Cifar10 or None. Received: data={type(data).__name__}")
    splits = make_splits(data, train_size=config.train_size, validation=config.validation, seed=config.seed)
    if config.val_size is not None and config.val_size < len(splits.y_val):
        keep = stratified_subset(splits.y_val, config.val_size, config.seed)
        splits = dataclasses.replace(
            splits,
            x_val=splits.x_val[keep],
            y_val=splits.y_val[keep],
            validation=f"{splits.validation}; a stratified subset of {config.val_size:,} images (seed {config.seed})",
        )
    return splits


def _describe(splits):
    digest = hashlib.sha256()
    for array in (splits.x_train, splits.y_train, splits.x_val, splits.y_val):
        digest.update(np.ascontiguousarray(array).tobytes())
    return {
        "source": splits.source,
        "validation": splits.validation,
        "train_images": len(splits.y_train),
        "val_images": len(splits.y_val),
        "test_images": len(splits.y_test),
        "class_names": list(splits.class_names),
        "splits": splits.describe(),
        "fingerprint": digest.hexdigest()[:16],
    }
