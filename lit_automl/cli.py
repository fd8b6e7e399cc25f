"""``lit-automl``: the LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``), ``hpo`` and ``nas-worker``.

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
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI, _get_module_type, _InstantiatorFn, instantiate_class


class AutoMLCLI(LightningCLI):
    """LightningCLI in subclass mode for both model and (optional) data, with the run config saved."""

    def __init__(self, args: Optional[List[str]] = None, run: bool = True, **kwargs) -> None:
        self._stage_versions: Optional[List[Optional[str]]] = None  # logger folders of a staged fit
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"} if _has_omegaconf() else {})
        super().__init__(
            pl.LightningModule,
            None,  # any LightningDataModule by class_path, and optional: searches such as NASRL bring their own
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            auto_configure_optimizers=False,
            **kwargs,
        )

    def _add_instantiators(self) -> None:
        # LightningCLI records a datamodule's hyperparameters from the top-level ``data:`` section and
        # fails when that section is absent but a datamodule is nested in the model's arguments (a
        # search's evaluator). Such nested datamodules are built plainly.
        super()._add_instantiators()
        self.parser.add_instantiator(
            _NestedDataInstantiator(cli=self, key="data"),
            _get_module_type(self._datamodule_class),
            subclasses=self.subclass_mode_data,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--hpo",
            type=Optional[Dict[str, Any]],
            default=None,
            help="The HPO study section of a recipe, read by `lit-automl hpo` and ignored by fit/validate/test.",
        )

    # ------------------------------------------------------------------ staged searches (P-DARTS)
    def fit(self, model: pl.LightningModule, **kwargs: Any) -> None:
        """The ``fit`` subcommand (LightningCLI runs a CLI method named after the subcommand).

        A staged search, i.e. a model with ``next_stage()`` (:class:`~lit_automl.nas.pdarts.PDARTS`),
        runs :func:`~lit_automl.nas.pdarts.fit_stages`: one ``Trainer.fit`` per stage, each with a
        fresh trainer from :meth:`stage_trainer` (modules are never swapped inside a fit). A
        ``--ckpt_path`` stage checkpoint resumes its stage and then runs the stages after it; as
        for any model, LightningCLI rebuilds the model from the checkpoint's hyperparameters
        (stage, surviving ops and the model settings of that run), the trainer from the recipe.
        Any other model is fitted once, exactly as LightningCLI does.
        """
        if not callable(getattr(model, "next_stage", None)):
            self.trainer.fit(model, **kwargs)
            return
        from lit_automl.nas.pdarts import fit_stages

        self.model = fit_stages(model, self.stage_trainer, **kwargs)

    def stage_trainer(self, stage: int) -> pl.Trainer:
        """A fresh trainer for ``stage``: the recipe's trainer settings, its callbacks and logger built
        anew from the config; a logger with a ``version`` argument (CSV, TensorBoard) writes to
        ``<version>/stage_<stage>`` (an automatic version is fixed at the first stage). Other
        loggers (``true``, ``false``, ones without ``version``) are used as configured."""
        config = (self.config[self.subcommand] if self.subcommand else self.config)["trainer"]  # run=False: no subcommand
        specs = config.get("logger")
        loggers = specs if isinstance(specs, list) else [specs]
        if self._stage_versions is None:
            self._stage_versions = [_base_version(spec) for spec in loggers]
        staged = [_stage_spec(spec, base, stage) for spec, base in zip(loggers, self._stage_versions)]
        logger = staged if isinstance(specs, list) else staged[0]
        callbacks = [_build(spec) for spec in config.get("callbacks") or []]
        self.trainer = self.instantiate_trainer(callbacks=callbacks, logger=logger)
        return self.trainer


class _NestedDataInstantiator(_InstantiatorFn):
    """Lightning's datamodule instantiator, tolerating a missing top-level ``data:`` section."""

    def __call__(self, class_type: Any, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        self.cli._dump_config()
        if self.cli.config_dump.get(self.key) is None:
            return class_type(*args, **kwargs)
        return super().__call__(class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs)


def _plain(spec: Any) -> Any:
    """A parsed config value as plain dicts and lists (jsonargparse Namespaces have ``as_dict``)."""
    return spec.as_dict() if hasattr(spec, "as_dict") else spec


def _build(spec: Any) -> Any:
    """Instantiate a ``{class_path, init_args}`` spec, nested specs first; other values as they are."""
    spec = _plain(spec)
    if isinstance(spec, list):
        return [_build(item) for item in spec]
    if isinstance(spec, dict) and "class_path" in spec:
        init_args = {key: _build(value) for key, value in (spec.get("init_args") or {}).items()}
        return instantiate_class((), {"class_path": spec["class_path"], "init_args": init_args})
    return spec


def _base_version(spec: Any) -> Optional[str]:
    """The run folder name a logger spec with a ``version`` argument writes to (``None`` for others)."""
    spec = _plain(spec)
    if not isinstance(spec, dict) or "version" not in (spec.get("init_args") or {}):
        return None
    version = spec["init_args"]["version"]
    if version is None:
        version = _build(spec).version  # the next free number, as the logger would pick it
    return version if isinstance(version, str) else f"version_{version}"


def _stage_spec(spec: Any, base: Optional[str], stage: int) -> Any:
    """A built logger for ``stage``: version ``<base>/stage_<stage>`` where the spec has one."""
    spec = _plain(spec)
    if base is None:
        return _build(spec)
    return _build({**spec, "init_args": {**spec["init_args"], "version": f"{base}/stage_{stage}"}})


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------- lit-automl hpo
def hpo_parser() -> argparse.ArgumentParser:
    """Flags of ``lit-automl hpo``; each overrides the same key of the recipe's ``hpo:`` section."""
    from lit_automl.hpo.registry import PRUNERS, SAMPLERS

    parser = argparse.ArgumentParser(
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


def _config_overrides(extra: List[str]) -> Dict[str, Any]:
    """``--a.b=1 --c.d 2`` as ``{'a.b': 1, 'c.d': 2}`` (values parsed as YAML)."""
    import yaml

    overrides: Dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise SystemExit(f"lit-automl hpo: unexpected argument {token!r}; config overrides look like --trainer.max_epochs=5")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            key, value = token[2:], extra[i + 1]
            i += 2
        else:
            raise SystemExit(f"lit-automl hpo: {token!r} needs a value, e.g. {token}=VALUE")
        if "." not in key:
            raise SystemExit(
                f"lit-automl hpo: unknown option {token!r}; run `lit-automl hpo --help` for the flags, "
                "or give a dotted config override such as --trainer.max_epochs=5"
            )
        overrides[key] = yaml.safe_load(value)
    return overrides


def hpo_main(args: List[str]) -> Dict[str, Any]:
    """``lit-automl hpo``: run (or resume) the study and print where the best config and plots went."""
    from pathlib import Path

    from lit_automl.hpo.config import HPOSettings, load_recipe, merge_params
    from lit_automl.hpo.report import format_report
    from lit_automl.hpo.study import run_study

    namespace, extra = hpo_parser().parse_known_args(args)
    flags = {k: v for k, v in vars(namespace).items() if k != "config" and v is not None}
    if "n_trials" in flags and flags["n_trials"] < 1:
        raise ValueError(f"--n-trials must be >= 1, got {flags['n_trials']}")
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
    parser = argparse.ArgumentParser(
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
    from lit_automl.nas.rl_search import RLSearch
    from lit_automl.nas.workqueue import run_worker

    namespace, extra = nas_worker_parser().parse_known_args(args)
    cli = AutoMLCLI(args=["-c", namespace.config, *extra], run=False)
    model = cli.model
    if not isinstance(model, RLSearch):
        raise ValueError(
            f"lit-automl nas-worker needs a search recipe whose model is an RLSearch (NASRL, NASNetSearch), "
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
    )
    print(f"lit-automl nas-worker: evaluated {done} child(ren) of study {study_name!r}")
    return done


def main(args: Optional[List[str]] = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] == "hpo":
        hpo_main(argv[1:])
        return
    if argv and argv[0] == "nas-worker":
        nas_worker_main(argv[1:])
        return
    AutoMLCLI(args=args)


if __name__ == "__main__":
    main()
