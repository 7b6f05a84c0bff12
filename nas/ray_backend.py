"""Everything Ray-specific: cluster connection, Tuner, OptunaSearch, resources, the scheduler.

The driver (``nas.search``) calls ``run``; nothing else in fsnas imports Ray. This module uses
``nas.trial`` (the trial function, run in the workers) and ``nas.study`` (the Optuna study:
what to tell it, repeats, weight names) and never the driver. The pieces:

* ``init_ray``: local Ray (``num_cpus``, no dashboard, quiet) or ``address=`` to join a cluster.
* ``FsnasOptunaSearch``: OptunaSearch over the define-by-run space with RDB storage. It overrides
  ``on_trial_complete`` to build the trial's ``TrialRecord`` and tell Optuna the truth through
  ``nas.study.tell_record``: a trial the scheduler stopped early is PRUNED (plain OptunaSearch
  would tell it COMPLETE with its partial values), a failed one FAIL.
* ``ParetoAshaScheduler``: MO-ASHA-like early stopping on (metric so far, the costs known
  before training).
* ``start_weight_store``: the ``WeightStore`` actor on the driver's node that receives each
  complete trial's best-epoch weights as bytes (no shared filesystem needed) for ``fsnas export``.
* ``run``: features into the object store once (``tune.with_parameters``), per-trial resources
  (``tune.with_resources``, a function of the sampled spec for ``gpus_per_trial=auto``),
  ``max_concurrent_trials``, ``reuse_actors`` and ``FailureConfig(max_failures)``.

Its Ray-free parts live beside it: ``nas.ray_env`` (what Ray and Tune start with, the head check,
pending trials) and ``nas.trial_ledger`` (``TrialLedger``, ``build_record``, ``WeightStore``).

Resume: the Optuna storage is the source of truth (see ``nas.search.run_search``); each run of
the driver starts a fresh Tune experiment for the trials still missing, so an interrupted run's
Tune state is never replayed (replaying would re-run or duplicate trials Optuna already holds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dashboards.records import Objective, TrialRecord
from nas import pareto
from nas.config import StudyConfig, parse_gpus_per_trial
from nas.head_watchdog import (
    HeadWatchdog,
    head_lost_after_s,
)
from nas.interrupt import Interrupt
from nas.ray_env import WORKER_ENV, check_head_answers, pending_trials, prepare_environment
from nas.study import (
    GPU_SHARE_ATTR,
    INITIAL_SPEC_ATTR,
    INTERRUPTED_ATTR,
    MAX_REDRAWS,
    NODE_ATTR,
    RepeatGuard,
    SearchError,
    redraw_sampler,
    tell_record,
)
from nas.trial import (
    ESTIMATE_KEYS,
    FINAL_KEY,
    SHARE_BUDGET_KEY,
    STATUS_KEY,
    TrialSettings,
    estimate_train_reserved_mb,
    feature_bytes,
    gpu_share,
    note_weights_not_kept,
    run_trial,
    share_budget_mb,
)
from nas.trial_ledger import TrialLedger, WeightStore, build_record
from search_spaces.spec import ArchSpec
from trainers.checkpoint import CHECKPOINT_FILENAME
from trainers.featureset import FeatureSet

# (config, data, settings, report, device) -> final report; nas.trial.run_trial is one
TrialFunction = Callable[..., dict[str, Any]]


def shutdown_ray() -> None:
    """Collect the run's garbage, then shut Ray down (a run that started Ray calls this).

    Tune's trials, actors and object refs sit in reference cycles. One ``fsnas demo`` run in
    three ended with exit 1 and one native line ("The core worker has already been shutdown")
    3 ms after ``ray.shutdown``, from a thread started before Ray (the MLflow thread, still
    logging then, is the likely one): a finaliser of such an object, run by a later automatic
    collection on that thread, reaching the shut-down core worker. Collected here, they go
    while Ray is up, and a search's MLflow thread has stopped before this runs (``run``'s
    ``before_shutdown``). (Mitigations: the crash did not reproduce on demand.)
    """
    gc.collect()
    ray.shutdown()


def init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start local Ray or join ``address``; return True when this call started/joined Ray.

    An already initialised Ray (a test's ``ray.cluster_utils.Cluster``, a notebook) is reused.
    """
    prepare_environment()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        "runtime_env": {"env_vars": dict(WORKER_ENV)},
    }
    try:
        env_address = os.environ.get("RAY_ADDRESS")
        if address or (env_address and env_address != "local"):
            check_head_answers(address or str(env_address))  # ray.init waits minutes for it
            ray.init(address=address or env_address, **kwargs)
        else:
            # "local" starts a private instance: a bare ray.init() would join any `ray start`
            # cluster already running on this machine (and its GPUs); --address auto joins one
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--address {address}" if address else "local Ray"
        raise SearchError(f"{where}: cannot start/join Ray ({exc})") from None
    return True


