"""Export a chosen architecture as a deployable bundle (see ``nas.bundle`` for the loader).

``export_bundle`` writes one bundle from a spec, its trained weights and the data description:
``spec.json``, ``features.json``, ``labels.json``, ``model.onnx`` (checked against torch with
onnxruntime), ``model.safetensors`` (weights + BN statistics; its metadata records the SHA-256 of
the JSON and ONNX files) and ``model_card.md``. Files are written to a temporary directory beside
the target and moved in only when everything succeeded, so a failed export leaves no half bundle.

``export_from_study`` picks a trial of a search with a selection rule (``nas.pareto.select``),
takes the trial's best-weights checkpoint when the search saved one or retrains the spec with
``trainers.train.fit`` otherwise, evaluates the exported model on the test split, writes the
bundle and registers it in the MLflow Model Registry when tracking is on.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import torch

from dashboards.records import CHECKPOINT_KEY, WEIGHTS_NOT_KEPT_KEY, Objective, TrialRecord
from nas import __version__
from nas.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    CARD_FILE,
    FEATURES_FILE,
    HASHED_FILES,
    LABELS_FILE,
    ONNX_FILE,
    ONNX_INPUT_NAME,
    ONNX_OUTPUT_NAME,
    SPEC_FILE,
    WEIGHTS_FILE,
    features_document,
    labels_document,
    load_exported,
    sha256_file,
)
from nas.config import DEFAULT_STORAGE, RETRAIN_ON, StudyConfig, apply_overrides
from nas.config import from_dict as config_from_dict
from nas.pareto import select
from search_spaces.build import build_model, count_params
from search_spaces.errors import FsnasError
from search_spaces.spec import ArchSpec
from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.featureset import FeatureConfig, FeatureSet, Split, Task
from trainers.metrics import task_metrics
from trainers.result import TrainConfig, TrialResult

ONNX_TOLERANCE: float = 1e-4
"""Largest |ONNX - torch| output difference an export accepts (float32 logits)."""

_ONNX_CHECK_BATCH = 4

DEFAULT_ALIAS: Final = "champion"
"""The MLflow registered-model alias an export points at its new version."""


class ExportError(FsnasError):
    """An export cannot be completed; the message names the study, trial, file or check."""


@dataclass
class Provenance:
    """Where the exported weights come from: the study, trial, seed, rule and how they were made."""

    study: str = ""
    trial_number: int | None = None
    seed: int | None = None
    selection_rule: str = ""
    # "checkpoint <path>" or "retrained: N epochs on train[+valid] (...)"
    weights_source: str = ""
    data_source: str = ""
    storage: str = ""
    fsnas_version: str = __version__
    created_utc: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportResult:
    """What ``export_bundle`` wrote: the directory, the ONNX check and the file hashes."""

    directory: Path
    onnx_max_abs_diff: float
    sha256: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    registered: str | None = None  # "name version N (alias champion)" when registered


# -- checks -----------------------------------------------------------------------------------
def verify_onnx(onnx_path: Path, model: torch.nn.Module, example: torch.Tensor) -> float:
    """Return max |ONNX - torch| of the logits on ``example`` (run with onnxruntime on the CPU).

    Raises:
        ExportError: onnxruntime cannot load or run the graph.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        (onnx_out,) = session.run(
            [ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: example.cpu().numpy().astype(np.float32)}
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ExportError(
            f"{ONNX_FILE}: onnxruntime cannot run the exported graph ({exc})"
        ) from exc
    with torch.no_grad():
        torch_out = model(example.float()).cpu().numpy()
    if onnx_out.shape != torch_out.shape:
        raise ExportError(
            f"{ONNX_FILE}: output shape {onnx_out.shape} differs from torch's {torch_out.shape}"
        )
    return float(np.max(np.abs(onnx_out - torch_out))) if torch_out.size else 0.0


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write the model as ONNX (TorchScript exporter, default opset, dynamic batch) to ``path``."""
    with warnings.catch_warnings():
        # constant-folding notes about asymmetric "same" padding slices are harmless here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
        )


def _example_input(
    n_mels: int, n_frames: int, examples: np.ndarray | torch.Tensor | None
) -> torch.Tensor:
    """Return the ONNX check batch: real features when given, else seeded log-mel-like noise."""
    if examples is not None and len(examples) > 0:
        return torch.as_tensor(np.asarray(examples[:_ONNX_CHECK_BATCH]), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(_ONNX_CHECK_BATCH, 1, n_mels, n_frames, generator=generator) * 4.0 - 8.0


# -- the model card ---------------------------------------------------------------------------
def format_value(value: Any) -> str:
    """Return how the model card writes a number: 4 decimals, 3 significant digits below 0.01."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0.0 and abs(value) < 0.01:
            return f"{value:.3g}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_NOT_COSTS = ("vram_source", "latency_ms", "device", CHECKPOINT_KEY, WEIGHTS_NOT_KEPT_KEY)


def _or_na(value: Any) -> str:
    return "n/a" if value is None else str(value)


def render_model_card(
    spec: ArchSpec,
    *,
    labels: list[str],
    task: Task,
    feature_config: FeatureConfig,
    n_frames: int,
    params: int,
    metrics: Mapping[str, float],
    costs: Mapping[str, Any],
    provenance: Provenance,
    onnx_max_abs_diff: float,
    sha256: Mapping[str, str],
    split_sizes: Mapping[str, int] | None = None,
) -> str:
    """Return ``model_card.md``: data, test metrics, costs, device and provenance of the model."""
    lines = [
        f"# {spec.name or 'fsnas model'}",
        "",
        f"Architecture: `{spec.summary()}` ({params:,} parameters; full spec in `{SPEC_FILE}`).",
        f"Task: {task}, {len(labels)} classes: {', '.join(labels)}.",
        "",
        "## Data",
        "",
        f"- source: `{provenance.data_source or 'n/a'}`",
        f"- input: log-mel {feature_config.n_mels} mels x {n_frames} frames, "
        f"{feature_config.sample_rate_hz} Hz, {feature_config.clip_seconds:g} s clips "
        f"(n_fft {feature_config.n_fft}, hop {feature_config.hop_length}); "
        f"waveform policy in `{FEATURES_FILE}`",
    ]
    if split_sizes:
        sizes = ", ".join(f"{name} {count:,}" for name, count in split_sizes.items())
        lines.append(f"- clips per split: {sizes}")
    lines += [
        "",
        "## Metrics of the exported weights",
        "",
        "test_* on the test split, val_* on the validation split (see Provenance for how).",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for name in sorted(metrics):
        lines.append(f"| {name} | {format_value(metrics[name])} |")
    lines += [
        "",
        "## Costs",
        "",
        "| cost | value |",
        "|---|---|",
    ]
    for name in (
        "params",
        "gflops",
        "train_vram_mb",
        "train_reserved_mb",
        "infer_vram_mb",
        "vram_source",
        "latency_ms",
        "device",
    ):
        if name in costs:
            unit = " MiB" if name.endswith("_mb") else ""
            lines.append(f"| {name} | {format_value(costs[name])}{unit} |")
    shown = {"params", "gflops", "train_vram_mb", "train_reserved_mb", "infer_vram_mb"}
    for name in sorted(set(costs) - shown):
        # the kept weights' path (or why there is none) is provenance (the "weights:" line
        # below), not a cost
        if name not in _NOT_COSTS:
            unit = " MiB" if name.endswith("_mb") else ""
            lines.append(f"| {name} | {format_value(costs[name])}{unit} |")
    lines += [
        "",
        "## Provenance",
        "",
        f"- study: {provenance.study or 'n/a'}",
        f"- trial: {_or_na(provenance.trial_number)}",
        f"- seed: {_or_na(provenance.seed)}",
        f"- selection rule: {provenance.selection_rule or 'n/a'}",
        f"- weights: {provenance.weights_source or 'n/a'}",
    ]
    if provenance.storage:
        lines.append(f"- storage: {provenance.storage}")
    lines += [
        f"- fsnas version: {provenance.fsnas_version}",
        f"- exported: {provenance.created_utc}",
    ]
    lines += [f"- note: {note}" for note in provenance.notes]
    lines += [
        "",
        "## Files",
        "",
        f"- ONNX check: max |onnxruntime - torch| = {onnx_max_abs_diff:.2e} on "
        f"{_ONNX_CHECK_BATCH} inputs (tolerance {ONNX_TOLERANCE:g})",
    ]
    lines += [f"- `{name}` sha256 `{digest}`" for name, digest in sorted(sha256.items())]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from nas.bundle import load_exported",
        "bundle = load_exported('THIS_DIRECTORY')",
        "probabilities = bundle.predict(waveform, sample_rate_hz)  # (n_classes,)",
        "```",
        "",
        "or `fsnas predict THIS_DIRECTORY clip.wav --top-k 3`.",
        "",
    ]
    return "\n".join(lines)


# -- writing a bundle ---------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _install(staging: Path, out_dir: Path) -> None:
    """Move the staged files into ``out_dir`` (created), replacing files of an older bundle."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in staging.iterdir():
        os.replace(path, out_dir / path.name)


def export_bundle(
    spec: ArchSpec,
    state_dict: Mapping[str, torch.Tensor],
    *,
    feature_config: FeatureConfig,
    labels: list[str],
    task: Task,
    out_dir: str | Path,
    n_frames: int | None = None,
    metrics: Mapping[str, float] | None = None,
    costs: Mapping[str, Any] | None = None,
    provenance: Provenance | None = None,
    examples: np.ndarray | torch.Tensor | None = None,
    split_sizes: Mapping[str, int] | None = None,
) -> ExportResult:
    """Return what was written after exporting ``spec`` with ``state_dict`` as a bundle.

    Args:
        spec: the architecture.
        state_dict: its trained weights and BN statistics (e.g. from a ``fit`` checkpoint).
        feature_config: how the training features were made.
        labels: class names in output order; ``task`` single- or multi-label.
        out_dir: the bundle directory (created; an older bundle's files are replaced).
        n_frames: frames of the model input (default ``feature_config.n_frames``).
        metrics: test (and validation) metrics of these weights, for the model card.
        costs: params, gflops, train_vram_mb, infer_vram_mb, vram_source, latency_ms, device.
        provenance: study, trial, seed, selection rule, how the weights were obtained.
        examples: a few real model inputs (N, 1, n_mels, n_frames) for the ONNX check.
        split_sizes: clips per split of the data, for the model card.

    Raises:
        ExportError: the weights do not fit the spec, or ONNX differs from torch by more
            than ``ONNX_TOLERANCE``.
    """
    out_dir = Path(out_dir)
    n_mels = feature_config.n_mels
    n_frames = feature_config.n_frames if n_frames is None else int(n_frames)
    provenance = provenance or Provenance()
    try:
        model = build_model(spec, n_mels, n_frames, len(labels))
        model.load_state_dict(dict(state_dict), strict=True)
    except (FsnasError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())
        raise ExportError(
            f"export to {out_dir}: the weights do not fit the spec {spec.summary()!r} ({detail})"
        ) from None
    model.eval()
    example = _example_input(n_mels, n_frames, examples)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise ExportError(f"export to {out_dir}: cannot write there ({exc})") from None
    try:
        write_onnx(model, example, staging / ONNX_FILE)
        onnx_diff = verify_onnx(staging / ONNX_FILE, model, example)
        if not onnx_diff <= ONNX_TOLERANCE:
            raise ExportError(
                f"{out_dir / ONNX_FILE}: onnxruntime output differs from torch by "
                f"{onnx_diff:.3g} > tolerance {ONNX_TOLERANCE:g}"
            )
        spec_text = spec.to_json()
        (staging / SPEC_FILE).write_text(spec_text + "\n", encoding="utf-8")
        _write_json(staging / FEATURES_FILE, features_document(feature_config, n_frames))
        _write_json(staging / LABELS_FILE, labels_document(labels, task))
        sha256 = {name: sha256_file(staging / name) for name in HASHED_FILES}
        metadata = {
            "format": BUNDLE_FORMAT,
            "format_version": str(BUNDLE_FORMAT_VERSION),
            "fsnas_version": provenance.fsnas_version,
            "n_mels": str(n_mels),
            "n_frames": str(n_frames),
            "n_classes": str(len(labels)),
            "task": task,
            **{HASHED_FILES[name]: digest for name, digest in sha256.items()},
        }
        save_checkpoint(staging / WEIGHTS_FILE, model.state_dict(), metadata)
        sha256[WEIGHTS_FILE] = sha256_file(staging / WEIGHTS_FILE)
        params = count_params(model)
        card = render_model_card(
            spec,
            labels=labels,
            task=task,
            feature_config=feature_config,
            n_frames=n_frames,
            params=params,
            metrics=dict(metrics or {}),
            costs={"params": params, **dict(costs or {})},
            provenance=provenance,
            onnx_max_abs_diff=onnx_diff,
            sha256=sha256,
            split_sizes=split_sizes,
        )
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        _install(staging, out_dir)
    except OSError as exc:
        raise ExportError(f"export to {out_dir}: writing the bundle failed ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        directory=out_dir,
        onnx_max_abs_diff=onnx_diff,
        sha256=sha256,
        metrics=dict(metrics or {}),
    )


# -- test metrics of exported weights -----------------------------------------------------------
@torch.no_grad()
def split_logits(model: torch.nn.Module, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Return the model's logits (N, K) on features ``x`` (N, 1, M, T), in eval mode, in batches."""
    model.eval()
    parts = [
        model(torch.as_tensor(np.asarray(x[i : i + batch_size]), dtype=torch.float32)).cpu()
        for i in range(0, len(x), max(1, batch_size))
    ]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), dtype=np.float32)


