"""The Open Bandit Dataset study: two-tower policies learned from ``bts`` logs, evaluated on ``random`` logs.

What it does. Each learner (``ips``, ``dr``, ``snips``, ``regression``, ``naive``; SPEC 3-4)
trains a two-tower softmax policy on the OBD small sample's Bernoulli-Thompson-sampling
(``bts``) log of one campaign, ``seeds`` times (one compiled call over the seed keys,
sharded over the devices, the logs shared: :func:`towerjax.training.train_seeds` with
``data=``). The context is the user features (one-hot) and the user-item
affinities (with ``"feature"`` positions, the default, a one-hot of the slot too); the
item tower reads the item features. Each learned policy is then
evaluated off-policy on the ``random`` log of the same campaign (the uniform logging
policy, propensity ``1/A`` per slot: 1/80 for ``all``) with IPS and SNIPS, and compared with the random
policy's own click rate (the uniform policy's on-policy value) and with the ``bts``
policy's click rate on its own log.

Positions. An OBD impression fills ``K = 3`` slots; each row is one (impression, slot)
pair and its propensity is the logging policy's probability of that item *in that slot*,
``pi_0(a | x, k)``. Both logs are read with :meth:`towerjax.data.LoggedData.from_obp`,
which keeps each row's slot (``position``), and every slot's rows are used. The study
makes OBP's independence assumption (as OBP's own estimators do): the click in slot ``k``
depends only on the context, the slot and the item shown there, not on the items in the
other two slots, so each slot is its own single-slot bandit with exact propensities (the
logging policy's choice of three distinct items is not modelled as a slate). Every policy
is evaluated slot by slot on the ``random`` rows shown there, and the study reports the
plain mean of the per-slot values (each slot counts 1/3, whatever its number of rows;
IPS over the pooled rows would weigh the slots by their row counts instead). How the
``bts`` rows of the three slots train the policies (``position_handling``):

- ``"feature"`` (default): ``from_obp(position_handling="feature")``: one position-aware
  policy ``pi(a | x, k)`` per seed, trained on all ``bts`` rows with a one-hot of the slot
  ``k`` appended to the context; for slot ``k`` it is evaluated on the ``random`` rows of
  slot ``k``, whose context carries the same one-hot.
- ``"pooled"``: ``from_obp(position_handling="pooled")``: one policy ``pi(a | x)`` per
  seed, trained on all ``bts`` rows with the context unchanged (it never sees the slot),
  and evaluated as it is on each slot's ``random`` rows.
- ``"separate"``: the pooled reading split by slot (``data.take_rows(data.position == k)``):
  one policy per slot and seed, trained only on the ``bts`` rows of that slot and
  evaluated on that slot's ``random`` rows.

The uniform and ``bts`` click rates are slot averages over the same rows. Per-slot
numbers are reported too.

Seeds. The headline value of a learner is that of its *seed-averaged policy*
``pi_bar = (1/S) sum_s pi_s`` (the mixture: draw a seed, act with its policy). Its IPS
estimate equals the mean of the per-seed IPS estimates; its SNIPS estimate is SNIPS
with ``pi_bar``'s weights. The per-seed estimates, their mean and standard deviation
(the training-seed spread, on the same evaluation rows) are reported beside it. Seed
``s`` of a run with root ``seed`` trains with key ``s`` of
``jax.random.split(jax.random.key(seed), seeds)``; with separate positions slot ``k``
uses the root ``n_slots * seed + k`` instead, so every slot has keys of its own.

Intervals and significance (normal 95% intervals from per-row terms, paired differences
to the uniform policy and permutation tests): :mod:`towerjax.studies.obd.estimates`. How the
two logs' item tables are aligned: :mod:`towerjax.studies.obd.data`.

Hyperparameters (chosen a priori for 10,000 rows and 80 items, not tuned on the
evaluation logs): towers with one hidden layer of 32 units, embedding size 16, elu,
temperature 1, Adam learning rate 1e-3 with weight decay 1e-6, batch 100, 10 epochs;
the DR reward model an MLP (32, 32) fitted by cross-entropy for 10 epochs. The
importance weights of ``ips``, ``dr`` and ``snips`` are capped at 10
(``IPS(cap=10)``, ``DR(cap=10)``, ``SNIPS(cap=10)``): ``bts`` propensities go down to
4.5e-5, so uncapped weights reach the thousands, and for DR every unclicked
low-propensity row (``w (0 - q_hat)``) would dominate its batch.

Three positions as lists: :mod:`towerjax.studies.obd.lists` (``towerjax study obd-lists``) trains
Plackett-Luce list policies on position rows and values them on all three slots.

Modules: :mod:`~towerjax.studies.obd.data` (the two logs read and aligned),
:mod:`~towerjax.studies.obd.estimates` (slot-averaged estimates, intervals and permutation
tests), :mod:`~towerjax.studies.obd.study` (the learners, the run and its command) and
:mod:`~towerjax.studies.obd.report` (the Markdown table).
"""

from towerjax.studies.obd import lists, study
from towerjax.studies.obd.data import POSITION_HANDLINGS, ObdData, prepare_obd
from towerjax.studies.obd.estimates import slot_estimates
from towerjax.studies.obd.list_report import format_obd_lists
from towerjax.studies.obd.lists import LIST_LEARNERS, ObdListStudy, run_obd_list_study
from towerjax.studies.obd.report import format_obd
from towerjax.studies.obd.study import (
    OBD_LEARNERS,
    ObdStudy,
    learner_config,
    learner_objective,
    run_obd_study,
)


def add_parser(subparsers) -> None:
    """``towerjax study obd`` and ``towerjax study obd-lists``."""
    study.add_parser(subparsers)
    lists.add_parser(subparsers)


__all__ = [
    "LIST_LEARNERS",
    "OBD_LEARNERS",
    "POSITION_HANDLINGS",
    "ObdData",
    "ObdListStudy",
    "ObdStudy",
    "add_parser",
    "format_obd",
    "format_obd_lists",
    "learner_config",
    "learner_objective",
    "prepare_obd",
    "run_obd_list_study",
    "run_obd_study",
    "slot_estimates",
]