# -- the head, watched from the driver (--address): nas.head_watchdog -----------------------


def head_target(address: str | None) -> tuple[str, int] | None:
    """Return the (host, port) of the Ray head's GCS to watch; None for local Ray or ``ray://``.

    ``auto`` is resolved from the running driver (call it after ``init_ray``).
    """
    if not address or address == "local" or address.startswith("ray://"):
        return None
    if address == "auto":
        try:
            address = str(ray.get_runtime_context().gcs_address)
        except Exception:  # no address known: nothing to watch
            return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)


# -- trained weights: from any worker to the driver's node (nas.trial_ledger.WeightStore) -----
def start_weight_store(folder: Path) -> Any:
    """Return a WeightStore actor pinned to this (the driver's) node, writing into ``folder``."""
    node = ray.get_runtime_context().get_node_id()
    actor = ray.remote(num_cpus=0)(WeightStore).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    )
    return actor.remote(str(folder))


# -- trial side (runs in a Ray worker) ---------------------------------------------------------
def _trainable(
    config: dict[str, Any], data: FeatureSet, settings: TrialSettings, store: Any = None
) -> None:
    """Train one search trial in a Ray worker: per-epoch reports, then one final report."""
    _train_in_worker(run_trial, config, data, settings, store)


def _fixed_trainable(
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    trial_fn: TrialFunction,
    configs: list[dict[str, Any]],
) -> None:
    """Train one of ``run_fixed_trials``'s configs (chosen by ``config["index"]``), with the
    placement estimate the driver added to this trial's config."""
    chosen = {
        **configs[int(config["index"])],
        **{k: config[k] for k in ESTIMATE_KEYS if k in config},
    }
    _train_in_worker(trial_fn, chosen, data, settings)


def _train_in_worker(
    trial_fn: TrialFunction,
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    store: Any = None,
) -> None:
    """Run ``trial_fn`` on the worker's device; send a complete trial's weights to ``store``."""
    folder = tempfile.mkdtemp(prefix="fsnas-trial-") if store is not None else None
    try:
        if folder is not None:
            settings = dataclasses.replace(settings, checkpoint_dir=folder)
        final = _train_on_device(trial_fn, config, data, settings)
        weights = Path(folder) / CHECKPOINT_FILENAME if folder is not None else None
        if weights is not None and final.get(STATUS_KEY) == "complete" and weights.is_file():
            # before the final report, so the driver finds the file when it records the trial
            sent = ray.get(
                store.try_put.remote(tune.get_context().get_trial_id(), weights.read_bytes())
            )
            if "error" in sent:  # the result stands; the record says the weights are missing
                final = note_weights_not_kept(final, sent["error"])
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    tune.report(final)


