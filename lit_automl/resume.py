"""Resuming from a checkpoint is exact or refused.

:func:`read_checkpoint` loads a ``--ckpt_path`` file weights-only, naming the file and what was
expected when it is missing or damaged (never torch's advice to retry with ``weights_only=False``,
unsafe for a file of unknown origin). :func:`changed_settings` compares the model settings a run is
started with to the hyperparameters its checkpoint recorded; :func:`check_resume` refuses the run
when they differ, listing each setting with both values: LightningCLI would otherwise rebuild the
model from the checkpoint's values and silently drop the new ones (``--model.init_args.C 8`` ran
with the checkpoint's C=4; a new ``alpha_lr`` was recorded while the restored optimiser kept the old).

A model class may list in ``resume_state_hparams`` the hyperparameters its own run rewrites (P-DARTS's
stage and surviving ops), which a checkpoint legitimately holds different from the recipe.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

__all__ = ["LIGHTNING_CKPT_KEYWORDS", "changed_settings", "check_resume", "read_checkpoint"]

LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc")  # Trainer.fit resolves these itself
RESUME_HINT = ("resuming continues the checkpoint's run exactly; drop the changed settings to resume it, "
               "or start a new run without --ckpt_path")


def read_checkpoint(path: Union[str, os.PathLike], name: str = "--ckpt_path",
                    weights_only: bool = True) -> Dict[str, Any]:
    """The checkpoint dict at ``path`` (loaded on CPU, weights-only by default); ``ValueError`` /
    ``FileNotFoundError`` naming the file (as ``name 'path'``) when it is missing, not a
    ``torch.save`` archive, damaged, or not a Lightning checkpoint."""
    import torch

    file = Path(path)
    label = f"{name} {os.fspath(path)!r}"
    expected = "expected a checkpoint written by Trainer.fit (e.g. <run folder>/checkpoints/last.ckpt)"
    if not file.is_file():
        raise FileNotFoundError(f"{label}: {'no such file' if not file.exists() else 'not a file'}; {expected}")
    if not zipfile.is_zipfile(file):
        raise ValueError(f"{label} is not a torch.save archive (the file is damaged or not a checkpoint); {expected}")
    try:
        # mmap: the settings check reads hyperparameters only; Trainer.fit loads the tensors itself
        checkpoint = torch.load(file, map_location="cpu", weights_only=weights_only, mmap=True)
    except Exception as err:  # torch raises RuntimeError / UnpicklingError / KeyError for damaged archives
        reason = str(err).split(". ")[0].splitlines()[0] if "Weights only load failed" not in str(err) \
            else "it holds objects a weights-only load refuses"
        raise ValueError(f"{label} cannot be read ({type(err).__name__}: {reason}); {expected}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{label} holds no Lightning checkpoint (no 'state_dict'); {expected}")
    return checkpoint


def _plain(value: Any) -> Any:
    """Namespaces as dicts, tuples as lists, paths as strings: the form both sides compare in."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _model_class(class_path: Optional[str]) -> Optional[type]:
    if not class_path or "." not in class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def changed_settings(hparams: Mapping[str, Any], model_spec: Mapping[str, Any]) -> List[Tuple[str, Any, Any]]:
    """``(setting, checkpoint value, new value)`` for each model setting that differs.

    ``hparams``: the checkpoint's ``hyper_parameters``; ``model_spec``: the run's model config,
    ``{"class_path": ..., "init_args": {...}}``. Settings the checkpoint did not record and the
    class's ``resume_state_hparams`` are not compared."""
    spec = _plain(model_spec) or {}
    saved = _plain(dict(hparams))
    changes: List[Tuple[str, Any, Any]] = []
    saved_class = saved.pop("_class_path", None)
    saved.pop("_instantiator", None)
    if saved_class and spec.get("class_path") and saved_class != spec["class_path"]:
        changes.append(("class_path", saved_class, spec["class_path"]))
    exempt = set(getattr(_model_class(spec.get("class_path")), "resume_state_hparams", ()))
    init_args = {**(spec.get("init_args") or {}), **(spec.get("dict_kwargs") or {})}
    for key, old in saved.items():
        if key in exempt or key not in init_args:
            continue
        new = init_args[key]
        if old != new:
            changes.append((key, old, new))
    return changes


def check_resume(ckpt_path: Union[str, os.PathLike], model_spec: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """Read ``ckpt_path`` and refuse a run whose model settings differ from the checkpoint's; the
    checkpoint dict (``None`` for Lightning's ``last`` / ``best`` / ``hpc`` / ``registry`` keywords)."""
    text = os.fspath(ckpt_path)
    if text in LIGHTNING_CKPT_KEYWORDS or text.startswith("registry"):
        return None
    checkpoint = read_checkpoint(ckpt_path)
    hparams = checkpoint.get("hyper_parameters")
    class_path = (_plain(model_spec) or {}).get("class_path")
    if isinstance(hparams, Mapping) and hparams and "_class_path" not in hparams and class_path:
        raise ValueError(
            f"--ckpt_path {text!r} was saved from the Python API: its hyperparameters do not name the model "
            f"class, which the command line needs to rebuild the model. Resume it in Python with "
            f"trainer.fit(model, ckpt_path=...), or record the class once: python -c \"import torch; "
            f"c = torch.load({text!r}, weights_only=True); c['hyper_parameters']['_class_path'] = {class_path!r}; "
            f"torch.save(c, {text!r})\""
        )
    if isinstance(hparams, Mapping):
        changes = changed_settings(hparams, model_spec)
        if changes:
            listed = "; ".join(f"{key}: checkpoint {old!r}, now {new!r}" for key, old, new in changes)
            raise ValueError(f"--ckpt_path {text!r} was saved with other model settings ({listed}): {RESUME_HINT}")
    return checkpoint
