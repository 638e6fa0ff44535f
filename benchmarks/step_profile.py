"""Where one update step's time goes (issue 24, item 5): forward, backward, optimiser.

Two configurations, each as training runs it (``lax.scan`` over pre-drawn minibatches, one
compiled call per block of steps, buffers donated):

``embeddings``
    The library's defaults on the embeddings benchmark's shapes (benchmarks/embeddings.py):
    IPS with its entropy bonus, towers (64,), D = 32, Adam 1e-3, batch 128, contexts with a
    100,000-row ``user_id`` table (Zipf-like activity), ``country`` (20) and ``device`` (4)
    tables and 3 dense columns; 10,000 items with an ``item_id`` table, ``genre`` (30) and
    2 dense columns; full softmax, and ``--sampled`` items with a sampled softmax.
``seed``
    ``TrainConfig.seed_study()`` (IPS, batch 10, towers (100, 100, 100), D = 100, 10 items,
    50 dense features), one seed and ``--seeds`` seeds ``vmap``ped (what benchmarks/speed.py
    times against PyTorch).

For each case and each optimiser variant the script times, per step (medians of
``--rounds`` interleaved rounds):

- ``forward``: the objective's loss alone;
- ``forward_backward``: ``jax.value_and_grad`` of it (each gradient summed, so that none is
  pruned: one extra read of each);
- ``optimizer``: ``optimizer.update`` + ``optax.apply_updates`` on a fixed gradient;
- ``step``: :func:`towerjax.training.make_update_step`, the whole update.

``step - forward_backward`` is what the optimiser adds inside the step (XLA may overlap or fuse
some of it). Optimiser variants: ``dense`` (:func:`towerjax.training.make_optimizer` with every
table dense), ``sparse`` (``TrainConfig.sparse_embeddings=True`` where the library has it) and
``flatten`` (``optax.flatten`` of the dense optimiser: one flat vector for the moments). Each
record also counts the compiled step's HLO instructions (``fusion``, ``dot``, ``scatter``,
``gather``), a proxy for the per-op dispatch cost on the CPU backend.

One JSON object per line on stdout, progress on stderr. Run::

    python benchmarks/step_profile.py                     # both cases, about 3 min
    python benchmarks/step_profile.py --cases seed --seeds 16

A benchmark, not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import emit, environment, log, logged_batch, median, sig, write_records

from towerjax.data import LoggedData
from towerjax.features import Features, Table, feature_spec
from towerjax.large_softmax import item_proposal, uniform_log_q
from towerjax.training import TrainConfig, make_optimizer, make_update_step, objective_loss


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="embeddings,seed", help="comma-separated: embeddings, seed")
    parser.add_argument("--seeds", type=int, default=16, help="vmapped seeds of the seed case")
    parser.add_argument(
        "--sampled", type=int, default=1024, help="sampled-softmax items of the embeddings case"
    )
    parser.add_argument("--steps", type=int, default=50, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--json", default=None, help="also write all records here")
    return parser.parse_args(argv)


def embeddings_data(rng: np.random.Generator, n: int = 20_000) -> LoggedData:
    """Random logs with the embeddings benchmark's tables (shapes, not its planted structure)."""
    users, items = 100_000, 10_000
    user = np.minimum(rng.zipf(1.3, n) - 1, users - 1)
    context = Features(
        dense=jnp.asarray(rng.standard_normal((n, 3)), jnp.float32),
        ids={
            "user_id": jnp.asarray(user, jnp.int32),
            "country": jnp.asarray(rng.integers(0, 20, n), jnp.int32),
            "device": jnp.asarray(rng.integers(0, 4, n), jnp.int32),
        },
        tables=(Table("user_id", users, 32), Table("country", 20, 13), Table("device", 4, 9)),
    )
    item_features = Features(
        dense=jnp.asarray(rng.standard_normal((items, 2)), jnp.float32),
        ids={
            "item_id": jnp.arange(items, dtype=jnp.int32),
            "genre": jnp.asarray(rng.integers(0, 30, items), jnp.int32),
        },
        tables=(Table("item_id", items, 32), Table("genre", 30, 14)),
    )
    return LoggedData(
        context=context,
        action_context=item_features,
        action=jnp.asarray(rng.integers(0, items, n), jnp.int32),
        reward=jnp.asarray(rng.random(n) < 0.06, jnp.float32),
        pscore=jnp.asarray(rng.uniform(1e-4, 1e-2, n), jnp.float32),
    )


