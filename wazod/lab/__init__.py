"""Small real stand-ins used by the tests, the benchmark and ``wazod demo`` (no mocks)."""
