"""Position-row IIPS (towerjax.position_rows), exact prefix marginals, and the OBD three-position study."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_obd_study import N_ITEMS, ROWS_PER_SLOT, fixture_wheel  # noqa: F401 (the fixture wheel)

from towerjax.checks import InputError
from towerjax.list_policy import exact_position_marginals, prefix_position_marginals
from towerjax.position_rows import (
    position_row_estimates,
    position_row_loss,
    position_row_marginals,
    position_row_terms,
)
from towerjax.studies.obd import data as obd_data
from towerjax.studies.obd import format_obd_lists, run_obd_list_study

# A tiny hand-made log: slot 0 has three rows, slot 1 two.
SLOT = np.array([0, 0, 0, 1, 1])
REWARD = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
PSCORE = np.array([0.5, 0.25, 0.25, 0.5, 0.25])
TARGET = np.array([0.25, 0.5, 0.5, 0.1, 0.5])  # w = 0.5, 2, 2, 0.2, 2


def test_iips_and_sniips_on_a_hand_made_log():
    out = position_row_estimates(
        SLOT, REWARD, PSCORE, TARGET, n_slots=2, key=jax.random.key(0), n_bootstrap=200
    )
    # IIPS: slot 0 (0.5 + 0 + 2) / 3, slot 1 (0 + 2) / 2; SNIIPS: 2.5 / 4.5 and 2 / 2.2.
    assert out["iips"].value == pytest.approx(2.5 / 3 + 1.0)
    assert out["sniips"].value == pytest.approx(2.5 / 4.5 + 2 / 2.2)
    for estimate in out.values():
        assert estimate.wald_low < estimate.value < estimate.wald_high
        assert np.isfinite(estimate.bootstrap_low) and estimate.bootstrap_low <= estimate.bootstrap_high
        assert estimate.diagnostics.mean_weight == pytest.approx(np.mean([0.5, 2, 2, 0.2, 2]))
    terms = position_row_terms(SLOT, REWARD, PSCORE, TARGET, n_slots=2)
    for name, t in terms.items():  # the terms' mean is the estimate, their s.e. its standard error
        assert float(jnp.mean(t)) == pytest.approx(out[name].value, rel=1e-6)
        assert float(jnp.std(t, ddof=1) / jnp.sqrt(5)) == pytest.approx(out[name].stderr, rel=1e-6)
    # IIPS's standard error is the slots' combined: row i of slot k has term V + (w_i r_i - V_k) / f_k.
    wr = TARGET / PSCORE * REWARD
    expected = np.r_[(wr[:3] - wr[:3].mean()) / 0.6, (wr[3:] - wr[3:].mean()) / 0.4] + out["iips"].value
    np.testing.assert_allclose(terms["iips"], expected, rtol=1e-6)
    # The logger's own value (target = its marginals, w = 1): the sum of the slots' click rates.
    logger = position_row_estimates(SLOT, REWARD, PSCORE, PSCORE, n_slots=2)
    assert logger["iips"].value == pytest.approx(2 / 3 + 1 / 2) and logger["sniips"].value == pytest.approx(
        2 / 3 + 1 / 2
    )
    assert np.isnan(logger["iips"].bootstrap_low)  # no key, no bootstrap


def test_bad_rows_are_refused_naming_the_argument():
    for kwargs, name in (
        ({"slot": np.array([0, 0, 0, 0, 0])}, "slot"),  # slot 1 has no rows
        ({"slot": np.array([0, 0, 0, 1, 2])}, "slot"),
        ({"reward": REWARD[:4]}, "reward"),
        ({"pscore": np.array([0.5, 0.0, 0.25, 0.5, 0.25])}, "pscore"),
    ):
        args = {"slot": SLOT, "reward": REWARD, "pscore": PSCORE, "target_marginal": TARGET, **kwargs}
        with pytest.raises(InputError) as err:
            position_row_estimates(**args, n_slots=2)
        assert err.value.argument == name


def test_prefix_marginals_equal_the_enumeration_of_every_list():
    scores = jax.random.normal(jax.random.key(1), (3, 5)) * 2
    prefix = jax.jit(prefix_position_marginals, static_argnums=(1, 2))
    exact = jax.jit(exact_position_marginals, static_argnums=(1, 2))
    with jax.enable_x64(True):  # exact in float64, three and four positions
        wide = jnp.asarray(scores, jnp.float64)
        for k, n_items in ((3, 5), (4, 4)):
            np.testing.assert_allclose(
                prefix(wide[:, :n_items], k, 0.7), exact(wide[:, :n_items], k, 0.7), atol=1e-12
            )
    # float32, with and without jit: rounding of about eps times the sum over prefixes, absolute
    np.testing.assert_allclose(prefix(scores, 3, 0.7), exact(scores, 3, 0.7), atol=3e-5)
    np.testing.assert_allclose(prefix_position_marginals(scores, 2), exact(scores, 2, 1.0), atol=3e-6)
    with pytest.raises(InputError, match="prefixes"):
        prefix_position_marginals(jnp.zeros((1, 500)), 3)


# Rows for the gradient identities: 6 items, 3 slots, 12 rows.
SCORES = jax.random.normal(jax.random.key(2), (12, 6))
ITEM = jnp.array([0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5])
ROW_SLOT = jnp.arange(12) % 3
ROW_REWARD = jnp.array([1.0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1])
ROW_PSCORE = jnp.full(12, 1 / 6)


def _estimate(scores, name):
    target = position_row_marginals(scores, ITEM, ROW_SLOT, 3)
    return jnp.mean(position_row_terms(ROW_SLOT, ROW_REWARD, ROW_PSCORE, target, n_slots=3)[name])


@pytest.mark.parametrize("name", ["iips", "sniips"])
def test_the_surrogate_gradient_is_minus_the_estimates_gradient(name):
    """grad L = -grad V_hat: the position-row loss's gradient equals autodiff of the estimate."""

    def loss(scores):
        return position_row_loss(name, scores, ITEM, ROW_SLOT, ROW_REWARD, ROW_PSCORE, n_slots=3)

    expected = -jax.jit(jax.grad(_estimate), static_argnums=1)(SCORES, name)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(SCORES), expected, atol=1e-5)
    assert float(loss(SCORES)) == pytest.approx(float(jax.jit(loss)(SCORES)), rel=1e-6)  # without jit too
    assert np.all(np.isfinite(expected)) and float(jnp.abs(expected).max()) > 1e-2  # not a trivial zero
    # The marginals read at each row's slot are the enumeration's.
    exact = jax.jit(exact_position_marginals, static_argnums=1)(SCORES, 3)[jnp.arange(12), ROW_SLOT, ITEM]
    np.testing.assert_allclose(position_row_marginals(SCORES, ITEM, ROW_SLOT, 3), exact, atol=1e-6)


