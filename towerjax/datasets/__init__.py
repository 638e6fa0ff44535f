"""Public datasets read out of Python wheels from the package registry, without installing them.

- :func:`load_obd`: the Open Bandit Dataset small sample (wheel of ``obp==0.4.1``).
- :func:`load_movielens_100k`: MovieLens-100K as RecBole atomic files (wheel of
  ``recbole==1.2.1``).

:func:`fetch_obd` / :func:`fetch_movielens` download a wheel once with
``python -m pip download --no-deps`` (in a subprocess), check its pinned sha256 and keep
it in the cache directory (``$TOWERJAX_CACHE``, else ``$XDG_CACHE_HOME/towerjax``, else
``~/.cache/towerjax``); the loaders then read the cached wheel without pip. Without
network access, copy the wheel file into the cache directory by hand, or pass its path
(or a directory of extracted files) as ``wheel=``.
"""

from towerjax.datasets._wheel import (
    OBP_WHEEL,
    RECBOLE_WHEEL,
    ChecksumError,
    DatasetFileError,
    FetchError,
    WheelSpec,
    default_cache_dir,
    fetch_wheel,
    sha256_of,
)
from towerjax.datasets.movielens import MovieLens100K, fetch_movielens, load_movielens_100k
from towerjax.datasets.obd import BEHAVIOR_POLICIES, CAMPAIGNS, OpenBanditData, fetch_obd, load_obd

__all__ = [
    "BEHAVIOR_POLICIES",
    "CAMPAIGNS",
    "OBP_WHEEL",
    "RECBOLE_WHEEL",
    "ChecksumError",
    "DatasetFileError",
    "FetchError",
    "MovieLens100K",
    "OpenBanditData",
    "WheelSpec",
    "default_cache_dir",
    "fetch_movielens",
    "fetch_obd",
    "fetch_wheel",
    "load_movielens_100k",
    "load_obd",
    "sha256_of",
]
