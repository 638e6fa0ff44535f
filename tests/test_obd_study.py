"""The OBD study end to end on a tiny fixture wheel built here, and its estimators on known inputs."""

import json
import zipfile

import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.datasets import DatasetFileError, load_obd
from towerjax.evaluation import off_policy_estimates
from towerjax.studies.obd import data as obd_data
from towerjax.studies.obd import format_obd, prepare_obd, run_obd_study, slot_estimates

N_ITEMS = 4
ROWS_PER_SLOT = 12


def _item_table(labels: tuple[str, ...], categories: tuple[int, ...] = (0, 1, 1, 0)) -> str:
    """Four items, a numeric and a categorical feature; item ``i`` has category ``labels[categories[i]]``."""
    lines = [",item_id,item_feature_0,item_feature_1"]
    for i, (value, cat) in enumerate(zip([-0.5, 0.25, 1.5, 0.75], categories, strict=True)):
        lines.append(f"{i},{i},{value},{labels[cat]}")
    return "\n".join(lines) + "\n"


def _wheel(path, members: dict[str, str]):
    with zipfile.ZipFile(path, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return path


def _log(rng: np.random.Generator, *, random: bool, users: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """``3 * ROWS_PER_SLOT`` rows, slots in turn, at least one click per slot; returns the CSV and clicks."""
    n = 3 * ROWS_PER_SLOT
    header = ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1," + ",".join(
        f"user-item_affinity_{j}" for j in range(N_ITEMS)
    )
    position = np.arange(n) % 3 + 1
    item = rng.integers(0, N_ITEMS, n)
    click = (rng.random(n) < 0.25).astype(int)
    click[:3] = 1  # one click in each slot at least
    pscore = np.full(n, 1.0 / N_ITEMS) if random else rng.uniform(0.05, 0.9, n)
    lines = [header]
    for i in range(n):
        affinity = ",".join(str(float(rng.integers(0, 2))) for _ in range(N_ITEMS))
        lines.append(
            f"{i},2019-11-24 00:{i // 60:02d}:{i % 60:02d}+00:00,{item[i]},{position[i]},{click[i]},"
            f"{float(pscore[i])!r},{users[i % len(users)]},{'ab'[i % 2]},{affinity}"
        )
    return "\n".join(lines) + "\n", click


@pytest.fixture(scope="module")
def fixture_wheel(tmp_path_factory):
    rng = np.random.default_rng(7)
    bts, bts_click = _log(rng, random=False, users=("u1", "u2", "u3"))
    # The random log has a user category the bts log never saw ("u9"), and its item
    # table hashes the categories differently, as the real files do.
    random, random_click = _log(rng, random=True, users=("u1", "u2", "u9"))
    root = "obp/dataset/obd"
    members = {
        f"{root}/bts/all/all.csv": bts,
        f"{root}/bts/all/item_context.csv": _item_table(("cat_x", "cat_y")),
        f"{root}/random/all/all.csv": random,
        f"{root}/random/all/item_context.csv": _item_table(("zz_other", "aa_other")),
    }
    path = _wheel(tmp_path_factory.mktemp("obd") / "obp-0.4.1-py3-none-any.whl", members)
    return path, bts_click, random_click


def _check_estimate(entry):
    lo, hi = entry["ci"]
    assert lo <= entry["value"] <= hi
    assert entry["stderr"] >= 0
    assert len(entry["per_slot"]) == 3
    np.testing.assert_allclose(entry["value"], np.mean([s["value"] for s in entry["per_slot"]]))


def test_study_end_to_end_on_a_fixture_wheel(fixture_wheel):
    wheel, bts_click, random_click = fixture_wheel
    messages = []
    # Three learners keep the test short (each compiles its own training run): the weighted
    # path (capped IPS), the reward-model path (DR) and the supervised one; naive runs below.
    learners = ("ips", "dr", "regression")
    result = run_obd_study(
        seeds=2, epochs=1, batch_size=8, learners=learners, permutations=200, wheel=wheel, log=messages.append
    )
    json.dumps(result)  # JSON-ready
    assert tuple(result["learners"]) == learners
    assert result["rows"] == {"bts": [ROWS_PER_SLOT] * 3, "random": [ROWS_PER_SLOT] * 3}
    assert result["position_handling"] == "feature" and result["n_slots"] == 3
    assert result["alignment"] == {
        "random_rows_with_unseen_user_categories": ROWS_PER_SLOT,
        "item_categories_matched": {"item_feature_1": 2},
        "item_labels_equal_before": 0,
    }
    assert len(messages) == 1 + len(learners)

    # The uniform policy's value is the random rows' click rate (equal slots: overall mean too).
    uniform = result["uniform"]
    _check_estimate(uniform)
    for k, entry in enumerate(uniform["per_slot"]):
        assert entry["value"] == pytest.approx(random_click[k::3].mean())
    assert uniform["value"] == pytest.approx(random_click.mean())
    bts = result["bts"]
    _check_estimate(bts)
    assert bts["value"] == pytest.approx(bts_click.mean())
    assert bts["difference"]["value"] == pytest.approx(bts_click.mean() - random_click.mean())
    assert 0 < bts["difference"]["p_permutation"] <= 1

    for name, entry in result["learners"].items():
        for estimator in ("ips", "snips"):
            _check_estimate(entry[estimator])
            assert len(entry[estimator]["per_seed"]) == 2
            assert np.all(np.isfinite(entry[estimator]["per_seed"])), name
        # The mixture's IPS is the mean of the seeds' IPS (linear in the policy).
        assert entry["ips"]["value"] == pytest.approx(entry["ips"]["seed_mean"])
        for estimator in ("ips", "snips"):
            diff = entry["difference"][estimator]
            _check_estimate(diff)
            assert isinstance(diff["significant"], bool)
            assert 0 < diff["p_permutation"] <= 1
        assert entry["difference"]["ips"]["value"] == pytest.approx(entry["ips"]["value"] - uniform["value"])
        assert entry["difference"]["snips"]["value"] == pytest.approx(
            entry["snips"]["value"] - uniform["value"]
        )
        assert 1 / N_ITEMS <= entry["max_prob"] <= 1
        assert len(entry["loss"]) == 1 and np.isfinite(entry["loss"][0])
    assert result["config"]["ips"]["objective"]["cap"] == 10.0
    assert result["config"]["regression"]["objective"]["name"] == "regression"

    table = format_obd(result)
    for name in (*learners, "uniform", "bts"):
        assert f"| {name}" in table
    assert "significant?" in table


@pytest.mark.parametrize("handling", ["pooled", "separate"])
def test_pooled_and_separate_positions_run_on_all_slots(fixture_wheel, handling):
    wheel, _, random_click = fixture_wheel
    result = run_obd_study(
        seeds=2,
        epochs=1,
        batch_size=8,
        learners=["naive"],
        position_handling=handling,
        permutations=50,
        wheel=wheel,
        log=lambda _: None,
    )
    assert result["position_handling"] == handling and list(result["learners"]) == ["naive"]
    assert result["rows"] == {"bts": [ROWS_PER_SLOT] * 3, "random": [ROWS_PER_SLOT] * 3}
    assert result["uniform"]["value"] == pytest.approx(random_click.mean())
    _check_estimate(result["learners"]["naive"]["ips"])


def test_the_data_path_is_from_obp_with_each_position_handling(fixture_wheel):
    wheel, bts_click, random_click = fixture_wheel
    bts = load_obd("bts", "all", wheel=wheel)
    d_x = bts.context().shape[1]  # user one-hot and affinities
    for handling, width in (("feature", d_x + 3), ("pooled", d_x), ("separate", d_x)):
        data = prepare_obd("all", handling, wheel=wheel)
        reading = "pooled" if handling == "separate" else handling
        expected = LoggedData.from_obp(bts.to_bandit_feedback(), position_handling=reading)
        np.testing.assert_array_equal(data.train.context, expected.context)
        np.testing.assert_array_equal(data.train.position, bts.position)
        assert data.train.context.shape == (3 * ROWS_PER_SLOT, width)
        if handling == "separate":  # one training set per slot, its rows only
            assert len(data.train_sets) == 3
            for k, part in enumerate(data.train_sets):
                np.testing.assert_array_equal(part.position, np.full(ROWS_PER_SLOT, k))
                np.testing.assert_array_equal(part.reward, bts_click[k::3])
        else:  # every slot's rows train one policy
            assert len(data.train_sets) == 1 and data.train_sets[0].n_rounds == 3 * ROWS_PER_SLOT
        for k, part in enumerate(data.eval_sets):  # evaluation: each slot's random rows
            np.testing.assert_array_equal(part.position, np.full(ROWS_PER_SLOT, k))
            np.testing.assert_array_equal(data.rewards[k], random_click[k::3])
            np.testing.assert_allclose(data.pscores[k], 1 / N_ITEMS)
            assert data.eval_context[k].shape == (ROWS_PER_SLOT, width)
            if handling == "feature":  # the same slot one-hot as training
                np.testing.assert_array_equal(
                    data.eval_context[k][:, -3:], np.eye(3)[np.full(ROWS_PER_SLOT, k)]
                )


def test_random_item_table_is_aligned_to_bts_by_category(fixture_wheel):
    wheel, _, _ = fixture_wheel
    bts = load_obd("bts", "all", wheel=wheel)
    random = load_obd("random", "all", wheel=wheel)
    # As in the real files: same item ids, other hash labels for the same categories, so
    # each table's one-hot columns have other names and order and item rows disagree.
    np.testing.assert_array_equal(bts.item_ids, random.item_ids)
    assert not set(bts.item_feature_names[1:]) & set(random.item_feature_names[1:])
    assert not np.array_equal(bts.item_features, random.item_features)
    assert random.item_category_map(bts) == {"item_feature_1": {"zz_other": "cat_x", "aa_other": "cat_y"}}

    aligned = random.align_items(bts)
    np.testing.assert_array_equal(aligned.item_features, bts.item_features)
    assert aligned.item_feature_names == bts.item_feature_names
    for item in bts.item_ids.tolist():  # same id: same feature row and same action index
        row = int(np.flatnonzero(aligned.item_ids == item)[0])
        np.testing.assert_array_equal(aligned.item_features[row], bts.item_features[bts.item_ids == item][0])
    np.testing.assert_array_equal(aligned.item_ids[aligned.action], random.item_id)
    # The study evaluates on the aligned table.
    data = prepare_obd("all", "feature", wheel=wheel)
    np.testing.assert_array_equal(data.items, bts.item_features)
    np.testing.assert_array_equal(data.evaluation.action_context, data.train.action_context)


def test_item_tables_that_do_not_correspond_are_refused(fixture_wheel, tmp_path):
    wheel, _, _ = fixture_wheel
    bts = load_obd("bts", "all", wheel=wheel)
    rng = np.random.default_rng(3)
    log, _ = _log(rng, random=True, users=("u1",))
    root = "obp/dataset/obd/random/all"
    cases = {
        # items 0 and 1 share a category here but not in bts: no one-to-one map
        "one to one": _item_table(("p", "q"), (0, 0, 1, 0)),
        "differs": _item_table(("p", "q")).replace(",1.5,", ",1.25,"),
    }
    for i, (message, table) in enumerate(cases.items()):
        other = _wheel(tmp_path / f"case{i}.whl", {f"{root}/all.csv": log, f"{root}/item_context.csv": table})
        with pytest.raises(DatasetFileError, match=message):
            load_obd("random", "all", wheel=other).align_items(bts)


def test_uniform_policy_matches_the_click_rate_and_off_policy_estimates():
    rng = np.random.default_rng(0)
    reward = [(rng.random(n) < 0.3).astype(float) for n in (50, 60, 40)]
    pscore = [np.full(r.size, 0.1) for r in reward]
    uniform = [np.full((3, r.size), 0.1) for r in reward]
    out = slot_estimates(uniform, reward, pscore, permutations=100)
    ctr = np.mean([r.mean() for r in reward])
    assert out["ips"]["value"] == pytest.approx(ctr) and out["snips"]["value"] == pytest.approx(ctr)
    for estimator in ("ips", "snips"):
        diff = out["difference"][estimator]
        assert diff["value"] == pytest.approx(0, abs=1e-12) and diff["stderr"] == pytest.approx(0, abs=1e-12)
        assert diff["significant"] is False and diff["p_permutation"] == 1.0

    # Per seed and slot, the estimates are evaluation.off_policy_estimates' (mean over slots).
    probs = [rng.uniform(0.01, 0.5, (2, r.size)) for r in reward]
    out = slot_estimates(probs, reward, pscore, permutations=0)
    for seed in range(2):
        ref = [
            off_policy_estimates(np.c_[p[seed], 1 - p[seed]], np.zeros(r.size, int), r, ps)
            for p, r, ps in zip(probs, reward, pscore, strict=True)
        ]
        for estimator in ("ips", "snips"):
            assert out[estimator]["per_seed"][seed] == pytest.approx(
                np.mean([float(e[estimator].value) for e in ref]), rel=1e-5
            )
            se = np.sqrt(np.sum([float(e[estimator].stderr) ** 2 for e in ref])) / 3
            assert out[estimator]["per_seed_stderr"][seed] == pytest.approx(se, rel=1e-4)
    assert np.isnan(out["difference"]["ips"]["p_permutation"])


def test_a_policy_that_never_takes_the_logged_items_has_snips_zero_as_everywhere():
    # evaluation.estimator_terms' one behaviour at zero total weight: SNIPS 0 with s.e. 0, not NaN.
    reward = [np.array([1.0, 0.0, 1.0, 0.0])] * 3
    never = [np.zeros((2, 4))] * 3
    out = slot_estimates(never, reward, [np.full(4, 0.25)] * 3, permutations=0)
    assert out["snips"]["value"] == 0.0 and out["snips"]["stderr"] == 0.0
    assert out["snips"]["per_seed"] == [0.0, 0.0] and out["ips"]["value"] == 0.0
    assert out["difference"]["snips"]["value"] == pytest.approx(-0.5)


def test_permutation_test_flags_a_policy_that_follows_the_clicks():
    rng = np.random.default_rng(1)
    n = 400
    reward = np.zeros(n)
    reward[rng.choice(n, 8, replace=False)] = 1.0
    prob = np.where(reward == 1, 0.9, 0.05)[None, :]  # puts its mass where the clicks are
    out = slot_estimates([prob], [reward], [np.full(n, 0.1)], permutations=2000)
    assert out["difference"]["ips"]["value"] > 0
    assert out["difference"]["ips"]["p_permutation"] < 0.01


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"learners": ("ips", "bandit")}, "learners"),
        ({"learners": ()}, "learners"),
        ({"learners": ("ips", "ips")}, "learners"),
        ({"campaign": "kids"}, "campaign"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": 2.5}, "seeds"),
        ({"position_handling": "mixed"}, "position_handling"),
        ({"position_handling": "single"}, "position_handling"),
        ({"epochs": 0}, "epochs"),
        ({"cap": -1.0}, "cap"),
        ({"permutations": -1}, "permutations"),
    ],
)
def test_bad_options_raise_before_any_work(monkeypatch, kwargs, name):
    def no_loading(*args, **kw):
        raise AssertionError("data was read before the options were checked")

    monkeypatch.setattr(obd_data, "load_obd", no_loading)
    with pytest.raises(InputError) as err:
        run_obd_study(log=lambda _: None, **kwargs)
    assert err.value.argument == name


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--learners", "ips,magic"], "--learners"),
        (["--campaign", "kids"], "--campaign"),
        (["--seeds", "0"], "--seeds"),
        (["--cap", "-1"], "--cap"),
        (["--positions", "single"], "--positions"),
    ],
)
def test_cli_bad_obd_options_fail_with_one_line_naming_the_flag(capsys, args, flag):
    from towerjax import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "obd", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err


def test_cli_unreadable_dataset_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    from towerjax import cli

    (tmp_path / "obp-0.4.1-py3-none-any.whl").write_text("not a zip file")
    monkeypatch.setenv("TOWERJAX_CACHE", str(tmp_path))
    assert cli.main(["study", "obd", "--json", str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("towerjax study obd: error:") and "obp==0.4.1" in err[0], err
    assert not (tmp_path / "out.json").exists()
