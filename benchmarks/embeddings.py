"""Embeddings at scale (issue 16, item 4): memory and speed of id features in the towers.

A synthetic log of 100,000 users x 10,000 items x 1,000,000 events with a planted
structure, three ways:

``--write DIR``
    Generates the log (numpy, seeded, vectorised) and writes ``DIR/logs.parquet`` (one row
    per event: ``user_id`` int, ``country`` ~20 strings, ``device`` 4 strings, three dense
    columns ``age``, ``sessions_7d``, ``hour``, then ``item_id``, ``reward``, ``pscore``),
    ``DIR/items.parquet`` (``item_id``, ``genre`` ~30 strings, dense ``price``,
    ``age_days``) and ``DIR/arrays.npz`` (the same columns as integer codes, what
    ``--api`` reads so that pandas and the generator stay out of its memory).
``--api DIR``
    Builds :class:`~towerjax.data.LoggedData` with :class:`~towerjax.features.Features`
    directly from the arrays (no adapter) and measures the bytes of the data and of the
    model (parameters + Adam moments), the compile time and steady-state steps per second
    of :func:`towerjax.training.make_update_step` under ``lax.scan`` (and called from a
    Python loop) at several batch sizes, full and sampled softmax, a full
    :func:`towerjax.training.compile_seeds` training run (one seed, IPS, ``--train-epochs``
    epochs at ``--train-batch``, with per-epoch SNIPS validation and the true value on a
    held-out sample of contexts; ``--plain-train`` also runs ``jit(make_train(config))``),
    and the process's peak RSS after each stage.
``--cli DIR``
    Times ``towerjax train --logs DIR/logs.parquet --items DIR/items.parquet --out OUT
    --epochs 3 --batch-size {--cli-batch} --categorical user_id --standardize`` as a child
    process and takes its peak RSS; the child is killed above ``--kill-above-gb`` (the
    machine is shared) or after ``--time-limit-s``.

The planted structure. User ``u`` has a taste ``theta_u`` (country mean plus noise) and an
age correlated with it; item ``a`` has attributes ``phi_a`` (genre mean plus noise), a
quality and a price correlated with them. A click has probability
``q(x, a) = sigmoid(b + (theta_u + delta_device) . phi_a + quality_a)``. The logging policy is
``pi_0(a | u) = (1 - eps) softmax_a(log_pop_a + beta theta'_u . phi_a) + eps / A`` with a noisy
taste ``theta'_u``; it depends on the user only, so it is computed once per active user (in
chunks of users, never ``[events, items]``) and sampled by inverse CDF on that same
distribution, whose entry at the sampled item is the recorded ``pscore`` (exact, not
re-estimated). User activity is Zipf-like (a few users log most events).

Memory. ``bytes`` are the arrays' own sizes (:func:`towerjax.features.nbytes`); the peak
RSS is the kernel's high-water mark ``VmHWM`` of ``/proc/self/status`` after each stage
(monotone: each figure is the peak so far), cross-checked by a thread sampling ``VmRSS``
every 20 ms and by ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end; for ``--cli`` the
child's ``VmHWM`` is sampled and its exact peak taken from ``os.wait4``'s ``ru_maxrss``.
The process includes the Python interpreter, JAX and XLA's compiler.

Speed. The machine is shared and noisy: the step cases are timed in interleaved rounds
(each round times a block of steps of every case) and medians are reported;
``cpu_seconds_per_wall_second`` is the process's CPU time over wall time while timing
(2 when both cores of a 2-core machine are busy). Compile and steady state are separate.

Every result is one JSON object per line on stdout (``"kind"`` says which); progress goes to
stderr; ``--json PATH`` also writes all records as one JSON list. Run::

    python benchmarks/embeddings.py --write /tmp/emb-bench
    python benchmarks/embeddings.py --api /tmp/emb-bench --plain-train
    python benchmarks/embeddings.py --cli /tmp/emb-bench --cli-batch 1024

``--quick`` shrinks the log (2,000 users x 500 items x 20,000 events) for a smoke test.
This is a benchmark, not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from harness import (
    GB,
    START,
    RssSampler,
    emit,
    environment,
    log,
    proc_status,
    scanned_update_steps,
    sig,
    timed,
    write_records,
    xla_memory,
)

COUNTRIES = (
    "US", "GB", "DE", "FR", "BR", "IN", "JP", "ES", "IT", "CA",
    "MX", "AU", "NL", "SE", "PL", "KR", "TR", "AR", "ZA", "NG",
)  # fmt: skip
DEVICES = ("mobile", "desktop", "tablet", "tv")
DEVICE_SHARE = (0.55, 0.3, 0.1, 0.05)
GENRES = 30
LATENT = 8  # K: width of the planted tastes and attributes


# --------------------------------------------------------------------------- arguments


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR", help="generate the synthetic log into DIR")
    mode.add_argument("--api", metavar="DIR", help="measure the Python API on DIR/arrays.npz")
    mode.add_argument("--cli", metavar="DIR", help="time `towerjax train --logs` on DIR's Parquet files")
    parser.add_argument("--quick", action="store_true", help="--write: a small log for a smoke test")
    parser.add_argument("--users", type=int, default=None, help="--write: users [default 100,000]")
    parser.add_argument("--items", type=int, default=None, help="--write: items [default 10,000]")
    parser.add_argument("--events", type=int, default=None, help="--write: events [default 1,000,000]")
    parser.add_argument("--seed", type=int, default=0, help="--write: generator seed")
    parser.add_argument(
        "--batch-sizes", default="128,1024,4096", help="--api: batch sizes of the step timing"
    )
    parser.add_argument(
        "--sampled", type=int, default=1024, help="--api: items M of the sampled-softmax steps (0: none)"
    )
    parser.add_argument(
        "--sampled-batch-sizes", default="128,1024", help="--api: batch sizes of the sampled-softmax steps"
    )
    parser.add_argument("--rounds", type=int, default=5, help="--api: interleaved timing rounds")
    parser.add_argument("--block-seconds", type=float, default=2.0, help="--api: seconds per timed block")
    parser.add_argument("--train-batch", type=int, default=1024, help="--api: batch of the full run")
    parser.add_argument(
        "--train-epochs", type=int, default=1, help="--api: epochs of the full run (0 skips it)"
    )
    parser.add_argument(
        "--test-rows", type=int, default=1000, help="--api: held-out contexts for the true value"
    )
    parser.add_argument(
        "--train-sampled",
        type=int,
        default=0,
        help="--api: sampled softmax M of the full run (0: full softmax)",
    )
    parser.add_argument(
        "--plain-train",
        action="store_true",
        help="--api: also run jit(make_train(config)) on one seed without compile_seeds' vmap",
    )
    parser.add_argument("--epochs", type=int, default=3, help="--cli: epochs")
    parser.add_argument(
        "--cli-batch", type=int, default=128, help="--cli: --batch-size [default 128, the CLI's]"
    )
    parser.add_argument(
        "--cli-args",
        default=None,
        help="--cli: extra flags for `towerjax train` (default: --categorical user_id and "
        "--standardize where the CLI has them)",
    )
    parser.add_argument("--out", default=None, help="--cli: model directory [default DIR/model]")
    parser.add_argument(
        "--kill-above-gb", type=float, default=8.0, help="--cli: kill the run above this RSS (shared machine)"
    )
    parser.add_argument(
        "--time-limit-s", type=float, default=3600.0, help="--cli: kill the run after this long"
    )
    parser.add_argument("--json", default=None, help="also write all records here")
    args = parser.parse_args(argv)
    sizes = (2000, 500, 20_000) if args.quick else (100_000, 10_000, 1_000_000)
    args.users = args.users or sizes[0]
    args.items = args.items or sizes[1]
    args.events = args.events or sizes[2]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.sampled_batch_sizes = (
        [int(b) for b in args.sampled_batch_sizes.split(",") if b] if args.sampled else []
    )
    if (
        min(
            [
                args.users,
                args.items,
                args.events,
                args.rounds,
                args.train_batch,
                args.cli_batch,
                *args.batch_sizes,
                *args.sampled_batch_sizes,
            ]
        )
        < 1
    ):
        parser.error("sizes, --rounds and batch sizes must be positive")
    return args


# --------------------------------------------------------------------------- the synthetic world


@dataclasses.dataclass(frozen=True)
class World:
    """The planted users and items (module docstring); small: ``O((U + A) K)``."""

    theta: np.ndarray  # [U, K] tastes
    theta_logging: np.ndarray  # [U, K] the logging policy's noisy view of them
    country: np.ndarray  # [U] int
    age: np.ndarray  # [U] years
    sessions: np.ndarray  # [U] mean sessions per week
    activity: np.ndarray  # [U] share of events
    phi: np.ndarray  # [A, K] item attributes
    quality: np.ndarray  # [A]
    log_pop: np.ndarray  # [A] the logging policy's popularity score
    genre: np.ndarray  # [A] int
    price: np.ndarray  # [A]
    age_days: np.ndarray  # [A]
    device_shift: np.ndarray  # [devices, K]
    click_bias: float = -4.5
    logging_beta: float = 0.5
    logging_epsilon: float = 0.1

    @property
    def n_users(self) -> int:
        return self.theta.shape[0]

    @property
    def n_items(self) -> int:
        return self.phi.shape[0]

    def logging_weights(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[m] -> [m, A]`` float32 ``w``: ``pi_0(a | u) = w[u, a] / sum_a w[u, a]``.

        ``w = (1 - eps) softmax(log_pop + beta theta' phi^T) + eps / A``, which sums to one up
        to float32 rounding; the exact distribution divides by the float64 sum, so the
        distribution sampled and the recorded ``pscore`` are the same numbers.
        """
        logits = self.theta_logging[users].astype(np.float32) @ self.phi.T.astype(np.float32)
        logits *= self.logging_beta
        logits += self.log_pop.astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits *= (1.0 - self.logging_epsilon) / logits.sum(axis=1, keepdims=True)
        logits += self.logging_epsilon / self.n_items
        return logits

    def logging_probs(self, users: np.ndarray) -> np.ndarray:
        """``[m] -> [m, A]`` float64: ``pi_0(. | u)`` of each user (:meth:`logging_weights`)."""
        weights = self.logging_weights(users)
        return weights / weights.sum(axis=1, keepdims=True, dtype=np.float64)

    def click_logits(
        self, users: np.ndarray, devices: np.ndarray, items: np.ndarray | None = None
    ) -> np.ndarray:
        """Logit of ``q``: ``[m]`` at the given ``items``, or ``[m, A]`` over all items."""
        taste = self.theta[users] + self.device_shift[devices]  # [m, K]
        if items is None:
            return self.click_bias + taste @ self.phi.T + self.quality[None, :]
        return self.click_bias + np.einsum("mk,mk->m", taste, self.phi[items]) + self.quality[items]