def seed_data(rng: np.random.Generator, n: int = 15_000) -> LoggedData:
    """Random logs of the seed study's shapes: 50 dense features, 10 items."""
    return LoggedData(
        context=jnp.asarray(rng.random((n, 50)), jnp.float32),
        action_context=jnp.asarray(rng.random((10, 50)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 10, n), jnp.int32),
        reward=jnp.asarray(rng.random(n) < 0.3, jnp.float32),
        pscore=jnp.full((n,), 0.1, jnp.float32),
    )


def _optimizer(config: TrainConfig, variant: str) -> optax.GradientTransformation:
    if variant == "flatten":
        return optax.flatten(make_optimizer(config))
    return make_optimizer(config)


def _programs(config: TrainConfig, variant: str, data: LoggedData, proposal, seeds: int | None):
    """Jitted ``(state, rows, key) -> state`` blocks of each component; ``seeds`` vmaps them."""
    optimizer = _optimizer(config, variant)
    if variant == "flatten":

        def update_step(params, opt_state, batch, key):
            loss, grads = jax.value_and_grad(objective_loss, argnums=1)(config, params, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    else:
        update_step = make_update_step(config)

    def forward(state, rows, keys):
        params, _ = state

        def body(total, inputs):
            index, key = inputs
            return total + objective_loss(config, params, logged_batch(data, index, proposal), key), None

        total, _ = jax.lax.scan(body, jnp.zeros(()), (rows, keys))
        return total

    def forward_backward(state, rows, keys):
        params, _ = state

        def body(total, inputs):
            index, key = inputs
            loss, grads = jax.value_and_grad(objective_loss, argnums=1)(
                config, params, logged_batch(data, index, proposal), key
            )
            return total + loss + sum(jnp.sum(g) for g in jax.tree.leaves(grads)), None

        total, _ = jax.lax.scan(body, jnp.zeros(()), (rows, keys))
        return total

    def optimizer_only(state, rows, keys):
        params, opt_state = state
        grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

        def body(carry, _):
            params, opt_state = carry
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(body, (params, opt_state), None, length=rows.shape[0])
        return params, opt_state

    def step(state, rows, keys):
        def body(carry, inputs):
            index, key = inputs
            params, opt_state, metrics = update_step(*carry, logged_batch(data, index, proposal), key)
            return (params, opt_state), metrics["loss"]

        return jax.lax.scan(body, state, (rows, keys))[0]

    programs = {"forward": forward, "forward_backward": forward_backward, "optimizer": optimizer_only}
    programs["step"] = step
    if seeds is not None:
        programs = {name: jax.vmap(fn, in_axes=(0, 0, 0)) for name, fn in programs.items()}
    return optimizer, programs


def _hlo_counts(compiled) -> dict[str, int]:
    text = compiled.as_text()
    return {op: len(re.findall(rf"= \S+ {op}\(", text)) for op in ("fusion", "dot", "scatter", "gather")}


def _cases(args) -> list[tuple[str, TrainConfig, LoggedData, object, int | None]]:
    rng = np.random.default_rng(0)
    out = []
    names = args.cases.split(",")
    if "embeddings" in names:
        data = embeddings_data(rng)
        full = TrainConfig(objective="ips", batch_size=128)
        sampled = dataclasses.replace(full, sampled_softmax=args.sampled)
        proposal = item_proposal(uniform_log_q(data.n_actions))
        out.append(("embeddings, full softmax, batch 128", full, data, None, None))
        out.append(
            (f"embeddings, sampled softmax M={args.sampled}, batch 128", sampled, data, proposal, None)
        )
    if "seed" in names:
        data = seed_data(rng)
        config = TrainConfig.seed_study()
        out.append(("seed preset, 1 seed", config, data, None, None))
        if args.seeds > 1:
            out.append((f"seed preset, {args.seeds} seeds vmapped", config, data, None, args.seeds))
    return out


def _variants(config: TrainConfig) -> list[str]:
    variants = ["dense", "flatten"]
    if any(f.name == "sparse_embeddings" for f in dataclasses.fields(TrainConfig)):
        variants.insert(1, "sparse")
    return variants


def main(argv=None) -> int:
    args = _parse(argv)
    records: list[dict] = []
    emit({"kind": "environment", **environment(jax)}, records)
    rng = np.random.default_rng(1)
    timed = []
    for label, config, data, proposal, seeds in _cases(args):
        for variant in _variants(config):
            has_tables = isinstance(data.context, Features)
            if variant == "sparse" and not has_tables:
                continue
            if "sparse_embeddings" in {f.name for f in dataclasses.fields(TrainConfig)}:
                config = dataclasses.replace(config, sparse_embeddings=variant == "sparse")
            optimizer, programs = _programs(config, variant, data, proposal, seeds)
            key = jax.random.key(0)
            params = config.model.init(key, feature_spec(data.context), feature_spec(data.action_context))
            state = (params, optimizer.init(params))
            shape = (args.steps, config.batch_size)
            rows = jnp.asarray(rng.integers(0, data.n_rounds, shape), jnp.int32)
            keys = jax.random.split(jax.random.key(1), args.steps)
            if seeds is not None:
                state = jax.tree.map(lambda x, s=seeds: jnp.stack([x] * s), state)
                rows = jnp.stack([rows] * seeds)
                keys = jnp.stack([keys] * seeds)
            compiled = {}
            for name, fn in programs.items():
                start = time.perf_counter()
                donate = (0,) if name in ("optimizer", "step") else ()
                compiled[name] = jax.jit(fn, donate_argnums=donate).lower(state, rows, keys).compile()
                log(f"{label} [{variant}] {name}: compiled in {time.perf_counter() - start:.1f}s")
            entry = {
                "label": label,
                "variant": variant,
                "state": state,
                "rows": rows,
                "keys": keys,
                "compiled": compiled,
                "seconds": {name: [] for name in compiled},
                "hlo": _hlo_counts(compiled["step"]),
            }
            for name in compiled:  # warm up; the state-carrying programs hand their state on
                out = jax.block_until_ready(compiled[name](entry["state"], rows, keys))
                if name in ("optimizer", "step"):
                    entry["state"] = out
            timed.append(entry)
    for round_index in range(args.rounds):
        for entry in timed:
            for name, fn in entry["compiled"].items():
                start = time.perf_counter()
                out = jax.block_until_ready(fn(entry["state"], entry["rows"], entry["keys"]))
                entry["seconds"][name].append((time.perf_counter() - start) / args.steps)
                if name in ("optimizer", "step"):
                    entry["state"] = out
        log(f"round {round_index + 1}/{args.rounds} done")
    for entry in timed:
        ms = {name: median(values) * 1e3 for name, values in entry["seconds"].items()}
        emit(
            {
                "kind": "step_profile",
                "case": entry["label"],
                "variant": entry["variant"],
                **{f"ms_{name}": sig(value, 3) for name, value in ms.items()},
                "ms_optimizer_in_step": sig(ms["step"] - ms["forward_backward"], 3),
                "hlo_step": entry["hlo"],
                "rounds": args.rounds,
                "steps_per_block": args.steps,
            },
            records,
        )
    if args.json:
        write_records(args.json, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
