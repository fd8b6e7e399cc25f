"""A resumed study keeps its search space: the declared space is stored with the study and compared.

Optuna only notices a changed space trial by trial, and only for some changes (a different choice
list fails a trial with "CategoricalDistribution does not support dynamic value space"; new
bounds or ``log: true`` mix silently with the old trials, which then mislead the sampler). So a
study remembers the space it was created with, as its user attribute ``search_space`` (the
YAML entries, :meth:`~lit_automl.hpo.space.SearchSpace.to_spec`), and opening it with another space
is refused before any trial runs, listing each difference as ``parameter: stored vs new``. A study
created before this attribute existed is compared with the distributions its trials recorded.
"""

from __future__ import annotations

from typing import Dict, List

import optuna
from optuna.distributions import BaseDistribution

from lit_automl.hpo.space import Param, SearchSpace, describe_distribution

__all__ = ["SPACE_ATTR", "check_stored_space", "space_differences"]

SPACE_ATTR = "search_space"
_ABSENT = "(absent)"


def _stored_params(study: optuna.Study) -> Dict[str, Param]:
    spec = study.user_attrs[SPACE_ATTR]
    where = f"study {study.study_name!r}: stored search_space"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a mapping of parameter entries, got {spec!r}; use another study name")
    return {p.key: p for p in SearchSpace.from_dict(spec, where=where).params}


def _trial_distributions(study: optuna.Study) -> Dict[str, BaseDistribution]:
    """Each parameter's distribution as the study's trials recorded it (the last trial's, where they differ)."""
    found: Dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        found.update(trial.distributions)
    return found


def space_differences(study: optuna.Study, space: SearchSpace) -> List[str]:
    """``["key: stored vs new", ...]`` between the space ``study`` holds and ``space`` (empty: the same)."""
    if SPACE_ATTR in study.user_attrs:
        stored = _stored_params(study)
        keys = list(stored) + [k for k in space.keys if k not in stored]
        return [
            f"{key}: {stored[key].describe() if key in stored else _ABSENT} vs "
            f"{space[key].describe() if key in space else _ABSENT}"
            for key in keys
            if stored.get(key) != (space[key] if key in space else None)
        ]
    recorded = _trial_distributions(study)  # a study without the attribute: what its trials recorded
    if not recorded:
        return []
    out = []
    for key, distribution in recorded.items():
        if key not in space:
            out.append(f"{key}: {describe_distribution(distribution)} vs {_ABSENT}")
        elif space[key].distribution != distribution:
            out.append(f"{key}: {describe_distribution(distribution)} vs {describe_distribution(space[key].distribution)}")
    for param in space.params:  # an unconditional parameter is in every sampled trial, so it would be recorded
        if param.key not in recorded and not param.condition:
            out.append(f"{param.key}: {_ABSENT} vs {param.describe()}")
    return out


def check_stored_space(study: optuna.Study, space: SearchSpace) -> None:
    """Refuse ``space`` when ``study`` was run with another one; otherwise store it with the study."""
    differences = space_differences(study, space)
    if differences:
        raise ValueError(
            f"study {study.study_name!r} exists in this storage with another search space; differences "
            f"(parameter: stored vs new): {'; '.join(differences)}. Resume it with the stored space, or start a new "
            "study with --study-name or another --storage"
        )
    if study.user_attrs.get(SPACE_ATTR) != space.to_spec():
        study.set_user_attr(SPACE_ATTR, space.to_spec())
