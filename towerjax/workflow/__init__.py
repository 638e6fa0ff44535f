"""The own-logs workflow as a package of one-job modules: tables in, policies out.

Modules:

- :mod:`~towerjax.workflow.io`: tables from ``.csv`` / ``.parquet`` files (or DataFrames and
  dicts of arrays) and back, figure paths, column checks, loading a saved model and encoding
  a table's contexts with its encoding.
- :mod:`~towerjax.workflow.fit`: :func:`fit`, a recipe of named steps from tables to the best
  policy the logs support (reading and encoding the tables, training, reporting, saving).
- :mod:`~towerjax.workflow.train`: how the rows train: by default a search
  (:func:`towerjax.training.train_search`, chosen on selection rows and reported on report rows
  beside the logging policy); or, with ``search=None``, one configuration (validation rows,
  :func:`towerjax.training.train_seeds`, the choice of seed from training's own validation
  estimates).
- :mod:`~towerjax.workflow.report`: ``report.json`` (with the search's table and verdict), its
  summary lines and :func:`plot_curves`, all read from the training or search result.
- :mod:`~towerjax.workflow.train_slate`: :func:`fit_slate`, a Plackett-Luce list policy from
  slate logs (``towerjax train --slate``), with its steps in :mod:`~towerjax.workflow.slate_steps`
  (training the seeds, estimating them on held-out lists, the verdict, saving).
- :mod:`~towerjax.workflow.evaluate`: :func:`evaluate`, off-policy estimates of saved policies
  with their paired differences (the estimator core of :mod:`towerjax.evaluation`).
- :mod:`~towerjax.workflow.recommend`: :func:`recommend` (top-k lists or Boltzmann slates as a
  table) and :func:`export` (serving files).

Users import it as :mod:`towerjax.own_logs`.
"""

from towerjax.workflow.evaluate import DIFFERENCE_ESTIMATORS, Evaluation, evaluate
from towerjax.workflow.fit import FitResult, fit
from towerjax.workflow.io import IMAGE_SUFFIXES, TABLE_SUFFIXES, check_image_path, read_table, write_table
from towerjax.workflow.recommend import Recommendations, export, recommend
from towerjax.workflow.report import REPORT_FORMAT, plot_curves
from towerjax.workflow.train_slate import SlateFitResult, fit_slate, is_slate_log

__all__ = [
    "DIFFERENCE_ESTIMATORS",
    "IMAGE_SUFFIXES",
    "REPORT_FORMAT",
    "TABLE_SUFFIXES",
    "Evaluation",
    "FitResult",
    "Recommendations",
    "SlateFitResult",
    "check_image_path",
    "evaluate",
    "export",
    "fit",
    "fit_slate",
    "is_slate_log",
    "plot_curves",
    "read_table",
    "recommend",
    "write_table",
]
