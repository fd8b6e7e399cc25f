"""The files a search writes for the genotype it found: text form, JSON and (CNN cells) a picture of both cells."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype

__all__ = ["save_genotype_files"]


def save_genotype_files(genotype: Union[Genotype, RecurrentGenotype], folder: Union[str, os.PathLike], *,
                        stem: str = "genotype", plot: bool = True, title: Optional[str] = None) -> List[Path]:
    """Write ``<stem>.txt`` (the published text form), ``<stem>.json`` and, with ``plot``,
    ``<stem>.png`` (:func:`~lit_automl.spaces.plot.plot_genotype`) into ``folder``; returns the paths.

    A :class:`RecurrentGenotype` is written as text and JSON only: there is no picture of a recurrent
    cell, so ``plot`` is ignored for it. Folders are created; matplotlib is imported only when a
    picture is drawn.
    """
    if not isinstance(genotype, (Genotype, RecurrentGenotype)):
        raise ValueError(f"genotype must be a Genotype or a RecurrentGenotype, got {type(genotype).__name__}: "
                         f"{genotype!r}")
    plot = plot and isinstance(genotype, Genotype)
    folder = Path(folder)
    paths = [genotype.save(folder / f"{stem}.txt"), genotype.save(folder / f"{stem}.json")]
    if plot:
        from lit_automl.spaces.plot import plot_genotype

        paths.append(plot_genotype(genotype, folder / f"{stem}.png", title=title))
    return paths
