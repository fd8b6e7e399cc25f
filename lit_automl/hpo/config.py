"""The HPO recipe: a LightningCLI config with an ``hpo:`` section, and trial configs built from it.

A recipe is an ordinary LightningCLI config (``trainer`` / ``model`` / ``data`` ...) plus one
section that ``lit-automl fit`` ignores and ``lit-automl hpo`` reads::

    hpo:
      study_name: hpo_digits
      metric: val/acc              # or objectives: [{metric: val/acc, direction: maximize}, ...]
      direction: maximize
      n_trials: 20
      sampler: tpe                 # tpe | random | gp | optuna-gp | nsga2
      pruner: {name: median, n_warmup_steps: 1}
      enqueue: [{model.init_args.lr: 0.001}]
      search_space: {...}          # or the path of a YAML file, relative to the recipe

A trial's config is the recipe without ``hpo:`` and with the trial's parameters written at their
dotted keys (:func:`merge_params`), so it is again a config ``lit-automl fit -c`` accepts.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.hpo.registry import PRUNERS, SAMPLERS, pruner_spec
from lit_automl.hpo.space import SearchSpace

__all__ = [
    "DIRECTIONS",
    "HPOSettings",
    "Objective",
    "TOP_LEVEL_KEYS",
    "dump_config",
    "load_recipe",
    "merge_params",
    "set_dotted",
]

DIRECTIONS = ("maximize", "minimize")
# The top-level keys of an AutoMLCLI config; a search-space key must start with one of them.
TOP_LEVEL_KEYS = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler", "ckpt_path")


@dataclass(frozen=True)
class Objective:
    """One optimisation target: a logged ``metric`` (or ``num_parameters``) and its ``direction``."""

    metric: str
    direction: str


@dataclass(frozen=True)
class HPOSettings:
    """Everything ``lit-automl hpo`` needs besides the base config; built by :meth:`from_mapping`."""

    study_name: str
    objectives: Tuple[Objective, ...]
    space: SearchSpace
    n_trials: int = 20
    sampler: str = "tpe"
    seed: Optional[int] = None
    pruner: Optional[Union[str, Dict[str, Any]]] = None
    storage: Optional[str] = None
    run_dir: Optional[str] = None
    max_failures: int = 5
    timeout: Optional[float] = None
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None
    max_retry: int = 1
    enqueue: Tuple[Dict[str, Any], ...] = ()
    checkpoint: bool = True
    progress_bar: bool = True
    report: bool = True

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> List[str]:
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> List[str]:
        return [o.metric for o in self.objectives]

    @property
    def pruner_name(self) -> str:
        """The pruner by name: ``median`` by default, ``nop`` for multi-objective studies."""
        name, _ = pruner_spec(self.pruner)
        return name if name is not None else ("nop" if self.multi_objective else "median")

    @property
    def pruner_kwargs(self) -> Dict[str, Any]:
        return pruner_spec(self.pruner)[1]

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.study_name

    @classmethod
    def from_mapping(
        cls, section: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None, recipe: Optional[Path] = None
    ) -> "HPOSettings":
        """Validate the recipe's ``hpo:`` section with ``overrides`` (e.g. command-line flags) on top."""
        if not isinstance(section, Mapping):
            raise ValueError(f"the hpo section must be a mapping, got {section!r}")
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        if isinstance(overrides.get("pruner"), str) and pruner_spec(section.get("pruner"))[0] == overrides["pruner"]:
            overrides.pop("pruner")  # the same pruner by name: keep the section's options for it
        data = {**section, **overrides}
        known = {f.name for f in fields(cls)} - {"objectives", "space"} | {"metric", "direction", "objectives", "search_space"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"hpo: unknown key(s) {unknown}; allowed: {sorted(known)}")
        where = f"{recipe}: hpo" if recipe else "hpo"

        space_spec = data.get("search_space")
        if space_spec is None:
            raise ValueError(f"{where}: search_space is missing; map dotted config keys to parameter specs")
        if isinstance(space_spec, str):
            path = Path(space_spec)
            if not path.is_absolute() and recipe is not None:
                path = Path(recipe).parent / path
            space = SearchSpace.from_yaml(path)
        else:
            space = SearchSpace.from_dict(space_spec, where=f"{where}.search_space")
        for key in space.keys:
            if key.split(".")[0] not in TOP_LEVEL_KEYS:
                raise ValueError(
                    f"{where}.search_space[{key!r}]: a key must be a LightningCLI config path starting with one of "
                    f"{list(TOP_LEVEL_KEYS)}, e.g. 'model.init_args.lr'"
                )

        objectives = _objectives(data, where)
        study_name = data.get("study_name") or (Path(recipe).stem if recipe else "study")
        if not isinstance(study_name, str):
            raise ValueError(f"{where}.study_name must be a string, got {study_name!r}")
        kwargs: Dict[str, Any] = {"study_name": study_name, "objectives": objectives, "space": space}
        kwargs["n_trials"] = check_int("n_trials", data.get("n_trials", 20), low=1)
        kwargs["max_failures"] = check_int("max_failures", data.get("max_failures", 5), low=1)
        kwargs["heartbeat_interval"] = check_int("heartbeat_interval", data.get("heartbeat_interval", 60), low=0)
        kwargs["max_retry"] = check_int("max_retry", data.get("max_retry", 1), low=0)
        if data.get("grace_period") is not None:
            kwargs["grace_period"] = check_int("grace_period", data["grace_period"], low=1)
        if data.get("seed") is not None:
            kwargs["seed"] = check_int("seed", data["seed"], low=0)
        if data.get("timeout") is not None:
            kwargs["timeout"] = check_real("timeout", data["timeout"], low=0, low_open=True, allow_inf=True,
                                           allowed="a number of seconds > 0")
        sampler = data.get("sampler", "tpe")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {sorted(SAMPLERS)}")
        kwargs["sampler"] = sampler
        name, _ = pruner_spec(data.get("pruner"))
        if name is not None and name not in PRUNERS:
            raise ValueError(f"unknown pruner {name!r}; valid pruners: {sorted(PRUNERS)}")
        if name not in (None, "nop") and len(objectives) > 1:
            raise ValueError(
                f"pruner {name!r} cannot prune a multi-objective study (Optuna's pruners use one intermediate "
                "value); use pruner: nop"
            )
        kwargs["pruner"] = data.get("pruner")
        for key in ("storage", "run_dir"):
            if data.get(key) is not None:
                if not isinstance(data[key], (str, Path)):
                    raise ValueError(f"{key} must be a string, got {data[key]!r}")
                kwargs[key] = str(data[key])
        for key in ("checkpoint", "progress_bar", "report"):
            if key in data:
                kwargs[key] = check_bool(key, data[key], allowed="true or false")
        enqueue = data.get("enqueue") or []
        if not isinstance(enqueue, (list, tuple)):
            raise ValueError(f"{where}.enqueue must be a list of parameter mappings, got {enqueue!r}")
        kwargs["enqueue"] = tuple(space.check_values(e, f"{where}.enqueue[{i}]") for i, e in enumerate(enqueue))
        return cls(**kwargs)