def evaluate_split(
    model: torch.nn.Module, split: Split, task: Task, batch_size: int = 64
) -> dict[str, float]:
    """Return ``test_<metric>`` of ``model`` on ``split`` (the metrics ``fit`` reports)."""
    logits = split_logits(model, split.x, batch_size)
    return {f"test_{k}": v for k, v in task_metrics(task, split.y, logits).items()}


# -- selecting a trial of a study ---------------------------------------------------------------
@dataclass
class StudySelection:
    """A study's chosen trial with everything needed to rebuild it."""

    study: str
    storage: str
    config: StudyConfig
    objectives: list[Objective]
    record: TrialRecord
    records: list[TrialRecord]


def select_trial(study: str, rule: str, storage: str | None = None) -> StudySelection:
    """Return the trial of ``study`` that ``rule`` picks (``nas.pareto.select``).

    Raises:
        ExportError: the study does not exist in the storage or stores no config/records.
        SelectionError: the rule is malformed or no trial satisfies it.
    """
    from nas.study import SearchError, read_study

    try:
        stored = read_study(study, storage or DEFAULT_STORAGE)
    except SearchError as exc:
        raise ExportError(str(exc)) from None
    url = stored.storage
    if not stored.config:
        raise ExportError(
            f"study {study!r} in {url} has no fsnas config (not made by fsnas search?)"
        )
    config = config_from_dict(stored.config, where=f"study {study!r} config")
    objectives = stored.objectives
    records = stored.records
    if not records:
        raise ExportError(f"study {study!r} in {url} has no finished trial yet")
    record = select(records, rule, objectives)
    return StudySelection(study, url, config, objectives, record, records)


