"""PNAS's surrogate: an ensemble of small networks predicting a cell's accuracy from its tokens.

Liu et al., "Progressive Neural Architecture Search", ECCV 2018, Sec. 3.3 and Sec. 5.1.

* The predictor must read cells of any size (it is trained on cells of ``b`` blocks and ranks cells of
  ``b + 1``). Two kinds, both embedding the input tokens ``I_1, I_2`` with one shared table and the op
  tokens ``O_1, O_2`` with another (Sec. 3.3), embedding size ``D = 100`` (Sec. 5.1):

  - ``"lstm"``: an LSTM with hidden size 100 reads the ``4b`` embeddings; its final hidden state goes
    through a fully connected layer and a sigmoid (Sec. 3.3);
  - ``"mlp"``: each block's four embeddings are concatenated (``4D``) and averaged over the blocks,
    giving a fixed-size vector for an MLP (Sec. 3.3); two hidden layers of 100 ReLU units (Sec. 5.1),
    then a sigmoid output.

* Both regress the validation accuracy with the L1 loss and Adam, learning rate 0.01 (Sec. 5.1).
  Targets must therefore lie in [0, 1]. The paper gives no number of predictor epochs nor batch size:
  ``epochs=20`` and ``batch_size=32`` are ours.
* Ensemble (Sec. 5.1/5.3): 5 predictors, each fitted from scratch on 4/5 of the data -- the data is
  split into 5 folds in a random order and member ``k`` leaves out fold ``k`` (5-fold cross validation's
  training sets). The prediction is the members' mean. With fewer data points than members, a member
  whose training set would be empty trains on all data (ours).

Everything is float32 on the CPU and a pure function of the data and the ``torch.Generator`` handed to
:meth:`PredictorEnsemble.fit` (fold order, each member's initialisation and its batch order), so a
resumed search can refit the same ensemble instead of storing it.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from lit_automl._checks import check_choice, check_int, check_real
from lit_automl.spaces.pnas import TOKENS_PER_BLOCK

__all__ = ["LSTMPredictor", "MLPPredictor", "PREDICTOR_KINDS", "PredictorEnsemble", "TokenEmbedding"]

PREDICTOR_KINDS = ("lstm", "mlp")


class TokenEmbedding(nn.Module):
    """Embeds ``(n, 4b)`` cell tokens: positions ``4k, 4k+1`` (inputs) with one table, ``4k+2, 4k+3`` (ops)
    with another (Sec. 3.3: a shared embedding for ``I_1, I_2`` and one for ``O_1, O_2``)."""

    def __init__(self, num_inputs: int, num_ops: int, dim: int) -> None:
        super().__init__()
        self.inputs = nn.Embedding(num_inputs, dim)
        self.ops = nn.Embedding(num_ops, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length = tokens.shape
        blocks = tokens.view(n, length // TOKENS_PER_BLOCK, TOKENS_PER_BLOCK)
        out = torch.cat([self.inputs(blocks[..., :2]), self.ops(blocks[..., 2:])], dim=2)  # (n, b, 4, D)
        return out.view(n, length, -1)


class LSTMPredictor(nn.Module):
    """Tokens -> embeddings -> LSTM -> last hidden state -> linear -> sigmoid (Sec. 3.3)."""

    def __init__(self, num_inputs: int, num_ops: int, embedding_size: int = 100, hidden_size: int = 100) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(num_inputs, num_ops, embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n, 4b)`` tokens of equal length -> ``(n,)`` predicted accuracies."""
        _, (h, _) = self.lstm(self.embedding(tokens))
        return torch.sigmoid(self.head(h[-1])).squeeze(1)


class MLPPredictor(nn.Module):
    """Tokens -> per-block concatenated embeddings averaged over blocks -> 2 x 100 ReLU -> sigmoid (Sec. 3.3, 5.1)."""

    def __init__(self, num_inputs: int, num_ops: int, embedding_size: int = 100, hidden_size: int = 100) -> None:
        super().__init__()
        self.embedding = TokenEmbedding(num_inputs, num_ops, embedding_size)
        width = TOKENS_PER_BLOCK * embedding_size
        self.mlp = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size),
                                 nn.ReLU(), nn.Linear(hidden_size, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length = tokens.shape
        blocks = self.embedding(tokens).view(n, length // TOKENS_PER_BLOCK, -1)  # (n, b, 4D)
        return torch.sigmoid(self.mlp(blocks.mean(dim=1))).squeeze(1)


_KINDS = {"lstm": LSTMPredictor, "mlp": MLPPredictor}


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator))


