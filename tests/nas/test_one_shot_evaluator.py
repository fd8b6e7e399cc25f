"""OneShotEvaluator: one-shot scores equal OneShot's ranking and a by-hand forward, params / FLOPs of the built
child, a random search scored one-shot end to end, pickling to a worker, bad input."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lit_automl.nas import OneShot, RandomSearch, TrainingEvaluator
from lit_automl.nas.model_metrics import forward_flops
from lit_automl.nas.one_shot import one_shot_correct
from lit_automl.nas.one_shot_evaluator import OneShotEvaluator
from lit_automl.spaces import DARTS_OPS, DartsCellSpace, Genotype, NetworkCIFAR, count_parameters
from lit_automl.spaces.sampling import sample_genotype
from tests.nas.test_one_shot import hand_weights  # mean join: each of a node's 2 paths 1/2
from tests.trainers import SyntheticImages, quiet_trainer

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, num_samples=4,
            rank_after_fit=False)


class Data(SyntheticImages):
    """32 training and 24 validation images (3 batches of 8)."""

    num_classes, in_channels, image_size = 10, 1, 8

    def __init__(self, n_val: int = 24, **kwargs):
        super().__init__(**kwargs)
        self.n_val = n_val

    def val_dataloader(self):
        g = torch.Generator().manual_seed(1000)
        x, y = torch.randn(self.n_val, 1, 8, 8, generator=g), torch.randint(0, 10, (self.n_val,), generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=self.batch_size)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A OneShot trained 2 steps on the synthetic images, saved as a Lightning checkpoint."""
    folder = tmp_path_factory.mktemp("one_shot")
    torch.manual_seed(0)
    trainer = quiet_trainer(folder, max_epochs=1, limit_val_batches=0, logger=False)
    trainer.fit(OneShot(**TINY), Data())
    trainer.save_checkpoint(folder / "one_shot.ckpt")
    return folder / "one_shot.ckpt"


def test_scores_equal_the_ranking_and_a_forward_by_hand(checkpoint):
    evaluator = OneShotEvaluator(str(checkpoint), Data, batches=2)
    module = OneShot.load_from_checkpoint(checkpoint)
    genotypes = module.sample_architectures(4)
    correct, total = module.evaluate_architectures(genotypes, Data().val_dataloader(), max_batches=2)
    assert total == 16
    supernet = evaluator.supernet()
    buffers = {k: v.clone() for k, v in supernet.named_buffers()}
    direct = copy.deepcopy(module.model).train()  # batch norm on each batch's statistics
    for g, c in zip(genotypes, correct):
        metrics = evaluator.evaluate(g, 1)
        by_hand = sum(int((direct(x, *[0.5 * w for w in hand_weights(g)]).argmax(-1) == y).sum())
                      for x, y in list(Data().val_dataloader())[:2])
        assert metrics["correct"] == c == by_hand and metrics["total"] == 16
        assert metrics["val_acc"] == metrics["val_acc_history"][-1] == c / 16
        assert metrics["batches"] == 2 and metrics["train_seconds"] > 0
    for k, v in supernet.named_buffers():  # running statistics untouched
        assert torch.equal(v, buffers[k]), k
    assert evaluator.space.ops == tuple(DARTS_OPS[1:]) and (evaluator.space.steps, evaluator.space.C) == (2, 4)


def test_params_and_flops_are_the_built_childs(checkpoint):
    g = sample_genotype(2, 2, DARTS_OPS)
    for space, (C, layers) in ((None, (4, 3)), (DartsCellSpace(steps=2, multiplier=2, C=6, layers=2, auxiliary=False,
                                                               stem_multiplier=1), (6, 2))):
        metrics = OneShotEvaluator(checkpoint, Data, batches=1, space=space).evaluate(g, 1)
        net = NetworkCIFAR(g, C=C, num_classes=10, layers=layers, auxiliary=False, in_channels=1, stem_multiplier=1)
        assert metrics["params"] == count_parameters(net, exclude_auxiliary=False)
        assert metrics["flops"] == forward_flops(net, (1, 8, 8)) > 0


def test_a_module_in_python_and_the_shared_function(checkpoint):
    module = OneShot.load_from_checkpoint(checkpoint)
    evaluator = OneShotEvaluator(module, Data)
    g = sample_genotype(2, 2, DARTS_OPS, torch.Generator().manual_seed(5))
    batches = list(Data().val_dataloader())
    (correct,) = one_shot_correct(module, [g], batches).tolist()
    assert evaluator.evaluate(g)["correct"] == correct and evaluator.evaluate(g)["total"] == 24
    assert pickle.loads(pickle.dumps(evaluator)).evaluate(g)["correct"] == correct  # the module travels with it


