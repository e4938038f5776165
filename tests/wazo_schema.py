"""Tests and benchmarks import the Wazo-like schema from here; it lives in the package for the demo."""

from wazod.lab.wazo_schema import *  # noqa: F401,F403
from wazod.lab.wazo_schema import SCHEMA_SQL, WAZO_VERSION, _psql, populate_sql  # noqa: F401
