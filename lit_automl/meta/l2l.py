"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al., NeurIPS 2016).

A coordinate-wise two-layer LSTM ``m`` (Sec. 2.1, 20 units per layer, weights shared by every
coordinate of the optimisee, a linear output) proposes the update ``x_{t+1} = x_t + g_t`` with
``[g_t, h_{t+1}] = m(grad f(x_t), h_t, phi)``; its hidden state per coordinate is optimiser state.
Gradients are preprocessed (Appendix A) before they enter the LSTM.

The unrolled optimisation is :func:`lit_automl.meta.functional.inner_loop` with :class:`InnerLSTM`
as its update rule and ``detach_grads=True``: the optimisee's gradient is an input, not
differentiated ("dropping the second derivatives", Sec. 2.1), while the path
``x_{t+1} = x_t + m(...)`` stays in the graph. :class:`L2LMetaTrainer` meta-trains the LSTM,
:class:`LSTMOptimizer` applies a trained one to any model as a ``torch.optim.Optimizer``.

Paper vs authors' code (deepmind/learning-to-learn): the paper's preprocessing is piecewise
(``(log|g|/p, sign g)`` for ``|g| >= e^-p``, else ``(-1, e^p g)``, p = 10) with no output scaling;
the code's ``LogAndSign`` clamps instead (``(max(log(|g| + eps)/k, -1), clip(e^k g, -1, 1))``,
k = 5) and scales the LSTM output by 0.01 for MNIST / CIFAR, while its quadratic LSTM sees the raw
gradient with output scale 1. Default here: the paper's preprocessing with p = 10 and output scale
1 (what the paper states); ``preprocess="code", p=5, output_scale=0.01`` is the code's MNIST
setting, which we recommend for networks (steps of at most ~0.01 keep an untrained LSTM from
blowing up an MLP; ``recipes/l2l_quadratic.yaml`` documents both).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.distributed import all_reduce_mean
from lit_automl.meta.functional import Params, inner_loop, task_loss
from lit_automl.rng import keyed_generator, load_rng_states, save_rng_states

__all__ = ["CoordinateLSTM", "InnerLSTM", "L2LMetaTrainer", "LSTMOptimizer", "QuadraticOptimisee", "mlp_optimisee",
           "preprocess_gradients", "PREPROCESSING", "TASKS"]

PREPROCESSING = ("paper", "code", "none")
TASKS = ("quadratic", "mlp")
MLP_DATA = ("digits", "mnist")


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0, kind: str = "paper") -> torch.Tensor:
    """The LSTM's input for each coordinate of ``grad``, stacked on a new last dimension.

    ``"paper"`` (Andrychowicz et al. 2016, Appendix A): ``(log|g| / p, sign g)`` if ``|g| >= e^-p``,
    else ``(-1, e^p g)``. ``"code"`` (deepmind/learning-to-learn ``LogAndSign``, ``p`` is its k):
    ``(max(log(|g| + eps) / p, -1), clip(e^p g, -1, 1))``. ``"none"``: ``g`` itself (one input).
    """
    check_choice("preprocess", kind, PREPROCESSING)
    if kind == "none":
        return grad.unsqueeze(-1)
    check_real("p", p, low=0, low_open=True)
    if kind == "code":
        eps = torch.finfo(grad.dtype).eps
        log = torch.clamp(torch.log(grad.abs() + eps) / p, min=-1.0)
        return torch.stack([log, torch.clamp(grad * math.exp(p), -1.0, 1.0)], -1)
    big = grad.abs() >= math.exp(-p)
    log = torch.log(grad.abs().clamp_min(math.exp(-p))) / p  # clamped: no log(0) in either branch's graph
    first = torch.where(big, log, torch.full_like(grad, -1.0))
    second = torch.where(big, torch.sign(grad), grad * math.exp(p))
    return torch.stack([first, second], -1)


