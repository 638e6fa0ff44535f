"""Two-tower model: a context tower and an action tower whose inner product is the score (SPEC 2).

Flax is used only here, to declare the layers and to write parameters as bytes; everything
outside this module sees the parameters as a plain pytree and calls pure functions:
:class:`TwoTower` (the policy's towers), :class:`PairMLP` (the reward model's MLP on
``concat(x, e)``) and :func:`params_to_bytes` / :func:`params_from_bytes` (msgpack).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import serialization

from towerjax.checks import InputError, check_positive_int, check_sizes
from towerjax.features import Features, FeatureSpec, example_input

__all__ = [
    "ACTIVATIONS",
    "EMBEDDING_MODES",
    "MLP",
    "PairMLP",
    "Tower",
    "TwoTower",
    "embed_inputs",
    "params_from_bytes",
    "params_to_bytes",
]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def check_activation(name: str, argument: str = "activation") -> None:
    """Raises :class:`~towerjax.checks.InputError` naming ``argument`` when ``name`` is not a known activation."""
    if name not in ACTIVATIONS:
        raise InputError(argument, f"expected one of {sorted(ACTIVATIONS)}, got {name!r}")


@jax.custom_vjp
def affine(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``[B, I] @ [I, O] + [O]``, with a backward pass that keeps XLA's CPU matmuls fast.

    The kernel's gradient ``x^T @ dy`` contracts over the (small) batch axis; written as a
    dot over ``x``'s leading axis, XLA's CPU backend sends it to a generic loop, while a
    materialised ``x^T`` (held by ``optimization_barrier``) takes the fast matmul path.
    Same numbers, about a third less time per weight gradient at batch 10.
    """
    return x @ kernel + bias


def _affine_fwd(x, kernel, bias):
    return x @ kernel + bias, (x, kernel)


def _affine_bwd(residuals, dy):
    x, kernel = residuals
    x_t = jax.lax.optimization_barrier(jnp.swapaxes(x, -1, -2))
    return dy @ kernel.T, x_t @ dy, jnp.sum(dy, axis=0)


affine.defvjp(_affine_fwd, _affine_bwd)


class Dense(nn.Module):
    """``nn.Dense`` (same parameter names and initialisers) via :func:`affine`; leading axes
    of ``x [..., I]`` are flattened into one batch axis and restored."""

    features: int
    scale: float = 1.0  # the kernel's variance is scale / fan_in (1.0: lecun-normal)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # A [0, O] kernel (no input columns) has no fan-in to scale by.
        if x.shape[-1]:
            init = nn.initializers.variance_scaling(self.scale, "fan_in", "truncated_normal")
        else:
            init = nn.initializers.zeros_init()
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if x.shape[-1] == 0:  # no input columns: the bias alone
            return jnp.broadcast_to(bias, (*x.shape[:-1], self.features))
        out = affine(x.reshape(-1, x.shape[-1]), kernel, bias)
        return out.reshape(*x.shape[:-1], self.features)


class MLP(nn.Module):
    """Hidden layers with an activation, then a final linear layer to ``features``."""

    hidden_sizes: Sequence[int]
    features: int
    activation: str = "elu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(Dense(size)(x))
        return Dense(self.features)(x)


def embed_inputs(x: jax.Array | Features, prefix: str = "") -> jax.Array:
    """``[..., d]`` unchanged, or :class:`~towerjax.features.Features` as
    ``concat(dense, E_1[ids_1], ..., E_k[ids_k])`` ``[..., d + sum dim_j]``.

    Call inside a compact flax method: each table is an ``nn.Embed`` of the calling
    module named ``f"{prefix}embed_{name}"``.
    """
    if not isinstance(x, Features):
        return x
    parts = [x.dense]
    for table in x.tables:
        embed = nn.Embed(table.size, table.dim, name=f"{prefix}embed_{table.name}")
        parts.append(embed(x.ids[table.name]))
    return jnp.concatenate(parts, axis=-1)


EMBEDDING_MODES = ("concat", "sum")


