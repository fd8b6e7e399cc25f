"""What a ``lit-automl`` command prints when something goes wrong, and what it keeps quiet.

Any exception a command raises becomes one ``error: ...`` line on stderr (:func:`error_line`) and
an exit status (:func:`exit_status`): 2 for bad input (a wrong value, name, type or file: the
``ValueError`` / ``TypeError`` / ``LookupError`` / ``OSError`` families, jsonargparse's and YAML's
errors), 1 for a failure while running. The line leads with the library's own message: when an
exception raised in lit_automl is anywhere in the chain jsonargparse wraps around it, its message
is the line (prefixed with the class whose constructor refused the value); otherwise jsonargparse's
innermost message, prefixed with the config key it names. ``LIT_AUTOML_DEBUG=1`` or
``--traceback`` shows the whole traceback instead (:func:`wants_traceback`).

Lightning's advertising tips and the per-run deprecation warnings of its pytree shim carry no
information about the run; :func:`quiet_third_party_noise` filters exactly those, in commands only.

Standard library only at import time (``lit-automl --help`` must stay fast).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from types import TracebackType
from typing import List, Optional, Sequence, Tuple

__all__ = [
    "DEBUG_ENV",
    "TRACEBACK_FLAG",
    "UsageError",
    "check_config_files",
    "close_progress_bars",
    "error_line",
    "exit_status",
    "quiet_third_party_noise",
    "wants_traceback",
]

DEBUG_ENV = "LIT_AUTOML_DEBUG"
TRACEBACK_FLAG = "--traceback"
PACKAGE = "lit_automl"
CLI_MODULES = ("lit_automl.run_config", "lit_automl.cli")
LIGHTNING_TIP = "💡 Tip:"
PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class UsageError(ValueError):
    """A command line that cannot be run as written (an unknown flag, a flag without its value)."""


# ------------------------------------------------------------------ debug switch
def wants_traceback(argv: Sequence[str]) -> Tuple[bool, List[str]]:
    """``(show the traceback?, argv without --traceback)``: the flag or ``LIT_AUTOML_DEBUG`` set to
    anything but ``''``/``0``/``false``/``no``."""
    args = [a for a in argv if a != TRACEBACK_FLAG]
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return len(args) != len(argv) or env not in ("", "0", "false", "no"), args


# ------------------------------------------------------------------ config files
def config_paths(argv: Sequence[str]) -> List[str]:
    """The files given to ``-c`` / ``--config`` (``--config=F`` too)."""
    paths = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def check_config_files(argv: Sequence[str]) -> None:
    """Refuse a missing, unreadable or syntactically broken ``-c`` file, naming the file (and the
    line and column of a YAML error): jsonargparse reports them without the file's name."""
    import yaml

    for path in config_paths(argv):
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"config file {path!r} does not exist" if not file.exists()
                             else f"config {path!r} is not a file")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"config file {path!r} cannot be read: {err}") from None
        try:
            content = yaml.safe_load(text)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            raise UsageError(f"{path}: {where}{err.problem or err.context} (YAML syntax)") from None
        except yaml.YAMLError as err:
            raise UsageError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(content, dict):
            found = "an empty file" if content is None else f"a {type(content).__name__}"
            raise UsageError(f"config {path}: expected a mapping of settings (model:, trainer:, data: ...), "
                             f"got {found}")


# ------------------------------------------------------------------ the error line
def _chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    chain: List[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def _frames(tb: Optional[TracebackType]) -> list:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _raised_by_us(exc: BaseException) -> bool:
    frames = _frames(exc.__traceback__)
    return bool(frames) and str(frames[-1].f_globals.get("__name__", "")).startswith(PACKAGE)


def _refusing_class(exc: BaseException) -> Optional[str]:
    """The library class whose constructor raised ``exc``: the outermost lit_automl ``__init__``
    (``DARTS``, not the ``SearchNetwork`` it builds); the CLI's own classes do not count."""
    for frame in _frames(exc.__traceback__):
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
        module = type(owner).__module__ if owner is not None else ""
        if module.startswith(PACKAGE) and module not in CLI_MODULES:
            return type(owner).__name__
    return None


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _tidy(text: str) -> str:
    """jsonargparse's ``Expected a <class 'int'>. Got value: abc`` as ``expected int, got 'abc'``."""
    text = re.sub(r"Expected a <class '(?:[\w.]+\.)?(\w+)'>\. Got value: (.*)$", r"expected \1, got '\2'", text)
    text = re.sub(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)$", r"expected one of \1, got '\2'", text)
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)


def _allowed_types(subtypes: str) -> str:
    """jsonargparse's ``[typing.Literal[64, 32], <class 'NoneType'>]`` as ``64, 32 or None``."""
    parts = re.split(r",\s*(?=<class|typing\.|collections\.)", subtypes.strip()[1:-1])
    parts = [_tidy(re.sub(r"^typing\.Literal\[(.*)\]$", r"\1", part.strip())) for part in parts]
    return " or ".join("None" if part == "NoneType" else part for part in parts)


