"""StoreSettings validation: errors name the field, TOML tables map onto it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.store import StoreSettings
from portier_common.settings import ConfigError, build


def test_defaults_and_derived_paths() -> None:
    settings = StoreSettings(path=Path("/var/lib/portier/agent.sqlite"))
    assert settings.resolved_media_dir == Path("/var/lib/portier/agent.sqlite.media")
    assert settings.reserve_path == Path("/var/lib/portier/agent.sqlite.reserve")
    assert settings.lock_path == Path("/var/lib/portier/agent.sqlite.lock")
    assert StoreSettings(path="/x.db", media_dir="/m").resolved_media_dir == Path("/m")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"path": ""}, "path"),
        ({"path": "/"}, "path"),
        ({"busy_timeout_s": 0}, "busy_timeout_s"),
        ({"keep_acked": -1}, "keep_acked"),
        ({"trim_batch": 0}, "trim_batch"),
        ({"warn_free_bytes": 1, "critical_free_bytes": 2}, "critical_free_bytes"),
        ({"reserve_bytes": True}, "reserve_bytes"),
        ({"max_db_bytes": 1024}, "max_db_bytes"),
        ({"max_payload_bytes": 10}, "max_payload_bytes"),
        ({"checkpoint_pages": 1}, "checkpoint_pages"),
        ({"page_size": 3000}, "page_size"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict, field: str) -> None:
    kwargs.setdefault("path", "/var/lib/portier/agent.sqlite")
    with pytest.raises(ValueError, match=f"^{field}: "):
        StoreSettings(**kwargs)


def test_toml_table_maps_onto_settings() -> None:
    settings = build(
        StoreSettings,
        {"path": "/var/lib/portier/agent.sqlite", "keep_acked": 500, "max_db_bytes": 2**30},
        "store",
    )
    assert settings.keep_acked == 500 and settings.path == Path("/var/lib/portier/agent.sqlite")
    with pytest.raises(ConfigError) as info:
        build(StoreSettings, {"path": "/x.db", "keep_acked": -5}, "store")
    assert info.value.key == "store.keep_acked"