class PredictorEnsemble:
    """``size`` predictors of one kind, each fitted from scratch on all folds but its own (module docstring).

    Args:
        num_inputs: input-token vocabulary (``num_blocks + 1``: states 0 .. B of the last block).
        num_ops: op-token vocabulary.
        kind: ``"lstm"`` (the paper's main predictor) or ``"mlp"``.
        size: ensemble members (5, Sec. 5.1).
        embedding_size, hidden_size: 100 each (Sec. 5.1).
        lr: Adam's learning rate (0.01, Sec. 5.1).
        epochs, batch_size: passes over a member's data and its mini-batch size (20 and 32, ours).

    After :meth:`fit`: ``members`` (the modules) and ``folds`` (per member, the indices it was trained on).
    """

    predict_chunk = 8192
    """Cells per forward pass in :meth:`predict` (bounds its memory)."""

    def __init__(self, num_inputs: int, num_ops: int, kind: str = "lstm", size: int = 5, embedding_size: int = 100,
                 hidden_size: int = 100, lr: float = 0.01, epochs: int = 20, batch_size: int = 32) -> None:
        self.num_inputs = check_int("num_inputs", num_inputs, low=1)
        self.num_ops = check_int("num_ops", num_ops, low=1)
        self.kind = check_choice("kind", kind, PREDICTOR_KINDS)
        self.size = check_int("size", size, low=1)
        self.embedding_size = check_int("embedding_size", embedding_size, low=1)
        self.hidden_size = check_int("hidden_size", hidden_size, low=1)
        self.lr = check_real("lr", lr, low=0.0, low_open=True)
        self.epochs = check_int("epochs", epochs, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.members: List[nn.Module] = []
        self.folds: List[List[int]] = []

    def _tokens(self, sequences: Sequence[Sequence[int]]) -> Dict[int, torch.Tensor]:
        """Sequence indices grouped by length (the modules take one length per call)."""
        groups: Dict[int, List[int]] = {}
        for i, s in enumerate(sequences):
            if len(s) == 0 or len(s) % TOKENS_PER_BLOCK:
                raise ValueError(f"a cell is 4b tokens (b >= 1), got {len(s)}: {list(s)}")
            groups.setdefault(len(s), []).append(i)
        return {length: torch.tensor(idx) for length, idx in groups.items()}

    def _forward(self, module: nn.Module, tokens: List[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """Predictions for ``index`` (any mix of lengths), in ``index`` order."""
        out = torch.empty(len(index))
        lengths = torch.tensor([len(tokens[i]) for i in index.tolist()])
        for length in lengths.unique().tolist():
            pos = (lengths == length).nonzero().squeeze(1)
            batch = torch.stack([tokens[i] for i in index[pos].tolist()])
            out = out.index_put((pos,), module(batch))
        return out

    def fit(self, sequences: Sequence[Sequence[int]], targets: Sequence[float], generator: torch.Generator
            ) -> "PredictorEnsemble":
        """Fit every member from scratch on its 4/5 of ``(sequences, targets)``; returns ``self``."""
        if len(sequences) != len(targets) or not sequences:
            raise ValueError(f"fit needs as many targets as cells, at least one: got {len(sequences)} cells and "
                             f"{len(targets)} targets")
        self._tokens(sequences)  # validates the lengths
        y = torch.tensor([float(t) for t in targets], dtype=torch.float32)
        if not bool(((y >= 0) & (y <= 1)).all()):
            raise ValueError(f"the predictor's sigmoid output regresses accuracies in [0, 1]; got targets from "
                             f"{float(y.min())} to {float(y.max())} (use a reward such as 'final')")
        tokens = [torch.tensor([int(t) for t in s], dtype=torch.long) for s in sequences]
        order = torch.randperm(len(tokens), generator=generator)
        folds = torch.tensor_split(order, self.size)
        self.members, self.folds = [], []
        for k in range(self.size):
            train = torch.cat([f for j, f in enumerate(folds) if j != k]) if self.size > 1 else order
            if len(train) == 0:
                train = order
            self.folds.append(sorted(train.tolist()))
            self.members.append(self._fit_member(tokens, y, train, generator))
        return self

    def _fit_member(self, tokens: List[torch.Tensor], y: torch.Tensor, train: torch.Tensor,
                    generator: torch.Generator) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(generator))  # the member's initialisation, from the generator
            module = _KINDS[self.kind](self.num_inputs, self.num_ops, self.embedding_size, self.hidden_size)
        optimizer = torch.optim.Adam(module.parameters(), lr=self.lr)
        module.train()
        for _ in range(self.epochs):
            shuffled = train[torch.randperm(len(train), generator=generator)]
            for batch in torch.split(shuffled, self.batch_size):
                loss = (self._forward(module, tokens, batch) - y[batch]).abs().mean()  # L1 (Sec. 3.3)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        module.eval()
        return module

    @torch.no_grad()
    def predict(self, sequences: Sequence[Sequence[int]], member: Optional[int] = None) -> torch.Tensor:
        """The members' mean prediction for each cell (float32, ``(len(sequences),)``), or member ``member``'s."""
        if not self.members:
            raise RuntimeError("the ensemble has not been fitted: call fit() first")
        if not sequences:
            return torch.empty(0)
        self._tokens(sequences)
        tokens = [torch.tensor([int(t) for t in s], dtype=torch.long) for s in sequences]
        chosen = self.members if member is None else [self.members[member]]
        # in chunks: the paper's level 5 ranks 256 x 1,176 = 301,056 cells of 20 tokens (2.4 GB of embeddings at once)
        chunks = torch.split(torch.arange(len(tokens)), self.predict_chunk)
        return torch.cat([torch.stack([self._forward(m, tokens, c) for m in chosen]).mean(dim=0) for c in chunks])
