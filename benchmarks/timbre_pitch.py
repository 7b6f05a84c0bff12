"""Timbre under pitch shift: the vgg-to-vertical walk on real instrument notes and on FSDD.

The thesis of fsnas: one layer of tall filters max-pooled over frequency sees timbre at once and
is pitch-invariant; a VGG must go deep before a unit sees the whole frequency axis. This
benchmark measures the property itself, for every network of the vgg-to-vertical study
(``nas.ablation.study_plan("vgg-to-vertical")``, ``search_spaces.anchors.vgg_to_vertical_walk``):

* **timbre**: General MIDI instrument families rendered at benchmark time with ``fluidsynth``
  from Debian's ``fluid-soundfont-gm`` (FluidR3_GM); trained on one register (MIDI notes
  ``TRAIN_NOTES``), evaluated on that register's held-out test clips, on notes outside it
  (``EXTRAPOLATION_NOTES``: pitch extrapolation) and on the training register played by another
  soundfont (``timgm6mb-soundfont``: transfer), and on the test clips pitch-shifted;
* **FSDD** spoken digits (``../shared/data/fsdd``), official test split, pitch-shifted.

Each trial trains with ``data.pitch_shifts`` on the valid split (``val_pitch_robustness``),
then the trained model is evaluated by ``nas.evaluate.evaluate_bundle`` (the code of
``fsnas evaluate``) at every shift. Means and 95 % CIs over seeds (``nas.stats``); the
ablation table is ``nas.ablation_report.ablation_table``. Nothing audio is shipped: the
setup installs the packages (``apt-get install fluidsynth fluid-soundfont-gm
timgm6mb-soundfont``; root) and renders into a temporary folder.

    python benchmarks/timbre_pitch.py        # 5 seeds, 20 epochs: 12 min on 2 cores
    python benchmarks/timbre_pitch.py --smoke                       # seconds: tests
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib

SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
TRAIN_SOUNDFONT = SOUNDFONT_DIR / "FluidR3_GM.sf2"
TRANSFER_SOUNDFONTS = (
    SOUNDFONT_DIR / "TimGM6mb.sf2",
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
)
PACKAGES = ("fluidsynth", "fluid-soundfont-gm", "timgm6mb-soundfont")
# General MIDI programs (0-based) of six instrument families
FAMILIES: dict[str, int] = {
    "piano": 0,
    "organ": 19,
    "guitar": 24,
    "violin": 40,
    "trumpet": 56,
    "flute": 73,
}
TRAIN_NOTES = tuple(range(55, 67))  # G3..F#4: the training register
EXTRAPOLATION_NOTES = tuple(range(45, 55)) + tuple(range(67, 77))  # a tenth below and above
TRAIN_VELOCITIES = (60, 80, 100, 120)
EVAL_VELOCITIES = (75, 110)
SAMPLE_RATE_HZ = 16000
NOTE_S = 0.9
SLOT_S = 1.25  # onset to onset: the note plus its release
SHIFTS = (-4.0, -2.0, 0.0, 2.0, 4.0)


# -- setup: packages and rendering ---------------------------------------------------------------
def ensure_soundfonts() -> Path:
    """Install fluidsynth and the GM soundfonts when missing (root); return the transfer font."""
    if shutil.which("fluidsynth") is None or not TRAIN_SOUNDFONT.is_file():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env)
    for font in TRANSFER_SOUNDFONTS:
        if font.is_file():
            return font
    raise SystemExit(f"no transfer soundfont among {[str(f) for f in TRANSFER_SOUNDFONTS]}")


def _var_len(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(program: int, notes: list[tuple[int, int]]) -> bytes:
    """Return a format-0 MIDI file: ``program``, then each (note, velocity) every ``SLOT_S``."""
    ticks_per_s = 960  # 480 per quarter at the default 120 bpm
    events: list[tuple[int, bytes]] = [(0, bytes([0xC0, program]))]
    for i, (note, velocity) in enumerate(notes):
        on = round(i * SLOT_S * ticks_per_s)
        events.append((on, bytes([0x90, note, velocity])))
        events.append((on + round(NOTE_S * ticks_per_s), bytes([0x80, note, 0])))
    events.sort(key=lambda e: e[0])
    track, now = b"", 0
    for tick, data in events:
        track += _var_len(tick - now) + data
        now = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def render(font: Path, program: int, notes: list[tuple[int, int]], work: Path) -> np.ndarray:
    """Return one clip per note, (len(notes), SAMPLE_RATE_HZ) float32, rendered by fluidsynth."""
    import soundfile as sf

    mid, wav = work / f"p{program}.mid", work / f"p{program}_{font.stem}.wav"
    mid.write_bytes(midi_file(program, notes))
    subprocess.run(
        [
            *("fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6"),
            *("-r", str(SAMPLE_RATE_HZ), "-F", str(wav), str(font), str(mid)),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE_HZ, rate
    mono = audio.mean(axis=1)
    slot = round(SLOT_S * SAMPLE_RATE_HZ)
    clips = []
    for i in range(len(notes)):
        clip = mono[i * slot : i * slot + SAMPLE_RATE_HZ]
        clips.append(np.pad(clip, (0, SAMPLE_RATE_HZ - len(clip))))
    return np.stack(clips)


def build_timbre_data(work: Path, transfer_font: Path, smoke: bool = False) -> dict[str, str]:
    """Render the three timbre sets as WAVs with CSV manifests; return ``KIND:PATH`` of each."""
    import soundfile as sf

    families = dict(list(FAMILIES.items())[:3]) if smoke else FAMILIES
    train_notes = TRAIN_NOTES[::4] if smoke else TRAIN_NOTES
    extra_notes = EXTRAPOLATION_NOTES[::5] if smoke else EXTRAPOLATION_NOTES
    sets = {
        "timbre": (TRAIN_SOUNDFONT, [(n, v) for n in train_notes for v in TRAIN_VELOCITIES]),
        "extrapolation": (TRAIN_SOUNDFONT, [(n, v) for n in extra_notes for v in EVAL_VELOCITIES]),
        "transfer": (transfer_font, [(n, v) for n in train_notes for v in EVAL_VELOCITIES]),
    }
    out: dict[str, str] = {}
    for name, (font, notes) in sets.items():
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["path,label"]
        for family, program in families.items():
            clips = render(font, program, notes, work)
            for (note, velocity), clip in zip(notes, clips):
                path = folder / f"{family}_n{note}_v{velocity}.wav"
                sf.write(path, clip, SAMPLE_RATE_HZ, subtype="PCM_16")
                rows.append(f"{path.name},{family}")
        manifest = folder / "clips.csv"
        manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
        out[name] = f"csv:{manifest}"
    return out


def fsdd_subset(work: Path, per_class: int) -> str:
    """Return a CSV of FSDD: the official test takes (0-4), ``per_class`` train takes per digit."""
    rows = ["path,label,split"]
    folder = benchlib.FSDD_DIR
    if not folder.is_dir():
        raise SystemExit(f"FSDD not found at {folder} (see ../shared/data/fsdd/README.md)")
    link = work / "fsdd"  # inside the manifest's folder (a manifest may not point outside it)
    if not link.exists():
        link.symlink_to(folder, target_is_directory=True)
    for digit in range(10):
        files = sorted(folder.glob(f"{digit}_*.wav"))
        test = [f for f in files if int(f.stem.split("_")[2]) < 5]
        train = [f for f in files if int(f.stem.split("_")[2]) >= 5]
        rng = np.random.default_rng(digit)
        chosen = rng.permutation(len(train))[:per_class]
        for k, i in enumerate(sorted(chosen)):
            rows.append(f"fsdd/{train[i].name},{digit},{'valid' if k % 10 == 0 else 'train'}")
        rows.extend(f"fsdd/{f.name},{digit},test" for f in test)
    manifest = work / "fsdd_subset.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return f"csv:{manifest}"


# -- the study -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One walk network × seed of one data set: all a worker process needs (picklable)."""

    name: str
    data_arg: str
    kind: str
    evals: dict[str, tuple[str, str]]
    cache: str
    epochs: int
    threads: int
    channels: int
    study_shifts: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: tuple[int, ...] | None
    number: int


