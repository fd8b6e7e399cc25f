"""``lit-automl``: the LightningCLI subcommands (``fit``, ``validate``, ``test``, ``predict``), ``hpo`` and ``nas-worker``.

Any LightningModule and LightningDataModule can be named by ``class_path`` in a YAML recipe::

    lit-automl fit -c recipes/darts_digits.yaml
    lit-automl fit -c recipes/retrain_digits.yaml --model.genotype DARTS_V2

``hpo`` tunes a recipe with Optuna as the outer loop, one Lightning fit per trial (the recipe's
``hpo:`` section declares the study and its search space; ``fit`` ignores that section)::

    lit-automl hpo -c recipes/hpo_digits.yaml --n-trials 20 --sampler tpe
    lit-automl hpo -c recipes/hpo_digits.yaml --storage postgresql://user:pw@host/db   # one per machine
    lit-automl hpo -c recipes/hpo_digits.yaml --trainer.max_epochs=5                  # config overrides

A staged search (a model with ``next_stage()``, such as P-DARTS) runs one ``Trainer.fit`` per
stage under ``fit``, each with a fresh trainer logging to ``<logger version>/stage_<n>``::

    lit-automl fit -c recipes/pdarts_digits.yaml
    lit-automl fit -c recipes/pdarts_digits.yaml --ckpt_path runs/pdarts_digits/search/stage_1/checkpoints/last.ckpt

``nas-worker`` evaluates the children of a sample-based search recipe (NASRL, NASNetSearch) from a
shared Optuna storage, on any number of machines, while ``fit`` runs the controller::

    lit-automl fit -c recipes/nas_rl_cifar10.yaml --model.init_args.storage=postgresql://u:pw@host/db
    lit-automl nas-worker -c recipes/nas_rl_cifar10.yaml --storage postgresql://u:pw@host/db

Only argv dispatch lives here: ``fit`` / ``validate`` / ``test`` / ``predict`` go to
:class:`~lit_automl.run_config.AutoMLCLI`, ``hpo`` and ``nas-worker`` to their argparse mains. This
module imports neither torch nor Lightning, so ``lit-automl``, ``lit-automl hpo --help`` and
``lit-automl nas-worker --help`` answer at once; each command imports what it runs.

Every failure ends in one ``error: ...`` line and exit status 2 for bad input, 1 for a failed run
(:mod:`lit_automl.console`); ``LIT_AUTOML_DEBUG=1`` or ``--traceback`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, NoReturn, Optional

from lit_automl._checks import check_int, check_real
from lit_automl.console import (
    UsageError,
    check_config_files,
    close_progress_bars,
    error_line,
    exit_status,
    quiet_third_party_noise,
    wants_traceback,
)

SUBCOMMANDS = ("fit", "validate", "test", "predict", "hpo", "nas-worker")
USAGE = f"usage: lit-automl [-h] [-c CONFIG] {{{','.join(SUBCOMMANDS)}}} ..."


class _Parser(argparse.ArgumentParser):
    """argparse whose errors reach :func:`main` as :class:`UsageError` (one ``error:`` line, exit 2)
    instead of its usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# --------------------------------------------------------------------- lit-automl hpo
