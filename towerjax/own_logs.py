"""Your own logs, end to end: train from files, evaluate, recommend, export.

The Python API behind ``towerjax train --logs``, ``towerjax evaluate``, ``towerjax
recommend`` and ``towerjax export`` (``from towerjax import own_logs``). Each function takes
file paths (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``) or in-memory tables (a pandas
``DataFrame`` or a dict of numpy arrays) and returns a small result value:

- :func:`fit` builds :class:`~towerjax.data.LoggedData` from a log of events and an item
  table (:func:`towerjax.tables.logged_data_from_frame`, encoded as
  :class:`~towerjax.tables.EncodingOptions` say), holds out validation rows, trains
  ``seeds`` runs in one compiled call (:func:`towerjax.training.train_seeds`), keeps the seed
  whose returned parameters have the best validation estimate (as training recorded it),
  and (with ``out=``) saves it (:func:`towerjax.serving.save_model`) with ``report.json``
  and ``curves.png`` (:func:`plot_curves`). Returns a :class:`FitResult`.
- :func:`evaluate` gives the off-policy estimates (:func:`towerjax.evaluation.off_policy_estimates`,
  the DR family with a reward model cross-fitted on the evaluation logs) of one or several
  saved policies on any logs, their paired differences, and, for logs of a uniform logging
  policy, the unbiased value (:func:`towerjax.metrics.randomized_value`). Returns an
  :class:`Evaluation`.
- :func:`recommend` gives each context row's exact top ``k`` items (or Boltzmann slates) as
  :class:`Recommendations`.
- :func:`export` writes what a serving stack needs (:meth:`towerjax.serving.SavedPolicy.export`).
- :func:`read_table` and :func:`write_table` read and write the tables.

Events are rows of one log: the logged item's id (``item_column``), the reward
(``reward_column``), the logging propensity ``pi_0(a_i|x_i)`` (``pscore_column``) and the
context columns. Numeric columns are dense features; text and category columns (a user id, a
country), and integer ones named by ``categorical=``, are integer ids the towers embed, with
a vocabulary built from the training rows (or hash buckets); the item id is an embedded
feature of the item tower (:mod:`towerjax.tables`). An id of any cardinality costs ``[n]``
integers, never a one-hot matrix. At evaluation and serving time a value not in the
vocabulary (a new user) gets the out-of-vocabulary id 0 and is counted, never an error. An
optional ``position_column`` (the slot a row was shown in) is left out of the contexts: rows
of every position are pooled as single-position events (filter the table first to learn for
one slot) and the report counts the rows per position.

Every bad input raises :class:`~towerjax.checks.InputError` naming the argument (``logs``,
``items``, ``reward_column``, ``k``, ``model``, ...) with a one-line message naming the file
and the column, which the command line reports as ``argument --flag: message``.

The functions live in the package :mod:`towerjax.workflow` (one module per job: ``io``,
``fit``, ``report``, ``evaluate``, ``recommend``); this module is their public entry.
"""

from towerjax import workflow
from towerjax.workflow import *  # noqa: F403  (the workflow's public API, listed once there)

__all__ = workflow.__all__
