"""Autoregressive LSTM controller: the policy over a space's declared decisions.

One controller is shared by the RL-based searches (NAS-RL, NASNet, ENAS and
neural optimiser search); its REINFORCE / PPO updates live in
:mod:`lit_automl.nas.policy_gradient`:

* Zoph & Le, "Neural Architecture Search with Reinforcement Learning",
  ICLR 2017 -- Sec. 3.1 (the controller RNN emits one token per decision, each
  token's embedding is the next step's input), Sec. 3.2 (REINFORCE with an
  exponential-moving-average baseline, ``m`` architectures per update),
  Sec. 3.3 (skip connections through set-selection attention over anchor
  points), Sec. 4.1 (2 layers x 35 hidden units, Adam lr 6e-4, uniform
  initialisation in [-0.08, 0.08]).
* Zoph, Vasudevan, Shlens & Le, "Learning Transferable Architectures for
  Scalable Image Recognition", CVPR 2018 -- the controller is trained with
  PPO (Schulman et al., "Proximal Policy Optimization Algorithms", 2017).
* Pham et al., "Efficient Neural Architecture Search via Parameter Sharing",
  ICML 2018 -- logit temperature and ``tanh`` constant on the controller
  logits (Sec. 3 / appendix training details).
* Williams, "Simple statistical gradient-following algorithms for
  connectionist reinforcement learning", Machine Learning 1992 (REINFORCE).

Action format
-------------
``actions`` is a list with one entry per sequence; each entry is a list with
one element per declared :class:`Decision`, in declaration order:

* a categorical decision contributes an ``int`` in ``[0, num_choices)``;
* an anchor decision contributes a list of 0/1 ints, one per *earlier* anchor
  decision (Zoph & Le Sec. 3.3: the anchor point of layer ``i`` has ``i - 1``
  sigmoids, one per earlier layer ``j``).  The first anchor decision therefore
  always contributes ``[]``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_automl._checks import check_int, check_real
from lit_automl.spaces.decisions import ANCHOR, CATEGORICAL, ActionSeq, Decision
from lit_automl.spaces.decisions import validate_decisions as _validate_decisions

__all__ = ["Controller", "Decision"]


def _tanh_constants(value: Union[None, float, Sequence[Optional[float]]], n: int) -> List[Optional[float]]:
    """One tanh constant (or ``None``) per decision from a single value or a per-decision list."""
    if value is None or isinstance(value, (int, float)):
        return [check_real("tanh_constant", value, low=0, low_open=True, allow_none=True)] * n
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != n:
        raise ValueError(f"tanh_constant must be a positive number, None, or a list of {n} such values (one per "
                         f"decision), got {value!r}")
    return [check_real(f"tanh_constant[{i}]", v, low=0, low_open=True, allow_none=True) for i, v in enumerate(value)]


def _on_generator_device(probs: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """``probs`` where ``generator`` draws (a keyed CPU generator samples for a controller on a GPU alike)."""
    return probs if generator is None else probs.to(generator.device)


# --------------------------------------------------------------------------- #
# Controller
# --------------------------------------------------------------------------- #
class Controller(nn.Module):
    """Autoregressive LSTM controller (Zoph & Le 2017, Sec. 3.1 and 3.3).

    Args:
        decisions: the declared decision sequence.
        hidden_size: LSTM hidden units per layer.  Default 35, as in Zoph & Le
            Sec. 4.1 ("two-layer LSTM with 35 hidden units on each layer").
        num_layers: LSTM layers.  Default 2 (Zoph & Le Sec. 4.1).
        temperature: if set, logits are divided by it (Pham et al. 2018).
        tanh_constant: if set, logits become ``C * tanh(logits)`` after the
            temperature (Pham et al. 2018). One number for every decision, or one per
            decision (``None`` entries: no tanh), e.g. ENAS's op decisions use the
            constant divided by its ``op_tanh_reduce``.
        init_range: parameters are initialised uniformly in
            ``[-init_range, init_range]``; default 0.08 (Zoph & Le Sec. 4.1).

    The token embedding size equals ``hidden_size``.  After an anchor decision
    the next input is ``(e_skip + sum_j s_j h_j) / (1 + sum_j s_j)`` where
    ``e_skip`` is a learned embedding and ``s_j`` the sampled bits (our choice,
    in the spirit of ENAS; Zoph & Le do not specify it).
    """

    def __init__(
        self,
        decisions: Sequence[Decision],
        hidden_size: int = 35,
        num_layers: int = 2,
        temperature: Optional[float] = None,
        tanh_constant: Union[None, float, Sequence[Optional[float]]] = None,
        init_range: float = 0.08,
    ) -> None:
        super().__init__()
        self.decisions: List[Decision] = _validate_decisions(decisions)
        self.hidden_size = check_int("hidden_size", hidden_size, low=1)
        self.num_layers = check_int("num_layers", num_layers, low=1)
        self.temperature = check_real("temperature", temperature, low=0, low_open=True, allow_none=True)
        self.tanh_constants = _tanh_constants(tanh_constant, len(self.decisions))
        """The tanh constant of each decision (``None``: no tanh)."""
        init_range = check_real("init_range", init_range, low=0, low_open=True)

        H = self.hidden_size
        self.cells = nn.ModuleList([nn.LSTMCell(H, H) for _ in range(self.num_layers)])
        self.start = nn.Parameter(torch.empty(1, H))  # first step's input [1, H]
        self.heads = nn.ModuleList()
        self.embeddings = nn.ModuleList()
        self._cat_index: Dict[int, int] = {}
        for i, d in enumerate(self.decisions):
            if d.kind == CATEGORICAL:
                self._cat_index[i] = len(self.heads)
                self.heads.append(nn.Linear(H, int(d.num_choices)))
                self.embeddings.append(nn.Embedding(int(d.num_choices), H))
        self.has_anchors = any(d.kind == ANCHOR for d in self.decisions)
        if self.has_anchors:
            # Zoph & Le Sec. 3.3: sigmoid(v^T tanh(W_prev h_j + W_curr h_i)).
            self.w_prev = nn.Linear(H, H, bias=False)
            self.w_curr = nn.Linear(H, H, bias=False)
            self.v = nn.Linear(H, 1, bias=False)
            self.skip_embedding = nn.Parameter(torch.empty(1, H))
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    # ------------------------------------------------------------------ #
    def _shape_logits(self, logits: Tensor, decision: int) -> Tensor:
        """Temperature then the decision's tanh constant (Pham et al. 2018)."""
        if self.temperature is not None:
            logits = logits / self.temperature
        constant = self.tanh_constants[decision]
        if constant is not None:
            logits = constant * torch.tanh(logits)
        return logits

    def _actions_to_tensors(self, actions: Sequence[ActionSeq]) -> List[Tensor]:
        """Per-decision tensors: LongTensor [n] or FloatTensor [n, k_anchor]."""
        if len(actions) == 0:
            raise ValueError("actions must contain at least one sequence, got []")
        D = len(actions[0])
        if not 1 <= D <= len(self.decisions):
            raise ValueError(
                f"an action sequence must have 1..{len(self.decisions)} entries (a prefix of the decisions), "
                f"got {D}: {actions[0]!r}"
            )
        for a in actions:
            if len(a) != D:
                raise ValueError(f"all action sequences must have the same length {D}, got {len(a)}: {a!r}")
        out: List[Tensor] = []
        n_anchor = 0
        device = self.start.device
        for i, d in enumerate(self.decisions[:D]):
            col = [a[i] for a in actions]
            if d.kind == CATEGORICAL:
                t = torch.as_tensor(col, dtype=torch.long, device=device)
                if t.dim() != 1 or bool((t < 0).any()) or bool((t >= d.num_choices).any()):
                    raise ValueError(
                        f"decision {d.name!r}: actions must be ints in [0, {d.num_choices}), got {col!r}"
                    )
            else:
                if any(len(c) != n_anchor for c in col):
                    raise ValueError(
                        f"decision {d.name!r}: anchor actions must be 0/1 lists of length {n_anchor}, got {col!r}"
                    )
                t = torch.as_tensor(col, dtype=torch.float32, device=device).reshape(len(actions), n_anchor)
                if bool(((t != 0) & (t != 1)).any()):
                    raise ValueError(f"decision {d.name!r}: anchor actions must be 0/1, got {col!r}")
                n_anchor += 1
            out.append(t)
        return out

    def _tensors_to_actions(self, tensors: List[Tensor], n: int) -> List[ActionSeq]:
        cols = [t.tolist() for t in tensors]
        decisions = self.decisions[: len(cols)]
        return [
            [int(c[b]) if d.kind == CATEGORICAL else [int(x) for x in c[b]] for d, c in zip(decisions, cols)]
            for b in range(n)
        ]

    def _rollout(
        self,
        n: int,
        given: Optional[List[Tensor]] = None,
        generator: Optional[torch.Generator] = None,
        length: Optional[int] = None,
    ) -> Tuple[List[Tensor], Tensor, Tensor, List[Tensor]]:
        """Run the controller for ``n`` sequences over the first ``length`` decisions, sampling or teacher forcing.

        Returns (per-decision action tensors, log_prob [n], entropy [n],
        per-decision shaped logits: [n, num_choices] or [n, k_anchor]).
        """
        H = self.hidden_size
        dev = self.start.device
        h = [torch.zeros(n, H, device=dev) for _ in range(self.num_layers)]
        c = [torch.zeros(n, H, device=dev) for _ in range(self.num_layers)]
        x = self.start.expand(n, H)  # [n, H]
        anchors: List[Tensor] = []  # each [n, H]
        anchor_keys: List[Tensor] = []  # W_prev h_j, each [n, H]
        log_prob = torch.zeros(n, device=dev)
        entropy = torch.zeros(n, device=dev)
        taken: List[Tensor] = []
        all_logits: List[Tensor] = []
        length = len(given) if given is not None else (len(self.decisions) if length is None else length)
        for i, d in enumerate(self.decisions[:length]):
            for layer, cell in enumerate(self.cells):
                h[layer], c[layer] = cell(x, (h[layer], c[layer]))
                x = h[layer]
            out = h[-1]  # [n, H]
            if d.kind == CATEGORICAL:
                k = self._cat_index[i]
                logits = self._shape_logits(self.heads[k](out), i)  # [n, C]
                logp_all = F.log_softmax(logits, dim=-1)  # [n, C]
                if given is None:
                    probs = _on_generator_device(logp_all.detach().exp(), generator)
                    a = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(dev)  # [n]
                else:
                    a = given[i]
                log_prob = log_prob + logp_all.gather(1, a.unsqueeze(1)).squeeze(1)
                entropy = entropy - (logp_all.exp() * logp_all).sum(-1)
                x = self.embeddings[k](a)  # [n, H]
            else:
                m = len(anchors)
                if m == 0:
                    logits = out.new_zeros(n, 0)
                    s = out.new_zeros(n, 0)
                    x = self.skip_embedding.expand(n, H)
                else:
                    keys = torch.stack(anchor_keys, dim=1)  # [n, m, H]
                    query = self.w_curr(out).unsqueeze(1)  # [n, 1, H]
                    logits = self._shape_logits(self.v(torch.tanh(keys + query)).squeeze(-1), i)  # [n, m]
                    if given is None:
                        p_on = _on_generator_device(torch.sigmoid(logits.detach()), generator)
                        s = torch.bernoulli(p_on, generator=generator).to(dev)  # [n, m]
                    else:
                        s = given[i]
                    lp_on = F.logsigmoid(logits)
                    lp_off = F.logsigmoid(-logits)
                    log_prob = log_prob + (s * lp_on + (1 - s) * lp_off).sum(-1)
                    p_on = torch.sigmoid(logits)
                    entropy = entropy - (p_on * lp_on + (1 - p_on) * lp_off).sum(-1)
                    prev = torch.stack(anchors, dim=1)  # [n, m, H]
                    x = (self.skip_embedding + (s.unsqueeze(-1) * prev).sum(1)) / (1 + s.sum(1, keepdim=True))
                a = s
                anchors.append(out)
                anchor_keys.append(self.w_prev(out))
            taken.append(a)
            all_logits.append(logits)
        return taken, log_prob, entropy, all_logits

    # ------------------------------------------------------------------ #
    def sample(
        self, n: int = 1, generator: Optional[torch.Generator] = None, length: Optional[int] = None
    ) -> Tuple[List[ActionSeq], Tensor, Tensor]:
        """Sample ``n`` sequences.  Returns (actions, log_prob [n], entropy [n]).

        ``length`` samples only the first ``length`` decisions (a growing search space, e.g.
        NAS-RL's schedule of increasing depth, Zoph & Le Sec. 4.1); ``None`` samples all.
        ``log_prob`` and ``entropy`` keep the autograd graph.
        """
        n = check_int("n", n, low=1)
        length = check_int("length", length, low=1, high=len(self.decisions), allow_none=True,
                           allowed=f"in 1..{len(self.decisions)} or None", hint="the declared decisions")
        taken, log_prob, entropy, _ = self._rollout(n, None, generator, length)
        return self._tensors_to_actions(taken, n), log_prob, entropy

    def log_prob(self, actions: Sequence[ActionSeq]) -> Tuple[Tensor, Tensor]:
        """Teacher-forced re-evaluation: (log_prob [n], entropy [n]), differentiable.

        The sequences may be a prefix of the declared decisions (all of the same length).
        """
        given = self._actions_to_tensors(actions)
        _, log_prob, entropy, _ = self._rollout(len(actions), given)
        return log_prob, entropy

    def step_logits(self, actions: Sequence[ActionSeq]) -> List[Tensor]:
        """Per-decision logits (after temperature / tanh) under teacher forcing.

        Categorical: [n, num_choices] softmax logits; anchor: [n, k] sigmoid logits.
        """
        given = self._actions_to_tensors(actions)
        return self._rollout(len(actions), given)[3]

    def forward(self, actions: Sequence[ActionSeq]) -> Tuple[Tensor, Tensor]:
        return self.log_prob(actions)