# -- weights: the trial's checkpoint or a retrain ----------------------------------------------
def trial_checkpoint(record: TrialRecord) -> Path | None:
    """Return the trial's best-weights checkpoint if the search kept one for *this* spec.

    See ``checkpoint_or_reason``, which also says why there is none.
    """
    return checkpoint_or_reason(record)[0]


def checkpoint_or_reason(record: TrialRecord) -> tuple[Path | None, str]:
    """Return (the trial's usable checkpoint, "") or (None, why the export must retrain).

    The search keeps the weights of its front (``search.keep_weights``); a file that is gone,
    damaged (its tensors differ from their recorded SHA-256, or hold NaN), unreadable or
    holds another spec (a folder reused by another study of the same name) does not count,
    and the export then retrains, saying why.
    """
    not_kept = record.costs.get(WEIGHTS_NOT_KEPT_KEY)
    candidate = record.costs.get(CHECKPOINT_KEY)
    if not candidate:
        if not_kept:
            return None, f"the search could not keep its weights ({not_kept})"
        return None, "the search kept no checkpoint of this trial"
    path = Path(str(candidate))
    if not path.is_file():
        return None, f"its checkpoint {path} is gone"
    try:
        _, metadata = load_checkpoint(path)
    except FsnasError as exc:
        return None, f"its checkpoint is unusable: {exc}"
    try:
        stored = ArchSpec.from_json(metadata["spec"])
    except (FsnasError, KeyError):
        return None, f"its checkpoint {path} records no readable spec"
    if stored != ArchSpec.from_dict(record.spec):
        return None, f"its checkpoint {path} holds another architecture (overwritten?)"
    return path, ""