def _train_on_device(
    trial_fn: TrialFunction, config: dict[str, Any], data: FeatureSet, settings: TrialSettings
) -> dict[str, Any]:
    import torch

    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources()
    gpu = float(assigned.get("GPU", 0.0))
    device = "cuda" if gpu > 0 and torch.cuda.is_available() else "cpu"
    if device == "cuda":
        # a reused actor must not carry the previous trial's peak into this one
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if 0 < gpu < 1:  # a design too large for this share of the device is refused
            settings = dataclasses.replace(settings, gpu_share=gpu)

    def report(values: dict[str, Any]) -> None:
        tune.report({k: v for k, v in values.items() if isinstance(v, (int, float, str))})

    final = trial_fn(config, data, settings, report, device)
    final[NODE_ATTR] = context.get_node_id()
    final[GPU_SHARE_ATTR] = gpu
    return final


class FsnasOptunaSearch(OptunaSearch):
    """OptunaSearch that stores fsnas records and constraints before ``tell`` (see module doc)."""

    def __init__(self, *, ledger: TrialLedger, objective_names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ledger = ledger
        self._objective_names = objective_names
        self.repeats: RepeatGuard | None = None  # made at the first suggest
        self.interrupt: Interrupt | None = None  # a signal: no new trial (nas.interrupt)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher for Tuner.restore (``save`` below writes nothing), which
        # fsnas never uses (it resumes from the Optuna storage); the sampler may hold a thread
        # lock (Optuna 5.1's NSGA-II), so it and the study holding it are left out, as the
        # ledger leaves out its state
        state = self.__dict__.copy()
        state["_sampler"] = state["_ot_study"] = None
        return state

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Return a config for a new Tune trial; repeats of known designs are not trained.

        A proposal that repeats a finished or running trial's design is answered by
        ``RepeatGuard`` and a random draw asked instead (``redraw_sampler``; at most
        ``MAX_REDRAWS`` times).
        """
        assert self._ot_study is not None  # set up in __init__ (the space is given)
        if self.interrupt is not None and self.interrupt.requested:
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune: start no trial
        if self.repeats is None:
            self.repeats = RepeatGuard(self._ot_study)
        config = super().suggest(trial_id)
        for _ in range(MAX_REDRAWS):
            repeat = self._ot_trials[trial_id] if config is not None else None
            if repeat is None or not self.repeats.answer(repeat):
                break
            del self._ot_trials[trial_id]
            with redraw_sampler(self._ot_study, repeat.number):
                config = super().suggest(trial_id)
        if config is not None:
            self._ledger.configs[trial_id] = config
            self.repeats.started(trial_id, self._ot_trials[trial_id])
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        with self._ledger.tell_lock:  # a lost head's watchdog never exits half-way through
            self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        record = build_record(
            self._ledger, trial_id, ot_trial.number, result, error, self._objective_names[0]
        )
        assert self._ot_study is not None  # set up in __init__ (the space is given)
        if record is None:
            ot_trial.set_user_attr(INTERRUPTED_ATTR, True)
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            if self.repeats is not None:
                self.repeats.finished(trial_id, ot_trial, None, None)
            return
        record.initial_spec = str(ot_trial.user_attrs.get(INITIAL_SPEC_ATTR, ""))
        if result is not None and NODE_ATTR in result:
            ot_trial.set_user_attr(NODE_ATTR, str(result[NODE_ATTR]))
            ot_trial.set_user_attr(GPU_SHARE_ATTR, float(result[GPU_SHARE_ATTR]))
        state, told = tell_record(self._ot_study, ot_trial, record, self._objective_names)
        self._completed_trials.add(trial_id)
        if self.repeats is not None:
            self.repeats.finished(trial_id, ot_trial, state, told)
        self._ledger.on_record(record)

    # Optuna's RDB storage is the searcher's state; Tune's pickled copy is never used.
    def save(self, checkpoint_path: str) -> None:
        return None

    def restore(self, checkpoint_path: str) -> None:
        return None


class ParetoAshaScheduler(FIFOScheduler):
    """MO-ASHA-like early stopping: stop at a rung only when enough peers dominate the trial.

    Rungs sit at ``grace × eta^k`` epochs (below the last epoch). At a rung a trial's point is
    (validation metric so far, costs known before training); it is stopped only when at least
    ``min_dominators`` trials that reached the same rung dominate it *and* it falls outside the
    best ``1/eta`` of the rung by non-dominated rank (``pareto.rung_should_stop``). A cheap
    trial is therefore never stopped for being less accurate than an expensive one.
    """

    def __init__(
        self,
        *,
        objectives: list[Objective],
        max_epochs: int,
        grace_epochs: int,
        reduction_factor: int,
        min_dominators: int,
        ledger: TrialLedger,
    ) -> None:
        super().__init__()
        self._objectives = objectives
        self._eta = reduction_factor
        self._min_dominators = min_dominators
        self._ledger = ledger
        self.rungs: list[int] = []
        epoch = grace_epochs
        while epoch < max_epochs:
            self.rungs.append(epoch)
            epoch *= reduction_factor
        self._seen: dict[int, dict[str, list[float]]] = {r: {} for r in self.rungs}

    def decide(self, trial_id: str, result: dict[str, Any]) -> str:
        """Return CONTINUE or STOP for one report (plain data: testable without a Tune run)."""
        if result.get(FINAL_KEY) or "epoch" not in result:
            return TrialScheduler.CONTINUE
        epoch = int(result["epoch"])
        if epoch not in self._seen:
            return TrialScheduler.CONTINUE
        names = [o.name for o in self._objectives]
        known = [o for o in self._objectives if o.name in result]
        if len(known) < 2 or known[0].name != names[0]:
            return TrialScheduler.CONTINUE  # never on the metric alone
        point = [float(result[o.name]) for o in known]
        if not all(math.isfinite(v) for v in point):
            return TrialScheduler.CONTINUE
        rung = self._seen[epoch]
        peers = [p for tid, p in rung.items() if tid != trial_id and len(p) == len(point)]
        rung[trial_id] = point
        directions = [o.direction for o in known]
        if pareto.rung_should_stop(point, peers, directions, self._eta, self._min_dominators):
            n_dom = pareto.domination_count(point, peers, directions)
            self._ledger.pruned[trial_id] = (
                f"stopped at epoch {epoch} by the Pareto-aware scheduler: dominated on "
                f"({', '.join(o.name for o in known)}) by {n_dom} of {len(peers)} rung peers"
            )
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return self.decide(trial.trial_id, result)


class _ProgressCallback(tune.Callback):
    """Tells the driver how many trials run; keeps the Tune Trial objects (for error texts)."""

    def __init__(self, ledger: TrialLedger, on_running: Callable[[int], None]) -> None:
        self._ledger = ledger
        self._on_running = on_running

    def __getstate__(self) -> dict[str, Any]:
        return {}  # see TrialLedger.__getstate__

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ledger.trials[trial.trial_id] = trial
        self._ledger.running.add(trial.trial_id)
        self._on_running(len(self._ledger.running))

    # counted from events, not by scanning every trial of the experiment at each step
    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial)

    def _ended(self, trial: Any) -> None:
        self._ledger.running.discard(trial.trial_id)
        self._on_running(len(self._ledger.running))


# -- resources ---------------------------------------------------------------------------------
def _gpu_memory_mb(config: StudyConfig) -> float:
    if config.resources.gpu_memory_mb is not None:
        return config.resources.gpu_memory_mb
    import torch

    if torch.cuda.is_available():
        return float(torch.cuda.get_device_properties(0).total_memory) / 2**20
    raise SearchError(
        "resources.gpus_per_trial=auto: the cluster has GPUs but this driver has none to read "
        "their memory from; set resources.gpu_memory_mb (e.g. 81559 for an 80 GB card) or a "
        "fixed --gpus-per-trial"
    )


def trial_resources(
    config: StudyConfig, data: FeatureSet, settings: TrialSettings, cluster_gpus: float
) -> dict[str, float] | Callable[[dict[str, Any]], Any]:
    """Return the per-trial resources: a fixed dict, or a function of the sampled config (auto).

    CPU-only when the Ray cluster has no GPU. With ``auto`` each trial's GPU share is its
    estimated need (reserved peak + CUDA context + features, MiB) rounded up to 1/8, 1/4, 1/2
    or 1 GPU (``nas.trial.gpu_share``; the budget it leaves goes into the trial's config as
    ``SHARE_BUDGET_KEY``, and ``run_trial`` flags a measured reserved peak above it), computed
    from the spec in the trial's config before Ray places it. Tune hands the function the
    trial's own config (the worker receives a copy of it when the trial starts), so the
    estimate is added to it and the worker does not estimate again; the driver estimates a
    spec once (``trainers.cost``'s per-design cache).
    """
    cpus = config.resources.cpus_per_trial
    share = parse_gpus_per_trial(config.resources.gpus_per_trial)
    if cluster_gpus == 0 or share == 0:
        if share:
            raise SearchError(
                f"resources.gpus_per_trial={config.resources.gpus_per_trial}: the Ray cluster "
                "has no GPU; use auto (CPU-only without GPUs) or 0"
            )
        return {"CPU": cpus}
    if share is not None:
        return {"CPU": cpus, "GPU": share}
    gpu_memory_mb = _gpu_memory_mb(config)
    data_mb = feature_bytes(data) / 2**20

    def resources(trial_config: dict[str, Any]) -> Any:
        try:
            spec = ArchSpec.from_dict(trial_config["spec"])
            estimate = estimate_train_reserved_mb(
                spec, data, settings.train_config, into=trial_config
            )
        except Exception:
            estimate = None
        gpus = gpu_share(estimate, gpu_memory_mb, data_mb)
        if estimate is not None:
            trial_config[SHARE_BUDGET_KEY] = share_budget_mb(gpus, gpu_memory_mb, data_mb)
        return tune.PlacementGroupFactory([{"CPU": cpus, "GPU": gpus}])

    return resources


# -- the run ---------------------------------------------------------------------------------
def run(
    *,
    config: StudyConfig,
    data: FeatureSet,
    space: Any,
    settings: TrialSettings,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    objectives: list[Objective],
    n_trials: int,
    on_record: Callable[[TrialRecord], None],
    on_running: Callable[[int], None] = lambda running: None,
    weights_dir: Path | None = None,
    interrupt: Interrupt | None = None,
    on_head_lost: Callable[[str, float], str] | None = None,
    before_shutdown: Callable[[], None] | None = None,
) -> str:
    """Run ``n_trials`` more trials of the study on Ray Tune; return the Tune experiment folder.

    With ``interrupt`` SIGINT/SIGTERM are handled once Ray runs (``nas.interrupt``): the first
    starts no new trial, the second stops the running ones.

    Joined to a cluster (``--address`` or ``$RAY_ADDRESS``, not local Ray) a ``HeadWatchdog``
    probes the head: silent for ``$FSNAS_HEAD_LOST_S`` (10 s) the process prints
    ``on_head_lost(address, seconds)`` (a default line without it) and exits
    ``HEAD_LOST_EXIT`` (3).

    With ``weights_dir`` every complete trial's best-epoch weights are written there (on the
    driver's node) as ``trial-NNNNN.safetensors`` and the record's ``costs["checkpoint"]``
    names the file. ``on_running(n)`` hears how many trials train as that number changes.

    ``before_shutdown()`` runs once Tune has stopped and before a Ray this call started shuts
    down (the driver stops its MLflow thread there: no thread but the main one runs while Ray
    goes down, so no finaliser of a Ray object runs on another thread after it).
    """
    after_s = head_lost_after_s()  # a bad $FSNAS_HEAD_LOST_S fails before Ray starts
    started_here = init_ray(config.resources.address, config.resources.num_cpus)
    address = config.resources.address or os.environ.get("RAY_ADDRESS")
    target = head_target(address) if started_here else None  # never for local Ray
    tell_lock = threading.Lock()
    watchdog = None
    if target is not None:
        watchdog = HeadWatchdog(str(address), target, on_head_lost, lock=tell_lock, after_s=after_s)
        watchdog.start()
    signals = interrupt.installed() if interrupt is not None else contextlib.nullcontext()
    with signals:  # after ray.init: replaces the core worker's SIGTERM handler (stack dumps)
        try:
            return _run(
                config,
                data,
                space,
                settings,
                storage,
                sampler,
                objectives,
                n_trials,
                on_record,
                on_running,
                weights_dir,
                interrupt,
                tell_lock,
            )
        finally:
            try:
                if before_shutdown is not None:
                    before_shutdown()
            finally:
                if started_here:
                    shutdown_ray()
            if watchdog is not None:  # after shutdown, which also waits for a lost head
                watchdog.stop()


def _run(
    config: StudyConfig,
    data: FeatureSet,
    space: Any,
    settings: TrialSettings,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    objectives: list[Objective],
    n_trials: int,
    on_record: Callable[[TrialRecord], None],
    on_running: Callable[[int], None],
    weights_dir: Path | None,
    interrupt: Interrupt | None = None,
    tell_lock: threading.Lock | None = None,
) -> str:
    ledger = TrialLedger(on_record, weights_dir)
    if tell_lock is not None:
        ledger.tell_lock = tell_lock
    store = start_weight_store(weights_dir) if weights_dir is not None else None

    def define_by_run(trial: optuna.Trial) -> dict[str, Any]:
        return {"spec": space.sample(trial).to_dict()}

    searcher = FsnasOptunaSearch(
        ledger=ledger,
        objective_names=[o.name for o in objectives],
        space=define_by_run,
        metric=[o.name for o in objectives],
        mode=["max" if o.direction == "maximize" else "min" for o in objectives],
        sampler=sampler,
        storage=storage,
        study_name=config.study,
    )
    searcher.interrupt = interrupt
    stopping = config.search.early_stopping
    scheduler: TrialScheduler = FIFOScheduler()
    if stopping.enabled:
        scheduler = ParetoAshaScheduler(
            objectives=objectives,
            max_epochs=config.train.epochs,
            grace_epochs=stopping.grace_epochs,
            reduction_factor=stopping.reduction_factor,
            min_dominators=stopping.min_dominators,
            ledger=ledger,
        )
    trainable = tune.with_parameters(_trainable, data=data, settings=settings, store=store)
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
    trainable = tune.with_resources(
        trainable, trial_resources(config, data, settings, cluster_gpus)
    )
    run_config = _run_config(
        config, config.study, _ProgressCallback(ledger, on_running), _SignalStopper(interrupt)
    )
    if interrupt is not None:  # fsnas handles SIGINT (Tune's handler hints Tuner.restore)
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=n_trials,
            max_concurrent_trials=config.resources.max_concurrent,
            reuse_actors=config.resources.reuse_actors,
            time_budget_s=config.search.time_budget_s,
        ),
        run_config=run_config,
    )
    try:
        with pending_trials(trial_slots(config, cluster_gpus)):
            tuner.fit()
    finally:
        if store is not None:
            ray.kill(store)
    return str(Path(str(run_config.storage_path)) / str(run_config.name))


def trial_slots(config: StudyConfig, cluster_gpus: float) -> int:
    """Return how many trials the Ray cluster can train at once for this study.

    ``max_concurrent`` when set; else the cluster's CPUs over ``cpus_per_trial``, and with a
    fixed GPU share no more than the GPUs allow (``auto`` shares vary per trial: CPUs decide).
    """
    if config.resources.max_concurrent:
        return int(config.resources.max_concurrent)
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    slots = int(cpus // max(config.resources.cpus_per_trial, 1e-9))
    share = parse_gpus_per_trial(config.resources.gpus_per_trial)
    if cluster_gpus > 0 and share:
        slots = min(slots, int(cluster_gpus // share))
    return max(1, slots)


class _SignalStopper(tune.Stopper):
    """Stops the whole experiment once a second signal came (``Interrupt.immediate``)."""

    def __init__(self, interrupt: Interrupt | None) -> None:
        self._interrupt = interrupt

    def __getstate__(self) -> dict[str, Any]:
        return {"_interrupt": None}  # Tune pickles its config; the driver's flag stays here

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self._interrupt is not None and self._interrupt.immediate


def _run_config(
    config: StudyConfig, name: str, callback: tune.Callback, stop: tune.Stopper | None = None
) -> tune.RunConfig:
    """Return the Tune RunConfig of a run: a timestamped folder under ``ray_dir``, quiet."""
    storage_path = Path(config.ray_dir).expanduser().resolve()
    storage_path.mkdir(parents=True, exist_ok=True)
    return tune.RunConfig(
        name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=str(storage_path),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=config.search.max_failures),
        callbacks=[callback],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        stop=stop,
    )


# -- fixed configs (ablations) -----------------------------------------------------------------
class _FixedCallback(tune.Callback):
    """Hands each finished fixed trial's final report (or its error) to the caller."""

    def __init__(
        self, on_result: Callable[[int, dict[str, Any] | None, str], None], ledger: TrialLedger
    ) -> None:
        self._on_result = on_result
        self._ledger = ledger

    def __getstate__(self) -> dict[str, Any]:
        return {}  # see TrialLedger.__getstate__

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ledger.trials[trial.trial_id] = trial

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        final = result if result.get(FINAL_KEY) else None
        error = "" if final else "stopped before its final report"
        self._on_result(int(trial.config["index"]), final, error)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._on_result(int(trial.config["index"]), None, self._ledger.error_text(trial.trial_id))


def run_fixed_trials(
    configs: list[dict[str, Any]],
    trial_fn: TrialFunction,
    *,
    config: StudyConfig,
    data: FeatureSet,
    settings: TrialSettings,
    name: str,
    on_result: Callable[[int, dict[str, Any] | None, str], None],
) -> str:
    """Run each of ``configs`` once through Ray Tune (no sampler, no early stopping).

    Each config must hold a ``spec`` (for ``gpus_per_trial=auto``); ``trial_fn`` gets it like
    ``run_trial`` gets a sampled config. ``on_result(index, final report or None, error text)``
    is called on the driver as each trial ends. Resources, concurrency, actor reuse and
    retries are the search's. Returns the Tune experiment folder.
    """
    started_here = init_ray(config.resources.address, config.resources.num_cpus)
    try:
        ledger = TrialLedger(lambda record: None)
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0.0))
        per_spec = trial_resources(config, data, settings, cluster_gpus)
        resources: Any = per_spec
        if callable(per_spec):

            def resources(trial_config: dict[str, Any]) -> Any:
                # the estimate made for placement travels in the trial's own config (the
                # configs list reached the workers before any estimate was made)
                chosen = dict(configs[int(trial_config["index"])])
                placed = per_spec(chosen)
                trial_config.update({k: chosen[k] for k in ESTIMATE_KEYS if k in chosen})
                return placed

        trainable = tune.with_parameters(
            _fixed_trainable, data=data, settings=settings, trial_fn=trial_fn, configs=configs
        )
        trainable = tune.with_resources(trainable, resources)
        run_config = _run_config(config, name, _FixedCallback(on_result, ledger))
        tuner = tune.Tuner(
            trainable,
            param_space={"index": tune.grid_search(list(range(len(configs))))},
            tune_config=tune.TuneConfig(
                num_samples=1,
                max_concurrent_trials=config.resources.max_concurrent,
                reuse_actors=config.resources.reuse_actors,
            ),
            run_config=run_config,
        )
        tuner.fit()
        return str(Path(str(run_config.storage_path)) / str(run_config.name))
    finally:
        if started_here:
            shutdown_ray()
