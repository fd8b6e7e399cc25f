"""The HPO recipe: a LightningCLI config with an ``hpo:`` section, and trial configs built from it.

A recipe is an ordinary LightningCLI config (``trainer`` / ``model`` / ``data`` ...) plus one
section that ``lit-automl fit`` ignores and ``lit-automl hpo`` reads::

    hpo:
      study_name: hpo_digits
      metric: val/acc              # or objectives: [{metric: val/acc, direction: maximize}, ...]
      direction: maximize
      n_trials: 20
      sampler: tpe                 # tpe | random | gp | optuna-gp | nsga2, or {name: gp, conditional: arc}
      pruner: {name: median, n_warmup_steps: 1}
      enqueue: [{model.init_args.lr: 0.001}]
      check_finite: true           # a batch or training loss holding NaN / inf fails the trial
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

from lit_automl._checks import ArgumentTypeError, UnknownNameError, check_bool, check_choice, check_int, check_real
from lit_automl.hpo.registry import PRUNERS, SAMPLERS, make_pruner, make_sampler, named_spec, pruner_spec
from lit_automl.hpo.space import SearchSpace, read_yaml
from lit_automl.storage import check_storage_url, is_journal

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
    sampler: Union[str, Dict[str, Any]] = "tpe"
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
    check_finite: bool = True
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

    @property
    def sampler_name(self) -> str:
        """The sampler by name (``sampler`` is a name or ``{name: ..., <its options>}``)."""
        return str(named_spec(self.sampler, SAMPLERS, "sampler")[0])

    @property
    def sampler_kwargs(self) -> Dict[str, Any]:
        return named_spec(self.sampler, SAMPLERS, "sampler")[1]

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.study_name

    @classmethod
    def from_mapping(
        cls, section: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None, recipe: Optional[Path] = None
    ) -> "HPOSettings":
        """Validate the recipe's ``hpo:`` section with ``overrides`` on top.

        ``overrides`` are the ``lit-automl hpo`` flags by their key (``n_trials`` for ``--n-trials``; ``None``
        means not given). A bad value is named where it came from, ``--n-trials`` for a flag and
        ``<recipe>: hpo.n_trials`` for the section, with what is allowed.
        """
        if not isinstance(section, Mapping):
            raise ArgumentTypeError(f"the hpo section must be a mapping, got {section!r}")
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        if isinstance(overrides.get("pruner"), str) and pruner_spec(section.get("pruner"))[0] == overrides["pruner"]:
            overrides.pop("pruner")  # the same pruner by name: keep the section's options for it
        sampler = section.get("sampler")
        if isinstance(overrides.get("sampler"), str) and isinstance(sampler, Mapping) \
                and sampler.get("name") == overrides["sampler"]:
            overrides.pop("sampler")  # the same sampler by name: keep the section's options for it
        data = {**section, **overrides}
        known = {f.name for f in fields(cls)} - {"objectives", "space"} | {"metric", "direction", "objectives", "search_space"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"hpo: unknown key(s) {unknown}; allowed: {sorted(known)}")
        where = f"{recipe}: hpo" if recipe else "hpo"

        def name(key: str) -> str:
            """How the user wrote ``key``: the flag, or the key in the recipe's hpo section."""
            return f"--{key.replace('_', '-')}" if key in overrides else f"{where}.{key}"

        space_spec = data.get("search_space")
        if space_spec is None:
            raise ValueError(f"{where}: search_space is missing; map dotted config keys to parameter specs")
        if isinstance(space_spec, (str, Path)):
            path = Path(space_spec)
            if not path.is_absolute() and recipe is not None:
                path = Path(recipe).parent / path
            if not path.is_file():
                raise FileNotFoundError(f"{where}.search_space names the file {str(path)!r}, which does not exist")
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
        kwargs: Dict[str, Any] = {"objectives": objectives, "space": space}
        kwargs["study_name"] = Path(recipe).stem if recipe else "study"
        for key in ("study_name", "run_dir"):
            if data.get(key) is not None:
                kwargs[key] = _non_empty_text(name(key), data[key])
        kwargs["n_trials"] = check_int(name("n_trials"), data.get("n_trials", 20), low=1)
        kwargs["max_failures"] = check_int(name("max_failures"), data.get("max_failures", 5), low=1)
        if data.get("seed") is not None:
            kwargs["seed"] = check_int(name("seed"), data["seed"], low=0, high=2**32 - 1)
        if data.get("timeout") is not None:
            kwargs["timeout"] = check_real(name("timeout"), data["timeout"], low=0, low_open=True, allow_inf=True,
                                           allowed="a number of seconds > 0")
        if data.get("storage") is not None:
            kwargs["storage"] = check_storage_url(_non_empty_text(name("storage"), data["storage"]), name("storage"))
        kwargs.update(_heartbeats(data, kwargs.get("storage"), name))
        kwargs["sampler"] = _sampler(name("sampler"), data.get("sampler", "tpe"))
        kwargs["pruner"] = _pruner(name("pruner"), data.get("pruner"), len(objectives))
        for key in ("checkpoint", "check_finite", "progress_bar", "report"):
            if key in data:
                kwargs[key] = check_bool(name(key), data[key], allowed="true or false")
        enqueue = data.get("enqueue") or []
        if not isinstance(enqueue, (list, tuple)):
            raise ArgumentTypeError(f"{where}.enqueue must be a list of parameter mappings, got {enqueue!r}")
        kwargs["enqueue"] = tuple(space.check_values(e, f"{where}.enqueue[{i}]") for i, e in enumerate(enqueue))
        return cls(**kwargs)


