"""``lit-automl``: the LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``).

Any LightningModule and LightningDataModule can be named by ``class_path`` in a YAML recipe::

    lit-automl fit -c recipes/darts_digits.yaml
    lit-automl fit -c recipes/retrain_digits.yaml --model.genotype DARTS_V2
"""

from __future__ import annotations

from typing import List, Optional

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI


class AutoMLCLI(LightningCLI):
    """LightningCLI in subclass mode for both model and data, with the run config saved."""

    def __init__(self, args: Optional[List[str]] = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"} if _has_omegaconf() else {})
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            auto_configure_optimizers=False,
            **kwargs,
        )


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def main(args: Optional[List[str]] = None) -> None:
    """Console-script entry point."""
    AutoMLCLI(args=args)


if __name__ == "__main__":
    main()