def _jsonargparse_line(chain: Sequence[BaseException]) -> str:
    """``key: innermost message`` from jsonargparse's nested errors (their keys joined); a value that
    fits none of a setting's types gets ``expected <the types>, got <value>``."""
    keys: List[str] = []
    class_path = None
    union = None  # (key, subtypes, given value) of the innermost union error
    for exc in chain:
        text = str(exc)
        match = re.match(r'Parser key "([^"]+)"', text)
        if match and (not keys or keys[-1] != match.group(1)):
            keys.append(match.group(1))
        found = re.search(r"Problem with given class_path '([^']+)'", text)
        if found:
            class_path = found.group(1)
        subtypes = re.search(r"^\s*Subtypes: (\[.*\])$", text, re.M)
        given = re.search(r"^\s*Given value: (.*)$", text, re.M)
        if subtypes and given and keys:
            union = (keys[-1], subtypes.group(1), given.group(1))
    key = ".init_args.".join(keys)
    if union is not None and keys and union[0] == keys[-1] and "Expected a" in str(chain[-1]) \
            and "class_path" not in union[2]:
        known = f"; lit_automl's modules: {', '.join(library_modules())}" if key == "model" else ""
        return f"{key}: expected {_allowed_types(union[1])}, got {union[2]!r}{known}"
    message = _one_line(str(chain[-1]))
    if class_path and "is not accepted" in message:
        message = f"{message} by {class_path}"
    if key and not message.startswith(f'Parser key "{keys[-1]}"'):
        return _tidy(f"{key}: {message}")
    return _tidy(message)


def library_modules() -> List[str]:
    """The LightningModules ``lit_automl.nas`` and ``lit_automl.meta`` export: the names ``--model=NAME``
    accepts (imported here, when a command names a model that is none of them)."""
    import importlib

    import pytorch_lightning as pl

    bases = {"ChildSearch", "SupernetSearch", "MetaLearner", "SimulatorSearch"}  # what the methods build on, not run directly
    names = set()
    for package in ("lit_automl.nas", "lit_automl.meta"):
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, pl.LightningModule) and name not in bases:
                names.add(name)
    return sorted(names)


def error_line(exc: BaseException) -> str:
    """The one line (without the ``error: `` prefix) a command prints for ``exc``."""
    chain = _chain(exc)
    ours = [e for e in chain if _raised_by_us(e)]
    if ours:
        cause = ours[0]
        message = _one_line(str(cause)) or type(cause).__name__
        owner = _refusing_class(cause)
        return f"{owner}: {message}" if owner and not message.startswith(owner) else message
    if any(type(e).__module__.startswith("jsonargparse") or isinstance(e, argparse.ArgumentError) for e in chain):
        return _jsonargparse_line(chain)
    inner = chain[-1]
    message = _one_line(str(inner))
    if type(inner).__name__ == "MisconfigurationException":
        return f"trainer: {message}"
    if isinstance(inner, (FileNotFoundError, PermissionError, IsADirectoryError)) and inner.filename:
        return f"{inner.strerror or type(inner).__name__}: {inner.filename}"
    if not is_bad_input(exc):
        hint = f"rerun with {DEBUG_ENV}=1 (or {TRACEBACK_FLAG}) for the traceback"
        return f"{type(inner).__name__}: {message} ({hint})" if message else f"{type(inner).__name__} ({hint})"
    return message or type(inner).__name__


def is_bad_input(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the input was wrong rather than the run failing."""
    import yaml

    # ImportError: the command asks for what this install lacks (a TPU backend, a database driver)
    bad = (ValueError, TypeError, LookupError, OSError, ImportError, argparse.ArgumentError, yaml.YAMLError)
    # Lightning refuses a Trainer setting (accelerator, devices, strategy ...) with MisconfigurationException
    return isinstance(exc, bad) or type(exc).__module__.startswith("jsonargparse") \
        or type(exc).__name__ == "MisconfigurationException"


def exit_status(exc: BaseException) -> int:
    """2 for bad input (as argparse exits on a bad flag), 1 for a failure while running."""
    return 2 if is_bad_input(exc) else 1


def close_progress_bars() -> None:
    """Close open tqdm bars (Lightning's) and end their line, so the error line starts a line."""
    tqdm_module = sys.modules.get("tqdm")
    bars = list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ()) or ())
    for bar in bars:
        bar.close()
    if bars:
        sys.stderr.write("\n")


# ------------------------------------------------------------------ third-party noise
class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(LIGHTNING_TIP)


def quiet_third_party_noise() -> None:
    """Drop Lightning's advertising tips and its pytree shim's per-run deprecation warning."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION)
