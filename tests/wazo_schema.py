"""Tests and benchmarks import the Wazo-like schema from here; it lives in the package for the demo."""

from wazod.lab.wazo_schema import *  # noqa: F401,F403
from wazod.lab.wazo_schema import SCHEMA_SQL, WAZO_VERSION, _psql, populate_sql  # noqa: F401

# The plain (non-constraint) indexes Wazo's tables carry (shared/reference/wazo-database-and-config.md),
# left out of the trimmed schema above; benchmarks add them so index maintenance costs what it costs on Wazo.
WAZO_PLAIN_INDEXES_SQL = """
CREATE INDEX userfeatures__idx__agentid ON userfeatures (agentid);
CREATE INDEX userfeatures__idx__firstname ON userfeatures (firstname);
CREATE INDEX userfeatures__idx__lastname ON userfeatures (lastname);
CREATE INDEX userfeatures__idx__musiconhold ON userfeatures (musiconhold);
CREATE INDEX userfeatures__idx__uuid ON userfeatures (uuid);
CREATE INDEX userfeatures__idx__tenant_uuid ON userfeatures (tenant_uuid);
CREATE INDEX userfeatures__idx__voicemailid ON userfeatures (voicemailid);
CREATE INDEX userfeatures__idx__func_key_template_id ON userfeatures (func_key_template_id);
CREATE INDEX userfeatures__idx__func_key_private_template_id ON userfeatures (func_key_private_template_id);
CREATE INDEX linefeatures__idx__context ON linefeatures (context);
CREATE INDEX linefeatures__idx__device ON linefeatures (device);
CREATE INDEX linefeatures__idx__number ON linefeatures (number);
CREATE INDEX linefeatures__idx__provisioningid ON linefeatures (provisioningid);
CREATE INDEX linefeatures__idx__endpoint_sip_uuid ON linefeatures (endpoint_sip_uuid);
CREATE INDEX extensions__idx__context ON extensions (context);
CREATE INDEX extensions__idx__exten ON extensions (exten);
CREATE INDEX extensions__idx__type ON extensions (type);
CREATE INDEX extensions__idx__typeval ON extensions (typeval);
CREATE INDEX endpoint_sip__idx__tenant_uuid ON endpoint_sip (tenant_uuid);
CREATE INDEX voicemail__idx__context ON voicemail (context);
CREATE INDEX func_key_template__idx__tenant_uuid ON func_key_template (tenant_uuid);
"""


def create_wazo_indexes(dsn: str) -> None:
    """Add Wazo's plain indexes to a database made by ``create_wazo_database``."""
    _psql(dsn, WAZO_PLAIN_INDEXES_SQL)