def test_sampled_marginals_are_the_exact_ones_on_average():
    sampled = position_row_marginals(SCORES, ITEM, ROW_SLOT, 3, key=jax.random.key(4), n_samples=256)
    exact = position_row_marginals(SCORES, ITEM, ROW_SLOT, 3)
    np.testing.assert_allclose(sampled[ROW_SLOT == 0], exact[ROW_SLOT == 0], rtol=1e-6)  # slot 0: the softmax
    np.testing.assert_allclose(sampled, exact, atol=0.05)  # Rao-Blackwellised: tight for 256 lists


def test_naive_is_the_click_likelihood_at_the_slots():
    log_p = jnp.log(position_row_marginals(SCORES, ITEM, ROW_SLOT, 3))
    per_slot = [jnp.mean((ROW_REWARD * log_p)[ROW_SLOT == k]) for k in range(3)]
    naive = position_row_loss("naive", SCORES, ITEM, ROW_SLOT, ROW_REWARD, n_slots=3)
    assert float(naive) == pytest.approx(-float(sum(per_slot)), rel=1e-6)
    with pytest.raises(InputError) as err:
        position_row_loss("iips", SCORES, ITEM, ROW_SLOT, ROW_REWARD, n_slots=3)
    assert err.value.argument == "pscore"


def test_the_three_position_study_end_to_end_on_a_fixture_wheel(fixture_wheel, tmp_path):  # noqa: F811
    wheel = fixture_wheel[0]
    messages = []
    # One learner keeps the test short (each compiles its own training); single-ips is train_seeds'.
    options = dict(
        campaigns=["all"],
        learners=["sniips"],
        seeds=2,
        epochs=1,
        batch_size=6,
        n_bootstrap=50,
        permutations=50,
        wheel=wheel,
    )
    result = run_obd_list_study(out=tmp_path / "rows", log=messages.append, **options)
    json.dumps(result)
    summary = result["campaigns"]["all"]
    assert summary["heldout_rows"] == {"bts": 3 * ROWS_PER_SLOT // 2, "random": 3 * ROWS_PER_SLOT // 2}
    assert [(r["trained_on"], r["learner"]) for r in result["policies"]] == [
        ("bts", "sniips"),
        ("random", "sniips"),
    ]
    for row in result["policies"]:
        for valued_on, values in row["values"].items():
            logger = summary["loggers"][valued_on]
            for name in ("iips", "sniips"):
                entry = values[name]
                assert np.isfinite(entry["value"]) and entry["ci"][0] <= entry["value"] <= entry["ci"][1]
                assert len(entry["per_seed"]) == 2
                assert entry["difference"]["value"] == pytest.approx(entry["value"] - logger["value"])
                assert 0 < entry["difference"]["p_permutation"] <= 1
            # the mixture's IIPS is the mean of the seeds' (linear in the marginals)
            assert values["iips"]["value"] == pytest.approx(np.mean(values["iips"]["per_seed"]))
        assert 1 / N_ITEMS <= row["max_prob"]["bts"] <= 1
    table = format_obd_lists(result)
    assert "bts logger (on-policy)" in table and "significant?" in table and "need whole lists" in table
    # A rerun on the same folder resumes: every cell is read back, none trained.
    again = run_obd_list_study(out=tmp_path / "rows", log=messages.append, **options)
    assert again["policies"] == result["policies"]
    assert any("2 already in" in m for m in messages)


def test_bad_study_options_raise_before_any_work(monkeypatch):
    def no_loading(*args, **kw):
        raise AssertionError("data was read before the options were checked")

    monkeypatch.setattr(obd_data, "load_obd", no_loading)
    for kwargs, name in (
        ({"learners": ("iips", "magic")}, "learners"),
        ({"campaigns": ("kids",)}, "campaigns"),
        ({"heldout": 1.0}, "heldout"),
        ({"seeds": 0}, "seeds"),
        ({"epochs": 0}, "epochs"),
    ):
        with pytest.raises(InputError) as err:
            run_obd_list_study(log=lambda _: None, **kwargs)
        assert err.value.argument == name


def test_cli_bad_option_is_one_line_naming_the_flag(capsys):
    from towerjax import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "obd-lists", "--learners", "iips,magic"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--learners" in err[0], err