def test_pickled_to_a_worker_without_the_weights(checkpoint):
    evaluator = OneShotEvaluator(checkpoint, Data, batches=2)
    g = evaluator.space.decode([0] * len(evaluator.space.decisions()))
    before = evaluator.evaluate(g)
    blob = pickle.dumps(evaluator)
    assert b"cells.0.edges" not in blob and len(blob) < checkpoint.stat().st_size / 2
    worker = pickle.loads(blob)
    assert worker._module is None and worker._batches is None  # loaded again at its first evaluation
    after = worker.evaluate(g)
    assert (after["correct"], after["params"], after["flops"]) == (before["correct"], before["params"], before["flops"])


def test_a_random_search_scored_one_shot_end_to_end(checkpoint, tmp_path):
    evaluator = OneShotEvaluator(str(checkpoint), Data, batches=2)
    search = RandomSearch(evaluator, children_per_step=2, budget=1, reward="final", steps_per_epoch=2,
                          storage=f"sqlite:///{tmp_path / 'children.db'}", study_name="s", seed=0)
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=None).fit(search)
    assert len(search.history) == 4
    for record in search.history:
        g = evaluator.space.from_json(record["architecture"])
        assert record["reward"] == record["val_acc"] == evaluator.evaluate(g)["val_acc"]
    best = search.best_architecture()
    assert isinstance(best, Genotype) and search.best["reward"] == max(r["reward"] for r in search.history)
    run = tmp_path / "lightning_logs" / "version_0"
    children = [json.loads(line) for line in (run / "children.jsonl").read_text().splitlines()]
    assert len(children) == 4
    record = json.loads((run / "best_architecture.json").read_text())  # the child's record, not overwritten
    assert record["reward"] == search.best["reward"] and record["trial"] == search.best["trial"]
    assert Genotype.load(run / "best_architecture.txt") == best and (run / "best_architecture.png").stat().st_size


def test_training_evaluator_trains_a_child_of_the_space():
    space = DartsCellSpace(steps=2, multiplier=2, C=4, layers=3, auxiliary=False, stem_multiplier=1)
    evaluator = TrainingEvaluator(space, Data, lr=0.05, trainer_kwargs={"limit_train_batches": 2})
    g = space.decode([0] * len(space.decisions()))
    metrics = evaluator.evaluate(g, 1)
    assert len(metrics["val_acc_history"]) == 1 and metrics["params"] == count_parameters(space.build(g, 1, 10, 8))


class Plain(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(64, 10)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_bad_input(checkpoint, tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1, logger=False)
    trainer.fit(Plain(), Data())
    trainer.save_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match=r"plain.ckpt' is a checkpoint of another module: .*lit_automl.nas.OneShot"):
        OneShotEvaluator(tmp_path / "plain.ckpt", Data)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt' is not a PyTorch Lightning checkpoint"):
        OneShotEvaluator(tmp_path / "notes.txt", Data)
    with pytest.raises(ValueError, match=r"missing.ckpt' does not exist"):
        OneShotEvaluator(tmp_path / "missing.ckpt", Data)
    with pytest.raises(ValueError, match=r"supernet must be the path of a OneShot checkpoint .*got Linear"):
        OneShotEvaluator(nn.Linear(1, 1), Data)
    with pytest.raises(ValueError, match=r"space has ops .* steps=3.* but the supernet has ops .* steps=2"):
        OneShotEvaluator(checkpoint, Data, space=DartsCellSpace(steps=3, multiplier=2))
    with pytest.raises(ValueError, match=r"built with num_classes=10 but the datamodule Data has num_classes=5"):
        OneShotEvaluator(checkpoint, lambda: type("Data", (Data,), {"num_classes": 5})())
    with pytest.raises(ValueError, match=r"batches must be an int >= 1 or None"):
        OneShotEvaluator(checkpoint, Data, batches=0)

    evaluator = OneShotEvaluator(checkpoint, Data, batches=1)
    g = sample_genotype(2, 2, DARTS_OPS)
    with pytest.raises(ValueError, match=r"budget must be 1 \(a one-shot score trains nothing.*got 2"):
        evaluator.evaluate(g, 2)
    outside = Genotype(normal=[("conv_7x1_1x7", 0), ("skip_connect", 1)] + list(g.flat_edges("normal"))[2:],
                       normal_concat=[2, 3], reduce=g.reduce, reduce_concat=[2, 3])
    with pytest.raises(ValueError, match=r"normal node 0: op 'conv_7x1_1x7' is not in this space"):
        evaluator.evaluate(outside, 1)
    with pytest.raises(ValueError, match=r"the normal cell has 3 nodes but this space has steps=2"):
        evaluator.evaluate(sample_genotype(3, 2, DARTS_OPS), 1)
