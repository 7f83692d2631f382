import os
import sys

# beartype (tests/test_shapes.py) must be imported before nnsight: nnsight mounts methods on builtin types,
# after which beartype's import-time table of slot wrappers fails with "unhashable type: 'instancemethod'"
from beartype import beartype  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only when ``-m`` names them (``pytest -m slow``). This is the default ``-m 'not
    slow'`` done here rather than in addopts, where the fast loop's ``-m "not integration"`` would replace it."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


# hypothesis (tests/test_*_properties.py): the "ci" profile is the default, so every run draws the same examples
# (derandomize: examples follow from each test's source, no example database is read or written) and the
# property files stay under a minute on one core; HYPOTHESIS_PROFILE=explore draws new, more examples.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=40,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