class Tower(nn.Module):
    """One tower: embedded ids (if any) and the dense columns, then the MLP.

    For a plain ``[..., d]`` input the parameters are exactly :class:`MLP`'s (``Dense_0``,
    ...); :class:`~towerjax.features.Features` adds one ``embed_<name>`` table per feature.
    ``embedding_mode="concat"`` concatenates each table's ``dim``-wide rows with the dense
    columns before the first layer; ``"sum"`` gives every table the first layer's width
    (``Table.dim`` unused) and adds its rows to the first layer's output, ``W x_dense + b +
    sum_t E_t[id_t]``: exactly a one-hot input times the first layer's kernel, by lookup.
    """

    hidden_sizes: Sequence[int]
    features: int
    activation: str = "elu"
    embedding_mode: str = "concat"

    @nn.compact
    def __call__(self, x: jax.Array | Features) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        sizes = (*self.hidden_sizes, self.features)
        if self.embedding_mode == "sum" and isinstance(x, Features):
            # Initialised as the one-hot input's kernel would be: lecun-normal over the fan-in
            # of the dense columns plus every table's one-hot width.
            fan_in = x.dense.shape[-1] + sum(t.size for t in x.tables)
            h = Dense(sizes[0], scale=x.dense.shape[-1] / fan_in)(x.dense)
            for table in x.tables:
                init = nn.initializers.variance_scaling(table.size / fan_in, "fan_in", "truncated_normal")
                embed = nn.Embed(table.size, sizes[0], embedding_init=init, name=f"embed_{table.name}")
                h = h + embed(x.ids[table.name])
        else:
            h = Dense(sizes[0])(embed_inputs(x))
        for size in sizes[1:]:
            h = Dense(size)(act(h))
        return h


@dataclasses.dataclass(frozen=True)
class TwoTower:
    """The two-tower scorer ``s(x, a) = <f(x), g(e_a)>``.

    Both towers are MLPs with the same ``hidden_sizes``, ``activation`` and output
    size ``embedding_size`` (``D``). Defaults are the seed study's: ``(100, 100, 100)``,
    ``D = 100``, elu. Parameters are ``{"context": ..., "action": ...}``. A tower's input
    is a ``[n, d]`` matrix or :class:`~towerjax.features.Features` (dense columns plus
    integer ids, each looked up in the tower's own embedding table ``embed_<name>``;
    ``embedding_mode`` as in :class:`Tower`).
    """

    hidden_sizes: tuple[int, ...] = (100, 100, 100)
    embedding_size: int = 100
    activation: str = "elu"
    embedding_mode: str = "concat"

    def __post_init__(self) -> None:
        check_activation(self.activation)
        if self.embedding_mode not in EMBEDDING_MODES:
            raise InputError(
                "embedding_mode", f"expected one of {EMBEDDING_MODES}, got {self.embedding_mode!r}"
            )
        object.__setattr__(self, "embedding_size", check_positive_int("embedding_size", self.embedding_size))
        object.__setattr__(self, "hidden_sizes", check_sizes("hidden_sizes", self.hidden_sizes))

    @property
    def _tower(self) -> Tower:
        return Tower(self.hidden_sizes, self.embedding_size, self.activation, self.embedding_mode)

    def init(self, key: jax.Array, context_dim: int | FeatureSpec, action_dim: int | FeatureSpec) -> dict:
        """Initial parameters for contexts and items of ``d`` dense features (an int) or of a
        :class:`~towerjax.features.FeatureSpec` (:func:`towerjax.features.feature_spec` of the data)."""
        key_x, key_a = jax.random.split(key)
        return {
            "context": self._tower.init(key_x, example_input(context_dim))["params"],
            "action": self._tower.init(key_a, example_input(action_dim))["params"],
        }

    def embed_context(self, params: dict, context: jax.Array | Features) -> jax.Array:
        """``[B, d_x] -> [B, D]``: the context tower ``f(x)``."""
        return self._tower.apply({"params": params["context"]}, context)

    def embed_actions(self, params: dict, action_context: jax.Array | Features) -> jax.Array:
        """``[A, d_a] -> [A, D]``: the action tower ``g(e_a)``, run once over all items."""
        return self._tower.apply({"params": params["action"]}, action_context)

    def scores(self, params: dict, context, action_context) -> jax.Array:
        """``[B, A]`` scores ``f(X) @ g(E).T``; the action tower runs once, not per pair."""
        return self.embed_context(params, context) @ self.embed_actions(params, action_context).T