def merge_train_valid(data: FeatureSet) -> FeatureSet:
    """Return ``data`` whose train split also holds the valid clips (valid itself is kept)."""
    train = Split(
        x=np.concatenate([np.asarray(data.train.x), np.asarray(data.valid.x)]),
        y=np.concatenate([np.asarray(data.train.y), np.asarray(data.valid.y)]),
        paths=list(data.train.paths) + list(data.valid.paths),
    )
    return dataclasses.replace(data, train=train)


def _train_config(record: TrialRecord) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict({k: v for k, v in record.train_config.items() if k in known})


def retrain(
    spec: ArchSpec,
    data: FeatureSet,
    config: TrainConfig,
    device: str,
) -> tuple[dict[str, torch.Tensor], TrialResult]:
    """Return (best weights, TrialResult) of training ``spec`` with ``config`` via ``fit``.

    Raises:
        ExportError: the training did not complete (status and reason in the message).
    """
    from trainers.train import fit

    with tempfile.TemporaryDirectory(prefix="fsnas-export-") as folder:
        result = fit(spec, data, dataclasses.replace(config, checkpoint_dir=folder), device)
        if result.status != "complete" or not result.checkpoint:
            raise ExportError(
                f"retraining {spec.summary()!r} ended with status {result.status!r}: "
                f"{result.reason or 'no checkpoint written'}"
            )
        state, _ = load_checkpoint(result.checkpoint)
    return state, result


