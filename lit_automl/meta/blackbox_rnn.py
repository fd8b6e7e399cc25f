"""An LSTM that proposes black-box queries, meta-trained on GP-prior functions.

Chen, Hoffman, Gomez Colmenarejo, Denil, Lillicrap, Botvinick & de Freitas, "Learning to Learn without
Gradient Descent by Gradient Descent", ICML 2017 (arXiv:1611.03824).

Sec. 2 of the paper: the optimiser is a recurrent network that reads the last query and its observation
and emits the next query, ``h_t, x_t = RNN_theta(h_{t-1}, x_{t-1}, y_{t-1})``, ``y_t = f(x_t)``; it is
meta-trained by gradient descent on differentiable training functions (samples of a GP prior, whose
gradients exist at training time only) and used on black boxes without any gradient. The losses over a
horizon of T queries (Sec. 2.1):

    summed   L_sum = E_f [ sum_{t=1..T} f(x_t) ]
    OI       L_OI  = E_f [ sum_{t=1..T} min( f(x_t) - min_{i<t} f(x_i), 0 ) ]      (observed improvement)
    EI       L_EI  = -E_f [ sum_{t=1..T} EI(x_t | y_{1:t-1}) ]

where EI is the expected improvement (for minimisation) under the GP posterior of the training prior
given the queries so far; for EI we condition on the function's own prior hyperparameters (the
training functions' prior is known exactly) with a 1e-6 jitter.

What is ours (the search tool returned only the paper's abstract, so no default below is claimed as
the paper's unless marked): the domain is the unit cube [0, 1]^d (as this project's GP sampler); a
query is ``sigmoid(W h_t + b)`` so it stays in the box; one network serves every dimension up to
``max_dim`` (6, the largest the issue names): x is zero-padded to ``max_dim`` and a 0/1 mask of the
active coordinates is an input, extra output coordinates are discarded; x_0 is uniform at random and
y_0 = f(x_0) is the first input (as :class:`~lit_automl.meta.rnn_sampler.RNNSampler` sees a first random
trial); two LSTM layers of 64 units; Adam with lr 1e-3; 64 functions a batch; horizon T = 100.

Training functions are random-Fourier-feature GP samples (Rahimi & Recht 2007), not the posterior mean
of a GP drawn on random points: ``f(x) = sqrt(2 sf2 / M) sum_m a_m cos(w_m . x + b_m)`` with
``a_m ~ N(0, 1)``, ``w_m ~ N(0, ell^-2 I)``, ``b_m ~ U(0, 2 pi)``. Its covariance is exactly the
squared-exponential ``sf2 exp(-|x - x'|^2 / (2 ell^2))`` at every dimension (E cos(w . (x - x')) is the
Gaussian's characteristic function), it costs O(M d) a query, and it is differentiable everywhere;
the posterior-mean construction only approaches the stated covariance when the random points are
dense, which in 6 dimensions needs far more points than one Cholesky can hold. M = 256 features,
amplitude sf2 = 1 and lengthscales uniform in [0.1, 0.4] per function (isotropic) are ours.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lit_automl._checks import check_choice, check_int, check_real, check_sequence
from lit_automl.rng import keyed_generator

__all__ = ["BlackBoxRNN", "GPPriorFunctions", "LOSSES", "QueryLSTM", "ei_loss", "observed_improvement_loss",
           "summed_loss"]

_STD_NORMAL = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))

LOSSES = ("oi", "sum", "ei")
"""Meta-training losses of Chen et al. 2017, Sec. 2.1."""


class GPPriorFunctions:
    """A batch of B functions on [0, 1]^dim drawn from a zero-mean GP with the SE kernel
    (Chen et al. 2017, Sec. 2 / 3.1: training functions are GP-prior samples), by random Fourier
    features (see the module docstring for why). Float64 throughout, as the project's GP maths.

    Args:
        batch: B, functions drawn at once.
        dim: input dimension d of every function in the batch.
        generator: the torch generator the draw reads (``keyed_generator(seed, step)`` in training).
        lengthscale: (low, high) the isotropic lengthscale of each function is uniform in; equal
            values fix it ((0.1, 0.4), ours).
        amplitude: sf2, the prior variance of f(x) (1.0, ours).
        features: M random features (256, ours).
    """

    def __init__(self, batch: int, dim: int, generator: torch.Generator,
                 lengthscale: Tuple[float, float] = (0.1, 0.4), amplitude: float = 1.0, features: int = 256) -> None:
        self.batch = check_int("batch", batch, low=1)
        self.dim = check_int("dim", dim, low=1)
        check_sequence("lengthscale", lengthscale, lambda n, v: check_real(n, v, low=0.0, low_open=True),
                       allowed="lengthscales > 0, a pair (low, high) with low <= high")
        if len(lengthscale) != 2 or lengthscale[0] > lengthscale[1]:
            raise ValueError(f"lengthscale must be a pair (low, high) with 0 < low <= high, got {lengthscale!r}")
        self.amplitude = check_real("amplitude", amplitude, low=0.0, low_open=True)
        self.features = check_int("features", features, low=1)
        lo, hi = float(lengthscale[0]), float(lengthscale[1])
        f64 = dict(dtype=torch.float64)
        self.lengthscale = lo + (hi - lo) * torch.rand(batch, generator=generator, **f64)  # (B,)
        self.w = torch.randn(batch, features, dim, generator=generator, **f64) / self.lengthscale[:, None, None]
        self.b = 2 * math.pi * torch.rand(batch, features, generator=generator, **f64)
        self.a = torch.randn(batch, features, generator=generator, **f64)

    def __call__(self, x: Tensor) -> Tensor:
        """f_b(x) for x of shape (B, n, d) -> (B, n), or (B, d) -> (B,); differentiable in x."""
        squeeze = x.dim() == 2
        x = x[:, None, :] if squeeze else x
        if x.shape[0] != self.batch or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape ({self.batch}, n, {self.dim}) or ({self.batch}, {self.dim}), "
                             f"got {tuple(x.shape)}")
        phase = torch.einsum("bnd,bmd->bnm", x.to(torch.float64), self.w) + self.b[:, None, :]
        out = math.sqrt(2.0 * self.amplitude / self.features) * (torch.cos(phase) * self.a[:, None, :]).sum(-1)
        return out[:, 0] if squeeze else out

    def kernel(self, x1: Tensor, x2: Tensor) -> Tensor:
        """The stated prior covariance sf2 exp(-|x1 - x2|^2 / (2 ell_b^2)), (B, n1, d), (B, n2, d) -> (B, n1, n2)."""
        r2 = ((x1[:, :, None, :] - x2[:, None, :, :]) ** 2).sum(-1) / self.lengthscale[:, None, None] ** 2
        return self.amplitude * torch.exp(-0.5 * r2)

    def minimum(self, generator: torch.Generator, candidates: int = 20000, polish_steps: int = 200) -> Tensor:
        """An estimate of each function's minimum on the box (for regret): the best of ``candidates``
        uniform points, polished by projected Adam from the 8 best (gradients exist here: a GP-prior
        sample is not a black box). Ours; used by the benchmark."""
        x = torch.rand(self.batch, candidates, self.dim, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            values = self(x)
        start = x.gather(1, values.topk(8, dim=1, largest=False).indices[..., None].expand(-1, -1, self.dim))
        start = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([start], lr=0.01)
        for _ in range(polish_steps):
            opt.zero_grad()
            self(start).sum().backward()
            opt.step()
            with torch.no_grad():
                start.clamp_(0.0, 1.0)
        with torch.no_grad():
            return torch.minimum(values.min(1).values, self(start).min(1).values)


class QueryLSTM(nn.Module):
    """The query network of Chen et al. 2017, Sec. 2: ``h_t, x_t = RNN(h_{t-1}, x_{t-1}, y_{t-1})``.

    A stacked LSTM reads ``[2 x_{t-1} - 1 (padded to max_dim), y_{t-1}, mask]`` and the next query is
    ``sigmoid(Linear(h_t))`` in [0, 1]^max_dim, of which the first d coordinates are used (padding,
    mask, sigmoid and sizes are ours: see the module docstring).

    Args:
        max_dim: the largest input dimension served (6).
        hidden: LSTM units per layer (64).
        layers: LSTM layers (2).
    """

    def __init__(self, max_dim: int = 6, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.max_dim = check_int("max_dim", max_dim, low=1)
        self.hidden = check_int("hidden", hidden, low=1)
        self.layers = check_int("layers", layers, low=1)
        self.lstm = nn.LSTM(2 * max_dim + 1, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, max_dim)

    def config(self) -> Dict[str, int]:
        """The constructor's arguments (saved next to the weights)."""
        return {"max_dim": self.max_dim, "hidden": self.hidden, "layers": self.layers}

    def _inputs(self, x: Tensor, y: Tensor, dim: int) -> Tensor:
        batch, steps = x.shape[:2]
        padded = x.new_zeros(batch, steps, self.max_dim)
        padded[..., :dim] = 2 * x - 1
        mask = x.new_zeros(batch, steps, self.max_dim)
        mask[..., :dim] = 1
        return torch.cat([padded, y[..., None], mask], -1)

    def step(self, x: Tensor, y: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None
             ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """One query: x (B, d) in [0, 1]^d and y (B,) of the last query -> the next query (B, d), state."""
        dim = x.shape[-1]
        if not 1 <= dim <= self.max_dim:
            raise ValueError(f"queries have dimension {dim}; this network serves 1..{self.max_dim}")
        out, state = self.lstm(self._inputs(x[:, None].float(), y[:, None].float(), dim), state)
        return torch.sigmoid(self.head(out[:, 0]))[:, :dim], state

    def replay(self, x: Tensor, y: Tensor) -> Tensor:
        """The next query after a whole history x (B, n, d), y (B, n), in one LSTM pass (no gradients
        of the black box: its values enter as inputs only)."""
        dim = x.shape[-1]
        if not 1 <= dim <= self.max_dim:
            raise ValueError(f"queries have dimension {dim}; this network serves 1..{self.max_dim}")
        out, _ = self.lstm(self._inputs(x.float(), y.float(), dim))
        return torch.sigmoid(self.head(out[:, -1]))[:, :dim]

    def unroll(self, f: GPPriorFunctions, x0: Tensor, horizon: int) -> Tuple[Tensor, Tensor]:
        """T queries on f from x_0 (B, d): returns xs (B, T + 1, d) and ys (B, T + 1), x_0 and y_0 first.
        ys carry gradients through f (training only: Chen et al. 2017, Sec. 2)."""
        check_int("horizon", horizon, low=1)
        xs, ys = [x0], [f(x0)]
        state = None
        for _ in range(horizon):
            x, state = self.step(xs[-1], ys[-1], state)
            xs.append(x)
            ys.append(f(x.to(torch.float64)))
        return torch.stack(xs, 1), torch.stack(ys, 1)


def summed_loss(ys: Tensor) -> Tensor:
    """L_sum = sum_{t>=1} f(x_t), mean over the batch (Chen et al. 2017, Sec. 2.1); ys (B, T + 1), y_0 first."""
    return ys[:, 1:].sum(1).mean()


def observed_improvement_loss(ys: Tensor) -> Tensor:
    """L_OI = sum_{t>=1} min(f(x_t) - min_{i<t} f(x_i), 0), mean over the batch (Chen et al. 2017, Sec. 2.1);
    ys (B, T + 1) with y_0 (the random first query) first, so min_{i<1} is y_0."""
    best_before = torch.cummin(ys, 1).values[:, :-1]
    return torch.clamp(ys[:, 1:] - best_before, max=0.0).sum(1).mean()


def ei_loss(f: GPPriorFunctions, xs: Tensor, ys: Tensor, jitter: float = 1e-6) -> Tensor:
    """L_EI = -sum_{t>=1} EI(x_t | (x_i, y_i)_{i<t}), mean over the batch (Chen et al. 2017, Sec. 2.1), with
    the GP posterior under f's own prior (SE kernel, its lengthscale and amplitude) by Cholesky in float64;
    EI for minimisation below the best observation so far, (f* - mu) Phi(z) + s phi(z) with
    z = (f* - mu) / s (Jones et al. 1998; the formula of ``lit_automl.hpo.gp.acquisition``, which the meta
    layer may not import, so it is written here with torch's normal distribution)."""
    xs, ys = xs.to(torch.float64), ys.to(torch.float64)
    total = xs.new_zeros(xs.shape[0])
    for t in range(1, xs.shape[1]):
        past, y_past, query = xs[:, :t], ys[:, :t], xs[:, t:t + 1]
        k = f.kernel(past, past) + jitter * torch.eye(t, dtype=torch.float64)
        chol = torch.linalg.cholesky(k)
        kq = f.kernel(past, query)  # (B, t, 1)
        v = torch.linalg.solve_triangular(chol, kq, upper=False)
        alpha = torch.cholesky_solve(y_past[..., None], chol)
        mean = (kq * alpha).sum((1, 2))
        var = (f.amplitude - (v * v).sum((1, 2))).clamp_min(1e-12)
        std = var.sqrt()
        improvement = y_past.min(1).values - mean
        z = improvement / std
        total = total + improvement * _STD_NORMAL.cdf(z) + std * _STD_NORMAL.log_prob(z).exp()
    return -total.mean()


class BlackBoxRNN(pl.LightningModule):
    """Meta-trains a :class:`QueryLSTM` on GP-prior functions (Chen et al. 2017, Sec. 2-3.1).

    Each training step draws ``batch_size`` functions of one dimension (uniform over ``dims``) from
    ``keyed_generator(seed, 0, step)``, so a run resumed from a checkpoint draws the functions an
    uninterrupted run draws; the loss is backpropagated through the whole unroll (functions are
    differentiable at training time only). Validation: the OI loss and the final best value on fixed
    held-out functions (``val_functions`` of each dimension, ``keyed_generator(seed, 1, d)``).

    Args:
        max_dim, hidden, layers: the :class:`QueryLSTM` (6, 64, 2; ours).
        dims: dimensions trained on (1..6, the issue's range).
        loss: ``"oi"`` (default), ``"sum"`` or ``"ei"`` (Sec. 2.1).
        horizon: T queries per unroll (100, ours).
        batch_size: functions per step (64, ours).
        lr: Adam's learning rate (1e-3, ours).
        lengthscale, amplitude, features: the GP prior (:class:`GPPriorFunctions`).
        steps_per_epoch: training steps an epoch (100).
        val_functions: held-out functions per dimension (32).
        seed: the key of the function draws (0).
    """

    def __init__(self, max_dim: int = 6, hidden: int = 64, layers: int = 2, dims: Sequence[int] = (1, 2, 3, 4, 5, 6),
                 loss: str = "oi", horizon: int = 100, batch_size: int = 64, lr: float = 1e-3,
                 lengthscale: Tuple[float, float] = (0.1, 0.4), amplitude: float = 1.0, features: int = 256,
                 steps_per_epoch: int = 100, val_functions: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.rnn = QueryLSTM(max_dim, hidden, layers)
        self.dims = check_sequence("dims", dims, lambda n, v: check_int(n, v, low=1, high=max_dim),
                                   allowed=f"dimensions in 1..{max_dim}", min_len=1)
        self.loss_name = check_choice("loss", loss, LOSSES)
        self.horizon = check_int("horizon", horizon, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.lr = check_real("lr", lr, low=0.0, low_open=True)
        self.prior = dict(lengthscale=tuple(lengthscale), amplitude=amplitude, features=features)
        GPPriorFunctions(1, 1, torch.Generator().manual_seed(0), **self.prior)  # validates the prior now
        self.steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, low=1)
        self.val_functions = check_int("val_functions", val_functions, low=1)
        self.seed = check_int("seed", seed, low=0)
        self.save_hyperparameters()

    def draw(self, batch: int, dim: int, *keys: int) -> Tuple[GPPriorFunctions, Tensor]:
        """``batch`` prior functions of dimension ``dim`` and their random first queries, keyed by ``keys``."""
        gen = keyed_generator(self.seed, *keys)
        return GPPriorFunctions(batch, dim, gen, **self.prior), torch.rand(batch, dim, generator=gen)

    def meta_loss(self, f: GPPriorFunctions, xs: Tensor, ys: Tensor) -> Tensor:
        """The chosen loss of Sec. 2.1 on an unroll."""
        if self.loss_name == "oi":
            return observed_improvement_loss(ys)
        if self.loss_name == "sum":
            return summed_loss(ys)
        return ei_loss(f, xs, ys)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        step = int(self.global_step)
        dim = self.dims[int(torch.randint(len(self.dims), (1,), generator=keyed_generator(self.seed, 2, step)))]
        f, x0 = self.draw(self.batch_size, dim, 0, step)
        xs, ys = self.rnn.unroll(f, x0, self.horizon)
        loss = self.meta_loss(f, xs, ys)
        self.log("train/loss", loss.float(), prog_bar=True, batch_size=self.batch_size)
        return loss.float()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        by_dim = self.held_out_oi_by_dim()
        for dim, oi in by_dim.items():
            self.log(f"val/oi_d{dim}", oi.float(), batch_size=self.val_functions)
        self.log("val/loss", torch.stack(list(by_dim.values())).mean().float(), batch_size=self.val_functions)

    def held_out_oi_by_dim(self) -> Dict[int, Tensor]:
        """The OI loss on the held-out functions of each dimension in ``dims``."""
        out = {}
        for dim in self.dims:
            f, x0 = self.draw(self.val_functions, dim, 1, dim)
            out[dim] = observed_improvement_loss(self.rnn.unroll(f, x0, self.horizon)[1])
        return out

    def held_out_oi(self) -> Tensor:
        """The OI loss on the held-out functions, averaged over ``dims``."""
        return torch.stack(list(self.held_out_oi_by_dim().values())).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.rnn.parameters(), lr=self.lr)

    def train_dataloader(self) -> Any:
        # The functions are drawn in training_step from the global step; the loader only counts steps.
        return torch.utils.data.DataLoader(range(self.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(range(1), batch_size=None)

    def save_rnn(self, path: str) -> None:
        """Writes the query network alone (its config and weights) for :class:`RNNSampler`."""
        torch.save({"config": self.rnn.config(), "state_dict": self.rnn.state_dict()}, path)


def load_query_lstm(path: str) -> QueryLSTM:
    """A :class:`QueryLSTM` from :meth:`BlackBoxRNN.save_rnn`'s file or a :class:`BlackBoxRNN` Lightning checkpoint."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if "config" in blob:
        rnn = QueryLSTM(**blob["config"])
        rnn.load_state_dict(blob["state_dict"])
    elif "hyper_parameters" in blob and "state_dict" in blob:
        hp = blob["hyper_parameters"]
        rnn = QueryLSTM(hp.get("max_dim", 6), hp.get("hidden", 64), hp.get("layers", 2))
        rnn.load_state_dict({k[len("rnn."):]: v for k, v in blob["state_dict"].items() if k.startswith("rnn.")})
    else:
        raise ValueError(f"{path} is neither a BlackBoxRNN.save_rnn file nor a BlackBoxRNN checkpoint "
                         f"(keys: {sorted(blob)[:8]})")
    return rnn.eval()