class _ConcatMLP(nn.Module):
    """The MLP on ``concat(x, e)``, with the first layer split as ``W_x x + W_e e``.

    ``context [..., d_x]`` and ``action_context [..., d_a]`` broadcast against each other:
    aligned rows ``[n, d_x], [n, d_a]`` give ``[n]``; ``[n, 1, d_x], [1, A, d_a]`` give
    ``[n, A]`` without materialising the ``[n, A, d_x + d_a]`` concatenation.
    :class:`~towerjax.features.Features` inputs are embedded first (tables
    ``context_embed_<name>`` and ``action_embed_<name>``, the model's own).
    """

    hidden_sizes: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, context: jax.Array | Features, action_context: jax.Array | Features) -> jax.Array:
        first = self.hidden_sizes[0]
        h = nn.Dense(first, name="context_in")(embed_inputs(context, "context_"))
        h = h + nn.Dense(first, use_bias=False, name="action_in")(embed_inputs(action_context, "action_"))
        h = ACTIVATIONS[self.activation](h)
        return MLP(self.hidden_sizes[1:], 1, self.activation, name="head")(h)[..., 0]


@dataclasses.dataclass(frozen=True)
class PairMLP:
    """``m(x, e)``: one output of an MLP on ``concat(x, e)``, as pure functions of a plain pytree.

    The first layer is split as ``W [x; e] = W_x x + W_e e`` (parameters ``context_in``,
    ``action_in`` without bias, then ``head``: the other hidden layers and a linear output),
    so inputs broadcast: aligned rows ``[n, d_x], [n, d_a]`` give ``[n]``;
    ``[n, 1, d_x], [1, A, d_a]`` give ``[n, A]`` without the ``[n, A, d_x + d_a]``
    concatenation. :class:`~towerjax.features.Features` inputs are embedded first (tables
    ``context_embed_<name>`` and ``action_embed_<name>``). The reward model's ``q_hat``
    (:class:`towerjax.reward_model.RewardModel`) is this MLP.
    """

    hidden_sizes: tuple[int, ...]
    activation: str = "elu"

    @property
    def _module(self) -> _ConcatMLP:
        return _ConcatMLP(self.hidden_sizes, self.activation)

    def init(self, key: jax.Array, context_dim: int | FeatureSpec, action_dim: int | FeatureSpec) -> dict:
        """Initial parameters for inputs of ``d`` dense features (an int) or of a
        :class:`~towerjax.features.FeatureSpec`."""
        return self._module.init(key, example_input(context_dim), example_input(action_dim))["params"]

    def apply(
        self, params: dict, context: jax.Array | Features, action_context: jax.Array | Features
    ) -> jax.Array:
        """``[..., d_x], [..., d_a] -> [...]``: the output ``m(x, e)`` (broadcasting the leading axes)."""
        return self._module.apply({"params": params}, context, action_context)


def params_to_bytes(params: Any) -> bytes:
    """A parameter pytree (numpy or jax arrays) as msgpack bytes (``flax.serialization.to_bytes``).

    The format of a saved model's ``params.msgpack`` and an export's ``context_tower.msgpack``;
    ``flax.serialization.msgpack_restore`` reads it back as nested dicts of numpy arrays.
    """
    return serialization.to_bytes(params)


def params_from_bytes(template: Any, data: bytes) -> Any:
    """Parameters restored from :func:`params_to_bytes`' ``data`` into ``template``'s structure.

    Args:
      template: a pytree of the expected structure (arrays or ``jax.ShapeDtypeStruct``, e.g.
        ``jax.eval_shape`` of an init).
      data: the msgpack bytes.

    Raises:
      Whatever msgpack and flax raise for bytes that are not such parameters (many types).
    """
    return serialization.from_bytes(template, data)
