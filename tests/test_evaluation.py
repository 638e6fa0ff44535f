"""Off-policy evaluation (SPEC 7): every estimate against an independent numpy reference,
their limits, standard errors, the vectorised bootstrap, diagnostics and input checks."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax import evaluation, jsonio
from towerjax.checks import InputError
from towerjax.evaluation import (
    ESTIMATORS,
    Estimate,
    Lambdas,
    estimates_from_terms,
    estimator_terms,
    off_policy_estimates,
    off_policy_terms,
    paired_difference,
    summarize_terms,
    validation_estimates,
    weight_diagnostics,
)

N, A = 300, 6
LAMBDAS = {"switch_lambda": 2.5, "dros_lambda": 4.0, "subgauss_lambda": 0.3, "ls_lambda": 0.5}


def _logs(seed=0, n=N, n_actions=A):
    rng = np.random.default_rng(seed)

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    pi = softmax(1.5 * rng.normal(size=(n, n_actions)))
    pi_b = softmax(rng.normal(size=(n, n_actions)))
    action = (pi_b.cumsum(1) > rng.random((n, 1))).argmax(1)
    q = 1 / (1 + np.exp(-rng.normal(size=(n, n_actions))))
    reward = (rng.random(n) < q[np.arange(n), action]).astype(float)
    q_hat = np.clip(q + 0.1 * rng.normal(size=q.shape), 0, 1)
    return {
        "pi": pi,
        "action": action,
        "reward": reward,
        "pscore": pi_b[np.arange(n), action],
        "q_hat": q_hat,
        "pi_b": pi_b,
    }


LOGS = _logs()
CATEGORY = np.arange(A) % 3  # 3 item categories


def _estimate(logs=LOGS, **kwargs):
    return off_policy_estimates(
        logs["pi"], logs["action"], logs["reward"], logs["pscore"], logs["q_hat"], pi_b=logs["pi_b"], **kwargs
    )


# --- independent float64 references, written from SPEC 7 / Open Bandit Pipeline ---------------


def _reference(logs, category, switch_lambda, dros_lambda, subgauss_lambda, ls_lambda):
    """``{name: (value, per-row influence)}``: the estimate and the terms whose std(ddof=1)/sqrt(n) is its SE."""
    pi, a, r, p, q, pi_b = (logs[k] for k in ("pi", "action", "reward", "pscore", "q_hat", "pi_b"))
    rows = np.arange(r.size)
    w = pi[rows, a] / p
    dm = (pi * q).sum(1)
    res = r - q[rows, a]
    out = {}

    def mean_type(name, terms):
        out[name] = (terms.mean(), terms)

    mean_type("ipw", w * r)
    snipw = (w * r).sum() / w.sum()
    out["snipw"] = (snipw, w * (r - snipw) / w.mean())
    mean_type("dm", dm)
    mean_type("dr", dm + w * res)
    v_res = (w * res).sum() / w.sum()
    out["sndr"] = (dm.mean() + v_res, (dm - dm.mean()) + w * (res - v_res) / w.mean())
    mean_type("switch-dr", dm + (w <= switch_lambda) * w * res)
    mean_type("dr-os", dm + dros_lambda * w / (w**2 + dros_lambda) * res)
    mean_type("ipw-subgauss", w / (1 - subgauss_lambda + subgauss_lambda * w) * r)
    mean_type("ipw-ls", np.log(1 + ls_lambda * w * r) / ls_lambda)
    w_e = np.array(
        [pi[i, category == category[a[i]]].sum() / pi_b[i, category == category[a[i]]].sum() for i in rows]
    )
    mean_type("mips", w_e * r)
    return out


def _se(terms):
    return terms.std(ddof=1) / math.sqrt(terms.size)


@pytest.mark.parametrize("explicit", [True, False], ids=["given-lambdas", "default-lambdas"])
def test_every_estimate_and_standard_error_matches_the_reference(explicit):
    kwargs = LAMBDAS if explicit else {}
    lambdas = (
        LAMBDAS
        if explicit
        else {
            "switch_lambda": math.sqrt(N),
            "dros_lambda": N,
            "subgauss_lambda": 1 / math.sqrt(N),
            "ls_lambda": 1 / math.sqrt(N),
        }
    )
    estimates = _estimate(action_embedding=CATEGORY, **kwargs)
    reference = _reference(LOGS, CATEGORY, **lambdas)
    assert list(estimates) == [*ESTIMATORS, "ips", "snips"]
    for name, (value, terms) in reference.items():
        assert estimates[name].value == pytest.approx(value, rel=1e-5, abs=1e-7), name
        assert estimates[name].stderr == pytest.approx(_se(terms), rel=1e-4), name
        est = estimates[name]
        assert est.wald_low == pytest.approx(est.value - 1.959964 * est.stderr)
        assert est.wald_high == pytest.approx(est.value + 1.959964 * est.stderr)
    assert estimates["ips"] == estimates["ipw"] and estimates["snips"] == estimates["snipw"]


def test_old_call_form_keeps_its_names_and_values():
    logs = LOGS
    old = off_policy_estimates(logs["pi"], logs["action"], logs["reward"], logs["pscore"], logs["q_hat"])
    # The first release's formulas.
    rows = np.arange(N)
    w = logs["pi"][rows, logs["action"]] / logs["pscore"]
    r = logs["reward"]
    snips = (w * r).sum() / w.sum()
    direct = (logs["pi"] * logs["q_hat"]).sum(1)
    dr = direct + w * (r - logs["q_hat"][rows, logs["action"]])
    before = {
        "ips": ((w * r).mean(), _se(w * r)),
        "snips": (snips, _se(w * (r - snips) / w.mean())),
        "dm": (direct.mean(), _se(direct)),
        "dr": (dr.mean(), _se(dr)),
    }
    for name, (value, se) in before.items():
        assert old[name][0] == old[name].value == pytest.approx(value, rel=1e-5)
        assert old[name][1] == old[name].stderr == pytest.approx(se, rel=1e-4)
    assert "mips" not in old  # needs pi_b and action_embedding
    without_model = off_policy_estimates(logs["pi"], logs["action"], logs["reward"], logs["pscore"])
    assert set(without_model) == {"ipw", "snipw", "ipw-subgauss", "ipw-ls", "ips", "snips"}


def test_limits_of_the_hyperparameters():
    inf = _estimate(switch_lambda=math.inf, dros_lambda=1e12, subgauss_lambda=0.0, ls_lambda=0.0)
    assert inf["switch-dr"].value == inf["dr"].value and inf["switch-dr"].stderr == inf["dr"].stderr
    assert inf["dr-os"].value == pytest.approx(inf["dr"].value, rel=1e-6)
    assert inf["ipw-subgauss"].value == inf["ipw"].value
    assert inf["ipw-ls"].value == inf["ipw"].value
    zero = _estimate(switch_lambda=0.0, dros_lambda=0.0, subgauss_lambda=1.0)
    assert zero["switch-dr"].value == zero["dm"].value and zero["dr-os"].value == zero["dm"].value
    # lambda = 1 gives w~ = 1 wherever w > 0: the mean reward of the rows pi can take.
    w_positive = LOGS["pi"][np.arange(N), LOGS["action"]] > 0
    assert zero["ipw-subgauss"].value == pytest.approx(np.mean(LOGS["reward"] * w_positive), rel=1e-6)
    for ls_lambda in (1e-3, 0.1, 1.0, 10.0):
        est = _estimate(ls_lambda=ls_lambda)
        assert est["ipw-ls"].value <= est["ipw"].value


def test_mips_with_singleton_or_one_category():
    singleton = _estimate(action_embedding=np.arange(A))
    assert singleton["mips"].value == pytest.approx(singleton["ipw"].value, rel=1e-6)
    assert singleton["mips"].diagnostics == pytest.approx(singleton["ipw"].diagnostics, rel=1e-5)
    one = _estimate(action_embedding=np.zeros(A, int))  # w(x, e) = 1: the logged mean reward
    assert one["mips"].value == pytest.approx(LOGS["reward"].mean(), rel=1e-6)
    # Several discrete dimensions: each distinct combination is one category.
    two_dims = _estimate(action_embedding=np.stack([np.arange(A) % 3, np.arange(A) % 2], 1))
    combined = _estimate(action_embedding=np.arange(A) % 6)
    assert two_dims["mips"].value == pytest.approx(combined["mips"].value, rel=1e-6)
    only_pi_b = _estimate()  # pi_b without action_embedding: no mips
    assert "mips" not in only_pi_b


def test_bootstrap_is_reproducible_and_brackets_the_value():
    key = jax.random.key(3)
    first = _estimate(key=key, n_bootstrap=200)
    again = _estimate(key=key, n_bootstrap=200)
    other = _estimate(key=jax.random.key(4), n_bootstrap=200)
    assert first == again
    assert first["ipw"].bootstrap_low != other["ipw"].bootstrap_low
    for name in ESTIMATORS[:-1]:
        est = first[name]
        assert est.bootstrap_low < est.value < est.bootstrap_high, name
    no_key = _estimate()
    assert math.isnan(no_key["dr"].bootstrap_low) and math.isnan(no_key["dr"].bootstrap_high)
    assert no_key["dr"].value == first["dr"].value


def test_bootstrap_is_one_vectorised_computation():
    n, n_actions = 5000, 4
    rng = np.random.default_rng(1)
    pi = rng.dirichlet(np.ones(n_actions), n)
    action = rng.integers(0, n_actions, n)
    reward = (rng.random(n) < 0.3).astype(float)
    pscore = np.full(n, 1 / n_actions)
    args = [jnp.asarray(x, jnp.float32) for x in (pi, action, reward, pscore)]
    args[1] = jnp.asarray(action, jnp.int32)
    lambdas = jnp.ones(4)

    def resample_draws(n_bootstrap):
        jaxpr = jax.make_jaxpr(
            lambda key: evaluation.estimators.logged_estimates(
                *args, lambdas, None, None, None, key, names=("ipw", "snipw"), n_bootstrap=n_bootstrap
            )
        )(jax.random.key(0))
        return str(jaxpr).count("scatter-add")

    # The program holds one resampling step (mapped in batches, plus one for a remainder)
    # however many resamples there are: no Python loop over them.
    assert resample_draws(1000) == resample_draws(5000) <= 2
    est = off_policy_estimates(pi, action, reward, pscore, key=jax.random.key(0), n_bootstrap=1000)
    # With n = 5000 the percentile interval is close to the Wald one.
    for name in ("ipw", "snipw"):
        width = est[name].bootstrap_high - est[name].bootstrap_low
        assert 0.85 < width / (est[name].wald_high - est[name].wald_low) < 1.15, name


def test_zero_weight_sum_gives_finite_estimates():
    logs = dict(LOGS)
    pi = np.zeros((N, A))
    pi[np.arange(N), (logs["action"] + 1) % A] = 1.0  # never the logged action: every w = 0
    logs["pi"] = pi
    est = _estimate(logs, action_embedding=np.arange(A), key=jax.random.key(0), n_bootstrap=50)
    for name, e in est.items():
        assert all(math.isfinite(v) for v in e[:6]), name
    assert est["snipw"].value == 0 and est["snipw"].stderr == 0
    assert est["sndr"].value == pytest.approx(est["dm"].value) and est["sndr"].stderr == pytest.approx(
        est["dm"].stderr
    )
    assert est["ipw"].diagnostics.to_dict() == {"ess": 0, "max_weight": 0, "top1_share": 0, "mean_weight": 0}


def test_weight_diagnostics_jit_and_eager():
    w = np.random.default_rng(2).exponential(size=250) ** 2
    eager, jitted = weight_diagnostics(w), jax.jit(weight_diagnostics)(w)
    np.testing.assert_allclose(jnp.stack(eager), jnp.stack(jitted), rtol=1e-6)
    top = np.sort(w)[-3:].sum() / w.sum()  # ceil(250 / 100) = 3 rows
    expected = (w.sum() ** 2 / (w**2).sum(), w.max(), top, w.mean())
    np.testing.assert_allclose(jnp.stack(eager), expected, rtol=1e-5)
    assert float(weight_diagnostics(np.array([3.0, 1.0])).top1_share) == 0.75  # at least one row
    assert float(weight_diagnostics(np.ones(7)).ess) == pytest.approx(7)


def test_results_serialise_to_strict_json():
    est = _estimate(action_embedding=CATEGORY)
    dm = est["dm"].to_dict()
    assert "conditional on q_hat" in dm["note"] and dm["diagnostics"] is None
    assert est["dr-os"].to_dict()["note"] == "lambda=300"
    assert all(type(v) is float for k, v in est["ipw"].to_dict().items() if k not in ("diagnostics", "note"))
    text = json.dumps(jsonio.plain({"estimates": est, "array": jnp.array([1.0, jnp.inf])}), allow_nan=False)
    loaded = json.loads(text)
    assert loaded["estimates"]["dm"]["bootstrap_low"] is None and loaded["array"] == [1.0, None]
    assert loaded["estimates"]["ipw"]["diagnostics"]["ess"] > 0
    assert Estimate(1.0, 0.5).to_dict()["wald_low"] != Estimate(1.0, 0.5).to_dict()["wald_low"]  # NaN default


def test_log_smoothing_needs_rewards_in_unit_interval():
    logs = dict(LOGS, reward=2 * LOGS["reward"] - 1)
    est = _estimate(logs)
    assert "ipw-ls" not in est and "ipw" in est


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"pi": np.ones(N)}, "pi"),
        ({"pi": LOGS["pi"] * 1.1}, "pi"),
        ({"pi": np.where(np.arange(A) == 0, -0.1, LOGS["pi"] + 0.1 / (A - 1))}, "pi"),
        ({"pi": LOGS["pi"][:1], "action": LOGS["action"][:1]}, "pi"),
        ({"action": LOGS["action"][:10]}, "action"),
        ({"action": LOGS["action"].astype(float)}, "action"),
        ({"action": np.where(np.arange(N) == 5, A, LOGS["action"])}, "action"),
        ({"action": np.where(np.arange(N) == 5, -1, LOGS["action"])}, "action"),
        ({"reward": LOGS["reward"][:-1]}, "reward"),
        ({"reward": np.where(np.arange(N) == 0, np.nan, LOGS["reward"])}, "reward"),
        ({"pscore": np.where(np.arange(N) == 0, 0.0, LOGS["pscore"])}, "pscore"),
        ({"pscore": np.where(np.arange(N) == 0, 1.5, LOGS["pscore"])}, "pscore"),
        ({"pscore": LOGS["pscore"][:, None]}, "pscore"),
        ({"q_hat": LOGS["q_hat"][:, :-1]}, "q_hat"),
        ({"pi_b": LOGS["pi_b"] * 0.5}, "pi_b"),
        ({"pi_b": np.eye(A)[(LOGS["action"] + 1) % A]}, "pi_b"),
        ({"action_embedding": np.arange(A + 1)}, "action_embedding"),
        ({"action_embedding": np.arange(A) * 0.5}, "action_embedding"),
        ({"switch_lambda": -1.0}, "switch_lambda"),
        ({"dros_lambda": math.nan}, "dros_lambda"),
        ({"subgauss_lambda": 1.5}, "subgauss_lambda"),
        ({"ls_lambda": math.inf}, "ls_lambda"),
        ({"n_bootstrap": 0}, "n_bootstrap"),
    ],
)
def test_bad_input_names_the_argument(change, argument):
    kwargs = {**LOGS, "action_embedding": CATEGORY, **change}
    positional = [kwargs.pop(k) for k in ("pi", "action", "reward", "pscore", "q_hat")]
    with pytest.raises(InputError) as info:
        off_policy_estimates(*positional, **kwargs)
    assert info.value.argument == argument


# --- per-row terms, paired differences and training's validation estimates ---------------------


def _row_inputs(logs=LOGS):
    rows = np.arange(len(logs["action"]))
    w = logs["pi"][rows, logs["action"]] / logs["pscore"]
    direct = (logs["pi"] * logs["q_hat"]).sum(1)
    return w, logs["reward"], direct, logs["q_hat"][rows, logs["action"]]


def test_terms_mean_and_spread_are_every_estimate_and_its_standard_error():
    est = _estimate(action_embedding=CATEGORY, **LAMBDAS)
    terms = off_policy_terms(
        LOGS["pi"], LOGS["action"], LOGS["reward"], LOGS["pscore"], LOGS["q_hat"], pi_b=LOGS["pi_b"],
        action_embedding=CATEGORY, **LAMBDAS,
    )  # fmt: skip
    assert set(terms) == set(est) and set(ESTIMATORS) <= set(terms)
    for name, phi in terms.items():
        assert phi.shape == (N,), name
        value, stderr = summarize_terms(phi)
        np.testing.assert_allclose(value, est[name].value, rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stderr, est[name].stderr, rtol=1e-4, err_msg=name)


def test_estimates_from_terms_are_the_snips_and_dr_formulas():
    w, reward, direct, q_logged = (jnp.asarray(x, jnp.float32) for x in _row_inputs())
    got = estimates_from_terms(w, reward, direct, q_logged)
    snips = jnp.sum(w * reward) / jnp.sum(w)
    influence = w * (reward - snips) / jnp.mean(w)  # the delta method, written out
    dr_terms = direct + w * (reward - q_logged)
    expected = {
        "snips": snips,
        "snips_se": jnp.std(influence, ddof=1) / jnp.sqrt(N),
        "dr": jnp.mean(dr_terms),
        "dr_se": jnp.std(dr_terms, ddof=1) / jnp.sqrt(N),
    }
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=2e-6, err_msg=key)
    without_q = estimates_from_terms(w, reward)
    assert without_q["snips"] == got["snips"] and np.isnan(without_q["dr"]) and np.isnan(without_q["dr_se"])
    log_pi = jnp.log(jnp.asarray(LOGS["pi"], jnp.float32))
    logs = towerjax.LoggedData(
        context=jnp.zeros((N, 1)), action_context=jnp.zeros((A, 1)), action=jnp.asarray(LOGS["action"]), reward=reward,
        pscore=jnp.asarray(LOGS["pscore"], jnp.float32),
    )  # fmt: skip
    from_logs = validation_estimates(log_pi, logs, jnp.asarray(LOGS["q_hat"], jnp.float32))
    for key in expected:
        np.testing.assert_allclose(from_logs[key], got[key], rtol=1e-5, err_msg=key)


def test_zero_weights_give_self_normalised_terms_of_zero_never_nan():
    w, reward, direct, q_logged = (jnp.asarray(x, jnp.float32) for x in _row_inputs())
    w = jnp.zeros_like(w)
    terms = estimator_terms(w, reward, direct=direct, q_logged=q_logged)
    assert all(bool(jnp.all(jnp.isfinite(t))) for t in terms.values())
    assert set(terms) == set(ESTIMATORS) - {"mips"}
    np.testing.assert_array_equal(terms["snipw"], 0.0)  # SNIPS: value 0, standard error 0
    np.testing.assert_allclose(terms["sndr"], direct, rtol=1e-6)  # SNDR: DM
    got = jax.jit(estimates_from_terms)(w, reward, direct, q_logged)
    assert float(got["snips"]) == 0 and float(got["snips_se"]) == 0
    grads = jax.grad(lambda w: estimates_from_terms(w, reward)["snips"])(w)
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_estimator_terms_jit_and_vmap_match_eager_and_a_loop():
    w, reward, direct, q_logged = (jnp.asarray(x, jnp.float32) for x in _row_inputs())
    lambdas = Lambdas(2.5, 4.0, 0.3, 0.5)

    def terms(w):
        return estimator_terms(w, reward, direct=direct, q_logged=q_logged, lambdas=lambdas)

    eager, jitted = terms(w), jax.jit(terms)(w)
    for name in eager:
        np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-5, atol=1e-6, err_msg=name)
    policies = jnp.stack([w, 0.5 * w, w**2])
    batched = jax.vmap(terms)(policies)
    for i, wi in enumerate(policies):
        for name, phi in terms(wi).items():
            np.testing.assert_allclose(batched[name][i], phi, rtol=1e-5, atol=1e-6, err_msg=name)
    only = estimator_terms(w, reward, names=("snips", "ipw"))
    assert list(only) == ["snips", "ipw"]
    np.testing.assert_allclose(only["snips"], eager["snipw"], rtol=1e-6)


def test_paired_difference_of_a_policy_with_itself_is_zero():
    w, reward, *_ = _row_inputs()
    phi = estimator_terms(w, reward)["snipw"]
    same = paired_difference(phi, phi)
    assert same.value == 0 and same.stderr == 0 and same.wald_low == same.wald_high == 0
    vs_logging = paired_difference(phi, reward)  # against the logging policy's on-policy terms r_i
    d = np.asarray(phi, np.float64) - reward
    assert vs_logging.value == pytest.approx(d.mean())
    assert vs_logging.stderr == pytest.approx(d.std(ddof=1) / math.sqrt(N))
    assert vs_logging.wald_high - vs_logging.wald_low == pytest.approx(
        2 * 1.959963984540054 * vs_logging.stderr
    )


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda w, r: estimator_terms(w, r, names=("dr",)), "names"),
        (lambda w, r: estimator_terms(w, r, names=("nope",)), "names"),
        (lambda w, r: estimator_terms(w, r, direct=w), "q_logged"),
        (lambda w, r: estimator_terms(w, r[:-1]), "reward"),
        (lambda w, r: paired_difference(w, r[:-1]), "terms_b"),
    ],
)
def test_bad_terms_input_names_the_argument(call, argument):
    w, reward, *_ = _row_inputs()
    with pytest.raises(InputError) as err:
        call(w, reward)
    assert err.value.argument == argument
