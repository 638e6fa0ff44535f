"""Saved models as packages of one job each: a trained policy served, stored and exported.

Modules: :mod:`~towerjax.serving.policy` (:class:`SavedPolicy`: scores, log-probabilities,
``action_dist``, top-k and Boltzmann slates, embeddings for an index; :func:`search_top_k`,
the one exact top-k search over embeddings), :mod:`~towerjax.serving.store`
(:func:`save_model` and :func:`load_model`: the model directory, its manifest and checksums,
atomic writes) and :mod:`~towerjax.serving.export` (:func:`export_policy`: the files a
serving stack needs without towerjax, and the numpy recipe of the context tower).
"""

from towerjax.serving.export import EXPORT_FORMAT, export_policy
from towerjax.serving.policy import CONTEXT_CHUNK_SIZE, SavedPolicy, search_top_k
from towerjax.serving.store import FORMAT, FORMAT_VERSION, load_model, save_model

__all__ = [
    "CONTEXT_CHUNK_SIZE",
    "EXPORT_FORMAT",
    "FORMAT",
    "FORMAT_VERSION",
    "SavedPolicy",
    "export_policy",
    "load_model",
    "save_model",
    "search_top_k",
]
