"""Sparse (lazy) against dense updates of embedding tables (issue 24, item 1): one update step.

:func:`towerjax.training.make_update_step` at the library's defaults (IPS, towers (64,),
``D = 32``, Adam 1e-3, batch 128), scanned over pre-drawn minibatches as training runs it
(one compiled call per block of steps, buffers donated), with
``TrainConfig(sparse_embeddings=True)`` (lazy Adam on the rows a step looks up) beside
``sparse_embeddings=False`` (dense Adam on every row). Random arrays of the embeddings
benchmark's shapes (benchmarks/embeddings.py), built directly:

``embeddings``
    Contexts with a 100,000-row ``user_id`` table (Zipf-like ids), ``country`` (20),
    ``device`` (4) and 3 dense columns; 10,000 items with an ``item_id`` table, ``genre``
    (30) and 2 dense columns. Full softmax, and a sampled softmax of ``M = 1024`` (uniform).
``million``
    The same contexts and 10^6 items, sampled softmax ``M = 1024``: items with a 10^6-row
    ``item_id`` table (sparse and dense) against the same items without it (``genre`` and
    the dense columns only): the table's cost is ``with / without``.
``learn``
    What lazy Adam learns against dense Adam (not a timing): the embeddings benchmark's
    planted world (benchmarks/embeddings.py ``make_world``, ``sample_events``) at
    ``--learn-users`` users, ``--learn-items`` items, ``--learn-events`` events, trained with
    :func:`towerjax.training.train_seeds` at the defaults (``--learn-epochs`` epochs,
    ``--learn-seeds`` seeds) with lazy Adam, dense Adam and row-wise Adagrad tables; the true
    value per epoch on held-out contexts and of the validation-selected epoch, with the
    logging policy's and the best values.

The machine is shared and noisy: the cases of one group are timed in interleaved rounds
(each round times a block of steps of every case), medians reported, and ratios taken
within a group (``dense / sparse``, ``with table / without``). Compile and steady state are
separate. One JSON object per line on stdout, progress on stderr. Run::

    python benchmarks/sparse_step.py                       # both groups, about 2-3 min
    python benchmarks/sparse_step.py --groups million --rounds 7
    python benchmarks/sparse_step.py --groups learn        # about 3 min

A benchmark, not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from harness import emit, environment, log, scanned_update_steps, sig, timed, write_records, xla_memory

USERS, COUNTRIES, DEVICES_N, GENRES = 100_000, 20, 4, 30


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--groups", default="embeddings,million", help="comma-separated: embeddings, million, learn"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sampled", type=int, default=1024, help="M of the sampled softmax")
    parser.add_argument("--items", type=int, default=10_000, help="items of the embeddings group")
    parser.add_argument("--million-items", type=int, default=1_000_000, help="items of the million group")
    parser.add_argument(
        "--events", type=int, default=200_000, help="logged events the batches are drawn from"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--block-seconds", type=float, default=1.0, help="seconds per timed block")
    parser.add_argument("--learn-users", type=int, default=20_000, help="users of the learn group")
    parser.add_argument("--learn-items", type=int, default=1_000, help="items of the learn group")
    parser.add_argument("--learn-events", type=int, default=100_000, help="events of the learn group")
    parser.add_argument("--learn-epochs", type=int, default=3, help="epochs of the learn group")
    parser.add_argument("--learn-seeds", type=int, default=2, help="seeds of the learn group")
    parser.add_argument("--json", default=None, help="also write all records to this JSON file")
    return parser.parse_args(argv)


def _contexts(rng: np.random.Generator, n: int):
    from towerjax.features import Features

    users = np.minimum(rng.zipf(1.3, n) - 1, USERS - 1)  # a few users log most events
    return Features.from_arrays(
        ids={
            "user_id": users,
            "country": rng.integers(0, COUNTRIES, n),
            "device": rng.integers(0, DEVICES_N, n),
        },
        sizes={"user_id": USERS, "country": COUNTRIES, "device": DEVICES_N},
        dense=rng.normal(size=(n, 3)),
    )


def _items(rng: np.random.Generator, n_items: int, with_id: bool):
    from towerjax.features import Features

    ids = {"genre": rng.integers(0, GENRES, n_items)}
    sizes = {"genre": GENRES}
    if with_id:
        ids, sizes = {"item_id": np.arange(n_items), **ids}, {"item_id": n_items, **sizes}
    return Features.from_arrays(ids=ids, sizes=sizes, dense=rng.normal(size=(n_items, 2)))


def _case(jax, label: str, config, context, items, rng, args) -> dict:
    """One case compiled: ``make_update_step(config)`` scanned over a block of batches."""
    import jax.numpy as jnp

    from towerjax.data import LoggedData
    from towerjax.features import feature_spec
    from towerjax.large_softmax import item_proposal, uniform_log_q
    from towerjax.training import make_optimizer, make_update_step

    n, n_items = context.n_rows, items.n_rows
    data = LoggedData(
        context=context,
        action_context=items,
        action=jnp.asarray(rng.integers(0, n_items, n), jnp.int32),
        reward=jnp.asarray(rng.random(n) < 0.1, jnp.float32),
        pscore=jnp.full(n, 1.0 / n_items, jnp.float32),
    )
    proposal = None if config.sampled_softmax is None else item_proposal(uniform_log_q(n_items))
    update = make_update_step(config)

    params = config.model.init(jax.random.key(0), feature_spec(context), feature_spec(items))
    state = [params, make_optimizer(config).init(params)]
    scan = scanned_update_steps(update)
    one = jnp.asarray(rng.integers(0, n, (1, args.batch_size)))
    start = time.perf_counter()
    compiled_one = scan.lower(*state, data, proposal, one, jax.random.key(1)).compile()
    seconds_compile = time.perf_counter() - start
    _, wall, _ = timed(
        lambda: state.__setitem__(
            slice(None),
            jax.block_until_ready(compiled_one(*state, data, proposal, one, jax.random.key(1)))[:2],
        )
    )
    _, wall, _ = timed(
        lambda: state.__setitem__(
            slice(None),
            jax.block_until_ready(compiled_one(*state, data, proposal, one, jax.random.key(1)))[:2],
        )
    )
    steps = int(np.clip(round(args.block_seconds / max(wall, 1e-4)), 2, 300))
    rows = jnp.asarray(rng.integers(0, n, (steps, args.batch_size)))
    compiled = scan.lower(*state, data, proposal, rows, jax.random.key(2)).compile()
    state[:] = jax.block_until_ready(compiled(*state, data, proposal, rows, jax.random.key(2)))[:2]
    log(f"{label}: compiled in {seconds_compile:.1f}s, {steps} steps per block")
    return {
        "label": label,
        "config": config,
        "data": data,
        "proposal": proposal,
        "state": state,
        "rows": rows,
        "steps": steps,
        "compiled": compiled,
        "seconds_compile": seconds_compile,
        "memory": xla_memory(compiled),
        "seconds": [],
        "cpu": [],
    }


def _time_group(jax, cases: list[dict], rounds: int) -> None:
    for index in range(rounds):
        for case in cases:

            def block(case=case):
                out = case["compiled"](
                    *case["state"], case["data"], case["proposal"], case["rows"], jax.random.key(3)
                )
                case["state"][:] = jax.block_until_ready(out)[:2]

            _, wall, cpu = timed(block)
            case["seconds"].append(wall / case["steps"])
            case["cpu"].append(cpu / case["steps"])
        log(
            f"round {index + 1}/{rounds}: "
            + ", ".join(f"{c['label']} {1e3 * c['seconds'][-1]:.2f} ms" for c in cases)
        )


def _emit_group(
    group: str, cases: list[dict], pairs: list[tuple[str, str, str]], records: list, batch: int
) -> None:
    medians = {}
    for case in cases:
        per_step = statistics.median(case["seconds"])
        medians[case["label"]] = per_step
        emit(
            {
                "kind": "step",
                "group": group,
                "case": case["label"],
                "batch_size": batch,
                "sparse_embeddings": case["config"].sparse_embeddings,
                "sampled_softmax": case["config"].sampled_softmax,
                "seconds_per_step_median": sig(per_step),
                "ms_per_step_rounds": [sig(1e3 * s, 3) for s in case["seconds"]],
                "events_per_second": sig(batch / per_step),
                "cpu_seconds_per_wall_second_median": sig(
                    statistics.median(c / s for c, s in zip(case["cpu"], case["seconds"], strict=True)), 3
                ),
                "steps_per_block": case["steps"],
                "seconds_compile": sig(case["seconds_compile"], 3),
                **case["memory"],
            },
            records,
        )
    for name, numerator, denominator in pairs:
        ratios = [
            a / b
            for a, b in zip(
                *(next(c["seconds"] for c in cases if c["label"] == x) for x in (numerator, denominator)),
                strict=True,
            )
        ]
        emit(
            {
                "kind": "ratio",
                "group": group,
                "ratio": name,
                "numerator": numerator,
                "denominator": denominator,
                "ratio_of_medians": sig(medians[numerator] / medians[denominator], 3),
                "median_of_round_ratios": sig(statistics.median(ratios), 3),
                "round_ratios": [sig(r, 3) for r in ratios],
            },
            records,
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    records: list[dict] = []
    import jax

    from towerjax.training import TrainConfig

    emit(environment(jax), records)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = set(groups) - {"embeddings", "million", "learn"}
    if unknown:
        print(f"unknown --groups {sorted(unknown)}; expected embeddings, million, learn", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    context = _contexts(rng, args.events)
    base = TrainConfig(objective="ips", batch_size=args.batch_size)
    sampled = TrainConfig(objective="ips", batch_size=args.batch_size, sampled_softmax=args.sampled)

    def both(config):
        return [config, TrainConfig(**{**_fields(config), "sparse_embeddings": False})]

    if "embeddings" in groups:
        items = _items(rng, args.items, with_id=True)
        cases = []
        for config in (*both(base), *both(sampled)):
            kind = "sparse" if config.sparse_embeddings else "dense"
            softmax = "full" if config.sampled_softmax is None else f"sampled M={config.sampled_softmax}"
            cases.append(_case(jax, f"{softmax}, {kind}", config, context, items, rng, args))
        _time_group(jax, cases, args.rounds)
        m = args.sampled
        pairs = [
            ("dense / sparse, full softmax", "full, dense", "full, sparse"),
            (f"dense / sparse, sampled M={m}", f"sampled M={m}, dense", f"sampled M={m}, sparse"),
        ]
        _emit_group("embeddings", cases, pairs, records, args.batch_size)
        del cases, items
    if "million" in groups:
        with_id = _items(rng, args.million_items, with_id=True)
        without = _items(rng, args.million_items, with_id=False)
        dense_config = TrainConfig(**{**_fields(sampled), "sparse_embeddings": False})
        cases = [
            _case(jax, "item_id table, sparse", sampled, context, with_id, rng, args),
            _case(jax, "item_id table, dense", dense_config, context, with_id, rng, args),
            _case(jax, "no item_id table", sampled, context, without, rng, args),
        ]
        _time_group(jax, cases, args.rounds)
        pairs = [
            ("with table / without, sparse", "item_id table, sparse", "no item_id table"),
            ("with table / without, dense", "item_id table, dense", "no item_id table"),
            ("dense / sparse, item_id table", "item_id table, dense", "item_id table, sparse"),
        ]
        _emit_group("million", cases, pairs, records, args.batch_size)
    if "learn" in groups:
        _learn(args, records)
    if args.json:
        write_records(args.json, records)
    return 0


def _learn(args: argparse.Namespace, records: list) -> None:
    """Lazy against dense Adam on a planted log: true values of the trained policies."""
    import jax.numpy as jnp
    from embeddings import DEVICE_SHARE, DEVICES, make_world, sample_events

    from towerjax.data import LoggedData
    from towerjax.features import Features
    from towerjax.training import TrainConfig, train_seeds

    world = make_world(0, args.learn_users, args.learn_items)
    rng = np.random.default_rng([0, 1])
    events = sample_events(world, rng, args.learn_events)
    dense = np.stack([events["age"], events["sessions_7d"], events["hour"]], axis=1)
    mean, std = dense.mean(0), dense.std(0) + 1e-12
    sizes = {"user_id": world.n_users, "country": COUNTRIES, "device": DEVICES_N}

    def contexts(arrays, dense):
        return Features.from_arrays(
            ids={name: arrays[name] for name in sizes}, sizes=sizes, dense=(dense - mean) / std
        )

    items = Features.from_arrays(
        ids={"item_id": np.arange(world.n_items), "genre": world.genre},
        sizes={"item_id": world.n_items, "genre": GENRES},
        dense=np.stack([np.log(world.price), world.age_days / 3650.0], axis=1),
    )
    data = LoggedData.from_arrays(
        context=contexts(events, dense),
        action_context=items,
        action=events["item_id"],
        reward=events["reward"],
        pscore=events["pscore"],
    )
    m = 2_000
    users = rng.choice(world.n_users, m, p=world.activity)
    devices = rng.choice(len(DEVICES), m, p=DEVICE_SHARE)
    test_arrays = {"user_id": users, "country": world.country[users], "device": devices}
    test_dense = np.stack([world.age[users], rng.poisson(world.sessions[users]), rng.integers(0, 24, m)], 1)
    test = LoggedData(
        context=contexts(test_arrays, test_dense.astype(np.float64)),
        action_context=items,
        action=jnp.zeros(m, jnp.int32),
        reward=jnp.zeros(m, jnp.float32),
        pscore=jnp.ones(m, jnp.float32),
        pi_b=jnp.asarray(world.logging_probs(users), jnp.float32),
        expected_reward=jnp.asarray(1.0 / (1.0 + np.exp(-world.click_logits(users, devices))), jnp.float32),
    )
    log(f"learn: {args.learn_events} events, {world.n_users} users, {world.n_items} items")
    variants = [(True, None), (False, None), (True, "row-adagrad")]
    for sparse, table_optimizer in variants:
        config = TrainConfig(
            objective="ips",
            epochs=args.learn_epochs,
            sparse_embeddings=sparse,
            embedding_optimizer=table_optimizer,
        )
        result, timing = train_seeds(config, seeds=args.learn_seeds, data=data, test_data=test)
        emit(
            {
                "kind": "learn",
                "sparse_embeddings": sparse,
                "embedding_optimizer": table_optimizer,
                "seeds": args.learn_seeds,
                "epochs": args.learn_epochs,
                "test_value_per_epoch_mean": [sig(v) for v in np.mean(result.test_value, axis=0)],
                "selected_value": [sig(v) for v in np.asarray(result.selected_value)],
                "selected_value_mean": sig(float(np.mean(result.selected_value))),
                "selected_epoch": np.asarray(result.selected_epoch).tolist(),
                "behavior_value": sig(float(np.mean(result.behavior_value))),
                "optimal_value": sig(float(np.mean(result.optimal_value))),
                "seconds_train": sig(timing["seconds_train"], 3),
                "seconds_compile": sig(timing["seconds_compile"], 3),
            },
            records,
        )


def _fields(config) -> dict:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


if __name__ == "__main__":
    sys.exit(main())
