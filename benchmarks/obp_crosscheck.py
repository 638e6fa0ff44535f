"""Cross-check :func:`towerjax.off_policy_estimates` and :func:`towerjax.slate_estimates` against
Open Bandit Pipeline 0.5.7.

OBP is never a dependency of towerjax: run this in a scratch environment outside the repository::

    python3 -m venv /tmp/obp-venv
    /tmp/obp-venv/bin/pip install --no-deps --ignore-requires-python obp==0.5.7
    /tmp/obp-venv/bin/pip install scikit-learn scipy pandas tqdm "numpy<2.4" matplotlib seaborn \\
        "jax[cpu]" flax optax chex torch   # obp.utils imports torch; the CPU wheel is enough
    /tmp/obp-venv/bin/pip install --no-deps -e /path/to/towerjax
    /tmp/obp-venv/bin/python benchmarks/obp_crosscheck.py            # both sections
    /tmp/obp-venv/bin/python benchmarks/obp_crosscheck.py --slate    # the slate section only

(OBP 0.5.7 pins old releases of its dependencies; the current ones ran it. ``--no-deps`` keeps pip
from downgrading them.)

It builds one random single-position log (``n = 1000`` rows, ``A = 10`` items, a softmax
evaluation policy ``pi``, a softmax logging policy ``pi_b``, Bernoulli rewards, a noisy reward
model ``q_hat``, two discrete item-embedding dimensions), computes each OBP estimator with the
``lambda`` that towerjax uses by default (``switch-dr``: ``sqrt(n)``; ``dr-os``: ``n``;
``ipw-subgauss``: ``1 / sqrt(n)``), and towerjax's estimates with its defaults, in its default
float32; then the three again with small ``lambda`` s that shrink many rows (``estimator``
suffixed ``[small lambda]``). It prints one JSON line per estimator, ``{"estimator", "obp", "towerjax", "abs_diff"}``
(``estimator`` is towerjax's name), and exits 1 if any ``abs_diff`` exceeds ``1e-6``.

Names that differ: OBP 0.5.7 calls the sub-Gaussian IPW ``"sg-ipw"`` and the marginalised IPW
``"mipw"`` (towerjax: ``ipw-subgauss``, ``mips``, as SPEC 7). ``ipw-ls`` has no OBP counterpart.

Slate section (SPEC 10): logs from OBP's own ``SyntheticSlateBanditDataset`` (``n = 1000`` lists of
``K = 3`` out of ``A = 5`` items, a linear Plackett-Luce logger, cascade-additive binary rewards);
a Plackett-Luce evaluation policy on random logits, whose three propensities of the logged lists
(whole list, position marginals, prefixes) and next-item distributions OBP computes
(``obtain_pscore_given_evaluation_policy_logit``, ``calc_evaluation_policy_action_dist``); a random
``q_hat [n, K, A]`` given to both. It prints one line per slate estimator (``sips``, ``iips``,
``rips``, their self-normalised forms, ``cascade-dr``; towerjax's names are OBP's
``estimator_name``), then ``list_policy:*`` lines comparing :mod:`towerjax.list_policy`'s
propensities of the same policy with OBP's (``abs_diff`` their largest difference), all to ``1e-6``.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

TOLERANCE = 1e-6


def make_logs(seed: int = 0, n: int = 1000, n_actions: int = 10) -> dict[str, np.ndarray]:
    """A random log with everything both libraries need (float64 numpy)."""
    rng = np.random.default_rng(seed)

    def softmax(logits):
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    pi = softmax(1.5 * rng.normal(size=(n, n_actions)))
    pi_b = softmax(rng.normal(size=(n, n_actions)))
    action = (pi_b.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    q = 1 / (1 + np.exp(-rng.normal(size=(n, n_actions))))
    reward = (rng.random(n) < q[np.arange(n), action]).astype(float)
    q_hat = np.clip(q + 0.1 * rng.normal(size=q.shape), 0, 1)
    embedding = np.stack([np.arange(n_actions) % 3, np.arange(n_actions) % 2], axis=1)  # [A, 2]: 6 categories
    return {
        "pi": pi,
        "pi_b": pi_b,
        "action": action,
        "reward": reward,
        "pscore": pi_b[np.arange(n), action],
        "q_hat": q_hat,
        "embedding": embedding,
    }


def obp_estimates(logs: dict[str, np.ndarray], lambdas: dict[str, float]) -> dict[str, float]:
    """OBP 0.5.7's values, keyed by towerjax's estimator names."""
    from obp import ope

    n, n_actions = logs["pi"].shape
    common = {
        "reward": logs["reward"],
        "action": logs["action"],
        "pscore": logs["pscore"],
        "action_dist": logs["pi"][:, :, None],
        "position": np.zeros(n, dtype=int),
    }
    model = {"estimated_rewards_by_reg_model": logs["q_hat"][:, :, None]}
    out = {
        "ipw": ope.InverseProbabilityWeighting().estimate_policy_value(**common),
        "snipw": ope.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**common),
        "dm": ope.DirectMethod().estimate_policy_value(
            action_dist=common["action_dist"], position=common["position"], **model
        ),
        "dr": ope.DoublyRobust().estimate_policy_value(**common, **model),
        "sndr": ope.SelfNormalizedDoublyRobust().estimate_policy_value(**common, **model),
        "switch-dr": ope.SwitchDoublyRobust(lambda_=lambdas["switch"]).estimate_policy_value(
            **common, **model
        ),
        "dr-os": ope.DoublyRobustWithShrinkage(lambda_=lambdas["dros"]).estimate_policy_value(
            **common, **model
        ),
        "ipw-subgauss": ope.SubGaussianInverseProbabilityWeighting(
            lambda_=lambdas["subgauss"]
        ).estimate_policy_value(**common),
    }
    if hasattr(ope, "MarginalizedInverseProbabilityWeighting"):
        # The exact marginal weights: p_e_a [A, n_categories, d] is the one-hot of each item's embedding.
        embedding = logs["embedding"]
        n_dims = embedding.shape[1]
        p_e_a = np.zeros((n_actions, embedding.max() + 1, n_dims))
        p_e_a[np.arange(n_actions)[:, None], embedding, np.arange(n_dims)[None, :]] = 1.0
        mips = ope.MarginalizedInverseProbabilityWeighting(n_actions=n_actions)
        out["mips"] = mips.estimate_policy_value(
            reward=logs["reward"],
            action=logs["action"],
            action_embed=embedding[logs["action"]],
            pi_b=logs["pi_b"][:, :, None],
            action_dist=common["action_dist"],
            p_e_a=p_e_a,
            position=common["position"],
        )
    return {name: float(value) for name, value in out.items()}


def towerjax_estimates(logs: dict[str, np.ndarray], lambdas: dict[str, float] | None) -> dict[str, float]:
    """towerjax's values (float32, as users run it), with its default ``lambda`` s when ``lambdas`` is None."""
    import towerjax

    lambdas = lambdas or {}

    estimates = towerjax.off_policy_estimates(
        logs["pi"],
        logs["action"],
        logs["reward"],
        logs["pscore"],
        logs["q_hat"],
        pi_b=logs["pi_b"],
        action_embedding=logs["embedding"],
        switch_lambda=lambdas.get("switch"),
        dros_lambda=lambdas.get("dros"),
        subgauss_lambda=lambdas.get("subgauss"),
    )
    return {name: estimate.value for name, estimate in estimates.items()}