def hpo_parser() -> argparse.ArgumentParser:
    """Flags of ``lit-automl hpo``; each overrides the same key of the recipe's ``hpo:`` section."""
    from lit_automl.hpo.registry import PRUNERS, SAMPLERS

    parser = _Parser(
        prog="lit-automl hpo",
        description="Tune a LightningCLI recipe with Optuna: one Lightning fit per trial. Further "
        "--key=value arguments (e.g. --trainer.max_epochs=5) override the recipe for every trial.",
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--config", required=True, help="recipe: a LightningCLI config with an hpo: section")
    parser.add_argument("--n-trials", type=int, help="finished trials (COMPLETE or PRUNED) the study should reach")
    parser.add_argument("--sampler", help=f"one of {sorted(SAMPLERS)}")
    parser.add_argument("--pruner", help=f"one of {sorted(PRUNERS)}")
    parser.add_argument("--seed", type=int, help="sampler seed")
    parser.add_argument("--storage", help="SQLAlchemy URL, or journal:PATH; default: sqlite:///<run-dir>/study.db")
    parser.add_argument("--study-name", help="default: the hpo section's study_name, else the recipe's file name")
    parser.add_argument("--run-dir", help="artifacts folder; default: runs/<study-name>")
    parser.add_argument("--max-failures", type=int, help="stop after this many failed trials in a row")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--heartbeat-interval", type=int, help="seconds between trial heartbeats (RDB storages); 0: off")
    parser.add_argument("--grace-period", type=int, help="seconds without heartbeat before a running trial is failed")
    parser.add_argument("--max-retry", type=int, help="re-runs of a trial whose worker died")
    parser.add_argument("--no-progress-bar", dest="progress_bar", action="store_const", const=False, default=None)
    parser.add_argument("--no-report", dest="report", action="store_const", const=False, default=None,
                        help="skip best.yaml, trials.csv and plots")
    return parser


def _config_overrides(extra: List[str], prog: str = "lit-automl hpo") -> Dict[str, Any]:
    """``--a.b=1 --c.d 2`` as ``{'a.b': 1, 'c.d': 2}`` (values parsed as YAML)."""
    import yaml

    overrides: Dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise UsageError(f"{prog}: unexpected argument {token!r}; config overrides look like --trainer.max_epochs=5")
        if "." not in token.split("=", 1)[0]:
            raise UsageError(
                f"{prog}: unknown option {token!r}; run `{prog} --help` for the flags, "
                "or give a dotted config override such as --trainer.max_epochs=5"
            )
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            key, value = token[2:], extra[i + 1]
            i += 2
        else:
            raise UsageError(f"{prog}: {token!r} needs a value, e.g. {token}=VALUE")
        overrides[key] = yaml.safe_load(value)
    return overrides


def hpo_main(args: List[str]) -> Dict[str, Any]:
    """``lit-automl hpo``: run (or resume) the study and print where the best config and plots went."""
    namespace, extra = hpo_parser().parse_known_args(args)  # --help exits here, before the heavy imports
    from pathlib import Path

    from lit_automl.hpo.config import HPOSettings, load_recipe, merge_params
    from lit_automl.hpo.report import format_report
    from lit_automl.hpo.study import run_study

    flags = {k: v for k, v in vars(namespace).items() if k != "config" and v is not None}
    recipe = Path(namespace.config)
    base, section = load_recipe(recipe)
    base = merge_params(base, _config_overrides(extra))
    settings = HPOSettings.from_mapping(section, flags, recipe=recipe)
    result = run_study(settings, base)
    if settings.report:
        print(format_report(result))
    return result


# --------------------------------------------------------------- lit-automl nas-worker
def nas_worker_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lit-automl nas-worker",
        description="Evaluate the children of a sample-based search (NASRL, NASNetSearch): claim WAITING child "
        "trials of the recipe's Optuna study, train them with the recipe's evaluator, tell the rewards. Run one per "
        "machine (or per GPU) against a shared storage. Further --key=value arguments override the recipe.",
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--config", required=True, help="the search recipe (the same file the controller runs)")
    parser.add_argument("--storage", help="Optuna storage URL; default: the recipe's model.init_args.storage")
    parser.add_argument("--study-name", help="default: the recipe's study_name, else the search class name in lower case")
    parser.add_argument("--max-children", type=int, help="exit after evaluating this many children")
    parser.add_argument("--idle-timeout", type=float, help="exit when no child has waited this many seconds")
    parser.add_argument("--threads", type=int, help="torch threads for this worker")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between looks at the queue")
    return parser


def nas_worker_main(args: List[str]) -> int:
    """``lit-automl nas-worker``: serve a search's child queue; returns the number of children evaluated."""
    namespace, extra = nas_worker_parser().parse_known_args(args)  # --help exits here, before the heavy imports
    from lit_automl.nas.child_search import ChildSearch
    from lit_automl.nas.workqueue import run_worker
    from lit_automl.run_config import build_from_config

    for flag in ("max_children", "threads"):  # unset (None): no limit / torch's default
        if getattr(namespace, flag) is not None:
            check_int(f"--{flag.replace('_', '-')}", getattr(namespace, flag), low=1)
    for flag in ("idle_timeout", "poll_interval"):
        if getattr(namespace, flag) is not None:
            check_real(f"--{flag.replace('_', '-')}", getattr(namespace, flag), low=0, low_open=True)
    model, _, _ = build_from_config(namespace.config, _config_overrides(extra, prog="lit-automl nas-worker"))
    if not isinstance(model, ChildSearch):
        raise ValueError(
            f"lit-automl nas-worker needs a search recipe whose model is a ChildSearch (NASRL, NASNetSearch, "
            f"RLSearch, RandomSearch, RegularizedEvolution), "
            f"got {type(model).__name__} from {namespace.config}"
        )
    storage = namespace.storage or model.hparams.storage
    if not storage:
        raise ValueError(
            "lit-automl nas-worker needs the storage the controller uses: --storage URL or model.init_args.storage "
            "in the recipe (SQLite or a journal file on one machine, PostgreSQL/MySQL across machines)"
        )
    study_name = namespace.study_name or model.hparams.study_name or type(model).__name__.lower()
    done = run_worker(
        storage, study_name, model.evaluator, search_id=None, poll_interval=namespace.poll_interval,
        max_children=namespace.max_children, num_threads=namespace.threads, idle_timeout=namespace.idle_timeout,
        **model.heartbeat_settings(),
    )
    print(f"lit-automl nas-worker: evaluated {done} child(ren) of study {study_name!r}")
    return done


def main(args: Optional[List[str]] = None) -> None:
    """Console-script entry point: dispatch on the subcommand, importing only what it runs; any
    failure becomes one ``error:`` line and exit status 2 (bad input) or 1 (a failed run)."""
    debug, argv = wants_traceback(sys.argv[1:] if args is None else list(args))
    if not argv:
        sys.stderr.write(f"{USAGE}\ntip: for the options of a subcommand run: lit-automl SUBCOMMAND --help\n"
                         f"error: expected a subcommand, one of {', '.join(SUBCOMMANDS)}\n")
        raise SystemExit(2)
    if debug:
        dispatch(argv)
        return
    try:
        dispatch(argv)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
    except Exception as exc:  # every failure: one line, no traceback (LIT_AUTOML_DEBUG=1 shows it)
        close_progress_bars()
        sys.stderr.write(f"error: {error_line(exc)}\n")
        raise SystemExit(exit_status(exc)) from None


def dispatch(argv: List[str]) -> None:
    """Run one subcommand; jsonargparse raises instead of exiting, so :func:`main` words its
    errors like every other (or shows their traceback)."""
    quiet_third_party_noise()
    if argv[0] in SUBCOMMANDS and "-h" not in argv and "--help" not in argv:
        check_config_files(argv[1:])
    if argv[0] == "hpo":
        hpo_main(argv[1:])
        return
    if argv[0] == "nas-worker":
        nas_worker_main(argv[1:])
        return
    import warnings

    from lit_automl.run_config import AutoMLCLI

    with warnings.catch_warnings():  # argv is the command line, less --traceback: not a second one
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        AutoMLCLI(args=argv, parser_kwargs={"exit_on_error": False})


if __name__ == "__main__":
    main()
