"""Fixture modules of the suite (real broker, real worker runtime, HTTP client)."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.s3", "tests.fixtures.databases",
                  "tests.fixtures.tcp_proxy", "tests.fixtures.s3_proxy"]