def _non_empty_text(name: str, value: Any) -> str:
    if not isinstance(value, (str, Path)):
        raise ArgumentTypeError(f"{name} must be a non-empty string, got {value!r}")
    if not str(value).strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return str(value)


def _registry_name(name: str, value: Any, registry: Mapping[str, str], what: str) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a {what} name, one of {sorted(registry)}, got {value!r}")
    if value not in registry:
        raise UnknownNameError(f"{name}: unknown {what} {value!r}; valid {what}s: {sorted(registry)}")
    return value


def _sampler(name: str, spec: Any) -> Union[str, Dict[str, Any]]:
    """The sampler spec: a name, or a mapping with ``name`` and options checked by building the sampler once."""
    if not isinstance(spec, Mapping):
        return _registry_name(name, spec, SAMPLERS, "sampler")
    if not isinstance(spec.get("name"), str):
        raise ArgumentTypeError(f"{name} must be a sampler name or a mapping with 'name' (one of {sorted(SAMPLERS)}) "
                                f"and its options, got {dict(spec)!r}")
    sampler, options = named_spec(spec, SAMPLERS, "sampler")
    _registry_name(f"{name}.name", sampler, SAMPLERS, "sampler")
    if "seed" in options:
        raise ValueError(f"{name}: give the seed as hpo.seed (it seeds the sampler and the trials), not as a sampler "
                         "option")
    try:
        make_sampler(str(sampler), **options)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{name}: {err}") from None
    return dict(spec)


def _pruner(name: str, spec: Any, n_objectives: int) -> Optional[Union[str, Dict[str, Any]]]:
    """The pruner spec, checked by building the pruner once (its options reach Optuna's constructor)."""
    if spec is None:
        return None
    if not isinstance(spec, (str, Mapping)) or (isinstance(spec, Mapping) and not isinstance(spec.get("name"), str)):
        raise ArgumentTypeError(
            f"{name} must be a pruner name or a mapping with 'name' (one of {sorted(PRUNERS)}) and its options, "
            f"got {spec!r}"
        )
    pruner, options = pruner_spec(spec)
    _registry_name(name if isinstance(spec, str) else f"{name}.name", pruner, PRUNERS, "pruner")
    if pruner != "nop" and n_objectives > 1:
        raise ValueError(
            f"{name}: pruner {pruner!r} cannot prune a multi-objective study (Optuna's pruners use one intermediate "
            "value); use pruner: nop"
        )
    try:
        make_pruner(pruner, **options)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{name}: {err}") from None
    return dict(spec) if isinstance(spec, Mapping) else spec


def _heartbeats(data: Mapping[str, Any], storage: Optional[str], name: Any) -> Dict[str, Any]:
    """heartbeat_interval, grace_period, max_retry: checked, and refused where they would do nothing."""
    out: Dict[str, Any] = {
        "heartbeat_interval": check_int(name("heartbeat_interval"), data.get("heartbeat_interval", 60), low=0,
                                        hint="seconds; 0 turns heartbeats off"),
        "max_retry": check_int(name("max_retry"), data.get("max_retry", 1), low=0),
    }
    if data.get("grace_period") is not None:
        out["grace_period"] = check_int(name("grace_period"), data["grace_period"], low=1)
    given = [k for k in ("heartbeat_interval", "grace_period", "max_retry") if data.get(k) is not None]
    if storage is not None and is_journal(storage) and given:
        raise ValueError(
            f"{', '.join(name(k) for k in given)}: journal storage {storage!r} has no heartbeats (Optuna records them "
            "in RDB storages only); leave them out or use a SQLAlchemy URL such as sqlite:///study.db"
        )
    if out["heartbeat_interval"] == 0:
        unused = [k for k in ("grace_period", "max_retry") if data.get(k) is not None]
        if unused:
            raise ValueError(
                f"{', '.join(name(k) for k in unused)} given with {name('heartbeat_interval')} 0 (heartbeats off), "
                f"where nothing fails or retries a dead worker's trial; give {name('heartbeat_interval')} > 0 or leave them out"
            )
    elif "grace_period" in out and out["grace_period"] <= out["heartbeat_interval"]:
        source = name("heartbeat_interval") if "heartbeat_interval" in given else "the default"
        raise ValueError(
            f"{name('grace_period')} must be greater than the heartbeat interval ({out['heartbeat_interval']} s, "
            f"{source}), or a live trial is failed between two heartbeats; got {out['grace_period']}"
        )
    return out


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
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping (a LightningCLI config), got {type(data).__name__}")
    section = data.pop("hpo", None)
    if section is None:
        raise ValueError(f"{path}: no hpo section; add hpo: {{metric: ..., direction: ..., search_space: {{...}}}}")
    if isinstance(section, str):  # the path of a separate HPO YAML file, relative to the recipe
        hpo_path = Path(section) if Path(section).is_absolute() else path.parent / section
        if not hpo_path.is_file():
            raise FileNotFoundError(f"{path}: hpo names the file {str(hpo_path)!r}, which does not exist")
        section = read_yaml(hpo_path)
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
