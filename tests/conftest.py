"""Fixture modules of the suite (real broker, real worker runtime, HTTP client).

Hypothesis runs without its per-example deadline (200 ms by default): that is a timing
threshold, and on two cores shared with a broker and other suites an example of an
honest property test overran it (287 ms under load 5) - a failure that says nothing
about the property.
"""

from hypothesis import settings

settings.register_profile("onepipe", deadline=None)
settings.load_profile("onepipe")

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.s3", "tests.fixtures.databases",
                  "tests.fixtures.tcp_proxy", "tests.fixtures.s3_proxy"]
