from pathlib import Path

import pytest

from vidrec.config import load_settings, sim_config
from vidrec.errors import ConfigError


def test_unknown_settings_key_is_rejected_by_name(tmp_path: Path) -> None:
    f = tmp_path / "vidrec.toml"
    f.write_text("[features]\nrefresh_secs = 60\n")
    with pytest.raises(ConfigError, match=r"features\.refresh_secs"):
        load_settings(f)


def test_out_of_range_value_names_key(tmp_path: Path) -> None:
    f = tmp_path / "vidrec.json"
    f.write_text('{"features": {"last_n": 0}}')
    with pytest.raises(ConfigError, match=r"features\.last_n"):
        load_settings(f)


def test_a_route_table_takes_finite_numbers_only() -> None:
    from pydantic import ValidationError

    from vidrec.serving.routing import RouteTable

    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="finite"):
            RouteTable.model_validate({"champion": "1", "shadow_fraction": bad})


@pytest.mark.parametrize(
    ("name", "content", "says", "key"),
    [
        ("vidrec.json", b"[" * 5000 + b"]" * 5000, "cannot parse: nested too deep", None),
        ("vidrec.toml", b"a = " + b"[" * 5000 + b"]" * 5000, "cannot parse: nested too deep", None),
        ("vidrec.toml", b"\xff\xfe[features]", "cannot parse: .*can't decode byte 0xff", None),
        ("vidrec.json", b'{"features": ', "cannot parse: .*Expecting value", None),
        # `inf` passed every `gt=0` bound; then a Redis TTL or a window failed far from here
        ("vidrec.toml", b"[serving]\nserved_ttl_s = inf\n", "finite", "serving.served_ttl_s"),
        ("vidrec.toml", b"[monitoring]\ninterval_s = nan\n", "finite", "monitoring.interval_s"),
        (
            "vidrec.json",
            b'{"rollout": {"policy": {"step_s": Infinity}}}',
            "finite",
            "rollout.policy.step_s",
        ),
    ],
)
def test_a_settings_file_that_cannot_be_used_is_a_config_error_naming_it(
    tmp_path: Path, name: str, content: bytes, says: str, key: str | None
) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{f}: {key + ': ' if key else ''}.*{says}") as caught:
        load_settings(f)
    want = {"file": str(f)} if key is None else {"key": key, "source": str(f)}
    assert caught.value.details == want


def test_valid_settings_load(tmp_path: Path) -> None:
    f = tmp_path / "vidrec.toml"
    f.write_text("[features]\nrefresh_seconds = 60\n")
    assert load_settings(f).features.refresh_seconds == 60


def test_scale_and_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="unknown scale"):
        sim_config("huge")
    with pytest.raises(ConfigError, match="scenario_day"):
        sim_config("small", {"scenario_day": 99})
    assert sim_config("small", {"days": 5}).days == 5


def test_reference_blocks_must_tile_a_day(tmp_path: Path) -> None:
    f = tmp_path / "vidrec.toml"
    f.write_text("[train]\nreference_block_s = 25200\n")  # 7 h: a day is not 7-hour blocks
    with pytest.raises(ConfigError, match=r"reference_block_s.*dividing a day"):
        load_settings(f)
    f.write_text("[train]\nreference_block_s = 21600\n")
    assert load_settings(f).train.reference_block_s == 21_600


def test_the_demo_settings_file_names_one_route_table_for_serve_and_rollout(
    tmp_path: Path,
) -> None:
    from vidrec.demo import settings_text

    f = tmp_path / "vidrec.toml"
    f.write_text(settings_text(tmp_path, "sqlite:////x/online.db"))
    s = load_settings(f)  # strict: a wrong key or section fails here
    assert s.features.online_store == "sqlite:////x/online.db"
    assert s.registry.root == tmp_path / "registry"
    assert s.rollout.routes == tmp_path / "serve" / "routes.json"  # `vidrec serve`'s default
    assert s.rollout.state.parent == tmp_path / "serve"
