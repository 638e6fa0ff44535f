"""Cross-check :func:`towerjax.off_policy_estimates` against Open Bandit Pipeline 0.5.7.

OBP is never a dependency of towerjax: run this in a scratch environment outside the repository::

    python3 -m venv /tmp/obp-venv
    /tmp/obp-venv/bin/pip install --no-deps --ignore-requires-python obp==0.5.7
    /tmp/obp-venv/bin/pip install scikit-learn scipy pandas tqdm numpy matplotlib seaborn \\
        "jax[cpu]" flax optax chex torch   # obp.utils imports torch; the CPU wheel is enough
    /tmp/obp-venv/bin/pip install --no-deps -e /path/to/towerjax
    /tmp/obp-venv/bin/python benchmarks/obp_crosscheck.py

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


def main() -> int:
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
            print(json.dumps(line))
    if worst > TOLERANCE:
        print(f"FAIL: largest difference {worst:.3g} > {TOLERANCE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
