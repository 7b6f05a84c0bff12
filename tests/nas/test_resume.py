"""SIGKILL the search driver mid-study, run the same command again: nothing lost or doubled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from nas.search import load_study
from nas.study import STATUS_ATTR
from tests.nas._study import tiny_config, write_config

FSNAS = [sys.executable, "-m", "nas.cli"]


def _finished(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        s = optuna.load_study(study_name=study, storage=storage)
    except Exception:  # not created yet (or the driver holds the write lock)
        return []
    return [t for t in s.get_trials(deepcopy=False) if STATUS_ATTR in t.user_attrs]


@pytest.mark.slow
def test_sigkill_then_rerun_completes_the_study(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path,
        study="resume",
        train={"epochs": 3},
        search={"trials": 6, "early_stopping": {"enabled": False}},
        resources={"max_concurrent": 1},
    )
    path = write_config(tmp_path / "resume.yaml", config)
    cmd = [*FSNAS, "search", "--config", str(path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while len(_finished(config["storage"], "resume")) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no two finished trials within 240 s"
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)  # the driver only, mid-study
        first.wait(timeout=30)
    finally:
        # the driver's local Ray processes share its session; end what is left of them
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    kept = {t.number: t.user_attrs["fsnas_record"] for t in _finished(config["storage"], "resume")}
    assert 2 <= len(kept) < 6

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resuming: {len(kept)} finished trial(s) kept" in second.stdout

    outcome = load_study("resume", config["storage"])
    assert len(outcome.records) == 6  # exactly the requested count
    by_number = {r.number: r for r in outcome.records}
    assert len(by_number) == 6  # no trial recorded twice
    for number, record in kept.items():  # the trials finished before the kill are unchanged
        assert by_number[number].to_dict()["objectives"] == record["objectives"]


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_a_resumed_study_draws_new_architectures_reproducibly(sampler: str) -> None:
    """The first run's seed, reused on resume, would propose the trials already trained."""
    from nas.config import from_dict
    from nas.study import make_sampler, sampler_seed
    from search_spaces.space import SearchSpace

    config = from_dict({"search": {"sampler": sampler, "seed": 3, "trials": 40}})
    space = SearchSpace()

    def draw(study: optuna.Study, n: int) -> list[str]:
        specs = []
        for _ in range(n):
            trial = study.ask()
            specs.append(space.sample(trial).to_json(indent=None))
            study.tell(trial, [0.5, 100.0])
        return specs

    first = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(config))
    before = draw(first, 4)
    # the same seed in a new process (a fresh study) gives the same draws: reproducible
    again = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(config))
    assert draw(again, 4) == before
    # a resume: the study keeps its 4 trials and gets a sampler for 4 previous trials
    first.sampler = make_sampler(config, previous_trials=len(first.trials))
    after = draw(first, 4)
    assert not set(after) & set(before)
    assert sampler_seed(3, 0) == 3 and sampler_seed(3, 4) == sampler_seed(3, 4) != 3
