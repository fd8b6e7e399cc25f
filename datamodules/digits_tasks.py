"""Few-shot tasks on scikit-learn's bundled 8x8 digits: a no-download smoke-test benchmark."""

from __future__ import annotations

from typing import Any

import torch

from lit_automl._checks import check_int

from .episodes import SPLITS, check_examples_per_class
from .sampling import mix_seed
from .tasks import FewShotDataModule, TaskData

__all__ = ["DigitsTasksDataModule"]

_CLASS_SPLIT_STREAM = 3  # mix_seed(seed, 3) seeds class splits; episode seeds use 4-tuples with split codes 0..2


class DigitsTasksDataModule(FewShotDataModule):
    """Few-shot tasks on scikit-learn's bundled 8x8 digits, 40 classes via rotations (no download).

    Data: ``sklearn.datasets.load_digits`` (1,797 images, 10 digits, 174..183 per digit),
    pixels divided by 16 into [0, 1], float32 ``1 x 8 x 8``. Each digit rotated by 0, 90,
    180 and 270 degrees (``torch.rot90``) is its own class (Santoro et al., 2016;
    Vinyals et al., 2016, Sec. 4.1.1 do this for Omniglot): class id ``4 * digit +
    quarter_turns``, 40 classes. Class split: a permutation of the 40 class ids drawn
    from a generator seeded with ``mix_seed(seed, 3)``; its first 24 ids are meta-train,
    the next 8 meta-val and the last 8 meta-test (:meth:`class_split`). Rotations of one
    digit may fall into different splits, and some rotated classes look alike (0, 1 and
    8 turned 180 degrees; 6 turned 180 vs 9), so this is a fast smoke-test benchmark,
    not a published one.

    Arguments: :class:`~lit_automl.datamodules.tasks.FewShotDataModule` (``n_way``) and
    :class:`~lit_automl.datamodules.tasks.TaskDataModule`, whose defaults are ours (no paper
    uses this data set): 5-way 1-shot with 15 queries per class, 4 tasks per meta-batch (per
    process: under DDP the effective meta-batch is ``tasks_per_batch * world_size``), 100
    meta-batches per training epoch, 100 fixed validation and 600 fixed test tasks.
    ``n_way`` can be at most 8 (the val/test split size) and ``k_shot + q_queries`` at most
    174 (the rarest digit); when ``m`` rotations of one digit can share a task, that digit
    needs ``m * (k_shot + q_queries)`` images, because no image appears twice in a task (not
    even rotated). Everything is checked at construction, against the known digit counts.
    """

    in_channels = 1
    image_size = 8
    num_classes = 40
    rotations = 4
    split_sizes = {"train": 24, "val": 8, "test": 8}
    min_examples_per_class = 174
    digit_counts = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # images per digit in load_digits()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        smallest = min(self.split_sizes.values())
        if self.n_way > smallest:
            raise ValueError(
                f"n_way={self.n_way} exceeds the {smallest} classes of the digits meta-val/meta-test splits "
                f"(40 classes split 24/8/8); use n_way <= {smallest}"
            )
        if self.k_shot + self.q_queries > self.min_examples_per_class:
            raise ValueError(
                f"k_shot + q_queries = {self.k_shot + self.q_queries} exceeds {self.min_examples_per_class}, the "
                "number of images of the rarest digit; lower k_shot or q_queries"
            )
        self.class_splits = self.class_split(self.seed)
        for split in SPLITS:  # rotations of one digit in a task draw distinct images from that digit's pool
            check_examples_per_class(
                self.digit_counts, self.class_splits[split], self.rotations, self.n_way, self.k_shot, self.q_queries
            )

    @classmethod
    def class_split(cls, seed: int) -> dict[str, list[int]]:
        """The 24/8/8 split of class ids ``4 * digit + quarter_turns`` for ``seed`` (sorted lists)."""
        g = torch.Generator()
        g.manual_seed(mix_seed(check_int("seed", seed), _CLASS_SPLIT_STREAM))
        perm = torch.randperm(cls.num_classes, generator=g).tolist()
        n_train, n_val = cls.split_sizes["train"], cls.split_sizes["val"]
        return {
            "train": sorted(perm[:n_train]),
            "val": sorted(perm[n_train : n_train + n_val]),
            "test": sorted(perm[n_train + n_val :]),
        }

    def load_data(self) -> TaskData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.as_tensor(bunch.target, dtype=torch.long)
        return TaskData(images, labels, self.class_split(self.seed), rotations=self.rotations)