def _objectives(data: Mapping[str, Any], where: str) -> Tuple[Objective, ...]:
    if "objectives" in data:
        if data.get("metric") is not None or data.get("direction") is not None:
            raise ValueError(f"{where}: give either metric/direction or objectives, not both")
        items = data["objectives"]
        if not isinstance(items, (list, tuple)) or not items:
            raise ValueError(f"{where}.objectives must be a non-empty list of {{metric, direction}}, got {items!r}")
    else:
        if "metric" not in data:
            raise ValueError(f"{where}: metric is missing; name the logged metric to optimise, e.g. metric: val/acc")
        items = [{"metric": data["metric"], "direction": data.get("direction", "minimize")}]
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or set(item) - {"metric", "direction"}:
            raise ValueError(f"{where}.objectives[{i}] must be a mapping with metric and direction, got {item!r}")
        metric, direction = item.get("metric"), item.get("direction", "minimize")
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"{where}.objectives[{i}].metric must be a metric name such as 'val/acc', got {metric!r}")
        check_choice(f"{where}: direction for {metric!r}", direction, DIRECTIONS, sort=False)
        out.append(Objective(metric, direction))
    if len({o.metric for o in out}) != len(out):
        raise ValueError(f"{where}.objectives names a metric twice: {[o.metric for o in out]}")
    return tuple(out)


# --------------------------------------------------------------------- recipes and trial configs
def load_recipe(path: Union[str, Path]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Read a recipe: ``(base LightningCLI config without hpo, the hpo section)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping (a LightningCLI config), got {type(data).__name__}")
    section = data.pop("hpo", None)
    if section is None:
        raise ValueError(f"{path}: no hpo section; add hpo: {{metric: ..., direction: ..., search_space: {{...}}}}")
    if isinstance(section, str):  # the path of a separate HPO YAML file, relative to the recipe
        hpo_path = Path(section) if Path(section).is_absolute() else path.parent / section
        section = yaml.safe_load(hpo_path.read_text())
    return data, section


def set_dotted(config: Dict[str, Any], key: str, value: Any) -> None:
    """Write ``value`` at ``a.b.c`` in a nested dict, creating mappings on the way."""
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(
                f"cannot set {key!r}: {'.'.join(parts[: i + 1])!r} is {child!r} in the base config, not a mapping"
            )
        node = child
    node[parts[-1]] = value


def merge_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> Dict[str, Any]:
    """A deep copy of ``base`` with each ``dotted.key: value`` of ``params`` written in."""
    config = copy.deepcopy(dict(base))
    for key, value in params.items():
        set_dotted(config, key, value)
    return config


def dump_config(config: Mapping[str, Any], path: Union[str, Path], header: Optional[str] = None) -> Path:
    """Write ``config`` as YAML (atomically, so concurrent workers never leave half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
