"""lit_automl.nonfinite: counting non-finite values and stopping a run whose losses diverged."""

from __future__ import annotations

import pytest
import torch

from lit_automl.nonfinite import check_finite_losses, non_finite_tensors, nonfinite_count


def test_counts_and_names_the_non_finite_tensors_of_a_batch():
    x = torch.tensor([1.0, float("nan"), float("inf"), 2.0])
    assert nonfinite_count(x) == 2 and nonfinite_count(torch.tensor([1, 2])) == 0
    found = non_finite_tensors({"x": x, "y": torch.tensor([0, 1])})
    assert len(found) == 1 and found[0].startswith("batch['x']")


def test_finite_losses_pass_and_a_non_finite_one_stops_with_every_value_and_the_fix():
    check_finite_losses("run", {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, "lower lr")
    with pytest.raises(FloatingPointError, match=r"^search diverged at batch 3: training loss nan, arch loss 2\.0; "
                                                 r"lower lr=1\.0$"):
        check_finite_losses("search diverged at batch 3", {"training loss": torch.tensor(float("nan")),
                                                           "arch loss": torch.tensor(2.0)}, "lower lr=1.0")
