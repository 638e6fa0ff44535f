"""Test setup, before JAX starts: expose two CPU devices, so the sharded seed path is exercised, and
compile without LLVM's optimisations (the suite's programs are small and compile-bound: the same
programs, 1.5x faster to test); start the longest test files first, so that parallel workers
(pytest-xdist, one file per worker at a time) do not end on one of them alone. The flags go into
``XLA_FLAGS``, so the command-line and notebook subprocesses of the tests get them too; a flag
already set there is left as it is."""

import os

TEST_XLA_FLAGS = {
    "xla_force_host_platform_device_count": "2",
    "xla_backend_optimization_level": "0",
}

for _flag, _value in TEST_XLA_FLAGS.items():
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --{_flag}={_value}").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache as _cache  # noqa: E402


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
