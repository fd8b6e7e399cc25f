"""A LightningCLI recipe -> (model, datamodule, trainer): the one place a config becomes a run.

:class:`AutoMLCLI` is LightningCLI in subclass mode for the model and an optional datamodule (any
class by ``class_path``), with the run config saved and an ``hpo:`` section accepted (read by
``lit-automl hpo``, ignored by ``fit``). A staged search (a model with ``next_stage()``, such as
P-DARTS) runs one ``Trainer.fit`` per stage under ``fit``, each with a fresh trainer from
:meth:`AutoMLCLI.stage_trainer`. :func:`build_from_config` builds a recipe without running it, for
``lit-automl hpo`` trials, ``lit-automl nas-worker`` and Python callers::

    model, datamodule, trainer = build_from_config("recipes/darts_digits.yaml", {"trainer.max_epochs": 1})
    trainer.fit(model, datamodule=datamodule)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI, instantiate_class
from pytorch_lightning.utilities import rank_zero_info

from lit_automl.resume import check_resume
from lit_automl.run_folders import folder_summary, fresh_versions

__all__ = ["AutoMLCLI", "build_from_config"]


class AutoMLCLI(LightningCLI):
    """LightningCLI in subclass mode for both model and (optional) data, with the run config saved.

    On top of LightningCLI: ``--ckpt_path`` is read first and a run whose model settings differ
    from the checkpoint's is refused (:mod:`lit_automl.resume`); a logger's fixed ``version``
    folder that holds an earlier run becomes ``<version>_2`` (:mod:`lit_automl.run_folders`) and
    ``fit`` ends by saying where its files went; the progress bar leaves out ``v_num``.
    """

    def __init__(self, args: Optional[List[str]] = None, run: bool = True, **kwargs: Any) -> None:
        self._stage_versions: Optional[List[Optional[str]]] = None  # logger folders of a staged fit
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs["parser_kwargs"] = {**({"parser_mode": "omegaconf"} if _has_omegaconf() else {}),
                                   **(kwargs.get("parser_kwargs") or {})}
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

    def instantiate_classes(self) -> None:
        """LightningCLI's, except that a recipe without a top-level ``data:`` builds its datamodules plainly.

        Lightning's datamodule instantiator records a datamodule's hyperparameters from the ``data:``
        section and fails when that section is empty, which is every search recipe whose data is
        nested in the model's arguments (an evaluator's datamodule factory, a holdout split's inner
        datamodule). Those are built through jsonargparse's call-scoped ``instantiators``; the model
        keeps Lightning's instantiator. (``auto_configure_optimizers`` is off: nothing else to add.)
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("data") is not None:
            super().instantiate_classes()
            return
        self.config_init = self.parser.instantiate(
            self.config, instantiators=[(_plain_instance, pl.LightningDataModule, True)]
        )
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        self.datamodule = None
        self.model = init["model"]
        self.trainer = self.instantiate_trainer()

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """LightningCLI's, then the ``--ckpt_path`` check: exact resume or an error."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path:
            check_resume(ckpt_path, self.config[subcommand].get("model") or {})

    def before_instantiate_classes(self) -> None:
        """Fresh folders for loggers with a fixed version; the progress bar without ``v_num``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.get("trainer")
        if trainer is None:
            return
        specs = trainer.get("logger")
        listed = specs if isinstance(specs, list) else [specs]
        plain = [_plain(spec) for spec in listed]
        versions = fresh_versions(plain, _log_dir, rank_zero_info)
        for spec, version in zip(listed, versions):
            if version is not None and hasattr(spec, "init_args"):
                spec.init_args.version = version
        configured = [str(_plain(c).get("class_path", "")) for c in trainer.get("callbacks") or []
                      if isinstance(_plain(c), dict)]
        if trainer.get("enable_progress_bar") is not False and not any("ProgressBar" in c for c in configured):
            from lit_automl.callbacks.progress_bar import RunProgressBar

            defaults = self.trainer_defaults.get("callbacks") or []
            defaults = list(defaults) if isinstance(defaults, list) else [defaults]
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": defaults + [RunProgressBar()]}

    def after_fit(self) -> None:
        """Say where the run's files went (rank 0)."""
        if self.trainer.is_global_zero and self.trainer.log_dir:
            folder = Path(self.trainer.log_dir)
            print(folder_summary("fit", folder.parent if self._stage_versions is not None else folder))

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


def build_from_config(
    path: Union[str, Path],
    overrides: Optional[Mapping[str, Any]] = None,
    callbacks: Sequence[pl.Callback] = (),
    save_config: bool = False,
) -> Tuple[pl.LightningModule, Optional[pl.LightningDataModule], pl.Trainer]:
    """The model, datamodule (``None`` when the recipe has no ``data:``) and trainer of a recipe, unrun.

    Args:
        path: a LightningCLI YAML recipe (an ``hpo:`` section in it is ignored).
        overrides: dotted keys and values applied over the recipe, e.g. ``{"trainer.max_epochs": 1}``.
        callbacks: callbacks added to the trainer's (the recipe's ``trainer.callbacks`` stay).
        save_config: write ``config.yaml`` to the log folder when the trainer fits, as ``fit`` does.

    A bad recipe or override raises (jsonargparse's error, naming the key), never exits.
    """
    args = ["-c", str(path)]
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"config override keys must be dotted names such as 'trainer.max_epochs', got {key!r}")
        args.append(f"--{key}={json.dumps(value)}")  # JSON is YAML: jsonargparse parses it back to the value
    parser_kwargs: Dict[str, Any] = {"exit_on_error": False}
    with warnings.catch_warnings():
        # the command line (sys.argv) is not this recipe's: LightningCLI warns when args replace it
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        cli = AutoMLCLI(
            args=args,
            run=False,
            trainer_defaults={"callbacks": list(callbacks)},
            parser_kwargs=parser_kwargs,
            **({} if save_config else {"save_config_callback": None}),
        )
    return cli.model, cli.datamodule, cli.trainer


def _plain_instance(class_type: type, *args: Any, **kwargs: Any) -> Any:
    """jsonargparse's default instantiator: ``class_type(*args, **kwargs)``."""
    return class_type(*args, **kwargs)


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


def _log_dir(spec: Any) -> Optional[Path]:
    """``save_dir/name/version`` of a logger spec with those arguments (CSV, TensorBoard)."""
    init_args = spec.get("init_args") or {} if isinstance(spec, dict) else {}
    if init_args.get("save_dir") is None or init_args.get("version") is None:
        return None
    version = init_args["version"]
    name = init_args.get("name", "lightning_logs")
    folder = Path(init_args["save_dir"]) / (name or "")
    return folder / (version if isinstance(version, str) else f"version_{version}")


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True
