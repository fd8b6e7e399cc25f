"""The files a search writes for the genotype it found: text form, JSON and a picture of both cells."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

from lit_automl.spaces.genotype import Genotype

__all__ = ["save_genotype_files"]


def save_genotype_files(genotype: Genotype, folder: Union[str, os.PathLike], *, stem: str = "genotype",
                        plot: bool = True, title: Optional[str] = None) -> List[Path]:
    """Write ``<stem>.txt`` (the published text form), ``<stem>.json`` and, with ``plot``,
    ``<stem>.png`` (:func:`~lit_automl.spaces.plot.plot_genotype`) into ``folder``; returns the paths.

    Folders are created; matplotlib is imported only when a picture is drawn.
    """
    folder = Path(folder)
    paths = [genotype.save(folder / f"{stem}.txt"), genotype.save(folder / f"{stem}.json")]
    if plot:
        from lit_automl.spaces.plot import plot_genotype

        paths.append(plot_genotype(genotype, folder / f"{stem}.png", title=title))
    return paths