# -- MLflow Model Registry ----------------------------------------------------------------------
def register_bundle(
    bundle_dir: Path,
    *,
    tracking_uri: str,
    name: str,
    experiment: str,
    alias: str = DEFAULT_ALIAS,
    tags: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """Log the bundle as artifacts of an MLflow run and register it; return "name vN".

    The run goes to the experiment ``experiment`` (the study's), tagged ``fsnas.role=export``;
    the registered version's source is the run's ``bundle`` artifact folder and ``alias``
    (default "champion") points at it. The MLflow side is ``dashboards.registry.register_model``.

    Raises:
        Exception: whatever MLflow raises; the caller turns it into a warning.
    """
    from dashboards.registry import register_model

    return register_model(
        tracking_uri,
        bundle_dir,
        name=name,
        experiment=experiment,
        alias=alias,
        tags=tags,
        metrics=metrics,
    )


# -- the whole of `fsnas export --study` --------------------------------------------------------
def export_from_study(
    study: str,
    rule: str,
    out_dir: str | Path,
    *,
    storage: str | None = None,
    retrain_epochs: int | None = None,
    retrain_on: str = "train",
    data: str | None = None,
    device: str = "auto",
    tracking_uri: str | None = None,
    register_name: str | None = None,
    stream: TextIO | None = None,
) -> ExportResult:
    """Return the result of exporting the trial of ``study`` that ``rule`` selects.

    Weights: the trial's own checkpoint when the search kept one for its spec (and no retrain
    option is given); otherwise ``fit`` retrains the spec with the trial's TrainConfig and seed
    (``retrain_epochs`` default: the trial's epochs), which on the CPU gives the trial's weights.
    ``retrain_on="train+valid"`` adds the valid clips to the training data; early stopping is
    then switched off and the default epochs are the trial's ``best_epoch`` (what validation
    chose); ``fit`` still keeps its best-validation epoch, but those clips were trained on, so
    only the test metrics of such a model are held-out figures (the card says so).

    The exported weights are evaluated on the test split, the bundle is written and loaded
    back (the loaded model must give the same test metrics), then it is registered in the
    MLflow Model Registry unless the tracking URI is "none"; a registration failure is a
    warning, never an error.

    Raises:
        ExportError, SelectionError, SearchError, DataError: before anything is written, except
            an ExportError of the final check that the written bundle loads and agrees.
    """
    out = stream or sys.stdout
    if retrain_on not in RETRAIN_ON:
        raise ExportError(f"--retrain-on must be one of {list(RETRAIN_ON)}, got {retrain_on!r}")
    if retrain_epochs is not None and retrain_epochs < 1:
        raise ExportError(f"--retrain-epochs must be >= 1, got {retrain_epochs}")
    selection = select_trial(study, rule, storage)
    record = selection.record
    config = selection.config
    if record.status == "invalid" or not record.spec:
        raise ExportError(
            f"study {study!r} trial {record.number}: status {record.status!r}, nothing to export "
            f"({record.reason or 'no spec'})"
        )
    spec = ArchSpec.from_dict(record.spec)
    if data:
        config = apply_overrides(config, {"data.source": data}, where="--data")
    print(
        f"[{study}] rule {rule}: trial {record.number} ({record.status}) {record.spec_summary}",
        file=out,
        flush=True,
    )

    from nas.search import load_study_features

    features = load_study_features(config)
    train_config = _train_config(record)
    provenance = Provenance(
        study=study,
        trial_number=record.number,
        seed=train_config.seed,
        selection_rule=rule,
        data_source=features.source or config.data.source,
        storage=selection.storage,
    )
    if record.status != "complete":
        provenance.notes.append(
            f"the trial's status was {record.status!r} ({record.reason}); it was never on the front"
        )
    checkpoint, why_retrain = None, ""
    if retrain_epochs is None and retrain_on == "train":
        checkpoint, why_retrain = checkpoint_or_reason(record)
    if checkpoint is not None:
        state, _ = load_checkpoint(checkpoint)
        provenance.weights_source = f"the trial's best-validation checkpoint {checkpoint}"
        costs = dict(record.costs)
        costs["device"] = record.device
        train_metrics = {k: v for k, v in record.metrics.items() if not k.startswith("test_")}
    else:
        train_data = features
        epochs = retrain_epochs or train_config.epochs
        retrain_config = train_config
        if retrain_on == "train+valid":
            train_data = merge_train_valid(features)
            epochs = retrain_epochs or int(record.metrics.get("best_epoch") or epochs)
            retrain_config = dataclasses.replace(retrain_config, early_stopping_patience=None)
            provenance.notes.append(
                "trained on train+valid: the valid clips were also training data, so the val_* "
                "figures and fit's best-epoch choice are not held-out; test_* are"
            )
        retrain_config = dataclasses.replace(retrain_config, epochs=epochs)
        print(
            f"[{study}] retraining trial {record.number} for {epochs} epoch(s) on {retrain_on} "
            f"(seed {retrain_config.seed}, device {device})"
            + (f": {why_retrain}" if why_retrain else ""),
            file=out,
            flush=True,
        )
        state, result = retrain(spec, train_data, retrain_config, device)
        provenance.weights_source = (
            f"retrained by fsnas export with fit: {epochs} epoch(s) on {retrain_on}, seed "
            f"{retrain_config.seed}, best epoch {int(result.metrics.get('best_epoch', 0))}, "
            f"{result.seconds:.1f} s on {result.device}"
        )
        if why_retrain:
            provenance.weights_source += f" ({why_retrain})"
        costs = {**result.cost_summary(), "device": result.device}
        train_metrics = {k: v for k, v in result.metrics.items() if not k.startswith("test_")}

    model = build_model(spec, features.n_mels, features.n_frames, features.n_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(
            f"study {study!r} trial {record.number}: weights do not fit the spec ({exc})"
        ) from None
    metrics = {
        **train_metrics,
        **evaluate_split(model, features.test, features.task, train_config.batch_size),
    }
    recorded = {k: v for k, v in record.metrics.items() if k.startswith("test_") and k in metrics}
    differing = {k: v for k, v in recorded.items() if v != metrics[k]}
    for key, value in differing.items():
        provenance.notes.append(
            f"the search recorded {key} = {value:.4f} for this trial; the exported weights "
            f"give {metrics[key]:.4f}"
        )
    if recorded and not differing:
        provenance.notes.append(
            "the test metrics above equal those the search recorded for this trial"
        )
    outcome = export_bundle(
        spec,
        state,
        feature_config=features.feature_config,
        labels=list(features.labels),
        task=features.task,
        out_dir=out_dir,
        n_frames=features.n_frames,
        metrics=metrics,
        costs=costs,
        provenance=provenance,
        examples=features.test.x[:_ONNX_CHECK_BATCH],
        split_sizes={
            "train": len(features.train),
            "valid": len(features.valid),
            "test": len(features.test),
        },
    )
    reloaded = load_exported(outcome.directory)
    again = evaluate_split(reloaded.model, features.test, features.task, train_config.batch_size)
    if any(
        again[k] != metrics[k] and not (math.isnan(again[k]) and math.isnan(metrics[k]))
        for k in again
    ):
        raise ExportError(
            f"{outcome.directory}: the loaded bundle gives {again}, the exported weights {metrics}"
        )
    print(
        f"[{study}] wrote {outcome.directory} ("
        + ", ".join(f"{k} {v:.4f}" for k, v in sorted(again.items()))
        + f"; ONNX max |diff| {outcome.onnx_max_abs_diff:.1e})",
        file=out,
        flush=True,
    )
    uri = tracking_uri or config.tracking_uri
    if uri != "none":
        from dashboards.mlflow_store import resolve_tracking_uri

        resolved = resolve_tracking_uri(uri)
        name = register_name or f"{study}-model"
        try:
            outcome.registered = register_bundle(
                outcome.directory,
                tracking_uri=resolved,
                name=name,
                experiment=study,
                tags={"fsnas.trial": str(record.number), "fsnas.selection_rule": rule},
                metrics=metrics,
            )
            print(f"[{study}] registered {outcome.registered} in {resolved}", file=out, flush=True)
        except Exception as exc:  # the bundle stands on its own; registration is a bonus
            message = (
                f"fsnas export: registering {name!r} in MLflow at {resolved} failed "
                f"({type(exc).__name__}: {exc}); the bundle in {outcome.directory} is complete"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    return outcome
