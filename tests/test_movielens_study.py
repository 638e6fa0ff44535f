"""The MovieLens two-stage study: ranking metrics (towerjax.metrics), the methods' objectives,
options, the command line, and a miniature end-to-end run on a tiny MovieLens-like fixture."""

import argparse
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.cli.arguments import Parser
from towerjax.datasets import FetchError
from towerjax.datasets.movielens import MovieLens100K
from towerjax.features import feature_spec
from towerjax.objectives import IPS, Naive, TwoStage
from towerjax.studies import movielens
from towerjax.studies.movielens import (
    EVALUATIONS,
    METHODS,
    MovieLensStudyConfig,
    format_movielens,
    method_objective,
    run_movielens_study,
    tower_inputs,
)
from towerjax.studies.movielens import study as movielens_study

# --------------------------------------------------------------------------- methods


def test_each_method_trains_its_objective_with_the_study_weights():
    config = MovieLensStudyConfig(clip=(0.1, 5.0), self_normalize=False, candidates=20, num_samples=7)
    assert method_objective("CE", config) == Naive()
    assert method_objective("1-IPS", config) == IPS(clip=(0.1, 5.0), self_normalize=False, entropy=0.0)
    assert method_objective("2-IPS", config) == TwoStage(
        candidates=20, num_samples=7, alpha=1e-3, clip=(0.1, 5.0), self_normalize=False
    )
    with pytest.raises(InputError, match=r"^method:"):
        method_objective("DR", config)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("candidates", 2.5),
        ("learning_rate", 0.0),
        ("weight_decay", -1.0),
        ("logging_temperature", 0),
        ("ks", (5, 40)),
        ("methods", ("CE", "DR")),
        ("clip", (5.0, 1.0)),
        ("hidden_sizes", (0,)),
        ("activation", "sigmoid"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(InputError, match=f"^{field}:") as error:
        MovieLensStudyConfig(**{field: value})
    assert error.value.argument == field


def test_bad_run_options_name_the_argument():
    with pytest.raises(InputError, match=r"^seeds:"):
        run_movielens_study(seeds=0, data=fixture())
    with pytest.raises(InputError, match=r"^seed:"):
        run_movielens_study(seeds=2, seed=1.5, data=fixture())
    with pytest.raises(InputError, match=r"^config:"):
        run_movielens_study(seeds=2, config={"epochs": 1}, data=fixture())
    with pytest.raises(InputError, match=r"^candidates:"):
        run_movielens_study(seeds=2, config=MovieLensStudyConfig(candidates=41), data=fixture(), log=None)


# --------------------------------------------------------------------------- end to end


def fixture(n_users: int = 24, n_items: int = 40, n_ratings: int = 500) -> MovieLens100K:
    """A tiny MovieLens-like dataset with a planted preference structure."""
    rng = np.random.default_rng(0)
    pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    user, item = pairs // n_items, pairs % n_items
    taste = rng.normal(size=n_users)[user] * rng.normal(size=n_items)[item] + 0.05 * item - 1
    rating = np.clip(np.round(3 + taste + rng.normal(scale=0.5, size=n_ratings)), 1, 5)
    genres = tuple((("Drama",) if i % 2 else ("Comedy", "Action")) for i in range(n_items))
    return MovieLens100K(
        user_ids=np.arange(1, n_users + 1),
        item_ids=np.arange(1, n_items + 1),
        user=user,
        item=item,
        rating=rating.astype(np.float64),
        timestamp=np.arange(n_ratings, dtype=np.int64),
        age=rng.integers(18, 60, n_users),
        gender=np.array(["M", "F"] * (n_users // 2), dtype=object),
        occupation=np.array(["other"] * n_users, dtype=object),
        user_features=rng.normal(size=(n_users, 3)),
        user_feature_names=("age", "gender=F", "gender=M"),
        title=np.array([f"movie {i}" for i in range(n_items)], dtype=object),
        release_year=np.full(n_items, 1995.0),
        genres=genres,
        item_features=np.array([[g == ("Drama",), g != ("Drama",)] for g in genres], dtype=np.float64),
        item_feature_names=("genre=Drama", "genre=Comedy"),
    )


def one_hot(features) -> np.ndarray:
    """``[n, sum sizes + d]``: each table's ids one-hot, then the dense columns."""
    columns = [np.eye(t.size)[np.asarray(features.ids[t.name])] for t in features.tables]
    return np.concatenate([*columns, np.asarray(features.dense)], axis=1)


def test_id_lookups_are_the_one_hot_towers_of_earlier_versions():
    # The study's towers once read [U, U + d_u] one-hot users and [I, I + d_i] one-hot
    # items. In sum mode each table is the one-hot kernel's rows of its ids and the first
    # layer's kernel the dense columns' rows: the same parameters, the same scores.
    data = fixture()
    config = MovieLensStudyConfig(embedding_size=8)
    users, items = tower_inputs(data)
    assert [(t.name, t.size) for t in users.tables] == [("user_id", 24), ("gender", 2), ("occupation", 1)]
    assert [(t.name, t.size) for t in items.tables] == [("item_id", 40)]
    np.testing.assert_allclose(users.dense[:, 0], data.user_features[:, 0])
    np.testing.assert_allclose(items.dense, data.item_features)

    x, e = one_hot(users), one_hot(items)
    init = config.model.init(jax.random.key(0), feature_spec(users), feature_spec(items))
    shapes = jax.tree.map(lambda a: a.shape, init)
    assert shapes["context"] == {
        "Dense_0": {"kernel": (1, 8), "bias": (8,)},
        "embed_user_id": {"embedding": (24, 8)},
        "embed_gender": {"embedding": (2, 8)},
        "embed_occupation": {"embedding": (1, 8)},
    }
    assert shapes["action"] == {
        "Dense_0": {"kernel": (2, 8), "bias": (8,)},
        "embed_item_id": {"embedding": (40, 8)},
    }

    def split(features, kernel: np.ndarray) -> dict:
        """The tower's parameters holding ``kernel``'s rows (tables' one-hot columns, then dense)."""
        params, start = {}, 0
        for table in features.tables:
            params[f"embed_{table.name}"] = {"embedding": kernel[start : start + table.size]}
            start += table.size
        params["Dense_0"] = {"kernel": kernel[start:], "bias": np.zeros(kernel.shape[1])}
        return jax.tree.map(jnp.asarray, params)

    rng = np.random.default_rng(1)
    kernel_x, kernel_a = rng.normal(size=(x.shape[1], 8)), rng.normal(size=(e.shape[1], 8))
    params = {"context": split(users, kernel_x), "action": split(items, kernel_a)}
    scores = config.model.scores(params, users, items)
    np.testing.assert_allclose(scores, (x @ kernel_x) @ (e @ kernel_a).T, rtol=1e-4, atol=1e-4)
    # The study trains these towers: TrainConfig builds the same model.
    assert movielens.train_config("CE", config, 100).model == config.model


@pytest.fixture(scope="module")
def miniature():
    """One miniature run shared by the tests that read it: ``(result, progress lines)``."""
    lines = []
    result = run_movielens_study(seeds=2, seed=3, miniature=True, data=fixture(), log=lines.append)
    return result, lines


def test_miniature_study_end_to_end(miniature):
    result, lines = miniature
    json.dumps(result)  # serialisable
    assert result["seeds"] == 2 and result["config"]["candidates"] == 12
    assert len(lines) == 1 + len(METHODS)
    names = {f"{m}@{k}" for m in ("precision", "recall", "ndcg") for k in (5, 10)}
    for group in (result["methods"], result["references"]):
        for stats in group.values():
            assert set(stats) == set(EVALUATIONS)
            for evaluation in EVALUATIONS:
                assert set(stats[evaluation]) == names
                for cell in stats[evaluation].values():
                    assert len(cell["values"]) == 2
                    assert all(0.0 <= v <= 1.0 for v in cell["values"])
                    assert math.isfinite(cell["se"]) and cell["se"] >= 0
    assert set(result["methods"]) == set(METHODS)
    assert set(result["references"]) == {"logging", "ranker", "oracle"}
    # The ranker alone is the same list in both evaluations; the oracle beats a random top 5.
    ranker = result["references"]["ranker"]
    assert ranker["one-stage"] == ranker["two-stage"]
    assert (
        result["references"]["oracle"]["one-stage"]["precision@5"]["mean"] > result["environment"]["mean_q"]
    )
    for method in METHODS:
        assert len(result["loss"][method]) == result["config"]["epochs"]
        assert all(math.isfinite(v) for v in result["loss"][method])
    comparison = result["comparison"]
    assert set(comparison) == set(EVALUATIONS)
    assert comparison["two-stage"]["paper"] == "2-IPS > CE > 1-IPS"
    assert set(comparison["one-stage"]["paired_differences"]) == {"1-IPS - CE", "2-IPS - CE", "2-IPS - 1-IPS"}
    text = format_movielens(result)
    for needle in ("### one-stage", "### two-stage", "| CE |", "| 2-IPS |", "*oracle*", "Ma et al.", "95.8"):
        assert needle in text


def parse(argv: list[str]) -> argparse.Namespace:
    """``towerjax study``'s parser with only this study's subcommand."""
    parser = Parser(prog="towerjax study")
    movielens.add_parser(parser.add_subparsers(dest="study", parser_class=Parser, required=True))
    return parser.parse_args(argv)


def test_cli_rejects_bad_options_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["movielens", "--seeds", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds" in err[0]


def test_towerjax_cli_declares_the_study(capsys):
    from towerjax import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "movielens", "--seeds", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["towerjax study movielens: error: argument --seeds: expected a positive integer, got 0"]


def test_cli_reports_a_missing_dataset_in_one_line(capsys, monkeypatch):
    def unavailable(**_):
        raise FetchError("MovieLens-100K is not cached and pip cannot download it")

    monkeypatch.setattr(movielens_study, "load_movielens_100k", unavailable)
    args = parse(["movielens", "--quick", "--seeds", "2"])
    assert args.handler(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["towerjax study movielens: error: MovieLens-100K is not cached and pip cannot download it"]


def test_cli_runs_the_quick_study_and_writes_json(capsys, monkeypatch, tmp_path, miniature):
    # The study itself ran in `miniature` (same options); here the command's plumbing.
    calls = []

    def run(**options):
        calls.append(options)
        return miniature[0]

    monkeypatch.setattr(movielens_study, "run_movielens_study", run)
    out = tmp_path / "out" / "movielens.json"
    args = parse(["movielens", "--quick", "--seeds", "2", "--seed", "3", "--json", str(out)])
    assert args.handler(args) == 0
    assert len(calls) == 1 and calls[0]["miniature"] is True
    assert (calls[0]["seeds"], calls[0]["seed"]) == (2, 3)
    result = json.loads(out.read_text())
    assert result["seeds"] == 2 and result["seed"] == 3 and set(result["methods"]) == set(METHODS)
    printed = capsys.readouterr().out
    assert printed.startswith(format_movielens(miniature[0])) and f"wrote {out}" in printed