def make_world(seed: int, n_users: int, n_items: int) -> World:
    """The planted world of ``seed`` (independent of the events drawn from it)."""
    rng = np.random.default_rng([seed, 0])
    scale = LATENT**-0.25  # theta . phi has variance about 1 per unit of each
    n_countries = len(COUNTRIES)
    country_share = 1.0 / np.arange(1, n_countries + 1) ** 1.2
    country = rng.choice(n_countries, n_users, p=country_share / country_share.sum())
    country_taste = rng.normal(0.0, 0.7, (n_countries, LATENT))
    theta = scale * (country_taste[country] + rng.normal(0.0, 1.0, (n_users, LATENT)))
    theta_logging = theta + scale * rng.normal(0.0, 1.0, (n_users, LATENT))
    age = np.clip(38.0 + 12.0 * (0.6 * theta[:, 0] / scale + 0.8 * rng.normal(size=n_users)), 16.0, 90.0)
    rank = rng.permutation(n_users) + 1
    activity = 1.0 / (rank + 10.0) ** 0.8  # Zipf-like: the top 1% of users log ~30% of events
    activity /= activity.sum()
    sessions = 1.0 + 40.0 * activity / activity.max() + rng.exponential(2.0, n_users)

    genre_share = 1.0 / np.arange(1, GENRES + 1) ** 0.8
    genre = rng.choice(GENRES, n_items, p=genre_share / genre_share.sum())
    genre_attributes = rng.normal(0.0, 0.8, (GENRES, LATENT))
    phi = scale * (genre_attributes[genre] + rng.normal(0.0, 0.7, (n_items, LATENT)))
    quality = rng.normal(0.0, 0.5, n_items)
    log_pop = -1.0 * np.log(rng.permutation(n_items) + 1.0) + 0.5 * quality
    price = np.round(np.exp(2.5 + 0.5 * phi[:, 1] / scale + 0.5 * rng.normal(size=n_items)), 2)
    age_days = rng.integers(0, 3650, n_items).astype(np.float64)
    device_shift = scale * rng.normal(0.0, 0.5, (len(DEVICES), LATENT))
    return World(
        theta=theta,
        theta_logging=theta_logging,
        country=country,
        age=np.round(age),
        sessions=sessions,
        activity=activity,
        phi=phi,
        quality=quality,
        log_pop=log_pop,
        genre=genre,
        price=price,
        age_days=age_days,
        device_shift=device_shift,
    )