def make_slate_logs(
    seed: int = 0, n: int = 1000, n_actions: int = 5, len_list: int = 3
) -> dict[str, np.ndarray]:
    """Slate logs from OBP's ``SyntheticSlateBanditDataset`` and an evaluation policy's OBP propensities,
    as OBP's flat ``[n * K]`` arrays (``q_hat`` and ``action_dist`` ``[n * K * A]``), plus ``eval_logit [n, A]``."""
    from obp.dataset import (
        SyntheticSlateBanditDataset,
        linear_behavior_policy_logit,
        logistic_reward_function,
    )

    dataset = SyntheticSlateBanditDataset(
        n_unique_action=n_actions,
        len_list=len_list,
        dim_context=2,
        reward_type="binary",
        reward_structure="cascade_additive",
        base_reward_function=logistic_reward_function,
        behavior_policy_function=linear_behavior_policy_logit,
        random_state=seed,
    )
    feedback = dataset.obtain_batch_bandit_feedback(n_rounds=n, return_pscore_item_position=True)
    rng = np.random.default_rng(seed + 1)
    eval_logit = rng.normal(size=(n, n_actions))
    pscore, pscore_item_position, pscore_cascade = dataset.obtain_pscore_given_evaluation_policy_logit(
        action=feedback["action"], evaluation_policy_logit_=eval_logit, return_pscore_item_position=True
    )
    action_dist = dataset.calc_evaluation_policy_action_dist(
        action=feedback["action"], evaluation_policy_logit_=eval_logit
    )
    return {
        "slate_id": feedback["slate_id"],
        "action": feedback["action"],
        "position": feedback["position"],
        "reward": feedback["reward"].astype(float),
        "pscore": feedback["pscore"],
        "pscore_item_position": feedback["pscore_item_position"],
        "pscore_cascade": feedback["pscore_cascade"],
        "evaluation_policy_pscore": pscore,
        "evaluation_policy_pscore_item_position": pscore_item_position,
        "evaluation_policy_pscore_cascade": pscore_cascade,
        "q_hat": rng.uniform(size=n * len_list * n_actions),
        "action_dist": action_dist,
        "eval_logit": eval_logit,
        "len_list": np.array(len_list),
        "n_actions": np.array(n_actions),
    }