# per process: the data set and its plan, loaded once (from the feature cache) and reused
_LOADED: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def study_data(job: Job) -> tuple[Any, Any, Any]:
    """Return (feature config, FeatureSet with shifted valid splits, walk plan) of ``job``."""
    from nas.ablation import study_plan
    from trainers.features import default_feature_config, load_features

    key = (job.data_arg, job.kind)
    if key not in _LOADED:
        # 64 mels x 101 frames: 16 kHz, hop 160 (instruments); FSDD's anchor: 8 kHz, hop 80
        cfg = default_feature_config(job.kind)
        cache = Path(job.cache)
        data = load_features(job.data_arg, cfg, cache_dir=cache, seed=0)
        for shift in job.study_shifts:
            shifted = load_features(
                job.data_arg, cfg, cache_dir=cache, seed=0, pitch_shift_semitones=shift
            )
            data.valid_shifted[float(shift)] = shifted.valid
        plan = study_plan(
            "vgg-to-vertical", data.n_mels, data.n_frames, job.seeds, channels=job.channels
        )
        variants = [v for i, v in enumerate(plan.variants) if job.steps is None or i in job.steps]
        _LOADED[key] = (cfg, data, replace(plan, variants=tuple(variants)))
    return _LOADED[key]


def run_job(job: Job) -> dict[str, Any]:
    """Train one network × seed, evaluate it at every shift; return plain values (picklable)."""
    import torch

    from nas.bundle import ExportedModel, WaveformFeatures
    from nas.evaluate import evaluate_bundle
    from nas.trial import record_from_fit
    from search_spaces.build import build_model
    from trainers.checkpoint import load_checkpoint
    from trainers.metrics import PRIMARY_METRIC
    from trainers.result import TrainConfig
    from trainers.train import fit

    started = time.monotonic()
    torch.set_num_threads(job.threads)
    cfg, data, plan = study_data(job)
    trial = plan.trials()[job.number]
    variant = plan.variants[trial.variant]
    metric = PRIMARY_METRIC[data.task]
    ckpt = Path(job.cache).parent / f"ckpt-{job.name}-{trial.number}"
    config = TrainConfig(
        epochs=job.epochs,
        batch_size=16,
        lr=3e-3,
        seed=trial.seed,
        checkpoint_dir=str(ckpt),
        num_threads=job.threads,
    )
    result = fit(variant.spec, data, config, "cpu")
    record = record_from_fit(
        variant.spec, result, config, trial.number, input_shape=(data.n_mels, data.n_frames)
    )
    evaluated: dict[str, dict[float, float]] = {}
    if result.status == "complete" and result.checkpoint:
        state, _ = load_checkpoint(str(result.checkpoint))
        model = build_model(variant.spec, data.n_mels, data.n_frames, data.n_classes)
        model.load_state_dict(state)
        bundle = ExportedModel(
            model=model.eval(),
            features=WaveformFeatures(cfg),
            labels=list(data.labels),
            task=data.task,
            spec=variant.spec,
            feature_config=cfg,
            n_mels=data.n_mels,
            n_frames=data.n_frames,
            directory=ckpt,
        )
        with torch.no_grad():
            for eval_name, (eval_arg, split) in job.evals.items():
                shifts = SHIFTS if eval_name == "test" else (0.0,)
                ev = evaluate_bundle(
                    bundle,
                    eval_arg,
                    split=split,  # type: ignore[arg-type]
                    shifts=shifts,
                    cache_dir=Path(job.cache),  # type: ignore[arg-type]
                )
                evaluated[eval_name] = {r.pitch_shift_semitones: r.metrics[metric] for r in ev.rows}
    shutil.rmtree(ckpt, ignore_errors=True)
    return {
        "variant": variant.name,
        "seed": trial.seed,
        "number": trial.number,
        "record": record.to_dict(),
        "evaluated": evaluated,
        "status": result.status,
        "test": result.metrics.get("test_" + metric, float("nan")),
        "robust": result.metrics.get("val_pitch_robustness", float("nan")),
        "seconds": round(time.monotonic() - started, 1),
    }