def _sample_rows(
    weights: np.ndarray, rows: np.ndarray, uniforms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-CDF draws ``a_i ~ weights[rows_i] / total[rows_i]``, one per ``uniforms_i``, and
    the float64 row totals ``[rows]`` (so ``pscore_i = weights[rows_i, a_i] / total[rows_i]``).

    Two levels, so no ``[rows, A]`` cumulative sum is formed: a block of ``~sqrt(A)``
    items by the cumulative block sums of the row, then the item within the block by the
    cumulative sum of that block only. ``P(a) = (S_b / total) (w_a / S_b) = w_a / total``.
    """
    n_rows, n_items = weights.shape
    size = int(np.ceil(np.sqrt(n_items)))
    blocks = -(-n_items // size)
    padded = weights
    if blocks * size != n_items:  # zero weights never drawn
        padded = np.zeros((n_rows, blocks * size), np.float32)
        padded[:, :n_items] = weights
    block_cdf = np.cumsum(padded.reshape(n_rows, blocks, size).sum(axis=2, dtype=np.float64), axis=1)
    total = block_cdf[:, -1]
    target = uniforms * total[rows]
    # The block: the first whose cumulative sum exceeds the target (row j's CDF shifted by
    # j * total_max is increasing across rows, so one searchsorted serves every row).
    shift = np.arange(n_rows)[:, None] * (2.0 * total.max())
    block = np.searchsorted((block_cdf + shift).ravel(), target + shift[rows, 0], side="right")
    block = np.minimum(block - rows * blocks, blocks - 1)
    before = np.where(block > 0, block_cdf[rows, np.maximum(block - 1, 0)], 0.0)
    within = np.cumsum(
        padded[rows[:, None], block[:, None] * size + np.arange(size)], axis=1, dtype=np.float64
    )
    offset = np.minimum((within <= (target - before)[:, None]).sum(axis=1), size - 1)
    return np.minimum(block * size + offset, n_items - 1), total


def sample_events(world: World, rng: np.random.Generator, n: int, *, chunk_users: int = 512) -> dict:
    """``n`` logged events: users by activity, the item by ``pi_0(. | u)``, its exact
    ``pscore``, the click; per-event dense columns. The logging distribution is computed
    once per active user, ``chunk_users`` users (``[chunk_users, A]`` float32) at a time."""
    users = rng.choice(world.n_users, n, p=world.activity)
    devices = rng.choice(len(DEVICES), n, p=DEVICE_SHARE)
    order = np.argsort(users, kind="stable")
    active, starts, counts = np.unique(users[order], return_index=True, return_counts=True)
    uniforms = rng.random(n)
    items = np.empty(n, np.int64)
    pscore = np.empty(n, np.float64)
    for first in range(0, active.size, chunk_users):
        chunk = slice(first, first + chunk_users)
        weights = world.logging_weights(active[chunk])  # [c, A]
        events = order[starts[chunk][0] : starts[chunk][-1] + counts[chunk][-1]]  # these users' events
        local = np.repeat(np.arange(counts[chunk].size), counts[chunk])
        picked, total = _sample_rows(weights, local, uniforms[events])
        items[events] = picked
        pscore[events] = weights[local, picked] / total[local]
    click = rng.random(n) < 1.0 / (1.0 + np.exp(-world.click_logits(users, devices, items)))
    sessions_7d = rng.poisson(world.sessions[users]).astype(np.float64)
    hour = rng.integers(0, 24, n).astype(np.float64)
    return {
        "user_id": users,
        "country": world.country[users],
        "device": devices,
        "age": world.age[users],
        "sessions_7d": sessions_7d,
        "hour": hour,
        "item_id": items,
        "reward": click.astype(np.float64),
        "pscore": pscore,
    }


def run_write(args: argparse.Namespace, records: list[dict]) -> None:
    import pandas as pd

    os.makedirs(args.write, exist_ok=True)
    start = time.perf_counter()
    world = make_world(args.seed, args.users, args.items)
    events = sample_events(world, np.random.default_rng([args.seed, 1]), args.events)
    seconds_generate = time.perf_counter() - start
    log(f"generated {args.events} events in {seconds_generate:.1f}s")

    start = time.perf_counter()
    np.savez(
        os.path.join(args.write, "arrays.npz"),
        **{
            k: v.astype(np.int32)
            for k, v in events.items()
            if k in ("user_id", "country", "device", "item_id")
        },
        dense=np.stack([events["age"], events["sessions_7d"], events["hour"]], axis=1).astype(np.float32),
        reward=events["reward"].astype(np.float32),
        pscore=events["pscore"].astype(np.float32),
        item_genre=world.genre.astype(np.int32),
        item_dense=np.stack([world.price, world.age_days], axis=1).astype(np.float32),
        sizes=np.array([args.users, args.items, len(COUNTRIES), len(DEVICES), GENRES]),
        seed=np.array(args.seed),
    )
    logs = pd.DataFrame(
        {
            "user_id": events["user_id"],
            "country": np.array(COUNTRIES, dtype=object)[events["country"]],
            "device": np.array(DEVICES, dtype=object)[events["device"]],
            "age": events["age"],
            "sessions_7d": events["sessions_7d"],
            "hour": events["hour"],
            "item_id": events["item_id"],
            "reward": events["reward"],
            "pscore": events["pscore"],
        }
    )
    logs.to_parquet(os.path.join(args.write, "logs.parquet"), index=False)
    genres = np.array([f"genre_{g:02d}" for g in range(GENRES)], dtype=object)
    items = pd.DataFrame(
        {
            "item_id": np.arange(args.items),
            "genre": genres[world.genre],
            "price": world.price,
            "age_days": world.age_days,
        }
    )
    items.to_parquet(os.path.join(args.write, "items.parquet"), index=False)
    seconds_write = time.perf_counter() - start

    # What the planted structure offers a learner: the logging policy's value and the best
    # policy's, on a sample of fresh contexts (exact expectations, not clicks).
    rng = np.random.default_rng([args.seed, 2])
    users = rng.choice(world.n_users, 2000, p=world.activity)
    devices = rng.choice(len(DEVICES), 2000, p=DEVICE_SHARE)
    values = {"logging": [], "uniform": [], "best": []}
    for chunk in np.array_split(np.arange(users.size), 8):
        q = 1.0 / (1.0 + np.exp(-world.click_logits(users[chunk], devices[chunk])))
        values["logging"].append(np.sum(world.logging_probs(users[chunk]) * q, axis=1))
        values["uniform"].append(q.mean(axis=1))
        values["best"].append(q.max(axis=1))
    values = {k: float(np.mean(np.concatenate(v))) for k, v in values.items()}
    files = {name: os.path.getsize(os.path.join(args.write, name)) for name in sorted(os.listdir(args.write))}
    emit(
        {
            "kind": "write",
            "dir": args.write,
            "users": args.users,
            "items": args.items,
            "events": args.events,
            "seed": args.seed,
            "active_users": int(np.unique(events["user_id"]).size),
            "events_of_top_1pct_users": sig(
                np.sort(np.bincount(events["user_id"], minlength=args.users))[::-1][: args.users // 100].sum()
                / args.events
            ),
            "click_rate": sig(float(events["reward"].mean())),
            "pscore_min": sig(float(events["pscore"].min())),
            "pscore_median": sig(float(np.median(events["pscore"]))),
            "max_importance_weight_of_uniform": sig(float(1.0 / args.items / events["pscore"].min())),
            "logged_items_distinct": int(np.unique(events["item_id"]).size),
            "value_logging": sig(values["logging"]),
            "value_uniform": sig(values["uniform"]),
            "value_best": sig(values["best"]),
            "seconds_generate": sig(seconds_generate, 3),
            "seconds_write": sig(seconds_write, 3),
            "peak_rss_bytes": proc_status().get("VmHWM"),
            "file_bytes": files,
        },
        records,
    )


# --------------------------------------------------------------------------- --api


def _load(path: str) -> dict:
    with np.load(os.path.join(path, "arrays.npz")) as saved:
        return {k: saved[k] for k in saved.files}


def _standardize(block: np.ndarray) -> np.ndarray:
    return ((block - block.mean(0)) / np.maximum(block.std(0), 1e-12)).astype(np.float32)


def _features(arrays: dict, rows: np.ndarray | None, sizes: dict, stats: tuple):
    """Context :class:`Features` of the events ``rows`` (all by default), dense standardised by ``stats``."""
    from towerjax.features import Features

    take = (lambda a: a) if rows is None else (lambda a: a[rows])
    mean, std = stats
    return Features.from_arrays(
        ids={name: take(arrays[name]) for name in ("user_id", "country", "device")},
        sizes={name: sizes[name] for name in ("user_id", "country", "device")},
        dense=((take(arrays["dense"]) - mean) / std).astype(np.float32),
    )


def _tree_bytes(tree) -> int:
    import jax

    return int(
        sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree) if hasattr(leaf, "dtype"))
    )


def run_api(args: argparse.Namespace, records: list[dict]) -> None:
    from towerjax.training import expose_cpu_cores

    expose_cpu_cores()  # as the CLI does, before JAX starts its backend
    sampler = RssSampler()
    sampler.start()
    stages: dict[str, dict] = {}

    def stage(name: str) -> None:
        status = proc_status()
        stages[name] = {
            "rss": status.get("VmRSS"),
            "hwm": status.get("VmHWM"),
            "t": time.perf_counter() - START,
        }
        log(f"{name}: RSS {status.get('VmRSS', 0) / GB:.2f} GB, peak {status.get('VmHWM', 0) / GB:.2f} GB")

    import jax
    import jax.numpy as jnp

    from towerjax.data import LoggedData
    from towerjax.features import Features, feature_spec, nbytes, take
    from towerjax.large_softmax import item_proposal, uniform_log_q
    from towerjax.training import (
        Batch,
        TrainConfig,
        compile_seeds,
        make_optimizer,
        make_train,
        make_update_step,
    )

    emit(environment(jax), records)
    stage("imports")

    arrays = _load(args.api)
    n_users, n_items, n_countries, n_devices, n_genres = (int(s) for s in arrays["sizes"])
    sizes = {"user_id": n_users, "country": n_countries, "device": n_devices}
    n = arrays["user_id"].shape[0]
    stage("loaded arrays")

    start = time.perf_counter()
    stats = (arrays["dense"].mean(0), np.maximum(arrays["dense"].std(0), 1e-12))
    context = _features(arrays, None, sizes, stats)
    items = Features.from_arrays(
        ids={"item_id": np.arange(n_items), "genre": arrays["item_genre"]},
        sizes={"item_id": n_items, "genre": n_genres},
        dense=_standardize(arrays["item_dense"]),
    )
    data = LoggedData.from_arrays(
        context=context,
        action_context=items,
        action=arrays["item_id"],
        reward=arrays["reward"],
        pscore=arrays["pscore"],
    )
    jax.block_until_ready(data)
    seconds_build = time.perf_counter() - start
    per_event = nbytes(data.action) + nbytes(data.reward) + nbytes(data.pscore)
    stage("built LoggedData")

    # Held-out contexts with their true q and pi_0, for the true value of the trained policy.
    test = None
    if args.test_rows > 0:
        world = make_world(int(arrays["seed"]), n_users, n_items)
        rng = np.random.default_rng([int(arrays["seed"]), 3])
        users = rng.choice(n_users, args.test_rows, p=world.activity)
        devices = rng.choice(n_devices, args.test_rows, p=DEVICE_SHARE)
        test_arrays = {
            "user_id": users,
            "country": world.country[users],
            "device": devices,
            "dense": np.stack(
                [world.age[users], rng.poisson(world.sessions[users]), rng.integers(0, 24, args.test_rows)],
                axis=1,
            ).astype(np.float32),
        }
        q = (1.0 / (1.0 + np.exp(-world.click_logits(users, devices)))).astype(np.float32)
        test = LoggedData(
            context=_features(test_arrays, None, sizes, stats),
            action_context=items,
            action=jnp.zeros(args.test_rows, jnp.int32),
            reward=jnp.zeros(args.test_rows, jnp.float32),
            pscore=jnp.ones(args.test_rows, jnp.float32),
            pi_b=jnp.asarray(world.logging_probs(users), jnp.float32),
            expected_reward=jnp.asarray(q),
        )
        del world
        stage("built test contexts")

    tables = {t.name: {"size": t.size, "dim": t.dim} for t in (*context.tables, *items.tables)}
    config = TrainConfig(objective="ips", batch_size=args.batch_sizes[0])
    params = config.model.init(jax.random.key(0), feature_spec(context), feature_spec(items))
    opt_state = make_optimizer(config).init(params)
    param_bytes, opt_bytes = _tree_bytes(params), _tree_bytes(opt_state)
    embedding_bytes = _tree_bytes(
        {k: v for k, v in params["context"].items() if k.startswith("embed_")}
    ) + _tree_bytes({k: v for k, v in params["action"].items() if k.startswith("embed_")})
    emit(
        {
            "kind": "bytes",
            "events": n,
            "users": n_users,
            "items": n_items,
            "tables": tables,
            "context_bytes": nbytes(context),
            "items_bytes": nbytes(items),
            "per_event_bytes": per_event,
            "data_bytes": nbytes(context) + nbytes(items) + per_event,
            "test_bytes": None if test is None else _tree_bytes(test),
            "param_bytes": param_bytes,
            "embedding_table_bytes": embedding_bytes,
            "adam_state_bytes": opt_bytes,
            "model_bytes": param_bytes + opt_bytes,
            "seconds_build_data": sig(seconds_build, 3),
        },
        records,
    )
    stage("initialised model")

    # ---- steady-state update steps: make_update_step(config) scanned over batches drawn from
    # the data, as training runs it (one compiled call per block of steps, buffers reused);
    # also the same step jitted alone and called from a Python loop (fresh buffers per call).
    def scanned_steps(config_b: TrainConfig):
        return scanned_update_steps(make_update_step(config_b))

    rng = np.random.default_rng(0)
    cases = {}
    variants = [(None, b) for b in args.batch_sizes] + [(args.sampled, b) for b in args.sampled_batch_sizes]
    for sampled, batch_size in variants:
        config_b = TrainConfig(objective="ips", batch_size=batch_size, sampled_softmax=sampled)
        proposal = None if sampled is None else item_proposal(uniform_log_q(n_items))
        label = (
            f"full softmax, batch {batch_size}"
            if sampled is None
            else f"sampled softmax M={sampled}, batch {batch_size}"
        )
        init = config_b.model.init(jax.random.key(0), feature_spec(context), feature_spec(items))
        state = [init, make_optimizer(config_b).init(init)]
        rows = jnp.asarray(rng.integers(0, n, batch_size))
        batch = Batch(
            data=LoggedData(
                context=take(data.context, rows),
                action_context=items,
                action=data.action[rows],
                reward=data.reward[rows],
                pscore=data.pscore[rows],
            ),
            mask=jnp.ones(batch_size, jnp.float32),
            proposal=proposal,
        )
        start = time.perf_counter()
        call = jax.jit(make_update_step(config_b), donate_argnums=(0, 1)).lower(
            *state, batch, jax.random.key(1)
        )
        call = call.compile()
        seconds_compile_call = time.perf_counter() - start
        start = time.perf_counter()
        state[:] = jax.block_until_ready(call(*state, batch, jax.random.key(1)))[:2]
        seconds_first = time.perf_counter() - start
        start = time.perf_counter()
        state[:] = jax.block_until_ready(call(*state, batch, jax.random.key(1)))[:2]
        steps = int(np.clip(round(args.block_seconds / (time.perf_counter() - start)), 2, 500))
        block_rows = jnp.asarray(rng.integers(0, n, (steps, batch_size)))
        start = time.perf_counter()
        scan = scanned_steps(config_b).lower(*state, data, proposal, block_rows, jax.random.key(2)).compile()
        seconds_compile = time.perf_counter() - start
        state[:] = jax.block_until_ready(scan(*state, data, proposal, block_rows, jax.random.key(2)))[:2]
        cases[label] = {
            "batch_size": batch_size,
            "sampled_softmax": sampled,
            "proposal": proposal,
            "call": call,
            "batch": batch,
            "scan": scan,
            "rows": block_rows,
            "state": state,
            "steps": steps,
            "seconds_compile": seconds_compile,
            "seconds_compile_call": seconds_compile_call,
            "seconds_first": seconds_first,
            "memory": xla_memory(scan),
            "memory_call": xla_memory(call),
            "seconds": [],
            "cpu": [],
            "seconds_call": [],
        }
        log(f"{label}: compiled in {seconds_compile:.1f}s, {steps} steps per block")
    stage("compiled steps")

    def per_step(fn, steps: int) -> tuple[float, float]:
        """Wall and CPU seconds per step of ``fn()`` (which runs ``steps`` steps)."""
        _, wall, cpu = timed(fn)
        return wall / steps, cpu / steps

    def scan_block(case: dict) -> None:
        case["state"][:] = jax.block_until_ready(
            case["scan"](*case["state"], data, case["proposal"], case["rows"], jax.random.key(3))
        )[:2]

    def call_block(case: dict, steps: int) -> None:
        for _ in range(steps):
            case["state"][:] = case["call"](*case["state"], case["batch"], jax.random.key(4))[:2]
        jax.block_until_ready(case["state"])

    for round_index in range(args.rounds):
        for case in cases.values():
            wall, cpu = per_step(lambda case=case: scan_block(case), case["steps"])
            case["seconds"].append(wall)
            case["cpu"].append(cpu)
            loop_steps = max(2, case["steps"] // 4)
            case["seconds_call"].append(
                per_step(lambda case=case, k=loop_steps: call_block(case, k), loop_steps)[0]
            )
        log(f"round {round_index + 1}/{args.rounds} done")
    train_rows = n - round(config.validation_fraction * n)
    for label, case in cases.items():
        batch_size = case["batch_size"]
        per_step = statistics.median(case["seconds"])
        cpu_per_step = statistics.median(case["cpu"])
        steps_per_epoch = -(-train_rows // batch_size)
        emit(
            {
                "kind": "step",
                "case": label,
                "batch_size": batch_size,
                "sampled_softmax": case["sampled_softmax"],
                "seconds_compile": sig(case["seconds_compile"], 3),
                "seconds_per_step_median": sig(per_step),
                "seconds_per_step_rounds": [sig(s) for s in case["seconds"]],
                "steps_per_round": case["steps"],
                "steps_per_second": sig(1.0 / per_step),
                "events_per_second": sig(batch_size / per_step),
                "cpu_seconds_per_step_median": sig(cpu_per_step),
                "cpu_seconds_per_wall_second_median": sig(
                    statistics.median(c / s for c, s in zip(case["cpu"], case["seconds"], strict=True)), 3
                ),
                "steps_per_epoch": steps_per_epoch,
                "projected_seconds_3_epochs_steps_only": sig(3 * steps_per_epoch * per_step, 3),
                "cpu_seconds_3_epochs_steps_only": sig(3 * steps_per_epoch * cpu_per_step, 3),
                "per_call_seconds_compile": sig(case["seconds_compile_call"], 3),
                "per_call_seconds_first_step": sig(case["seconds_first"], 3),
                "per_call_seconds_per_step_median": sig(statistics.median(case["seconds_call"])),
                **case["memory"],
                **{f"per_call_{k}": v for k, v in case["memory_call"].items()},
            },
            records,
        )
    stage("timed steps")
    del cases

    # ---- a full training run as train_seeds does it (one seed), and optionally the same
    # run jitted without compile_seeds' vmap over the seed axis (same key, same numbers)
    if args.train_epochs > 0:
        config = TrainConfig(
            objective="ips",
            batch_size=args.train_batch,
            epochs=args.train_epochs,
            sampled_softmax=args.train_sampled or None,
        )
        runs = {}
        runner = compile_seeds(config, seeds=1, data=data, test_data=test)
        runs["compile_seeds (train_seeds, the CLI)"] = (runner.run, runner.seconds_compile, runner.compiled)
        if args.plain_train:
            key = jax.random.split(jax.random.key(0), 1)[0]  # compile_seeds' key of seed 0
            start = time.perf_counter()
            plain = jax.jit(make_train(config)).lower(key, data, test).compile()
            runs["jit(make_train(config)), no seed vmap"] = (
                lambda plain=plain, key=key: plain(key, data, test),
                time.perf_counter() - start,
                plain,
            )
        stage("compiled training")
        for name, (run, seconds_compile, compiled) in runs.items():
            log(
                f"training ({name}): compiled in {seconds_compile:.1f}s; running {config.epochs} epoch(s) ..."
            )
            result, seconds_train, cpu_train = timed(
                lambda run=run: jax.device_get(jax.block_until_ready(run()))
            )
            stage(f"trained: {name}")
            steps = config.epochs * -(-train_rows // args.train_batch)
            first = lambda tree: sig(float(np.ravel(tree)[0]))  # noqa: E731
            every = lambda tree: [sig(float(v)) for v in np.ravel(tree)]  # noqa: E731
            emit(
                {
                    "kind": "train",
                    "run": name,
                    "batch_size": args.train_batch,
                    "sampled_softmax": config.sampled_softmax,
                    "epochs": config.epochs,
                    "train_rows": train_rows,
                    "validation_rows": n - train_rows,
                    "steps": steps,
                    "seconds_compile": sig(seconds_compile, 3),
                    "seconds_train": sig(seconds_train, 4),
                    "seconds_per_epoch": sig(seconds_train / config.epochs, 4),
                    "steps_per_second_incl_validation": sig(steps / seconds_train),
                    "projected_seconds_3_epochs": sig(3 * seconds_train / config.epochs, 3),
                    "cpu_seconds_train": sig(cpu_train, 4),
                    "cpu_seconds_per_wall_second": sig(cpu_train / seconds_train, 3),
                    "loss": every(result.loss),
                    "validation_snips": every(result.validation["snips"]),
                    "validation_snips_se": every(result.validation["snips_se"]),
                    "test_value_initial": first(result.initial_value),
                    "test_value": every(result.test_value),
                    "test_value_logging": first(result.behavior_value),
                    "test_value_best": first(result.optimal_value),
                    "top_share": every(result.top_share),
                    "selected_epoch": int(np.ravel(result.selected_epoch)[0]),
                    **xla_memory(compiled),
                },
                records,
            )

    sampler.stop()
    stage("end")
    emit(
        {
            "kind": "rss",
            "peak_rss_bytes": proc_status().get("VmHWM"),
            "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "sampled_max_rss_bytes": sampler.max_rss,
            "stages": {
                name: {"rss_bytes": s["rss"], "peak_rss_bytes": s["hwm"], "at_seconds": sig(s["t"], 3)}
                for name, s in stages.items()
            },
            "goal_bytes": 4 * GB,
        },
        records,
    )


# --------------------------------------------------------------------------- --cli


def _cli_flags(help_text: str, args: argparse.Namespace) -> list[str]:
    """Flags for the id columns, where the CLI has them (the adapter's flags are new)."""
    if args.cli_args is not None:
        return shlex.split(args.cli_args)
    flags = []
    if "--categorical" in help_text:
        flags += ["--categorical", "user_id"]
    if "--standardize" in help_text:
        flags += ["--standardize"]
    if "--search" in help_text:  # one configuration, not a search of many
        flags += ["--search", "none"]
    return flags


def run_cli(args: argparse.Namespace, records: list[dict]) -> None:
    executable = shutil.which("towerjax") or shutil.which("towerjax", path=os.path.dirname(sys.executable))
    base = (
        [executable]
        if executable
        else [sys.executable, "-c", "import sys; from towerjax.cli import main; sys.exit(main())"]
    )
    help_text = subprocess.run([*base, "train", "--help"], capture_output=True, text=True, check=False).stdout
    out = args.out or os.path.join(args.cli, "model")
    command = [
        *base,
        "train",
        "--logs",
        os.path.join(args.cli, "logs.parquet"),
        "--items",
        os.path.join(args.cli, "items.parquet"),
        "--out",
        out,
        "--overwrite",
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.cli_batch),
        *_cli_flags(help_text, args),
    ]
    if os.path.isdir(out):
        shutil.rmtree(out)
    emit(
        {**environment(), "command": shlex.join(command), "categorical_flag": "--categorical" in help_text},
        records,
    )
    log(f"running: {shlex.join(command)}")
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = RssSampler(
        child.pid, interval=0.05, kill_above=args.kill_above_gb * GB, deadline=start + args.time_limit_s
    )
    sampler.start()
    lines = []
    for line in child.stdout:  # the CLI's progress, stamped
        lines.append(f"[{time.perf_counter() - start:7.1f}s] {line.rstrip()}")
        print(lines[-1], file=sys.stderr, flush=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    sampler.stop()
    child.returncode = os.waitstatus_to_exitcode(status)
    report = {}
    try:
        with open(os.path.join(out, "report.json")) as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        pass
    emit(
        {
            "kind": "cli",
            "returncode": child.returncode,
            "killed": sampler.killed,
            "seconds_wall": sig(seconds, 4),
            "peak_rss_bytes": usage.ru_maxrss * 1024,
            "sampled_peak_rss_bytes": sampler.hwm,
            "sampled_max_rss_bytes": sampler.max_rss,
            "cpu_seconds": sig(usage.ru_utime + usage.ru_stime, 4),
            "epochs": args.epochs,
            "batch_size": args.cli_batch,
            "goal_seconds": 600,
            "goal_bytes": 4 * GB,
            "timing": report.get("timing"),
            "output_tail": lines[-15:],
        },
        records,
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    records: list[dict] = []
    if args.write:
        run_write(args, records)
    elif args.api:
        run_api(args, records)
    else:
        run_cli(args, records)
    if args.json:
        write_records(args.json, records)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