def obp_slate_estimates(logs: dict[str, np.ndarray]) -> dict[str, float]:
    """OBP 0.5.7's slate estimates, keyed by ``estimator_name``."""
    from obp import ope

    len_list, n_actions = int(logs["len_list"]), int(logs["n_actions"])
    common = {key: logs[key] for key in ("slate_id", "reward", "position")}
    standard = {"pscore": logs["pscore"], "evaluation_policy_pscore": logs["evaluation_policy_pscore"]}
    item = {
        "pscore_item_position": logs["pscore_item_position"],
        "evaluation_policy_pscore_item_position": logs["evaluation_policy_pscore_item_position"],
    }
    cascade = {
        "pscore_cascade": logs["pscore_cascade"],
        "evaluation_policy_pscore_cascade": logs["evaluation_policy_pscore_cascade"],
    }
    estimators = (
        (ope.SlateStandardIPS(len_list=len_list), standard),
        (ope.SelfNormalizedSlateStandardIPS(len_list=len_list), standard),
        (ope.SlateIndependentIPS(len_list=len_list), item),
        (ope.SelfNormalizedSlateIndependentIPS(len_list=len_list), item),
        (ope.SlateRewardInteractionIPS(len_list=len_list), cascade),
        (ope.SelfNormalizedSlateRewardInteractionIPS(len_list=len_list), cascade),
    )
    out = {
        est.estimator_name: float(est.estimate_policy_value(**common, **kwargs)) for est, kwargs in estimators
    }
    cascade_dr = ope.SlateCascadeDoublyRobust(len_list=len_list, n_unique_action=n_actions)
    out[cascade_dr.estimator_name] = float(
        cascade_dr.estimate_policy_value(
            **common,
            **cascade,
            action=logs["action"],
            q_hat=logs["q_hat"],
            evaluation_policy_action_dist=logs["action_dist"],
        )
    )
    return out


