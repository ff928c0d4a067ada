"""The connector registry: built-ins, entry points, settings schemas, masking.

The per-connector cases (the shared failure modes and each platform's own error bodies) run
from tests/test_connector_<name>.py through the harness in tests/support/connectors.py."""

import importlib

import pytest

from sst import connectors
from sst.connectors.base import ConnectorSettings, mask_settings
from support.connectors import ConnectorHarness


def test_builtin_registry_is_complete():
    assert connectors.load_builtin() == []
    assert set(connectors.registry()) == set(connectors.BUILTIN)


@pytest.mark.parametrize("name", connectors.BUILTIN)
def test_every_builtin_connector_runs_the_harness(name):
    module = importlib.import_module(f"test_connector_{name}")
    harnesses = [obj for obj in vars(module).values()
                 if isinstance(obj, type) and issubclass(obj, ConnectorHarness)
                 and obj is not ConnectorHarness]
    assert [h.platform.name for h in harnesses] == [name]


def test_settings_schemas_extend_the_common_one():
    for cls in connectors.registry().values():
        assert issubclass(cls.settings_schema, ConnectorSettings)


def test_unknown_connector_lists_known_names():
    with pytest.raises(KeyError, match="meta") as exc:
        connectors.get("nope")
    assert "webhook" in str(exc.value)
    with pytest.raises(connectors.ConnectorConfigError, match="connector"):
        connectors.validate_destination({"name": "x", "connector": "nope"})


def test_mask_settings():
    masked = mask_settings(connectors.get("meta").settings_schema,
                           {"pixel_id": "1", "access_token": "tok", "test_event_code": None})
    assert masked == {"pixel_id": "1", "access_token": "***", "test_event_code": None}


def test_load_builtin_is_idempotent_and_reports_broken_entry_points(monkeypatch):
    class EP:
        name = "broken"

        def load(self):
            raise ImportError("no module named acme")

    monkeypatch.setattr(connectors, "entry_points", lambda group: [EP()])
    errors = connectors.load_builtin()
    assert errors == [("broken", "ImportError: no module named acme")]
    assert set(connectors.registry()) >= set(connectors.BUILTIN)
