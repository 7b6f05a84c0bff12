"""The Optuna study of a search (no Ray): its storage, attribute schema, sampler and records.

A study is identified by (name, storage); everything fsnas knows about a trial lives in the
storage as Optuna user attributes, so ``fsnas pareto``, ``fsnas export`` and a resumed search
read it back from there alone (``read_study``). The pieces:

* the user-attribute schema (``RECORD_ATTR`` and friends) and ``tell_record``: what Optuna is
  told for a finished trial's ``TrialRecord`` (state, values, constraint), used by the Ray
  searcher and by ``benchmarks/search_efficiency.py``;
* ``make_sampler``: the configured sampler, seeded (a resume draws new random trials);
* ``RepeatGuard``: a proposal that repeats a known design is answered, not trained again;
* ``open_study`` / ``close_orphans`` / ``enqueue_initial``: a run's start (warm starts queued);
* ``study_meaning`` / ``check_meaning``: what a study's trials mean (data and its fingerprint,
  features, space, training, objectives), stored with it; a resume that changes it is refused;
* the kept weights' file names (``weights_filename``, ``weights_folder``, ``tidy_weights``):
  ``<weights_dir>/<study>/<storage key>/trial-NNNNN.safetensors``, so the same study name in
  two storages never shares files (``storage_key``); ``check_weights_folder`` refuses a folder
  that cannot be written before any trial trains.

Opening the storage, and the one ``SearchError`` line of a storage that cannot be opened or
written (a read-only folder, a full disk), are ``nas.study_storage``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from dashboards.records import CHECKPOINT_KEY, Objective, TrialRecord
from nas.config import StudyConfig
from nas.sampling import bounded
from nas.study_storage import SearchError, is_storage_error, open_storage, storage_error
from nas.trial import CONSTRAINT_KEY, STATUS_KEY

# -- the user-attribute schema -----------------------------------------------------------------
RECORD_ATTR = "fsnas_record"  # Optuna user attribute holding TrialRecord.to_dict()
STATUS_ATTR = STATUS_KEY  # the record's status
CONSTRAINT_ATTR = CONSTRAINT_KEY  # [train VRAM - limit] (measured or estimated); <= 0 ok
INITIAL_SPEC_ATTR = "fsnas_initial_spec"  # the warm-start entry a queued trial came from
# a proposal that repeated a known design: the twin's trial number (told its outcome, never
# trained) or "running trial <caller's tag>" (told FAIL); such trials have no fsnas record
DUPLICATE_ATTR = "fsnas_duplicate_of"
INTERRUPTED_ATTR = "fsnas_interrupted"  # no outcome: not counted, asked again on resume
ORPHANED_ATTR = "fsnas_orphaned"  # left RUNNING by a killed driver, closed as FAIL
# study attributes: the hypervolume's reference point, fixed once per study, and its sources
REFERENCE_ATTR = "reference_point"
REFERENCE_SOURCE_ATTR = "reference_point_source"
NODE_ATTR = "ray_node_id"  # the Ray node a trial trained on
GPU_SHARE_ATTR = "gpu_share"  # the GPU share it was given
# Optuna 5 takes constraints through Trial.set_constraint (constraints_func is deprecated)
NATIVE_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


# -- the study in the storage ------------------------------------------------------------------
def load_records(study: optuna.Study) -> list[TrialRecord]:
    """Return the TrialRecords stored in a study, by trial number (orphans left out)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        data = t.user_attrs.get(RECORD_ATTR)
        if isinstance(data, dict):
            record = TrialRecord.from_dict(data)
            record.number = t.number
            out.append(record)
    return sorted(out, key=lambda r: r.number)


def close_orphans(storage: optuna.storages.BaseStorage, study: optuna.Study) -> int:
    """Mark trials left RUNNING/WAITING by a killed driver as FAIL; return how many.

    They have no record, so they do not count towards the trial budget and are asked again.
    One driver per study: a second driver would see the first one's live trials as orphans.
    """
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        storage.set_trial_user_attr(t._trial_id, ORPHANED_ATTR, True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


def sampler_seed(seed: int, previous_trials: int) -> int:
    """Return the sampler seed of a run that finds ``previous_trials`` trials in its study.

    A fresh study uses ``seed`` itself. A resumed one must not: the samplers draw their
    random (NSGA-II's first generation, TPE's start-up, random) trials from a generator
    that restarts with the sampler, so the same seed would propose the architectures the
    study has already trained. The derived seed is still a pure function of (seed, count),
    so a resumed search stays reproducible.
    """
    if previous_trials == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, previous_trials]).generate_state(1)[0])


