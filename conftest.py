"""Test setup: expose two CPU devices before JAX starts, so the sharded seed path is exercised; start
the longest test files first, so that parallel workers (pytest-xdist, one file per worker at a time)
do not end on one of them alone."""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as _cache


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache in a folder of the using module's own, for its tests
    only (``pytestmark = pytest.mark.usefixtures("compilation_cache")``): a run of the same
    config and shapes as an earlier one loads the compiled program instead of compiling it again
    (towerjax keeps no cache of compiled programs)."""
    previous = jax.config.jax_compilation_cache_dir
    _cache.reset_cache()
    _cache.set_cache_dir(str(tmp_path_factory.mktemp("jax_cache")))
    yield
    _cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", previous)


# The test files that take a minute or more (subprocesses, notebooks, end-to-end studies), longest first
# (pyproject's --no-loadscope-reorder keeps this order when xdist hands files to workers).
LONGEST_FIRST = (
    "test_readme.py",
    "test_notebooks.py",
    "test_large_softmax.py",
    "test_train.py",
    "test_own_logs.py",
    "test_obd_study.py",
    "test_sharding.py",
    "test_cli.py",
    "test_fit_search.py",
    "test_search.py",
    "test_movielens_study.py",
)


def pytest_collection_modifyitems(config, items):
    """Moves the :data:`LONGEST_FIRST` files' tests to the front, in that order (stable otherwise)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
