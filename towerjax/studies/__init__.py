"""The studies: each declares its cells, rows, table and figure, and its ``towerjax`` subcommand.

``headline`` is the main job (``towerjax run``); :data:`STUDIES` are the ``towerjax study NAME``
subcommands. Every study runs through :mod:`towerjax.studies.runner`.
"""

from towerjax.studies import blog, chen, headline, movielens, obd

STUDIES = (blog, chen, obd, movielens)

__all__ = ["STUDIES", "blog", "chen", "headline", "movielens", "obd"]
