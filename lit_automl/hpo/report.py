"""What a study leaves in its run folder once it stops.

* ``trials.csv``: every trial (number, state, values, parameters, ``pruned_epoch``, ``fail_reason``).
* ``best.yaml``: the recipe with the best trial's parameters merged, a config for
  ``lit-automl fit -c best.yaml``. For a multi-objective study the best trials are the Pareto
  front (:attr:`optuna.Study.best_trials`: no other trial is at least as good on every objective and
  better on one); each is written as ``pareto/trial_<n>.yaml``, listed in ``pareto_front.yaml``,
  and ``best.yaml`` is the front's best on the first objective.
* Plots from :mod:`optuna.visualization.matplotlib` (matplotlib's Agg backend, no display):
  ``optimization_history.png``, ``param_importances.png`` (Optuna's default importance evaluator,
  needs two completed trials) and, for two or three objectives, ``pareto_front.png``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from lit_automl.hpo.config import dump_config, merge_params

__all__ = ["best_trial", "pareto_front", "save_plots", "write_best_config", "write_report", "write_trials_csv"]

log = logging.getLogger(__name__)


def best_trial(study: optuna.Study) -> Optional[FrozenTrial]:
    """The best COMPLETE trial (multi-objective: the Pareto trial best on the first objective), or ``None``."""
    try:
        if len(study.directions) == 1:
            return study.best_trial
        front = study.best_trials
    except ValueError:
        return None
    if not front:
        return None
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1.0
    return min(front, key=lambda t: (sign * t.values[0], t.number))


def pareto_front(study: optuna.Study) -> List[Dict[str, Any]]:
    """The Pareto-optimal trials as ``{number, values: {metric: value}, params}``, sorted by number."""
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    return [
        {"number": t.number, "values": dict(zip(names, t.values)), "params": dict(t.params)}
        for t in sorted(study.best_trials, key=lambda t: t.number)
    ]


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", *names, *keys, "pruned_epoch", "fail_reason", "duration_s"])
    for t in trials:
        values = list(t.values) if t.values is not None else [""] * len(names)
        duration = t.duration.total_seconds() if t.duration is not None else ""
        writer.writerow(
            [t.number, t.state.name, *values, *[t.params.get(k, "") for k in keys],
             t.user_attrs.get("pruned_epoch", ""), t.user_attrs.get("fail_reason", ""), duration]
        )
    _atomic_write(path, buffer.getvalue())
    return path


def write_best_config(study: optuna.Study, base_config: Mapping[str, Any], path: Path) -> Optional[Path]:
    """``best.yaml``: the recipe with the best trial's parameters; ``None`` when no trial completed."""
    trial = best_trial(study)
    if trial is None:
        return None
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    values = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, trial.values))
    header = (
        f"best trial {trial.number} of study {study.study_name}: {values}\n"
        f"params: {trial.params}\n"
        f"lit-automl fit -c {path.name}"
    )
    return dump_config(merge_params(base_config, trial.params), path, header=header)


def save_plots(study: optuna.Study, run_dir: Path) -> Dict[str, Path]:
    """Optimisation history, parameter importances and (multi-objective) Pareto front as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    multi = len(study.directions) > 1
    target = importance_target = None
    if multi:  # plot the first objective; the importance evaluator (PED-ANOVA) looks for *low* target values
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        target, importance_target = (lambda t: t.values[0]), (lambda t: sign * t.values[0])
    target_name = names[0]
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, target=target, target_name=target_name),
        "param_importances": lambda: ovm.plot_param_importances(study, target=importance_target, target_name=target_name),
    }
    if multi and len(study.directions) in (2, 3):
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=names)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    needs = {"optimization_history": 1, "param_importances": 2, "pareto_front": 1}
    written: Dict[str, Path] = {}
    for name, draw in plots.items():
        if complete < needs[name]:
            log.warning(f"{name}.png not drawn: study {study.study_name!r} has {complete} completed trial(s), needs {needs[name]}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.filterwarnings("ignore", message=".*to achieve low `target` values.*")  # the sign is handled
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            path = run_dir / f"{name}.png"
            tmp = run_dir / f".{name}.{os.getpid()}.png"
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
            tmp.replace(path)
            plt.close(fig)
            written[name] = path
        except Exception as err:  # noqa: BLE001 - a plot Optuna cannot draw yet must not lose the study
            log.warning(f"could not draw {name} for study {study.study_name!r}: {type(err).__name__}: {err}")
            plt.close("all")
    return written


def write_report(study: optuna.Study, base_config: Mapping[str, Any], run_dir: Path) -> Dict[str, Any]:
    """Write trials.csv, best.yaml (+ Pareto configs) and plots; return a summary of what was found."""
    run_dir = Path(run_dir)
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    report: Dict[str, Any] = {"counts": {k: v for k, v in counts.items() if v}, "files": {}}
    report["files"]["trials"] = write_trials_csv(study, run_dir / "trials.csv")
    best = best_trial(study)
    report["best_trial"] = best
    if best is None:
        log.warning(f"study {study.study_name!r} has no completed trial; best.yaml not written")
    else:
        report["files"]["best_config"] = write_best_config(study, base_config, run_dir / "best.yaml")
    if len(study.directions) > 1:
        front = pareto_front(study)
        report["pareto_front"] = front
        for item in front:
            trial = study.trials[item["number"]]
            dump_config(merge_params(base_config, trial.params), run_dir / "pareto" / f"trial_{trial.number}.yaml",
                        header=f"Pareto-optimal trial {trial.number} of study {study.study_name}: {item['values']}")
        report["files"]["pareto_front"] = dump_config({"pareto_front": front}, run_dir / "pareto_front.yaml")
    report["files"].update(save_plots(study, run_dir))
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """A few lines for the terminal."""
    study: optuna.Study = report["study"]
    lines = [f"study {study.study_name!r} in {report['run_dir']}: " + ", ".join(f"{v} {k}" for k, v in report.get("counts", {}).items())]
    best = report.get("best_trial")
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    if best is not None:
        values = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, best.values))
        lines.append(f"best trial {best.number}: {values}; params {best.params}")
    for item in report.get("pareto_front", []):
        values = ", ".join(f"{n} = {v:.6g}" for n, v in item["values"].items())
        lines.append(f"  Pareto trial {item['number']}: {values}; params {item['params']}")
    for name, path in report.get("files", {}).items():
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
