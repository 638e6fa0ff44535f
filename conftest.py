"""Test setup: expose two CPU devices before JAX starts, so the sharded seed path is exercised."""

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
