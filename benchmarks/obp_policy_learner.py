"""Open Bandit Pipeline 0.5.7's ``NNPolicyLearner`` on OBP's own synthetic data: the peer reference.

OBP is never a dependency of towerjax: run this only in the scratch environment that
``benchmarks/obp_crosscheck.py`` describes (obp 0.5.7, scikit-learn, scipy, pandas, CPU torch,
towerjax)::

    /tmp/obp-venv/bin/python benchmarks/obp_policy_learner.py

Options: ``--seeds 5`` (seeds ``0 .. seeds-1``), ``--n-rounds 10000`` (training logs),
``--n-test 10000``, ``--beta -3``, ``--out-dir benchmarks/results/obp_synthetic``; ``--max-iter``
overrides OBP's 200 epochs and is only for smoke tests (the JSON records it).

For each seed it builds ``obp.dataset.SyntheticBanditDataset(n_actions=20, dim_context=5,
reward_type="binary", reward_function=logistic_reward_function,
behavior_policy_function=linear_behavior_policy, beta=-3, random_state=seed)``, draws the training
logs and then the test set from that one object with ``obtain_batch_bandit_feedback``, and saves
both to ``seed{seed}.npz`` before any training (float32 for real arrays, int64 for actions and the
one-hot ``action_context``), so another program can train on exactly the same logs:
``{train,test}_{context [n, 5], action [n], reward [n], pscore [n], pi_b [n, 20],
expected_reward [n, 20]}`` and ``action_context [20, 20]``. float32 loses nothing OBP's learner
sees: it casts every tensor to float32 itself.

It then trains ``obp.policy.NNPolicyLearner`` with everything at OBP 0.5.7's defaults (read from
the installed source: one hidden layer of 100 ReLU units, softmax output, ``solver="adam"``,
``learning_rate_init=1e-4``, ``alpha=1e-4`` weight decay (the docstring says 1e-3; the code says
1e-4), ``batch_size="auto"`` = ``min(200, n)``, ``max_iter=200`` epochs, ``tol=1e-4``,
``n_iter_no_change=10``, no early stopping), ``len_list=1``, ``random_state=seed``, once with
``off_policy_objective="ipw"`` and once with ``"dr"``. For ``"dr"`` OBP's learner takes no reward
model from outside: ``fit`` has no ``q_hat`` argument and builds its own ``QFuncEstimator`` (an MLP
with the same defaults, trained by MSE on the logged rewards before the policy), so that is what
is used; its RMSE against the test set's true ``expected_reward`` is reported.

The true value of a policy ``pi`` on the test set is ``mean_i sum_a pi(a|x_i) q(x_i, a)`` with
``q`` the test set's ``expected_reward``: ``value`` uses ``predict_proba`` (the stochastic softmax
policy that OBP learns), ``value_greedy`` uses ``predict`` (its argmax). ``gap_closed`` is
``(value - V_logging) / (V_best - V_logging)`` with ``V_logging = mean_i sum_a pi_b q`` and
``V_best = mean_i max_a q``. One JSON line per (seed, objective) is printed as it goes; everything
lands in ``nn_policy_learner.json`` (per seed and objective, mean and standard error over seeds,
the settings, the versions and the wall time).

OBP quirks met, used as they are since this is the peer's own data and learner:

* ``_base_reward_function``'s "z-score" is ``r - r.mean() / r.std()`` (precedence bug, OBP issue
  #203): rewards are only shifted, not standardised, before the sigmoid.
* The linear logging policy's logits are standardised with the statistics of each batch drawn,
  so the training and test logging policies differ slightly; ``sample_action_fast`` reseeds with
  ``random_state`` on every call, so train and test actions share their uniform draws.
* ``NNPolicyLearner.fit`` (and ``QFuncEstimator.fit``) counts a batch as "not improving" when
  ``loss - previous_loss < tol``, i.e. also whenever the loss *falls*, and breaks out of the
  epoch after ``n_iter_no_change`` such batches in a row (the counter is not reset between
  epochs). With noisy minibatch losses this did not fire in our runs (all ``200 * n / batch``
  steps were taken), but the script counts the steps actually taken (``policy_steps``,
  ``q_steps``) with forward hooks so that it would show.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # OBP wraps every epoch loop in tqdm

import numpy as np
import torch

from towerjax.evaluation import mean_se  # towerjax is installed in that environment too

N_ACTIONS = 20
DIM_CONTEXT = 5
OBJECTIVES = ("ipw", "dr")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "obp_synthetic"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="run seeds 0 .. seeds-1")
    p.add_argument("--n-rounds", type=int, default=10_000, help="training log size")
    p.add_argument("--n-test", type=int, default=10_000, help="test set size")
    p.add_argument("--beta", type=float, default=-3.0, help="inverse temperature of the logging policy")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--max-iter", type=int, default=None, help="override OBP's epochs (smoke tests only)")
    return p.parse_args(argv)


def make_dataset(seed: int, beta: float):
    from obp.dataset import SyntheticBanditDataset, linear_behavior_policy, logistic_reward_function

    return SyntheticBanditDataset(
        n_actions=N_ACTIONS,
        dim_context=DIM_CONTEXT,
        reward_type="binary",
        reward_function=logistic_reward_function,
        behavior_policy_function=linear_behavior_policy,
        beta=beta,
        random_state=seed,
    )


def export_logs(path: Path, train: dict, test: dict, action_context: np.ndarray) -> None:
    arrays = {}
    for prefix, bf in (("train", train), ("test", test)):
        arrays[f"{prefix}_context"] = np.asarray(bf["context"], dtype=np.float32)
        arrays[f"{prefix}_action"] = np.asarray(bf["action"], dtype=np.int64)
        arrays[f"{prefix}_reward"] = np.asarray(bf["reward"], dtype=np.float32)
        arrays[f"{prefix}_pscore"] = np.asarray(bf["pscore"], dtype=np.float32)
        arrays[f"{prefix}_pi_b"] = np.asarray(bf["pi_b"][:, :, 0], dtype=np.float32)
        arrays[f"{prefix}_expected_reward"] = np.asarray(bf["expected_reward"], dtype=np.float32)
    arrays["action_context"] = np.asarray(action_context, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def policy_value(action_dist: np.ndarray, q: np.ndarray) -> float:
    """True value ``mean_i sum_a pi(a|x_i) q(x_i, a)`` in float64."""
    return float(np.mean(np.sum(np.asarray(action_dist, dtype=np.float64) * q, axis=1)))


def count_training_forwards(module: torch.nn.Module) -> tuple[list[int], object]:
    """Count forward passes made in training mode (one per gradient step in OBP's loops)."""
    counter = [0]

    def hook(mod, _inp, _out):
        if mod.training:
            counter[0] += 1

    return counter, module.register_forward_hook(hook)


def train_one(objective: str, seed: int, train: dict, test: dict, max_iter: int | None) -> dict:
    from obp.policy import NNPolicyLearner

    kwargs = {}
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    learner = NNPolicyLearner(
        n_actions=N_ACTIONS,
        dim_context=DIM_CONTEXT,
        len_list=1,
        off_policy_objective=objective,
        random_state=seed,
        **kwargs,
    )
    policy_steps, h_pol = count_training_forwards(learner.nn_model)
    q_steps, h_q = [0], None
    if objective in ("dr", "dm"):
        q_steps, h_q = count_training_forwards(learner.q_func_estimator.nn_model)

    t0 = time.perf_counter()
    learner.fit(
        context=train["context"],
        action=train["action"],
        reward=train["reward"],
        pscore=train["pscore"],
    )
    fit_s = time.perf_counter() - t0
    h_pol.remove()
    if h_q is not None:
        h_q.remove()

    q_test = test["expected_reward"]
    proba = learner.predict_proba(context=test["context"])[:, :, 0]
    greedy = learner.predict(context=test["context"])[:, :, 0]
    out = {
        "value": policy_value(proba, q_test),
        "value_greedy": policy_value(greedy, q_test),
        "mean_max_prob": float(np.mean(np.max(proba, axis=1))),
        "policy_steps": int(policy_steps[0]),
        "fit_s": round(fit_s, 2),
    }
    if objective in ("dr", "dm"):
        with torch.no_grad():
            q_hat = learner.q_func_estimator.predict(torch.from_numpy(test["context"]).float()).numpy()
        out["q_steps"] = int(q_steps[0])
        out["q_hat_rmse_test"] = float(np.sqrt(np.mean((q_hat.astype(np.float64) - q_test) ** 2)))
        out["q_hat_greedy_value"] = policy_value(np.eye(N_ACTIONS)[np.argmax(q_hat, axis=1)], q_test)
    out["learner_settings"] = {
        k: getattr(learner, k)
        for k in (
            "hidden_layer_size",
            "activation",
            "solver",
            "alpha",
            "batch_size",
            "learning_rate_init",
            "max_iter",
            "shuffle",
            "tol",
            "n_iter_no_change",
            "early_stopping",
            "beta_1",
            "beta_2",
            "epsilon",
            "policy_reg_param",
            "var_reg_param",
        )
    }
    return out


def over_seeds(xs: list[float]) -> dict:
    """``{"mean", "se", "n"}`` of per-seed values (``se`` None for one seed)."""
    mean, se = mean_se(xs)
    return {"mean": mean, "se": None if math.isnan(se) else se, "n": len(xs)}


def summarise(per_seed: list[dict]) -> dict:
    summary = {
        "logging_value": over_seeds([s["logging_value"] for s in per_seed]),
        "best_value": over_seeds([s["best_value"] for s in per_seed]),
    }
    for obj in OBJECTIVES:
        rows = [s["objectives"][obj] for s in per_seed if obj in s["objectives"]]
        if not rows:
            continue
        summary[obj] = {
            key: over_seeds([r[key] for r in rows])
            for key in ("value", "gap_closed", "value_greedy", "gap_closed_greedy", "policy_steps")
        }
    return summary


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    import obp
    import sklearn

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    payload = {
        "command": " ".join([Path(sys.executable).as_posix(), *sys.argv]),
        "versions": {
            "obp": obp.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "settings": {
            "dataset": {
                "class": "obp.dataset.SyntheticBanditDataset",
                "n_actions": N_ACTIONS,
                "dim_context": DIM_CONTEXT,
                "reward_type": "binary",
                "reward_function": "obp.dataset.logistic_reward_function",
                "behavior_policy_function": "obp.dataset.linear_behavior_policy",
                "beta": args.beta,
                "random_state": "seed",
                "n_rounds_train": args.n_rounds,
                "n_rounds_test": args.n_test,
                "draw_order": "train then test, from one dataset object",
            },
            "learner": {
                "class": "obp.policy.NNPolicyLearner",
                "objectives": list(OBJECTIVES),
                "len_list": 1,
                "random_state": "seed",
                "max_iter_override": args.max_iter,
                "dr_q_hat": "NNPolicyLearner's built-in QFuncEstimator at its defaults "
                "(fit takes no external q_hat)",
                "torch_threads": 1,
            },
            "value": "mean_i sum_a pi(a|x_i) expected_reward(x_i, a) on the test set; "
            "'value' from predict_proba, 'value_greedy' from predict (argmax)",
            "gap_closed": "(value - logging_value) / (best_value - logging_value)",
        },
        "seeds": list(range(args.seeds)),
        "per_seed": [],
        "summary": {},
        "wall_time_s": None,
        "complete": False,
    }
    json_path = out_dir / "nn_policy_learner.json"

    for seed in range(args.seeds):
        ds = make_dataset(seed, args.beta)
        train = ds.obtain_batch_bandit_feedback(n_rounds=args.n_rounds)
        test = ds.obtain_batch_bandit_feedback(n_rounds=args.n_test)
        export_logs(out_dir / f"seed{seed}.npz", train, test, ds.action_context)

        q = test["expected_reward"]
        pi_b = test["pi_b"][:, :, 0]
        v_log = policy_value(pi_b, q)
        v_best = float(np.mean(np.max(q, axis=1)))
        seed_row = {
            "seed": seed,
            "logging_value": v_log,
            "best_value": v_best,
            "uniform_value": float(np.mean(q)),
            "train_logging_value": policy_value(train["pi_b"][:, :, 0], train["expected_reward"]),
            "train_best_value": float(np.mean(np.max(train["expected_reward"], axis=1))),
            "test_logging_mean_max_prob": float(np.mean(np.max(pi_b, axis=1))),
            "test_min_pscore": float(np.min(test["pscore"])),
            "train_min_pscore": float(np.min(train["pscore"])),
            "train_mean_reward": float(np.mean(train["reward"])),
            "objectives": {},
        }
        payload["per_seed"].append(seed_row)
        for obj in OBJECTIVES:
            res = train_one(obj, seed, train, test, args.max_iter)
            gap = v_best - v_log
            res["gap_closed"] = (res["value"] - v_log) / gap
            res["gap_closed_greedy"] = (res["value_greedy"] - v_log) / gap
            settings = res.pop("learner_settings")
            settings["batch_size_resolved"] = (
                min(200, args.n_rounds) if settings["batch_size"] == "auto" else None
            )
            payload["settings"]["learner"]["resolved_defaults"] = settings
            seed_row["objectives"][obj] = res
            line = {
                "seed": seed,
                "objective": obj,
                "value": round(res["value"], 5),
                "gap_closed": round(res["gap_closed"], 4),
                "value_greedy": round(res["value_greedy"], 5),
                "gap_closed_greedy": round(res["gap_closed_greedy"], 4),
                "logging_value": round(v_log, 5),
                "best_value": round(v_best, 5),
                "policy_steps": res["policy_steps"],
                "fit_s": res["fit_s"],
            }
            if "q_hat_rmse_test" in res:
                line["q_hat_rmse_test"] = round(res["q_hat_rmse_test"], 4)
            print(json.dumps(line), flush=True)
            payload["summary"] = summarise(payload["per_seed"])
            payload["wall_time_s"] = round(time.perf_counter() - t_start, 1)
            write_json(json_path, payload)

    payload["summary"] = summarise(payload["per_seed"])
    payload["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    payload["complete"] = True
    write_json(json_path, payload)
    print(json.dumps({"summary": payload["summary"], "wall_time_s": payload["wall_time_s"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