def towerjax_slate_estimates(logs: dict[str, np.ndarray]) -> dict[str, float]:
    """towerjax's slate estimates (float32, as users run it) from the same logs, reshaped to ``[n, K]``."""
    import towerjax

    len_list, n_actions = int(logs["len_list"]), int(logs["n_actions"])

    def per_list(key):
        return logs[key].reshape(-1, len_list)

    estimates = towerjax.slate_estimates(
        per_list("action"),
        per_list("reward"),
        pscore=per_list("pscore")[:, 0],
        pscore_item_position=per_list("pscore_item_position"),
        pscore_cascade=per_list("pscore_cascade"),
        evaluation_policy_pscore=per_list("evaluation_policy_pscore")[:, 0],
        evaluation_policy_pscore_item_position=per_list("evaluation_policy_pscore_item_position"),
        evaluation_policy_pscore_cascade=per_list("evaluation_policy_pscore_cascade"),
        q_hat=logs["q_hat"].reshape(-1, len_list, n_actions),
        evaluation_policy_action_dist=logs["action_dist"].reshape(-1, len_list, n_actions),
    )
    return {name: estimate.value for name, estimate in estimates.items()}


def list_policy_differences(logs: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest differences between :mod:`towerjax.list_policy`'s propensities of the evaluation policy
    (Plackett-Luce on ``eval_logit``, ``tau = 1``) and OBP's, keyed ``list_policy:<OBP's name>``."""
    from towerjax import list_policy

    len_list = int(logs["len_list"])
    scores, lists = logs["eval_logit"], logs["action"].reshape(-1, len_list)
    rows = np.arange(lists.shape[0])[:, None]
    marginals = np.asarray(list_policy.exact_position_marginals(scores, len_list))  # [n, K, A]
    ours = {
        "evaluation_policy_pscore": np.repeat(
            np.exp(np.asarray(list_policy.list_log_prob(scores, lists))), len_list
        ),
        "evaluation_policy_pscore_cascade": np.exp(np.asarray(list_policy.prefix_log_probs(scores, lists))),
        "evaluation_policy_pscore_item_position": marginals[rows, np.arange(len_list), lists],
        "action_dist": np.exp(np.asarray(list_policy.next_item_log_probs(scores, lists))),
    }
    out = {}
    for name, value in ours.items():
        reference = logs[name].reshape(lists.shape[0], len_list, -1)
        out[f"list_policy:{name}"] = float(np.max(np.abs(value.reshape(reference.shape) - reference)))
    return out


def slate_lines() -> list[dict]:
    """The slate section's JSON lines."""
    logs = make_slate_logs()
    obp, ours = obp_slate_estimates(logs), towerjax_slate_estimates(logs)
    lines = [
        {"estimator": name, "obp": reference, "towerjax": ours[name], "abs_diff": abs(reference - ours[name])}
        for name, reference in obp.items()
    ]
    for name, diff in list_policy_differences(logs).items():
        lines.append({"estimator": name, "abs_diff": diff})
    return lines


def main() -> int:
    worst = 0.0
    if "--slate" not in sys.argv[1:]:
        worst = single_action_section()
    for line in slate_lines():
        worst = max(worst, line["abs_diff"])
        print(json.dumps(line), flush=True)
    if worst > TOLERANCE:
        print(f"FAIL: largest difference {worst:.3g} > {TOLERANCE}", file=sys.stderr)
        return 1
    return 0


def single_action_section() -> float:
    """Prints the single-action section's lines; returns the largest difference."""
    logs = make_logs()
    n = logs["pi"].shape[0]
    defaults = {"switch": math.sqrt(n), "dros": float(n), "subgauss": 1 / math.sqrt(n)}
    small = {"switch": 2.0, "dros": 5.0, "subgauss": 0.3}  # lambdas that shrink many rows
    worst = 0.0
    for label, obp_lambdas, our_lambdas in (("", defaults, None), ("[small lambda]", small, small)):
        obp, ours = obp_estimates(logs, obp_lambdas), towerjax_estimates(logs, our_lambdas)
        for name, reference in obp.items():
            if label and name not in ("switch-dr", "dr-os", "ipw-subgauss"):
                continue
            diff = abs(reference - ours[name])
            worst = max(worst, diff)
            line = {"estimator": name + label, "obp": reference, "towerjax": ours[name], "abs_diff": diff}
            print(json.dumps(line), flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
