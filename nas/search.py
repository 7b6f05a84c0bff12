"""The search driver: features once, the space, the Ray backend, records, front and progress.

``run_search(config)`` is the whole of ``fsnas search``. It loads the features once on the
driver, opens (or resumes) the Optuna study that identifies the search (study name + storage),
hands the remaining trial budget to ``nas.ray_backend``, and turns every finished trial into a
``TrialRecord``: status, reason, metrics, objectives and costs. Records are stored as Optuna user
attributes, so ``fsnas pareto`` and a resumed search read them back from the storage alone.

A finished trial costs Ray Tune's control loop O(front), not O(study): ``on_record`` updates the
progress line (``pareto.RunningFront``) and queues the record; MLflow logging and the parent
run's artifact refreshes run on the driver's ``TrackingThread`` (a refresh at most every
``REFRESH_EVERY_S`` = 30 s, ``$FSNAS_MLFLOW_REFRESH_S`` to change it, and once at the end);
both live in ``nas.search_progress``.

The driver only: the trial function lives in ``nas.trial`` (worker side), the Optuna study
(storage, sampler, attribute schema, repeats, weight names) in ``nas.study``, and everything
Ray-specific in ``nas.ray_backend``; ``docs/architecture.md`` follows one trial through them.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import optuna

from dashboards.records import (
    CHECKPOINT_KEY,
    WEIGHTS_NOT_KEPT_KEY,
    Objective,
    StudySummary,
    TrialRecord,
)
from nas import pareto
from nas.config import ConfigError, StudyConfig, metric_name
from nas.interrupt import Interrupt, SearchInterrupted, signal_name
from nas.search_progress import Progress, TrackingThread, refresh_every_s
from nas.study import (
    REFERENCE_ATTR,
    REFERENCE_SOURCE_ATTR,
    StoredStudy,
    check_weights_folder,
    close_orphans,
    enqueue_initial,
    make_sampler,
    open_storage,
    open_study,
    read_study,
    sampler_seed,
    study_meaning,
    tidy_weights,
    weights_folder,
)
from nas.trial import SHARE_EXCEEDED_KEY, TrialSettings
from search_spaces.errors import SpecError, excerpt
from trainers.featureset import FeatureSet
from trainers.metrics import PITCH_ROBUSTNESS_METRIC
from trainers.result import TrainConfig

# the cost objectives a trial reports at every epoch (known before training): the ones the
# Pareto-aware scheduler can compare at a rung
RUNG_COSTS = ("train_vram_mb", "infer_vram_mb", "params", "gflops")


def early_stopping_notice(config: StudyConfig, objectives: list[Objective]) -> str | None:
    """Return why early stopping can stop nothing in this study, or None when it can."""
    if not config.search.early_stopping.enabled:
        return None
    if any(o.name in RUNG_COSTS for o in objectives[1:]):
        return None
    costs = ", ".join(o.name for o in objectives[1:]) or "none"
    return (
        f"[{config.study}] early stopping will stop no trial: its cost objectives ({costs}) are "
        f"measured only after training, and a rung never judges on the metric alone; add one of "
        f"{', '.join(RUNG_COSTS)} to search.objectives to prune dominated trials"
    )


# -- the driver ---------------------------------------------------------------------------------
@dataclass
class SearchOutcome:
    """What ``run_search`` returns: every record of the study, the summary and the front."""

    records: list[TrialRecord]
    summary: StudySummary
    front: list[TrialRecord]
    hypervolume: float
    knee: TrialRecord | None
    tracking_uri: str | None = None
    experiment_dir: str | None = None
    # proposals that repeated a known design, answered without training (DUPLICATE_ATTR)
    repeats: int = 0


def summarise(
    study_name: str,
    records: list[TrialRecord],
    objectives: list[Objective],
    config: dict[str, Any],
    hv_history: list[tuple[int, float]] | None = None,
    reference: dict[str, float] | None = None,
) -> tuple[StudySummary, list[TrialRecord], float, TrialRecord | None]:
    """Return (summary, front, hypervolume, knee) and set ``on_pareto_front`` on the records.

    The reference point is the study's (``reference``, stored with it), else the one
    ``pareto.study_reference`` fixes from the config's bounds and the first complete trial;
    the hypervolume history is recomputed against it, so it never falls.
    """
    if not reference:
        reference = fallback_reference(records, objectives, config)
    running = pareto.RunningFront(objectives, reference)  # the front, at O(front) per record
    for r in records:
        running.add(r)
    front = running.front
    on_front = {r.number for r in front}
    for r in records:
        r.on_pareto_front = r.number in on_front
    hv, ref = running.hypervolume(), running.reference()
    history: list[tuple[int, float]] = []
    prefix = pareto.RunningFront(objectives, ref)
    complete = sorted((r for r in records if r.status == "complete"), key=lambda r: r.number)
    for k, r in enumerate(complete, start=1):
        prefix.add(r)
        history.append((k, prefix.hypervolume()))
    # the knee of the front alone (its members in the records' order): that of all records
    knee = pareto.knee_record(running.members, objectives)
    summary = StudySummary(
        study_name=study_name,
        objectives=list(objectives),
        reference_point=ref,
        hypervolume_history=history or list(hv_history or []),
        knee_number=knee.number if knee else None,
        config=config,
    )
    return summary, front, hv, knee


def reference_bounds(
    objectives: Sequence[Objective], max_train_vram_mb: float | None
) -> dict[str, float]:
    """Return the reference-point bounds known before any trial: the VRAM constraint."""
    names = {o.name for o in objectives}
    if max_train_vram_mb is not None and "train_vram_mb" in names:
        return {"train_vram_mb": float(max_train_vram_mb)}
    return {}


def fallback_reference(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], config: dict[str, Any]
) -> dict[str, float] | None:
    """Return the reference a study without a stored one gets: the rule of the search."""
    search = config.get("search")
    limit = search.get("max_train_vram_mb") if isinstance(search, dict) else None
    bounds = reference_bounds(objectives, limit)
    ordered = sorted(records, key=lambda r: r.number)
    first = next((r for r in ordered if pareto.front_candidates([r], objectives)), None)
    fixed = pareto.study_reference(objectives, bounds, first)
    return fixed[0] if fixed else None


def reference_text(reference: dict[str, float], source: dict[str, str] | None = None) -> str:
    """Return ``name=value (source), ...`` of a reference point."""
    src = source or {}
    return ", ".join(
        f"{k}={v:.4g}" + (f" ({src[k]})" if k in src else "") for k, v in reference.items()
    )


def load_study_features(config: StudyConfig) -> FeatureSet:
    """Return the study's FeatureSet, computed (or read from the cache) once on the driver.

    With ``data.pitch_shifts`` the valid split is also featurised at each shift (one cache
    entry per shift) into ``FeatureSet.valid_shifted``.
    """
    from trainers.features import load_features

    def load(semitones: float = 0.0) -> FeatureSet:
        return load_features(
            config.data.source,
            config.data.features,
            cache_dir=config.data.cache_dir,
            on_bad_audio=config.data.on_bad_audio,
            label_regex=config.data.label_regex,
            seed=config.search.seed,
            pitch_shift_semitones=semitones,
        )

    data = load()
    for semitones in config.data.pitch_shifts:
        shifted = data.valid if semitones == 0 else load(semitones).valid
        data.valid_shifted[float(semitones)] = shifted
    return data


def build_space(config: StudyConfig, data: FeatureSet) -> Any:
    """Return the study's space (``nas.spaces.study_space``), bound to the features' input."""
    from nas.spaces import study_space

    return study_space(config, data.n_mels, data.n_frames)


def initial_params(config: StudyConfig, space: Any) -> list[tuple[str, dict[str, Any]]]:
    """Return (label, trial parameters) of each warm-start design, in order.

    With ``space_around`` its design comes first; then each ``search.initial_specs`` entry: a
    preset name (``fsnas presets list``) or an ArchSpec JSON file.

    Raises:
        ConfigError: an entry is neither, its file does not parse, or the design is not a
            point of the search space (the message names ``search.initial_specs[i]``).
    """
    from nas.config import SPACE_BASE_KEY
    from nas.spaces import around_design, read_design
    from search_spaces.presets import PRESETS

    out = []
    design = around_design(config, space)
    if design is not None:
        out.append(design)
    for index, entry in enumerate(config.search.initial_specs):
        key = f"search.initial_specs[{index}]"
        try:
            spec, label = read_design(entry, key)
            out.append((label, space.params_for(spec)))
        except SpecError as err:
            hint = ""
            if (
                entry in PRESETS
                and config.space_around is None
                and SPACE_BASE_KEY not in config.space
            ):
                hint = (
                    "; every preset is a point of the literature space at its reference input "
                    "(--space literature)"
                )
            raise ConfigError(f"{key} = {excerpt(entry)}: {err}{hint}") from None
    return out


def run_search(
    config: StudyConfig,
    *,
    stream: TextIO | None = None,
    tracker_factory: Callable[..., Any] | None = None,
) -> SearchOutcome:
    """Run (or resume) the study of ``config`` to ``search.trials`` finished trials.

    Returns the outcome with every record; the records also live in the Optuna storage.

    Raises:
        SearchError, ConfigError, TrackingError, DataError: before any trial trains.
    """
    from nas import ray_backend

    out = stream or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    refresh_s = refresh_every_s()  # a bad $FSNAS_MLFLOW_REFRESH_S fails before any work
    sampler = make_sampler(config)  # a bad sampler choice fails before any work
    tracking_uri = _check_tracking(config)
    data = load_study_features(config)
    space = build_space(config, data)
    objectives = config.objectives(data.task)
    designs = initial_params(config, space)  # a bad warm-start entry fails before any work
    storage = open_storage(config.storage)
    meaning = study_meaning(config, data.cache_key, metric_name(data.task), objectives)
    study = open_study(config, storage, objectives, meaning, out)
    orphans = close_orphans(storage, study)
    if study.trials:  # a resume: fresh random draws, not the first run's again
        sampler = make_sampler(config, len(study.trials))
    stored = read_study(config.study, storage)
    previous = stored.records
    remaining = config.search.trials - len(previous)
    weights = weights_folder(config)
    if weights is not None and remaining > 0:
        check_weights_folder(weights)  # a read-only or full weights disk: before any training

    def remember_reference(ref: dict[str, float], source: dict[str, str]) -> None:
        # once per study: stored with it, so every later reader (pareto, a resume) uses it
        study.set_user_attr(REFERENCE_ATTR, ref)
        study.set_user_attr(REFERENCE_SOURCE_ATTR, source)
        print(
            f"[{config.study}] hypervolume reference point, fixed for the study: "
            f"{reference_text(ref, source)}",
            file=out,
            flush=True,
        )

    progress = Progress(
        config.study,
        config.search.trials,
        objectives,
        stream=out,
        reference=stored.reference or None,
        bounds=reference_bounds(objectives, config.search.max_train_vram_mb),
        on_reference=remember_reference,
    )
    notice = early_stopping_notice(config, objectives)
    if notice:
        print(notice, file=out, flush=True)
    progress.extend(previous)
    if previous or orphans:
        print(
            f"[{config.study}] resuming: {len(previous)} finished trial(s) kept"
            + (f", {orphans} interrupted trial(s) will be asked again" if orphans else "")
            + f"; {max(remaining, 0)} to run (sampler seed "
            + f"{sampler_seed(config.search.seed, len(study.trials))}: new draws)",
            file=out,
            flush=True,
        )
    if designs and remaining > 0:
        queued, skipped = enqueue_initial(study, designs, remaining)
        print(
            f"[{config.study}] warm start: {len(queued)} design(s) run first"
            + (f" ({'; '.join(queued)})" if queued else "")
            + (f"; {len(skipped)} already in the study or over the budget" if skipped else ""),
            file=out,
            flush=True,
        )
    tracker = _start_tracker(config, tracking_uri, tracker_factory)
    logger = None
    if tracker is not None:
        config_dict = config.to_dict()

        def summary_of(records: list[TrialRecord]) -> StudySummary:
            history = list(progress.hv_history)
            return summarise(
                config.study, records, objectives, config_dict, history, progress.reference
            )[0]

        # MLflow logging and refreshes run on this thread, off Ray Tune's control loop; the
        # trials of a resumed study go first (the tracker finds their runs: none doubled)
        logger = TrackingThread(tracker, summary_of, previous, refresh_every_s=refresh_s)

    def on_record(record: TrialRecord) -> None:
        # in Tune's control loop: count the trial and queue it, nothing that grows with the study
        progress.add(record)
        if logger is not None:
            logger.submit(record)

    settings = TrialSettings(
        train_config=trial_train_config(config),
        objectives=tuple(objectives),
        max_train_vram_mb=config.search.max_train_vram_mb,
    )
    experiment_dir = None
    status = "FINISHED"
    interrupt = Interrupt()

    def on_head_lost(address: str, silent_s: float) -> str:
        # the watchdog's thread, the process about to exit: MLflow gets what is queued (a
        # resume backfills the rest); the count is the storage's
        if logger is not None:
            logger.close_within(HEAD_LOST_FLUSH_S)
        done = len(read_study(config.study, storage).records)
        return head_lost_message(config, address, silent_s, done)

    try:
        if logger is not None:
            logger.start()
        if remaining > 0:
            experiment_dir = ray_backend.run(
                config=config,
                data=data,
                space=space,
                settings=settings,
                storage=storage,
                sampler=sampler,
                objectives=objectives,
                n_trials=remaining,
                on_record=on_record,
                on_running=progress.set_running,
                weights_dir=weights,
                interrupt=interrupt,
                on_head_lost=on_head_lost,
                # MLflow's thread stops before Ray does (no Ray finaliser runs on it after)
                before_shutdown=logger.close if logger is not None else None,
            )
        if interrupt.signum is not None:
            status = "KILLED"
    except BaseException:
        status = "KILLED"
        raise
    finally:
        if logger is not None:
            logger.close()  # every queued trial logged (or in the tracker's outage queue)
        stored = read_study(config.study, storage)
        outcome = study_outcome(stored, progress.hv_history)
        if weights is not None and status == "FINISHED":
            tidy_weights(weights, outcome.records, outcome.front, config.search.keep_weights)
        if tracker is not None:
            tracker.finish(outcome.records, outcome.summary, status)
            # the kept weights of the front, beside each trial in MLflow (after finish, which
            # has created every child run)
            tracker.log_weights(outcome.front)
            if tracker_factory is None:  # importance plots and the run's description
                from nas.insight import finish_parent_run

                finish_parent_run(tracker, stored.study, outcome, _front_text(outcome))
    outcome.tracking_uri = tracking_uri if tracker is not None else None
    outcome.experiment_dir = experiment_dir
    if interrupt.signum is not None:
        done = sum(1 for r in outcome.records)
        raise SearchInterruptedWithOutcome(
            interrupt.signum,
            f"{signal_name(interrupt.signum)}: stopped with {done} of {config.search.trials} "
            "trial(s) finished (each is in the study's storage)",
            outcome,
        )
    return outcome


# the most a driver whose Ray head is lost waits for MLflow before it exits
HEAD_LOST_FLUSH_S = 10.0


def head_lost_message(config: StudyConfig, address: str, silent_s: float, done: int) -> str:
    """Return the one line ``fsnas search`` prints when its Ray head stops answering."""
    port = address.rpartition(":")[2]
    start = f"ray start --head --port={port}" if port.isdigit() else "ray start --head"
    again = shlex.join(["fsnas", *sys.argv[1:]])
    return (
        f"fsnas search: error: the Ray head at {address} stopped answering mid-search (no "
        f"connection for {silent_s:g} s); {done} of {config.search.trials} trial(s) finished "
        f"and are stored in {config.storage}; start a cluster again (`{start}`) and run the "
        f"same command to resume: {again}"
    )


class SearchInterruptedWithOutcome(SearchInterrupted):
    """``SearchInterrupted`` carrying the outcome so far (every finished trial)."""

    def __init__(self, signum: int, message: str, outcome: SearchOutcome) -> None:
        super().__init__(signum, message)
        self.outcome = outcome


def study_outcome(
    stored: StoredStudy, hv_history: list[tuple[int, float]] | None = None
) -> SearchOutcome:
    """Return the outcome of a stored study: its records, summary, front, hypervolume, knee."""
    summary, front, hv, knee = summarise(
        stored.name,
        stored.records,
        stored.objectives,
        stored.config,
        hv_history,
        stored.reference or None,
    )
    return SearchOutcome(
        records=stored.records,
        summary=summary,
        front=front,
        hypervolume=hv,
        knee=knee,
        repeats=stored.repeats,
    )


def trial_train_config(config: StudyConfig) -> TrainConfig:
    """Return the TrainConfig every trial of the study trains with (threads per trial set)."""
    threads = max(1, int(config.resources.cpus_per_trial))
    return dataclasses.replace(config.train, num_threads=config.train.num_threads or threads)


def _check_tracking(config: StudyConfig) -> str | None:
    """Return the MLflow URI after checking it answers (None when tracking is "none").

    Raises:
        TrackingError: the store cannot be reached; raised before any feature or trial work.
    """
    from dashboards.mlflow_store import checked_tracking_uri

    return checked_tracking_uri(config.tracking_uri)


def _start_tracker(config: StudyConfig, uri: str | None, factory: Callable[..., Any] | None) -> Any:
    """Return a started MLflow StudyTracker for the study, or None without tracking."""
    if uri is None:
        return None
    if factory is None:
        from dashboards import tracking

        tracker = tracking.StudyTracker(uri, config.study, config.to_dict(), kind="search")
    else:
        tracker = factory(config)
    tracker.start()
    return tracker


# -- tables -------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def front_table(
    front: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    knee: TrialRecord | None = None,
) -> str:
    """Return the Pareto front as a fixed-width text table (best metric first)."""
    metric = objectives[0].name
    header = (
        f"{'trial':>5}  {metric:>12}  {'VRAM MiB':>8}  {'rsv MiB':>8}  {'GFLOPs':>7}  "
        f"{'params':>8}  {'RF f×t':>7}  {'status':<13}"
    )
    robust = any(PITCH_ROBUSTNESS_METRIC in r.metrics for r in front)
    if robust:  # data.pitch_shifts: the metric under pitch shift, before the spec
        header += f" {'pitch-robust':>12} "
    lines = [header + " spec", "-" * (len(header) + 30)]
    for r in front:
        mark = " knee" if knee is not None and r.number == knee.number else ""
        src = r.costs.get("vram_source", "")
        lines.append(
            f"{r.number:>5}  {_fmt(r.objectives.get(metric), 4):>12}  "
            f"{_fmt(r.costs.get('train_vram_mb')):>8}{'*' if src == 'estimated' else ' '} "
            f"{_fmt(r.costs.get('train_reserved_mb')):>8}{'!' if over_share(r) else ' '} "
            f"{_fmt(r.costs.get('gflops'), 3):>7}  {_fmt(r.costs.get('params')):>8}  "
            f"{_receptive_cell(r):>7}  {r.status + mark:<13} "
            + (f"{_fmt(r.metrics.get(PITCH_ROBUSTNESS_METRIC), 4):>12}  " if robust else "")
            + r.spec_summary
            + (f"  [warm start: {r.initial_spec}]" if r.initial_spec else "")
        )
    if any(r.costs.get("vram_source") == "estimated" for r in front):
        lines.append("* VRAM estimated (no GPU); measured on CUDA")
    lines.append("VRAM: peak allocated, rsv: peak reserved, MiB (docs/vram.md)")
    if any(over_share(r) for r in front):
        lines.append("! measured reserved VRAM above the trial's GPU share (costs.vram_share_*)")
    if any("receptive_freq_bins" in r.costs for r in front):
        lines.append(
            "RF f×t: mel bins × frames one unit of the last block sees; "
            "+ = a block sees the whole frequency axis"
        )
    return "\n".join(lines)


def over_share(record: TrialRecord) -> bool:
    """Return True when the record is flagged for exceeding its GPU share (``run_trial``)."""
    return SHARE_EXCEEDED_KEY in record.costs


def _receptive_cell(record: TrialRecord) -> str:
    """Return ``64×94+`` (receptive field; ``+`` when some block sees every mel bin) or ``-``."""
    bins, frames = (record.costs.get(k) for k in ("receptive_freq_bins", "receptive_time_frames"))
    if bins is None or frames is None:
        return "-"
    whole = "+" if record.costs.get("receptive_whole_freq_depth") else ""
    return f"{bins}×{frames}{whole}"


def _front_text(outcome: SearchOutcome) -> str:
    return front_table(outcome.front, outcome.summary.objectives, outcome.knee)


def outcome_text(outcome: SearchOutcome) -> str:
    """Return the end-of-search report: counts, front table, hypervolume and knee."""
    objectives = outcome.summary.objectives
    statuses: dict[str, int] = {}
    for r in outcome.records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    ref = ", ".join(f"{k}={v:.4g}" for k, v in outcome.summary.reference_point.items())
    lines = [
        f"study {outcome.summary.study_name}: {len(outcome.records)} trials ({counts or 'none'})",
        f"Pareto front ({len(outcome.front)} trials; pruned, failed and infeasible excluded):",
        front_table(outcome.front, objectives, outcome.knee),
        f"hypervolume {outcome.hypervolume:.6g} (reference point, fixed for the study: "
        f"{ref or '-'})",
    ]
    if outcome.knee is not None:
        lines.append(f"knee: trial {outcome.knee.number} ({outcome.knee.spec_summary})")
    if outcome.repeats:
        lines.append(
            f"{outcome.repeats} proposal(s) repeated a design already trained or training: "
            "answered from its outcome and re-asked, not trained again"
        )
    missing = [r for r in outcome.records if r.costs.get(WEIGHTS_NOT_KEPT_KEY)]
    if missing:
        lines.append(
            f"{len(missing)} complete trial(s) kept their results but not their weights "
            f"({missing[0].costs[WEIGHTS_NOT_KEPT_KEY]}); `fsnas export` retrains them"
        )
    kept = [r for r in outcome.front if r.costs.get(CHECKPOINT_KEY)]
    kept = [r for r in kept if Path(str(r.costs[CHECKPOINT_KEY])).is_file()]
    if kept:
        folder = Path(str(kept[0].costs[CHECKPOINT_KEY])).parent
        lines.append(
            f"trained weights of {len(kept)} front trial(s) in {folder} "
            "(`fsnas export` uses them instead of retraining)"
        )
    return "\n".join(lines)


def load_study(study_name: str, storage_url: str | None = None) -> SearchOutcome:
    """Return the outcome of a stored study (records, front, hypervolume, knee) without Ray.

    Raises:
        SearchError: no such storage file or study (the message lists those it has), or
            not an fsnas study.
    """
    return study_outcome(read_study(study_name, storage_url))
