"""The pytest plugin: options, ini keys and the ``rli_policy`` fixture.

Importing this module imports neither torch nor :mod:`rli`; they load the first
time a test asks for an rli fixture, so test runs that never touch rli pay nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

OPTION_POLICY = "--rli-policy"
INI_POLICY = "rli_policy"
INI_TRUST = "rli_trust"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rli", "rli: interpretability assertions for RL policies")
    group.addoption(OPTION_POLICY, dest="rli_policy", default=None, metavar="PATH",
                    help="policy checkpoint for the rli_policy fixture (overrides the rli_policy ini key)")
    parser.addini(INI_POLICY, "policy checkpoint for the rli_policy fixture, relative to the rootdir", default="")
    parser.addini(INI_TRUST, "allow full unpickling of the configured checkpoint (runs code in it)",
                  type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "rli(policy=None): the checkpoint the rli fixtures use for this test (path, relative to rootdir)")
    config.stash[_CACHE_KEY] = {}


_CACHE_KEY = pytest.StashKey[dict]()


def _configured_policy(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("rli")
    if marker is not None and marker.kwargs.get("policy") is not None:
        return marker.kwargs["policy"]
    return request.config.getoption("rli_policy") or request.config.getini(INI_POLICY)


@pytest.fixture
def rli_policy(request: pytest.FixtureRequest) -> Any:
    """The policy under test, an ``rli.Policy``.

    Configured (most specific first) by ``@pytest.mark.rli(policy=...)``, the
    ``--rli-policy`` option or the ``rli_policy`` ini key; paths are relative to the
    rootdir. Loaded once per session per checkpoint. Override it in a conftest to
    build the policy yourself.
    """
    spec = _configured_policy(request)
    if not spec:
        pytest.fail("rli_policy is not configured: set the rli_policy ini key, pass --rli-policy, "
                    "use @pytest.mark.rli(policy=...) or override the rli_policy fixture", pytrace=False)
    import rli

    path = request.config.rootpath / spec
    cache = request.config.stash[_CACHE_KEY]
    if path not in cache:
        try:
            cache[path] = rli.load_policy(path, trust=request.config.getini(INI_TRUST))
        except rli.RliError as err:
            problem = str(err)
        else:
            problem = None
        if problem is not None:
            pytest.fail(f"rli_policy: {problem}", pytrace=False)
    return cache[path]
