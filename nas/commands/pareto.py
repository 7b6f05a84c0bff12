"""``fsnas pareto --study NAME [--storage URL] [--json]``: a study's front, hypervolume, knee."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``pareto`` sub-command."""
    parser = subparsers.add_parser(
        "pareto",
        help="print a study's Pareto front, hypervolume and knee; write pareto.json, trials.csv",
        description=(
            "Read a study from its Optuna storage and print the Pareto front of its complete "
            "trials (pruned, failed and infeasible trials are never on it), the hypervolume "
            "with its reference point and the knee point. Writes pareto.json and trials.csv."
        ),
    )
    parser.add_argument("--study", required=True, metavar="NAME", help="study name")
    parser.add_argument(
        "--storage", metavar="URL", help="Optuna storage (default sqlite:///.fsnas/studies.db)"
    )
    parser.add_argument("--json", action="store_true", help="print pareto.json instead of a table")
    parser.add_argument(
        "--out", default=".", metavar="DIR", help="folder for pareto.json and trials.csv (.)"
    )
    parser.add_argument(
        "--importance",
        choices=("fanova", "ped-anova", "none"),
        default="fanova",
        help="factor importance per objective with Optuna's evaluator (fanova; ped-anova "
        "needs about 20 complete trials; none skips it)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the study's front and write its files; exit 0."""
    from dashboards.artifacts import write_pareto_json, write_trials_csv
    from nas.search import load_study
    from search_spaces.errors import FsnasError

    outcome = load_study(args.study, args.storage)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        pareto_json = write_pareto_json(out / "pareto.json", outcome.records, outcome.summary)
        trials_csv = write_trials_csv(out / "trials.csv", outcome.records)
    except OSError as exc:
        where = exc.filename or out
        raise FsnasError(
            f"--out {out}: cannot write {where} ({exc.strerror or exc}); pass --out with a "
            "writable folder (the study itself is unchanged)"
        ) from None
    if args.json:
        print(json.dumps(json.loads(pareto_json.read_text(encoding="utf-8")), indent=2))
    else:
        from nas.search import outcome_text

        print(outcome_text(outcome))
    importance = []
    if args.importance != "none":
        from nas.insight import importance_table, study_importance, write_importance
        from nas.study import read_study

        stored = read_study(args.study, args.storage)
        items = study_importance(stored.study, stored.objectives, args.importance)
        try:
            importance = write_importance(out, items, args.study)
        except OSError as exc:
            raise FsnasError(
                f"--out {out}: cannot write {exc.filename or out} ({exc.strerror or exc}); pass "
                "--out with a writable folder (the study itself is unchanged)"
            ) from None
        if not args.json:
            print(importance_table(items))
    if not args.json:
        extra = f" and {', '.join(p.name for p in importance)}" if importance else ""
        print(f"wrote {pareto_json}, {trials_csv}{extra}")
    return 0