def make_sampler(config: StudyConfig, previous_trials: int = 0) -> optuna.samplers.BaseSampler:
    """Return the Optuna sampler the config names, seeded, with VRAM constraints if any.

    ``previous_trials``: how many trials the study already holds (see ``sampler_seed``).
    """
    search = dataclasses.replace(
        config.search, seed=sampler_seed(config.search.seed, previous_trials)
    )
    constraints = None
    if search.max_train_vram_mb is not None and not NATIVE_CONSTRAINTS:

        def constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
            # Optuna < 5: read the user attribute the backend sets before tell; trials
            # without it (failed) count as feasible
            return [float(v) for v in trial.user_attrs.get(CONSTRAINT_ATTR, [0.0])]

    if search.sampler == "nsga2":
        population = search.population_size or max(2, min(search.trials, 50) // 2)
        return optuna.samplers.NSGAIISampler(
            population_size=population, seed=search.seed, constraints_func=constraints
        )
    if search.sampler == "tpe":
        with warnings.catch_warnings():
            # group=True is "experimental" in Optuna; it is what a conditional space needs
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            tpe = optuna.samplers.TPESampler(
                seed=search.seed,
                constraints_func=constraints,
                n_startup_trials=max(2, min(10, search.trials // 3)),
                # one joint model per group of parameters that occur together (a depth-3 body's
                # blocks, a front end's branches) instead of one per parameter
                multivariate=True,
                group=True,
            )
        # a proposal models a bounded window of the study (nas.sampling), so its cost stays
        # flat at thousands of trials
        return bounded(tpe, search.model_window)
    if search.sampler == "gp":
        return bounded(
            optuna.samplers.GPSampler(
                seed=search.seed,
                constraints_func=constraints,
                n_startup_trials=max(2, min(10, search.trials // 3)),
            ),
            search.model_window,
        )
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return _grid_sampler(config)


# a grid is enumerated up front by Optuna's GridSampler: keep it to what a study can run
MAX_GRID_POINTS = 100_000


def _grid_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """Return a GridSampler over every multi-choice dimension of the study's space.

    Raises:
        SearchError: the grid has more than MAX_GRID_POINTS points (pin more dimensions).
    """
    from nas.spaces import study_space

    grid = study_space(config).grid_space()
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_GRID_POINTS:
        widest = sorted(grid, key=lambda name: -len(grid[name]))[:5]
        raise SearchError(
            f"search.sampler 'grid': the space has {size:,} grid points (> {MAX_GRID_POINTS:,}) "
            f"over {len(grid)} dimensions; pin dimensions in `space:` to single choices "
            f"(widest: {', '.join(f'{n} ({len(grid[n])})' for n in widest)})"
        )
    return AskTellGridSampler(grid, seed=config.search.seed)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """A GridSampler usable through ask-and-tell (how Ray's OptunaSearch drives Optuna).

    Optuna's GridSampler calls ``Study.stop()`` once the grid is exhausted, which raises outside
    ``Study.optimize``; here the requested trial count ends the search instead (a grid smaller
    than ``--trials`` then repeats points, as Optuna does).
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise


def tell_record(
    study: optuna.Study, trial: optuna.Trial, record: TrialRecord, objective_names: Sequence[str]
) -> tuple[optuna.trial.TrialState, list[float] | None]:
    """Store ``record`` on ``trial``, tell Optuna its outcome; return (state, values told).

    The record, status and VRAM constraint are set as user attributes *before* ``tell`` (the
    samplers' constraint handling reads them there). The outcome told is the truth: complete
    (or measured-infeasible) trials with their values, an untrained infeasible one with
    placeholder values and its violation, a pruned one PRUNED, anything else FAIL.
    """
    trial.set_user_attr(RECORD_ATTR, record.to_dict())
    trial.set_user_attr(STATUS_ATTR, record.status)
    if CONSTRAINT_ATTR in record.costs:
        violation = float(record.costs[CONSTRAINT_ATTR])
        trial.set_user_attr(CONSTRAINT_ATTR, [violation])
        if NATIVE_CONSTRAINTS:
            trial.set_constraint("train_vram_mb", violation)
    values = [record.objectives.get(n) for n in objective_names]
    has_values = all(v is not None and math.isfinite(v) for v in values)
    told: list[float] | None = None
    if record.status in ("complete", "infeasible") and has_values:
        # measured-infeasible trials are COMPLETE with a violated constraint, which is what
        # the samplers' constraint handling understands
        state = optuna.trial.TrialState.COMPLETE
        told = [float(v) for v in values if v is not None]
    elif record.status == "infeasible" and CONSTRAINT_ATTR in record.costs:
        # untrained (its estimate broke the limit): the sampler must still learn to avoid
        # the region. Constrained NSGA-II/TPE rank infeasible trials by violation alone,
        # so the placeholder values (worst metric, the estimated cost) never steer them;
        # the fsnas record keeps no metric for it.
        state = optuna.trial.TrialState.COMPLETE
        told = [_placeholder(name, record, objective_names[0]) for name in objective_names]
    elif record.status == "pruned":
        state = optuna.trial.TrialState.PRUNED
    else:
        state = optuna.trial.TrialState.FAIL
    study.tell(trial, told, state=state)
    return state, told


def _placeholder(name: str, record: TrialRecord, metric: str) -> float:
    if name == metric:
        return 0.0  # the metric (accuracy, ROC-AUC) is never below 0
    value = record.costs.get(name)
    return float(value) if value is not None else math.inf


# a proposal that repeats a known design is answered without training and the sampler asked
# again, at most this many times per trial (a small, exhausted space must not spin: the last
# proposal then trains, repeat or not)
MAX_REDRAWS = 32


@contextlib.contextmanager
def redraw_sampler(study: optuna.Study, seed: int) -> Iterator[None]:
    """Let a redraw after a repeat sample at random instead of with the study's sampler.

    A model-based sampler that proposed a known design is likely to propose it again (TPE
    converges on categorical choices), and each proposal is an Optuna trial: asking it again
    up to ``MAX_REDRAWS`` times would grow the study and the sampler's work with repeats.
    A random draw rarely repeats in a large space, so a repeat usually costs one extra,
    cheap proposal; the trained design still teaches the study's sampler. A grid sampler
    keeps its own order (it repeats only once the grid is exhausted). ``seed``: the
    repeated trial's number, so a search stays reproducible.
    """
    if isinstance(study.sampler, optuna.samplers.GridSampler):
        yield
        return
    own = study.sampler
    study.sampler = optuna.samplers.RandomSampler(seed=seed)
    try:
        yield
    finally:
        study.sampler = own


@dataclass(frozen=True)
class _Told:
    """What Optuna was told for a finished trial: enough to answer a repeat of its design."""

    number: int
    state: optuna.trial.TrialState
    values: list[float] | None
    constraint: list[float] | None


class RepeatGuard:
    """Keeps a study from training one design twice when its sampler proposes it again.

    Samplers over categorical spaces repeat themselves (TPE most of all); a repeat would cost a
    full training and teach the sampler nothing new. A proposal whose parameters equal those of
    a finished trial (one with an fsnas record, this run's or an earlier one's) is told that
    trial's outcome: values, state and constraint, with ``DUPLICATE_ATTR`` = its number. One
    equal to a trial still training is told FAIL (``DUPLICATE_ATTR`` = "running ..."). Either
    way the caller asks the sampler again; the repeat has no record, so it is not a trial of
    the budget and never on a front.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.count = 0  # proposals answered so far
        self._finished: dict[str, _Told] | None = None  # params key -> outcome (lazy)
        self._running: dict[str, str] = {}  # caller's trial tag -> params key

    def answer(self, trial: optuna.Trial) -> bool:
        """Tell ``trial`` its twin's outcome and return True; False when it has no twin."""
        key = _params_key(trial.params)
        twin = self._outcomes().get(key)
        live = next((tag for tag, k in self._running.items() if k == key), None)
        if twin is None and live is None:
            return False
        if twin is None:
            trial.set_user_attr(DUPLICATE_ATTR, f"running trial {live}")
            self.study.tell(trial, None, state=optuna.trial.TrialState.FAIL)
        else:
            trial.set_user_attr(DUPLICATE_ATTR, twin.number)
            if twin.constraint is not None:
                trial.set_user_attr(CONSTRAINT_ATTR, twin.constraint)
                if NATIVE_CONSTRAINTS:
                    trial.set_constraint("train_vram_mb", twin.constraint[0])
            self.study.tell(trial, twin.values, state=twin.state)
        self.count += 1
        return True

    def started(self, tag: str, trial: optuna.Trial) -> None:
        """Note that ``trial`` (the caller calls it ``tag``) is training."""
        self._running[tag] = _params_key(trial.params)

    def finished(
        self,
        tag: str | None,
        trial: optuna.Trial,
        state: optuna.trial.TrialState | None,
        values: list[float] | None,
    ) -> None:
        """Note ``trial``'s outcome as told (``state`` None: no outcome, e.g. interrupted)."""
        key = self._running.pop(tag, None) if tag is not None else None
        if state is None:
            return
        constraint = trial.user_attrs.get(CONSTRAINT_ATTR)
        told = _Told(trial.number, state, values, constraint)
        self._outcomes().setdefault(key or _params_key(trial.params), told)

    def _outcomes(self) -> dict[str, _Told]:
        if self._finished is None:
            self._finished = {}
            for t in self.study.get_trials(deepcopy=False):
                if RECORD_ATTR in t.user_attrs and t.state.is_finished():
                    told = _Told(t.number, t.state, t.values, t.user_attrs.get(CONSTRAINT_ATTR))
                    self._finished.setdefault(_params_key(t.params), told)
        return self._finished


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def count_repeats(study: optuna.Study) -> int:
    """Return how many of the study's proposals repeated a known design (never trained)."""
    return sum(DUPLICATE_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False))


MEANING_ATTR = "meaning"
"""The study attribute holding what its trials mean (``study_meaning``), stored at creation."""

NEUTRAL_KEYS = (
    "study",
    "storage",
    "tracking_uri",
    "ray_dir",
    "weights_dir",
    "data.cache_dir",
    "search.trials",
    "search.time_budget_s",
    "search.keep_weights",
    "search.max_failures",
    "search.sampler",
    "search.seed",
    "search.population_size",
    "search.model_window",
    "search.initial_specs",
    "train.time_budget_s",
    "train.checkpoint_dir",
    "train.num_threads",
    "resources",
)
"""Config keys (or key prefixes) a resume may change: how many trials, how fast, where they run
and are logged, how new designs are drawn; not what a finished trial means."""


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _neutral(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NEUTRAL_KEYS)


def study_meaning(
    config: StudyConfig, data_fingerprint: str, metric: str, objectives: list[Objective]
) -> dict[str, Any]:
    """Return the settings that define what a study's trials mean, as dotted keys.

    Every config key but ``NEUTRAL_KEYS`` (data source, features, space, training config,
    objectives, VRAM limit, early stopping), plus ``data.fingerprint`` (the feature cache's
    content hash of the clips and features), ``metric`` and ``directions``.
    """
    flat = {k: v for k, v in _flat(config.to_dict()).items() if not _neutral(k)}
    flat["data.fingerprint"] = data_fingerprint
    flat["metric"] = metric
    flat["directions"] = [o.direction for o in objectives]
    return json.loads(json.dumps(flat, default=str))


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return ``key: old → new`` for each key both hold with different values."""
    return [
        f"{key}: {json.dumps(old[key])} → {json.dumps(new[key])}"
        for key in sorted(set(old) & set(new))
        if old[key] != new[key]
    ]


def check_meaning(
    study: optuna.Study, config: StudyConfig, meaning: dict[str, Any], stream: Any = None
) -> None:
    """Refuse a resume that changes what the study's trials mean; list the allowed changes.

    A new study stores ``meaning``; one made before fsnas stored it gets it now (with a note
    saying so); a key one side lacks (a setting newer than the study) is not compared.

    Raises:
        SearchError: a meaning key changed; names each with old → new and how to start anew.
    """
    import sys

    out = stream or sys.stderr
    stored = study.user_attrs.get(MEANING_ATTR)
    if not isinstance(stored, dict):
        if study.trials:
            print(
                f"[{config.study}] this study was made before fsnas stored what its trials mean; "
                f"storing it now from this run's settings (data, features, space, training, "
                f"objectives): a later resume that changes them is refused",
                file=out,
                flush=True,
            )
        study.set_user_attr(MEANING_ATTR, meaning)
        return
    changed = _changes(stored, meaning)
    if changed:
        raise SearchError(
            f"study {config.study!r} in {config.storage}: resuming would mix trials of another "
            f"meaning; changed: {'; '.join(changed)}; undo these changes, or start a new study "
            "with another --study name (or another --storage)"
        )
    previous = study.user_attrs.get("config")
    if isinstance(previous, dict):
        now = _flat(config.to_dict())
        allowed = [c for c in _changes(_flat(previous), now) if _neutral(c.split(":", 1)[0])]
        if allowed:
            print(
                f"[{config.study}] resuming with changes that keep the trials' meaning: "
                + "; ".join(allowed),
                file=out,
                flush=True,
            )


def open_study(
    config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    objectives: list[Objective],
    meaning: dict[str, Any] | None = None,
    stream: Any = None,
) -> optuna.Study:
    """Return the study (created or loaded); a stored study must have the same objectives.

    With ``meaning`` (``study_meaning``) a resume must keep it (``check_meaning``).

    Raises:
        SearchError: other objectives or another meaning are stored, or the storage cannot be
            written (one line).
    """
    try:
        return _open_study(config, storage, objectives, meaning, stream)
    except SearchError:
        raise
    except Exception as exc:  # sqlalchemy / optuna storage errors: a read-only or full disk
        if not is_storage_error(exc):
            raise
        raise storage_error(config.storage, "cannot write", exc) from None


def _open_study(
    config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    objectives: list[Objective],
    meaning: dict[str, Any] | None = None,
    stream: Any = None,
) -> optuna.Study:
    directions = [o.direction for o in objectives]
    study = optuna.create_study(
        study_name=config.study, storage=storage, directions=directions, load_if_exists=True
    )
    stored_directions = [d.name.lower() for d in study.directions]
    names = [o.name for o in objectives]
    stored_names = study.user_attrs.get("objectives", names)
    if stored_directions != directions or stored_names != names:
        raise SearchError(
            f"study {config.study!r} in {config.storage}: stored with objectives "
            f"{stored_names} ({stored_directions}), the config asks for {names} ({directions}); "
            "use another --study name"
        )
    if meaning is not None:
        check_meaning(study, config, meaning, stream)
    study.set_user_attr("objectives", names)
    study.set_user_attr("objective_labels", [o.label for o in objectives])
    study.set_user_attr("config", config.to_dict())
    if study.metric_names != names:  # optuna-dashboard then labels the axes by objective
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study


def enqueue_initial(
    study: optuna.Study, designs: list[tuple[str, dict[str, Any]]], remaining: int
) -> tuple[list[str], list[str]]:
    """Queue the warm-start designs as the study's next trials; return (queued, skipped).

    A design the study already finished (it has a record) or still has queued is skipped, so a
    resume never runs it twice; one whose run was interrupted (an orphan, see
    ``close_orphans``) is queued again. At most ``remaining`` designs are queued.
    """
    waiting = optuna.trial.TrialState.WAITING
    held = [
        t.system_attrs.get("fixed_params", t.params)
        for t in study.get_trials(deepcopy=False)
        if RECORD_ATTR in t.user_attrs or t.state == waiting
    ]
    queued: list[str] = []
    skipped: list[str] = []
    for label, params in designs:
        if params in held or len(queued) >= remaining:
            skipped.append(label)
            continue
        study.enqueue_trial(params, user_attrs={INITIAL_SPEC_ATTR: label})
        held.append(params)
        queued.append(label)
    return queued, skipped


# -- kept weights --------------------------------------------------------------------------------
WEIGHTS_SUFFIX = ".safetensors"


def weights_filename(number: int) -> str:
    """Return the file name of trial ``number``'s kept weights."""
    return f"trial-{number:05d}{WEIGHTS_SUFFIX}"


def storage_key(url: str) -> str:
    """Return a short name of a storage for folder names: ``<file stem or scheme>-<8 hex>``.

    The hex digits are the SHA-256 of the URL with a SQLite path made absolute, so two
    storages never share a key (a password in a URL is hashed, never shown).
    """
    canonical = url
    label = url.split(":", 1)[0]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        if path not in ("", ":memory:"):
            resolved = Path(path).expanduser().resolve()
            canonical = f"sqlite:///{resolved}"
            label = resolved.stem
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:40] or "storage"
    return f"{label}-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def weights_folder(config: StudyConfig) -> Path | None:
    """Return the absolute folder the study's trial weights go to; None when none are kept.

    ``<weights_dir>/<study>/<storage_key(storage)>``: keyed by study *and* storage, so a study
    of the same name in another storage cannot overwrite (or tidy away) these files. Weights
    kept by an older fsnas in ``<weights_dir>/<study>/`` stay readable: each record names its
    file by its absolute path.
    """
    if config.search.keep_weights == "none":
        return None
    base = Path(config.weights_dir).expanduser().resolve() / config.study
    return base / storage_key(config.storage)


# bytes the pre-flight check writes: a small model's weights
_PROBE_BYTES = 64 * 1024


def check_weights_folder(folder: Path) -> None:
    """Return when ``folder`` (created) takes a file of ``_PROBE_BYTES``; the probe is removed.

    Run before the search trains anything, so a read-only or full weights disk fails the
    command instead of every trial. A disk that fills later is handled per trial: the
    trial's result is kept and its record says the weights were not (``WEIGHTS_NOT_KEPT_KEY``).

    Raises:
        SearchError: naming the folder and the system's reason.
    """
    probe = folder / f".fsnas-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"\0" * _PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise SearchError(
            f"weights folder {folder}: cannot write there ({exc.strerror or exc}); free space, "
            "set weights_dir to a writable disk, or pass --keep-weights none (fsnas export "
            "then retrains the chosen trial)"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def tidy_weights(
    folder: Path, records: list[TrialRecord], front: list[TrialRecord], keep: str
) -> list[Path]:
    """Delete the weight files ``keep`` does not ask for; return the files kept.

    ``front``: only the front's trials' files stay; ``all``: every recorded trial's. Files no
    record names (a trial whose driver was killed before it recorded it) always go.
    """
    if not folder.is_dir():
        return []
    keepers = front if keep == "front" else records
    wanted = {
        Path(str(r.costs[CHECKPOINT_KEY])).resolve() for r in keepers if r.costs.get(CHECKPOINT_KEY)
    }
    kept = []
    for path in sorted(folder.glob(f"*{WEIGHTS_SUFFIX}*")):
        if path.resolve() in wanted:
            kept.append(path)
        else:
            path.unlink(missing_ok=True)
    return kept


# -- reading a stored study --------------------------------------------------------------------
@dataclass
class StoredStudy:
    """A study as its storage holds it: objectives, records, config and repeat count."""

    name: str
    storage: str  # the URL, or the storage object's repr when one was passed
    study: optuna.Study
    objectives: list[Objective]
    records: list[TrialRecord]
    config: dict[str, Any]  # StudyConfig.to_dict() of the run that made it
    repeats: int  # proposals that repeated a known design (DUPLICATE_ATTR)
    # the hypervolume's fixed reference point (REFERENCE_ATTR; {} for a study from before it)
    reference: dict[str, float] = field(default_factory=dict)


def read_study(name: str, storage: str | optuna.storages.BaseStorage | None = None) -> StoredStudy:
    """Return the stored study ``name`` (``fsnas pareto``, ``fsnas export``, a resume).

    ``storage`` is a URL (default ``nas.config.DEFAULT_STORAGE``) or an open storage.

    Raises:
        SearchError: the SQLite file does not exist, the storage has no study of that name
            (the message lists those it has), or the study was not made by fsnas.
    """
    from nas.config import DEFAULT_STORAGE

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if isinstance(storage, optuna.storages.BaseStorage):
        url, rdb = repr(storage), storage
    else:
        url = storage or DEFAULT_STORAGE
        path = Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None
        if path is not None and not path.is_file():
            raise SearchError(
                f"storage {url!r}: no such file ({path} does not exist; run `fsnas search` first)"
            )
        rdb = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        names = sorted(optuna.get_all_study_names(rdb))
        raise SearchError(
            f"study {name!r} not found in {url}; studies there: {names or 'none'}"
        ) from None
    attrs = study.user_attrs
    stored = attrs.get("objectives")
    if not isinstance(stored, list) or not stored:
        raise SearchError(f"study {name!r} in {url}: not an fsnas study (no objectives)")
    labels = attrs.get("objective_labels") or []
    objectives = [
        Objective(str(n), d.name.lower(), str(labels[i]) if i < len(labels) else "")  # type: ignore[arg-type]
        for i, (n, d) in enumerate(zip(stored, study.directions))
    ]
    config = attrs.get("config")
    return StoredStudy(
        name=name,
        storage=url,
        study=study,
        objectives=objectives,
        records=load_records(study),
        config=dict(config) if isinstance(config, dict) else {},
        repeats=count_repeats(study),
        reference=_stored_reference(attrs.get(REFERENCE_ATTR), objectives),
    )


def _stored_reference(value: Any, objectives: list[Objective]) -> dict[str, float]:
    """Return the stored reference point when it covers every objective, else {}."""
    if not isinstance(value, dict):
        return {}
    try:
        return {o.name: float(value[o.name]) for o in objectives}
    except (KeyError, TypeError, ValueError):
        return {}
