"""PyTorch reference of the seed study's two-tower off-policy learner (one seed at a time).

Written as the seed study trained: ``nn.Sequential`` towers, a ``DataLoader`` over a
``TensorDataset`` with ``shuffle=True``, ``torch.optim.Adam(weight_decay=...)``, one
``loss.backward()`` and ``optimizer.step()`` per minibatch, and the true test value of
the softmax policy after every epoch. Used only by ``benchmarks/speed.py``; PyTorch is an
optional extra (``pip install -e ".[reference]"``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


def tower(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), nn.ELU()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class TwoTowerPolicy(nn.Module):
    def __init__(self, context_dim: int, action_dim: int, hidden: tuple[int, ...], embedding: int):
        super().__init__()
        self.context_tower = tower(context_dim, hidden, embedding)
        self.action_tower = tower(action_dim, hidden, embedding)

    def forward(self, context: torch.Tensor, action_context: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, A]`` of the softmax policy."""
        scores = self.context_tower(context) @ self.action_tower(action_context).T
        return torch.log_softmax(scores, dim=-1)


def ips_loss(log_pi, action, reward, pscore):
    log_pi_a = log_pi.gather(1, action[:, None])[:, 0]
    weight = log_pi_a.detach().exp() / pscore
    return -(weight * reward * log_pi_a).mean()


def train_reference(
    data: dict[str, np.ndarray],
    test_q: np.ndarray,
    test_context: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 10,
    hidden: tuple[int, ...] = (100, 100, 100),
    embedding: int = 100,
    learning_rate: float = 0.005,
    weight_decay: float = 1e-6,
    seed: int = 0,
) -> dict:
    """Trains one IPS learner; returns per-epoch test values and seconds per epoch."""
    torch.manual_seed(seed)
    tensors = {k: torch.as_tensor(v) for k, v in data.items()}
    action_context = tensors.pop("action_context").float()
    dataset = torch.utils.data.TensorDataset(
        tensors["context"].float(),
        tensors["action"].long(),
        tensors["reward"].float(),
        tensors["pscore"].float(),
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = TwoTowerPolicy(tensors["context"].shape[1], action_context.shape[1], hidden, embedding)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    test_context_t, test_q_t = torch.as_tensor(test_context).float(), torch.as_tensor(test_q).float()
    values, seconds = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for context, action, reward, pscore in loader:
            loss = ips_loss(model(context, action_context), action, reward, pscore)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            pi = model(test_context_t, action_context).exp()
            values.append(float((pi * test_q_t).sum(1).mean()))
        seconds.append(time.perf_counter() - start)
    return {"test_value": values, "seconds_per_epoch": seconds}