class CoordinateLSTM(nn.Module):
    """The optimiser network ``m`` (Sec. 2.1): a stacked LSTM applied to every coordinate independently.

    Coordinates are the batch dimension, so the weights are shared across them and the network
    optimises models of any size. Hidden state of ``n`` coordinates: a ``(n, 2 * layers, hidden)``
    tensor holding ``h`` and ``c`` of each layer.

    Args:
        hidden: units per LSTM layer (20, Sec. 3).
        layers: LSTM layers (2, Sec. 3).
        preprocess: ``"paper"`` (Appendix A, the default), ``"code"`` (the authors' clamped
            LogAndSign) or ``"none"`` (the raw gradient; the authors' quadratic setting).
        p: p of the preprocessing (10, Appendix A; the code's MNIST setting is k = 5).
        output_scale: the linear output is multiplied by this (1: the paper states no scaling;
            0.01 in the code's MNIST / CIFAR settings).

    Weights start at PyTorch's ``nn.LSTMCell`` / ``nn.Linear`` initialisation (ours; the authors'
    Sonnet code draws truncated normals), hidden states at zero (as in the code).
    """

    def __init__(self, hidden: int = 20, layers: int = 2, preprocess: str = "paper", p: float = 10.0,
                 output_scale: float = 1.0) -> None:
        super().__init__()
        self.hidden = check_int("hidden", hidden, low=1)
        self.layers = check_int("layers", layers, low=1)
        self.preprocess = check_choice("preprocess", preprocess, PREPROCESSING)
        self.p = check_real("p", p, low=0, low_open=True)
        self.output_scale = check_real("output_scale", output_scale, low=0, low_open=True)
        inputs = 1 if preprocess == "none" else 2
        self.cells = nn.ModuleList(nn.LSTMCell(inputs if i == 0 else hidden, hidden) for i in range(layers))
        self.output = nn.Linear(hidden, 1)

    def zero_state(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The initial hidden state of ``n`` coordinates (zeros, as in the authors' code)."""
        return torch.zeros(n, 2 * self.layers, self.hidden, dtype=like.dtype, device=like.device)

    def forward(self, grad: torch.Tensor, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(update, new_state)`` for the flat gradient ``grad`` (n,) and ``state`` (n, 2 * layers, hidden)."""
        inp = preprocess_gradients(grad, self.p, self.preprocess)
        new = []
        for i, cell in enumerate(self.cells):
            h, c = cell(inp, (state[:, 2 * i], state[:, 2 * i + 1]))
            new += [h, c]
            inp = h
        return self.output(inp).squeeze(-1) * self.output_scale, torch.stack(new, 1)


class InnerLSTM:
    """The LSTM's update ``x <- x + m(grad)`` as an inner-loop optimizer (:func:`inner_loop` unrolls it).

    State: ``hidden.<name>`` per parameter, the ``(numel, 2 * layers, hidden)`` LSTM state of its
    coordinates. All coordinates of a step go through the network in one batch.
    """

    def __init__(self, net: CoordinateLSTM) -> None:
        if not isinstance(net, CoordinateLSTM):
            raise TypeError(f"net must be a CoordinateLSTM, got {type(net).__name__}")
        self.net = net

    def init_state(self, params: Mapping[str, torch.Tensor]) -> Params:
        return {f"hidden.{n}": self.net.zero_state(p.numel(), p) for n, p in params.items()}

    def step(self, params: Params, grads: Params, state: Params) -> Tuple[Params, Params]:
        names = list(grads)
        flat = torch.cat([grads[n].reshape(-1) for n in names])
        hidden = torch.cat([state[f"hidden.{n}"] for n in names])
        update, hidden = self.net(flat, hidden)
        out: Params = {}
        new_state: Params = {}
        start = 0
        for n in names:
            k = params[n].numel()
            out[n] = params[n] + update[start:start + k].view_as(params[n])
            new_state[f"hidden.{n}"] = hidden[start:start + k]
            start += k
        return out, new_state


class QuadraticOptimisee(nn.Module):
    """A batch of ``functions`` random quadratics ``f_i(x_i) = ||W_i x_i - y_i||^2`` (Sec. 3.1).

    Called on ``W`` (functions, dim, dim) it returns ``W_i x_i``; :func:`quadratic_loss` with ``y``
    gives the mean over the functions (the authors' code averages the batch).
    """

    def __init__(self, functions: int = 128, dim: int = 10) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(functions, dim))

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bj->bi", W, self.x)


def quadratic_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over the functions of ``||W x - y||^2``."""
    return ((pred - y) ** 2).sum(-1).mean()


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}
"""Hidden activations of the MLP optimisee: the paper trains on sigmoid and tests on ReLU (Sec. 3.2)."""


def mlp_optimisee(inputs: int = 64, hidden: int = 20, layers: int = 1, activation: str = "sigmoid",
                  classes: int = 10) -> nn.Module:
    """The MNIST optimisee of Sec. 3.2: ``layers`` hidden layers of ``hidden`` units (1 x 20 sigmoid in
    training; 40 units, 2 layers or ReLU in the paper's generalisation checks), on ``inputs`` pixels (784 for
    MNIST, 64 for 8x8 digits)."""
    act = ACTIVATIONS[check_choice("mlp_activation", activation, ACTIVATIONS)]
    mods: List[nn.Module] = [nn.Flatten()]
    width = inputs
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), act()]
        width = hidden
    return nn.Sequential(*mods, nn.Linear(width, classes))


class L2LMetaTrainer(pl.LightningModule):
    """Meta-trains a :class:`CoordinateLSTM` by unrolling optimisees (Andrychowicz et al. 2016, Sec. 2-3).

    Each training batch is one episode: a fresh optimisee (a batch of random quadratics, or the
    sigmoid MLP on digits with a fresh initialisation) is optimised by the LSTM for ``unroll``
    steps; every ``truncation`` steps the meta-loss ``sum_t f(x_t)`` over that truncation (the
    authors' code sums t = 0..truncation; f(x_0) carries no gradient) is backpropagated to the
    LSTM (truncated BPTT) and Adam takes one step. The optimisee and the LSTM state carry over
    between truncations, detached. Episode ``e`` draws its functions / minibatches from
    ``keyed_generator(seed, e)``, so a resumed run sees the episodes of an uninterrupted one;
    under DDP each rank gets its own episodes (Lightning's distributed sampler over the episode
    indices) and the meta-gradients are averaged over ranks before every Adam step.

    Args:
        task: ``"quadratic"`` (Sec. 3.1) or ``"mlp"`` (Sec. 3.2, on the data of ``mlp_data``).
        unroll: optimisee steps per episode (100, Sec. 3).
        truncation: steps per meta-update (20, Sec. 3).
        meta_lr: Adam step size on the LSTM (1e-3, Sec. 3).
        functions, dim: quadratics per episode and their dimension (128 and 10, Sec. 3.1).
        mlp_hidden, mlp_batch: MLP hidden units and minibatch size (20 and 128, Sec. 3.2).
        mlp_layers, mlp_activation: hidden layers and their activation (1, ``"sigmoid"``, Sec. 3.2; the
            paper's generalisation checks change them, or ``mlp_hidden``, for an LSTM trained on the default).
        hidden, layers, preprocess, p, output_scale: the :class:`CoordinateLSTM`.
        second_order: keep second derivatives (the paper drops them: False).
        episodes_per_epoch: episodes in one Lightning epoch (ours: 100).
        mlp_data: the MLP's data: ``"digits"`` (scikit-learn's 8x8 digits, standardised; bundled, the default here)
            or ``"mnist"`` (the paper's: MNIST's 60,000 training images read from ``data_dir``
            (:func:`~lit_automl.datamodules.read_mnist`), pixels in [0, 1] as the authors' code feeds them).
        data_dir: the folder of MNIST's IDX files (``mlp_data="mnist"``; fetch them with
            :func:`~lit_automl.datamodules.download_mnist`).
        seed: key of the episodes' random draws.
    """

    def __init__(self, task: str = "quadratic", unroll: int = 100, truncation: int = 20, meta_lr: float = 1e-3,
                 functions: int = 128, dim: int = 10, mlp_hidden: int = 20, mlp_batch: int = 128,
                 mlp_layers: int = 1, mlp_activation: str = "sigmoid", hidden: int = 20, layers: int = 2,
                 preprocess: str = "paper", p: float = 10.0, output_scale: float = 1.0, second_order: bool = False,
                 episodes_per_epoch: int = 100, mlp_data: str = "digits", data_dir: str = "data/mnist",
                 seed: int = 0) -> None:
        super().__init__()
        check_choice("task", task, TASKS)
        check_int("unroll", unroll, low=1, allowed="an int >= 1 (optimisee steps per episode)")
        check_int("truncation", truncation, low=1, high=unroll,
                  allowed=f"an int in [1, unroll={unroll}] (steps per meta-update)")
        if unroll % truncation:
            raise ValueError(f"unroll={unroll} must be a multiple of truncation={truncation}: every meta-update "
                             "backpropagates through the same number of steps")
        check_real("meta_lr", meta_lr, low=0, low_open=True)
        for name, value in (("functions", functions), ("dim", dim), ("mlp_hidden", mlp_hidden),
                            ("mlp_batch", mlp_batch), ("mlp_layers", mlp_layers),
                            ("episodes_per_epoch", episodes_per_epoch)):
            check_int(name, value, low=1)
        check_choice("mlp_activation", mlp_activation, ACTIVATIONS)
        check_choice("mlp_data", mlp_data, MLP_DATA)
        check_bool("second_order", second_order)
        check_int("seed", seed)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = CoordinateLSTM(hidden, layers, preprocess, p, output_scale)
        self._data: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    # ------------------------------------------------------------------ optimisees
    def _mlp_train_data(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The training images and labels the MLP optimisee's minibatches are drawn from (``mlp_data``)."""
        if self._data is None:
            if self.hparams.mlp_data == "mnist":
                from lit_automl.datamodules import read_mnist

                images, y = read_mnist(self.hparams.data_dir, train=True)
                x = images.to(torch.float32) / 255.0
            else:
                from lit_automl.datamodules import DigitsDataModule

                data = DigitsDataModule(seed=self.hparams.seed)
                data.setup("fit")
                x, y = data.train_dataset.tensors  # type: ignore[union-attr]
            self._data = (x, y)
        return self._data

    def setup(self, stage: str) -> None:
        """Read the MLP's data before the first episode, so missing MNIST files stop the run before it starts."""
        if self.hparams.task == "mlp":
            self._mlp_train_data()

    def optimisee(self, episode: int) -> Tuple[nn.Module, Params, Callable, List[Tuple[torch.Tensor, torch.Tensor]]]:
        """``(model, x_0, loss_fn, batches)`` of an episode: batches[t] is what step t's loss is taken on.

        Quadratics: ``W, y ~ N(0, 1)`` (the paper, Sec. 3.1; the authors' code draws U(0, 1)) and
        ``x_0 ~ N(0, 0.01^2)`` (the code), one batch for every step; the loss averages the functions as
        the code does, so each coordinate's gradient carries a 1 / functions factor. MLP: nn.Linear's
        default initialisation drawn from the episode's generator (ours; the code draws N(0, 0.01^2))
        and a fresh minibatch of ``mlp_batch`` training digits per step, drawn with replacement as the
        code does.
        """
        hp = self.hparams
        g = keyed_generator(hp.seed, episode)
        dtype = self.net.output.weight.dtype
        if hp.task == "quadratic":
            model = QuadraticOptimisee(hp.functions, hp.dim)
            W = torch.randn(hp.functions, hp.dim, hp.dim, generator=g, dtype=dtype)
            y = torch.randn(hp.functions, hp.dim, generator=g, dtype=dtype)
            x0 = 0.01 * torch.randn(hp.functions, hp.dim, generator=g, dtype=dtype)
            return model, {"x": x0}, quadratic_loss, [(W, y)]
        x, y = self._mlp_train_data()
        model = mlp_optimisee(inputs=x[0].numel(), hidden=hp.mlp_hidden, layers=hp.mlp_layers,
                              activation=hp.mlp_activation)
        params: Params = {}
        for name, layer in model.named_modules():
            if isinstance(layer, nn.Linear):  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                bound = 1.0 / math.sqrt(layer.in_features)
                for key, p in layer.named_parameters():
                    params[f"{name}.{key}"] = (torch.rand(p.shape, generator=g, dtype=dtype) * 2 - 1) * bound
        idx = torch.randint(len(y), (hp.unroll + 1, hp.mlp_batch), generator=g)
        return model, params, F.cross_entropy, [(x[i].to(dtype), y[i]) for i in idx]

    # ------------------------------------------------------------------ unrolling
    def unroll_truncation(self, model: nn.Module, params: Params, state: Optional[Params], loss_fn: Callable,
                          batches: Sequence[Tuple[torch.Tensor, torch.Tensor]], steps: int,
                          ) -> Tuple[torch.Tensor, Params, Params]:
        """``(meta_loss, params, state)``: ``steps`` LSTM steps from ``params``; the meta-loss is
        ``sum_{t=0}^{steps} f(x_t)`` (Sec. 2, w_t = 1; t = 0 and the final step as in the authors'
        code); step t's loss is on ``batches[t]``. Second derivatives are dropped unless ``second_order``."""
        second = self.hparams.second_order
        leaves = {n: p.detach().requires_grad_(second) for n, p in params.items()}
        result = inner_loop(model, leaves, {}, list(batches[:steps]), loss_fn, steps=steps,
                            optimizer=InnerLSTM(self.net), adapt=list(leaves), first_order=False,
                            state=state, detach_grads=not second)
        final = task_loss(model, result.params, {}, batches[steps % len(batches)], loss_fn)
        return torch.stack(result.losses).sum() + final, result.params, result.state

    def train_dataloader(self) -> DataLoader:
        """Episode indices ``epoch * episodes_per_epoch + i`` are assigned in :meth:`training_step`."""
        return DataLoader(TensorDataset(torch.arange(self.hparams.episodes_per_epoch)), batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.meta_lr)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One episode: ``unroll / truncation`` meta-updates of the LSTM (Sec. 2, truncated BPTT)."""
        hp = self.hparams
        episode = self.current_epoch * hp.episodes_per_epoch + int(batch[0][0])
        model, params, loss_fn, batches = self.optimisee(episode)
        opt = self.optimizers()
        state: Optional[Params] = None
        total = 0.0
        for k in range(hp.unroll // hp.truncation):
            window = batches[k * hp.truncation:] if len(batches) > 1 else batches
            meta_loss, params, state = self.unroll_truncation(model, params, state, loss_fn, window, hp.truncation)
            grads = torch.autograd.grad(meta_loss, list(self.net.parameters()))
            grads = all_reduce_mean([g.detach() for g in grads])
            if not all(torch.isfinite(g).all() for g in grads):
                raise FloatingPointError(f"{type(self).__name__}: the meta-gradient is not finite at episode "
                                         f"{episode}; lower output_scale or meta_lr")
            opt.zero_grad()
            for p, g in zip(self.net.parameters(), grads):
                p.grad = g.clone()
            opt.step()
            params = {n: p.detach() for n, p in params.items()}
            state = {n: s.detach() for n, s in state.items()}
            total += float(meta_loss.detach())
        final = float(task_loss(model, params, {}, batches[hp.unroll % len(batches)], loss_fn))
        self.log_dict({"train/meta_loss": total, "train/final_loss": final}, prog_bar=True, batch_size=1)

    @torch.no_grad()
    def evaluate(self, episode: int, steps: Optional[int] = None) -> List[float]:
        """Losses ``f(x_0) .. f(x_steps)`` of the LSTM optimising ``episode``'s optimisee (no meta-update)."""
        steps = self.hparams.unroll if steps is None else check_int("steps", steps, low=0)
        model, params, loss_fn, batches = self.optimisee(episode)
        res = inner_loop(model, params, {}, batches, loss_fn, steps=steps, optimizer=InnerLSTM(self.net),
                         adapt=list(params), first_order=True)
        final = task_loss(model, res.params, {}, batches[steps % len(batches)], loss_fn)  # f(x_T) on batch T
        return [float(v) for v in res.losses] + [float(final)]

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, type(self).__name__)


class LSTMOptimizer(torch.optim.Optimizer):
    """A trained :class:`CoordinateLSTM` as a ``torch.optim.Optimizer``: ``p <- p + m(grad p)`` (Sec. 2).

    State per parameter: ``hidden``, the LSTM state of its coordinates (zeros at the first step), so
    ``state_dict()`` / ``load_state_dict()`` save and restore it with a checkpoint. The network is
    not trained here and not part of the state: pass the same trained ``net`` when resuming.
    """

    def __init__(self, params: Iterable[Any], net: CoordinateLSTM) -> None:
        if not isinstance(net, CoordinateLSTM):
            raise TypeError(f"net must be a trained CoordinateLSTM (L2LMetaTrainer.net), got {type(net).__name__}")
        super().__init__(params, {})
        self.net = net

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        dtype = self.net.output.weight.dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "hidden" not in state:
                    state["hidden"] = self.net.zero_state(p.numel(), p.grad.to(dtype))
                update, state["hidden"] = self.net(p.grad.reshape(-1).to(dtype), state["hidden"])
                p.add_(update.view_as(p).to(p.dtype))
        return loss