def run_dataset(
    name: str,
    data_arg: str,
    evals: dict[str, tuple[str, str]],
    args: argparse.Namespace,
    cache: Path,
    kind: str = "csv",
) -> dict[str, Any]:
    """Train every walk network × seed on ``data_arg`` and evaluate each at every shift.

    ``args.workers`` processes (spawned, ``args.threads`` torch threads each) share the trials;
    the features are computed once here first, so the workers read them from the cache.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from dashboards.records import TrialRecord
    from nas.ablation_report import ablation_table, aggregate
    from nas.stats import summarize
    from trainers.metrics import PRIMARY_METRIC

    started = time.monotonic()
    base = Job(
        name=name,
        data_arg=data_arg,
        kind=kind,
        evals=evals,
        cache=str(cache),
        epochs=args.epochs,
        threads=args.threads,
        channels=args.channels,
        study_shifts=tuple(float(s) for s in args.study_shifts),
        seeds=tuple(args.seed_list),
        steps=None if args.steps is None else tuple(args.steps),
        number=0,
    )
    _, data, plan = study_data(base)  # features into the cache before any worker starts
    metric = PRIMARY_METRIC[data.task]
    jobs = [replace(base, number=t.number) for t in plan.trials()]
    # plan order: the VGG (the slowest network) first, so the pool does not end on it
    done: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in as_completed(futures):
            out = future.result()
            done.append(out)
            print(
                f"[{name}] {out['variant']} seed {out['seed']}: {out['status']} "
                f"test {out['test']:.3f} robust {out['robust']:.3f} "
                f"{json.dumps(out['evaluated'])} ({out['seconds']:.0f} s; "
                f"{time.monotonic() - started:.0f} s in)",
                file=sys.stderr,
                flush=True,
            )
    done.sort(key=lambda o: o["number"])
    records = []
    for out in done:
        record = TrialRecord.from_dict(out["record"])
        record.number = out["number"]
        records.append(record)
    by_number = {r.number: r for r in records}
    stats = aggregate(plan, records, f"test_{metric}")
    table = ablation_table(stats, f"test_{metric}", "estimated", seeds=len(args.seed_list))
    rows = []
    for variant in plan.variants:
        mine = [o for o in done if o["variant"] == variant.name and o["evaluated"]]
        row: dict[str, Any] = {"variant": variant.name, "n": len(mine)}
        if mine:
            costs = by_number[mine[0]["number"]].costs
            row.update(
                {
                    k: costs.get(k)
                    for k in ("receptive_freq_bins", "receptive_whole_freq_depth", "params")
                }
            )
        for eval_name in evals:
            for shift in SHIFTS if eval_name == "test" else (0.0,):
                values = [
                    o["evaluated"][eval_name][shift]
                    for o in mine
                    if shift in o["evaluated"].get(eval_name, {})
                ]
                if values:
                    s = summarize(values)
                    key = eval_name if eval_name != "test" else f"test@{shift:+g}"
                    row[key] = {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high}
        rows.append(row)
    return {
        "data": data_arg,
        "labels": data.labels,
        "split_counts": {k: len(getattr(data, k)) for k in ("train", "valid", "test")},
        "metric": metric,
        "study_shifts": list(args.study_shifts),
        "ablation_table": table,
        "rows": rows,
        "trials": [
            {
                "variant": o["variant"],
                "seed": o["seed"],
                "seconds": o["seconds"],
                "metrics": by_number[o["number"]].metrics,
                "evaluated": o["evaluated"],
            }
            for o in done
        ],
        "seconds": round(time.monotonic() - started, 1),
    }


def shift_table(result: dict[str, Any], extra: tuple[str, ...]) -> str:
    """Return a Markdown table: per network, RF, accuracy at each shift and on ``extra`` sets."""
    head = ["network", "RF bins", "whole-freq block", *(f"{s:+g} st" for s in SHIFTS), *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(value: dict[str, float] | None) -> str:
        if not value:
            return "-"
        half = (value["ci_high"] - value["ci_low"]) / 2
        return f"{value['mean']:.3f}" + (f" ± {half:.3f}" if np.isfinite(half) else "")

    for row in result["rows"]:
        cells = [
            row["variant"],
            str(row.get("receptive_freq_bins", "-")),
            str(row.get("receptive_whole_freq_depth") or "none"),
        ]
        cells += [cell(row.get(f"test@{s:+g}")) for s in SHIFTS]
        cells += [cell(row.get(name)) for name in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
    """Plot accuracy against shift for the VGG end and the vertical end of each data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        rows = result["rows"]
        for row in (rows[0], rows[-1]) if len(rows) > 1 else rows:
            xs = [s for s in SHIFTS if row.get(f"test@{s:+g}")]
            ys = [row[f"test@{s:+g}"]["mean"] for s in xs]
            lo = [row[f"test@{s:+g}"]["ci_low"] for s in xs]
            hi = [row[f"test@{s:+g}"]["ci_high"] for s in xs]
            ax.plot(xs, ys, marker="o", label=row["variant"])
            if all(np.isfinite(lo)):
                ax.fill_between(xs, lo, hi, alpha=0.2)
        ax.set_title(f"{name}: test accuracy under pitch shift")
        ax.set_xlabel("pitch shift (semitones)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="trials trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--steps", default=None, help="walk steps to run, e.g. 0,5 (default all)")
    parser.add_argument("--fsdd-per-class", type=int, default=120, help="FSDD train takes a digit")
    parser.add_argument("--skip-fsdd", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny: 1 seed, 1 epoch, 2 steps")
    parser.add_argument("--out", default=str(benchlib.RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs, args.steps, args.fsdd_per_class = 1, 1, "0,5", 4
        args.channels = 4
    args.seed_list = list(range(args.seeds))
    args.steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]
    args.study_shifts = (-2.0, 2.0)
    run = benchlib.BenchRun("timbre_pitch_smoke" if args.smoke else "timbre_pitch")
    transfer_font = ensure_soundfonts()
    work = benchlib.temp_workdir("timbre-pitch-")
    cache = work / "cache"
    t0 = time.monotonic()
    timbre = build_timbre_data(work, transfer_font, smoke=args.smoke)
    render_s = time.monotonic() - t0
    results: dict[str, Any] = {}
    results["timbre"] = run_dataset(
        "timbre",
        timbre["timbre"],
        {
            "test": (timbre["timbre"], "test"),
            "extrapolation": (timbre["extrapolation"], "all"),
            "transfer": (timbre["transfer"], "all"),
        },
        args,
        cache,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def write(final: bool) -> None:
        """Write the JSON, tables and plot of what has run (after each data set)."""
        figure = plot(results, out / f"{run.name}_shift.png")
        tables = {"timbre": shift_table(results["timbre"], ("extrapolation", "transfer"))}
        if "fsdd" in results:
            tables["fsdd"] = shift_table(results["fsdd"], ())
        if final:
            for name, table in tables.items():
                print(f"\n{name}\n{table}\n\n{results[name]['ablation_table']}")
        total_s = time.monotonic() - run.started
        complete = final and (args.skip_fsdd or "fsdd" in results)
        benchlib.write_result(
            run,
            {
                "settings": {k: v for k, v in vars(args).items() if k != "out"},
                "complete": complete,
                "transfer_soundfont": str(transfer_font),
                "render_seconds": round(render_s, 1),
                "results": results,
                "tables_markdown": tables,
                "figure": str(figure),
                "goals": [
                    benchlib.goal_row(
                        "timbre + FSDD vgg-to-vertical with pitch shift on 2 cores within 30 min",
                        f"{total_s / 60:.1f} min" + ("" if complete else " (partial)"),
                        total_s <= 1800 if complete and not args.smoke else None,
                    )
                ],
            },
            out,
        )

    write(final=args.skip_fsdd)
    if not args.skip_fsdd:
        fsdd = fsdd_subset(work, args.fsdd_per_class)
        results["fsdd"] = run_dataset("fsdd", fsdd, {"test": (fsdd, "test")}, args, cache, "fsdd")
        write(final=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
