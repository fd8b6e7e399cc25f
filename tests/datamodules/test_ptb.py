"""PTBDataModule: tokenisation, batchify, BPTT windows, DDP shares, perplexity and bad input, on tiny files."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lit_automl.datamodules import BPTTWindows, PTBDataModule, batchify, download_ptb, get_batch, perplexity, read_ptb

pytestmark = pytest.mark.usefixtures("single_thread")

# Real format: one sentence per line, words separated by spaces (an empty line still gives one <eos>).
TRAIN = "a b c\nb  c d\n\nd e a\n"
VALID = "a b\ne d\n"
TEST = "c\n"
# ids in order of first appearance in the training file
VOCAB = ["a", "b", "c", "<eos>", "d", "e"]


def _write(root: Path, train: str = TRAIN, valid: str = VALID, test: str = TEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    return root


def _long_corpus(root: Path, lines: int = 400) -> Path:
    words = [f"w{k}" for k in range(30)]
    rows = [" ".join(words[(i * 7 + j) % 30] for j in range(i % 11 + 3)) + "\n" for i in range(lines)]
    return _write(root, train="".join(rows), valid="".join(rows[: lines // 4]), test="".join(rows[: lines // 5]))


def test_token_counts_and_vocabulary_order(tmp_path):
    dictionary, tokens = read_ptb(_write(tmp_path))
    assert dictionary.idx2word == VOCAB
    assert dictionary.word2idx == {w: i for i, w in enumerate(VOCAB)}
    ids = [dictionary.word2idx[w] for w in "a b c <eos> b c d <eos> <eos> d e a <eos>".split()]
    assert tokens["train"].tolist() == ids
    assert tokens["train"].dtype == torch.int64
    assert len(tokens["valid"]) == 6 and len(tokens["test"]) == 2
    assert tokens["test"].tolist() == [2, 3]


def test_datamodule_attributes(tmp_path):
    dm = PTBDataModule(str(_write(tmp_path)), expected_vocab_size=6)
    with pytest.raises(RuntimeError, match="setup"):
        dm.vocab_size
    dm.prepare_data()
    dm.setup()
    assert dm.vocab_size == 6
    assert dm.dictionary.idx2word[3] == "<eos>" and dm.dictionary.word2idx["e"] == 5


def test_batchify_shape_and_content():
    cols = batchify(torch.arange(11), 3)
    assert cols.shape == (3, 3)
    assert cols.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # columns contiguous, remainder 9, 10 dropped
    assert batchify(torch.arange(4), 4).shape == (1, 4)


def test_get_batch_shift_and_last_short_window():
    source = batchify(torch.arange(20), 2)  # 10 rows
    data, target = get_batch(source, 0, 4)
    assert data.shape == target.shape == (4, 2)
    assert torch.equal(target, source[1:5]) and torch.equal(data, source[0:4])
    data, target = get_batch(source, 8, 4)  # only row 9 is left as a target
    assert data.shape == (1, 2) and torch.equal(target, source[9:10])
    windows = BPTTWindows(source, bptt=4).windows()
    assert windows == [(0, 4), (4, 4), (8, 1)]
    batches = list(BPTTWindows(source, bptt=4))
    assert [b["lr_scale"] for b in batches] == [1.0, 1.0, 0.25]
    # every target token appears once and in order
    assert torch.cat([b["target"] for b in batches]).equal(source[1:])


def test_variable_length_statistics():
    source = batchify(torch.arange(100_000), 4)  # 25,000 rows
    ds = BPTTWindows(source, bptt=35, variable_length=True, seed=3)
    windows = ds.windows()
    lengths = torch.tensor([n for _, n in windows], dtype=torch.float64)
    starts = [s for s, _ in windows]
    assert starts == [0] + torch.cumsum(lengths, 0)[:-1].long().tolist()
    assert sum(n for _, n in windows) == len(source) - 1  # the windows tile every target row
    body = lengths[:-1]
    assert body.min() >= 5 and body.max() <= 35 + 20
    assert 32.0 < body.mean() < 35.0  # 0.95 * 35 + 0.05 * 17.5 = 34.1, minus ~0.5 from int() truncation
    short = (body < 26).double().mean().item()  # windows drawn around bptt / 2 = 17.5
    assert 0.02 < short < 0.09
    assert len(set(body.tolist())) > 10
    for batch, (_, n) in zip(ds, windows[:50]):
        assert batch["data"].shape == (n, 4)
        assert batch["lr_scale"] == pytest.approx(n / 35)


def test_windows_reproducible_from_seed_and_leave_global_rng_alone():
    source = batchify(torch.arange(20_000), 2)
    state = torch.get_rng_state()
    a = BPTTWindows(source, 35, variable_length=True, seed=7).windows(epoch=2)
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(123)
    assert BPTTWindows(source, 35, variable_length=True, seed=7).windows(epoch=2) == a
    assert BPTTWindows(source, 35, variable_length=True, seed=7).windows(epoch=3) != a
    assert BPTTWindows(source, 35, variable_length=True, seed=8).windows(epoch=2) != a
    ds = BPTTWindows(source, 35, variable_length=True, seed=7)
    ds.set_epoch(2)
    assert [b["data"].shape[0] for b in ds] == [n for _, n in a]


def test_rank_shares_are_disjoint_and_walk_the_same_windows(tmp_path):
    root = _long_corpus(tmp_path)
    shares = []
    for rank in (0, 1):
        dm = PTBDataModule(str(root), batch_size=3, eval_batch_size=2, test_batch_size=1, bptt=10, seed=5,
                           rank=rank, world_size=2)
        dm.setup()
        shares.append(dm)
    full = batchify(shares[0].tokens["train"], 6)
    assert torch.equal(shares[0].columns("train", 3), full[:, :3])
    assert torch.equal(shares[1].columns("train", 3), full[:, 3:])
    for split, bs in (("valid", 2), ("test", 1)):
        whole = batchify(shares[0].tokens[split], 2 * bs)
        assert torch.equal(torch.cat([dm.columns(split, bs) for dm in shares], 1), whole)
    # token positions: rank r's column j starts at stream offset (r * 3 + j) * n_steps, so the shares are disjoint
    n_steps = len(full)
    positions = [
        {(r * 3 + j) * n_steps + row for row in range(n_steps) for j in range(3)} for r in (0, 1)
    ]
    assert not positions[0] & positions[1]
    batches = [list(dm.train_dataloader()) for dm in shares]
    assert [b["data"].shape[0] for b in batches[0]] == [b["data"].shape[0] for b in batches[1]]
    assert all(b["data"].shape[1] == 3 for b in batches[0])
    assert torch.equal(torch.cat([b["data"] for b in batches[1]]), full[:-1, 3:])


def test_shard_read_from_the_trainer_and_epochs_counted_in_checkpointed_passes(tmp_path):
    dm = PTBDataModule(str(_long_corpus(tmp_path)), batch_size=2, bptt=8, seed=1)
    dm.setup()
    assert dm.shard() == (0, 1)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=3, current_epoch=4)
    assert dm.shard() == (1, 3)
    assert torch.equal(dm.columns("train", 2), batchify(dm.tokens["train"], 6)[:, 2:4])
    ds = dm.train_windows()
    first, second = [[len(b["data"]) for b in ds] for _ in range(2)]  # each pass is the next epoch
    assert first == [n for _, n in ds.windows(epoch=0)] and second == [n for _, n in ds.windows(epoch=1)]
    assert first != second and dm.train_passes == 2
    resumed = PTBDataModule(str(_long_corpus(tmp_path)), batch_size=2, bptt=8, seed=1)
    resumed.setup()
    resumed.trainer = dm.trainer
    resumed.load_state_dict(dm.state_dict())  # a checkpoint after two epochs: the third pass is epoch 2
    assert [len(b["data"]) for b in resumed.train_windows()] == [n for _, n in ds.windows(epoch=2)]


class _TinyLM(pl.LightningModule):
    """Embedding -> linear next-token model that records the window lengths it was given."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 8)
        self.out = nn.Linear(8, vocab)
        self.seen: dict[int, list[int]] = {}
        self.val_nll: list[float] = []

    def _nll(self, batch):
        logits = self.out(self.emb(batch["data"]))
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["target"].reshape(-1))

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(batch["data"].shape[0])
        assert batch["lr_scale"] == batch["data"].shape[0] / 6
        return self._nll(batch)

    def validation_step(self, batch, batch_idx):
        self.val_nll.append(float(self._nll(batch)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fit_walks_the_seeded_windows_of_each_epoch(tmp_path):
    dm = PTBDataModule(str(_long_corpus(tmp_path, lines=60)), batch_size=4, eval_batch_size=2, bptt=6, seed=2)
    dm.setup()
    model = _TinyLM(dm.vocab_size)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    reference = BPTTWindows(dm.columns("train", 4), 6, variable_length=True, seed=2)
    for epoch in (0, 1):
        assert model.seen[epoch] == [n for _, n in reference.windows(epoch=epoch)]
    assert model.seen[0] != model.seen[1]
    assert model.val_nll and all(math.isfinite(v) for v in model.val_nll)


def test_perplexity_hand_checked():
    assert perplexity(math.log(10_000)) == pytest.approx(10_000)  # a uniform model over V words
    # two tokens predicted with p = 1/2 and p = 1/4: mean NLL = (ln 2 + ln 4) / 2 = 1.5 ln 2 -> 2 ** 1.5
    assert perplexity((math.log(2) + math.log(4)) / 2) == pytest.approx(2 ** 1.5)
    assert perplexity(0.0) == 1.0
    assert torch.allclose(perplexity(torch.tensor(1.5 * math.log(2))), torch.tensor(2 ** 1.5))


def test_download_from_a_local_mirror_checks_md5(tmp_path):
    mirror = _write(tmp_path / "mirror")
    md5 = {s: hashlib.md5((mirror / f"ptb.{s}.txt").read_bytes()).hexdigest() for s in ("train", "valid", "test")}
    dm = PTBDataModule(str(tmp_path / "data"), download=True, base_url=mirror.as_uri(), md5=md5)
    dm.prepare_data()
    dm.setup()
    assert dm.vocab_size == 6
    bad = dict(md5, valid="0" * 32)
    with pytest.raises(RuntimeError, match="MD5 mismatch.*ptb.valid.txt"):
        download_ptb(tmp_path / "other", base_url=mirror.as_uri(), md5=bad)


# ---- bad input ----------------------------------------------------------------------------------

def test_missing_folder_names_the_files_and_layout(tmp_path):
    dm = PTBDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere/ptb\.train\.txt.*ptb\.valid\.txt.*download=True"):
        dm.prepare_data()


def test_missing_file_is_named(tmp_path):
    root = _write(tmp_path)
    (root / "ptb.test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"not found: \S*ptb\.test\.txt\. Expected the layout"):
        PTBDataModule(str(root)).setup()


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_empty_file_is_refused(tmp_path, split):
    root = _write(tmp_path)
    (root / f"ptb.{split}.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"ptb\.{split}\.txt is empty"):
        read_ptb(root)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_unknown_word_names_file_line_and_word(tmp_path, split):
    root = _write(tmp_path, **{split: "a b\nc zebra d\n"})
    with pytest.raises(ValueError, match=rf"ptb\.{split}\.txt, line 2: word 'zebra' is not in the training vocabulary"):
        read_ptb(root)


def test_expected_vocab_size_mismatch_names_both_numbers(tmp_path):
    with pytest.raises(ValueError, match=r"vocabulary of 6 words.*expected_vocab_size=10000"):
        PTBDataModule(str(_write(tmp_path)), expected_vocab_size=10000).setup()


@pytest.mark.parametrize("name", ["bptt", "batch_size", "eval_batch_size", "test_batch_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_refused(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be .*got {value}"):
        PTBDataModule(**{name: value})


def test_batch_size_larger_than_tokens_refused(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=14 exceeds the 13 tokens"):
        batchify(read_ptb(_write(tmp_path))[1]["train"], 14)
    dm = PTBDataModule(str(_write(tmp_path)), batch_size=14)
    dm.setup()
    with pytest.raises(ValueError, match=r"batch_size=14 x world_size=1 columns exceed the 13 tokens of ptb\.train\.txt"):
        dm.train_dataloader()


def test_rank_arguments_checked():
    with pytest.raises(ValueError, match="rank and world_size must be given together"):
        PTBDataModule(rank=0)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 1\].*got 2"):
        PTBDataModule(rank=2, world_size=2)


# ---------------------------------------------------------------------- bilevel search pairing


def test_search_pairs_each_training_window_with_the_validation_window_at_its_row_wrapping(tmp_path):
    """The architecture's window starts at the training window's row modulo (valid rows - 1) and is bptt long
    (capped at the rows left), over the VALIDATION split batchified at the training batch size."""
    dm = PTBDataModule(str(_long_corpus(tmp_path)), batch_size=3, bptt=10, seed=4, search=True)
    dm.setup()
    train_cols, valid_cols = dm.columns("train", 3), dm.columns("valid", 3)
    assert torch.equal(valid_cols, batchify(dm.tokens["valid"], 3))
    rows = len(valid_cols)
    assert len(train_cols) > 2 * rows  # the pairing must wrap at least twice
    reference = BPTTWindows(train_cols, 10, variable_length=True, seed=4).windows(epoch=0)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(reference) and all(set(b) == {"train", "val"} for b in batches)
    wrapped = 0
    for batch, (start, length) in zip(batches, reference):
        assert torch.equal(batch["train"]["data"], train_cols[start: start + length])
        assert torch.equal(batch["train"]["target"], train_cols[start + 1: start + 1 + length])
        assert batch["train"]["lr_scale"] == length / 10
        v_start = start % (rows - 1)
        wrapped += start >= rows - 1
        v_len = min(10, rows - 1 - v_start)
        assert torch.equal(batch["val"]["data"], valid_cols[v_start: v_start + v_len])
        assert torch.equal(batch["val"]["target"], valid_cols[v_start + 1: v_start + 1 + v_len])
    assert wrapped > 0


def test_search_window_hand_checked():
    from lit_automl.datamodules.ptb import search_window

    assert search_window(0, 11, 4) == (0, 4)
    assert search_window(8, 11, 4) == (8, 2)  # rows 8, 9 have targets in a 11-row source
    assert search_window(10, 11, 4) == (0, 4)  # wraps at n_rows - 1
    assert search_window(23, 11, 4) == (3, 4)
    with pytest.raises(ValueError, match=r"n_rows must be an int >= 2 .*got 1"):
        search_window(0, 1, 4)


def test_search_pairs_are_split_into_the_ranks_column_blocks_and_resume_at_the_checkpointed_pass(tmp_path):
    root = _long_corpus(tmp_path)
    shares = []
    for rank in (0, 1):
        dm = PTBDataModule(str(root), batch_size=2, bptt=7, seed=3, rank=rank, world_size=2, search=True)
        dm.setup()
        shares.append(dm)
    whole_valid = batchify(shares[0].tokens["valid"], 4)
    first = [list(dm.train_dataloader()) for dm in shares]
    assert [len(b["train"]["data"]) for b in first[0]] == [len(b["train"]["data"]) for b in first[1]]
    for rank, batches in enumerate(first):
        assert torch.equal(batches[0]["val"]["data"], whole_valid[:7, rank * 2: rank * 2 + 2])
    second = [len(b["train"]["data"]) for b in shares[0].train_dataloader()]
    resumed = PTBDataModule(str(root), batch_size=2, bptt=7, seed=3, rank=0, world_size=2, search=True)
    resumed.setup()
    resumed.load_state_dict({"train_passes": 1})
    again = list(resumed.train_dataloader())
    assert [len(b["train"]["data"]) for b in again] == second != [len(b["train"]["data"]) for b in first[0]]
    fresh = PTBDataModule(str(root), batch_size=2, bptt=7, seed=3, rank=0, world_size=2, search=True)
    fresh.setup()
    fresh.load_state_dict({"train_passes": 1})
    for a, b in zip(again, fresh.train_dataloader()):
        assert all(torch.equal(a[k]["data"], b[k]["data"]) for k in ("train", "val"))


def test_search_is_off_by_default_and_bad_search_input_is_refused(tmp_path):
    from lit_automl.datamodules import SearchWindows

    dm = PTBDataModule(str(_long_corpus(tmp_path)), batch_size=2, bptt=5)
    dm.setup()
    assert set(next(iter(dm.train_dataloader()))) == {"data", "target", "lr_scale"}
    with pytest.raises(ValueError, match=r"search must be True or False, got 'yes'"):
        PTBDataModule(search="yes")
    windows = dm.train_windows()
    with pytest.raises(ValueError, match=r"the search source has 3 columns but the training windows have 2"):
        SearchWindows(windows, batchify(dm.tokens["valid"], 3))
    with pytest.raises(ValueError, match=r"search_source must be a batchified \(n_steps >= 2, B\) tensor, got \(7,\)"):
        SearchWindows(windows, torch.arange(7))
    with pytest.raises(TypeError, match=r"train must be the BPTTWindows of the training split, got list"):
        SearchWindows([], batchify(dm.tokens["valid"], 2))
