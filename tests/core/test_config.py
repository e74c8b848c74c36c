"""Config: strict schema, readable errors, generated example, secrets."""

from __future__ import annotations

import sys

import pytest

from agent.config import AgentConfig, example_config, load_config, parse_config
from agent.configbase import resolve_secret
from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _err(data) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    return str(ei.value)


def test_defaults_are_valid():
    cfg = parse_config({})
    assert cfg.inference.model == "ssd_mobilenet_v1_coco"
    assert cfg.cameras == []


def test_error_names_path_value_and_expectation():
    msg = _err(
        {"cameras": [{"name": "a", "source": "x.mp4"}, {"name": "b", "source": "y.mp4", "detect_fps": -3}]}
    )
    assert "cameras[1].detect_fps: -3 is not > 0" in msg


def test_unknown_key_is_an_error_at_any_depth():
    assert "bogus: unknown key" in _err({"bogus": 1})
    assert "inference.num_thread: unknown key" in _err({"inference": {"num_thread": 2}})
    assert "cameras[0].fps: unknown key" in _err({"cameras": [{"name": "a", "source": "x", "fps": 3}]})


def test_bad_enum_lists_the_choices():
    msg = _err({"inference": {"accelerator": "tpu"}})
    assert "inference.accelerator: 'tpu' is not one of" in msg and "'edgetpu'" in msg


def test_missing_required_and_duplicate_names():
    assert "cameras[0].source: is required" in _err({"cameras": [{"name": "a"}]})
    assert "duplicate name 'a'" in _err(
        {"cameras": [{"name": "a", "source": "x"}, {"name": "a", "source": "y"}]}
    )


def test_bad_name_characters():
    assert "camera name must be" in _err({"cameras": [{"name": "a b/c", "source": "x"}]})


def test_example_is_generated_from_schema_and_is_a_valid_config():
    text = example_config()
    data = tomllib.loads(text)  # the example parses as-is
    cfg = AgentConfig.model_validate(data)
    assert cfg.cameras and cfg.cameras[0].name == "demo"
    # every top-level section of the schema is documented in the example
    for name in AgentConfig.model_fields:
        assert f"[{name}]" in text or f"[[{name}]]" in text or f"\n{name} = " in text, name
    # descriptions appear as comments
    assert "# CPU threads for XNNPACK." in text


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[inference\nmodel = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text('[device]\nid = "unit-7"\nsite = "main-st"\n')
    assert load_config(good).device.id == "unit-7"


def test_secrets_from_env_file_and_inline(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    monkeypatch.setenv("EA_PW", "fromenv")
    assert resolve_secret("inline", None, None, "x") == "inline"
    assert resolve_secret(None, str(f), None, "x") == "s3cret"
    assert resolve_secret("inline", str(f), "EA_PW", "x") == "fromenv"
    with pytest.raises(ConfigError, match="EA_MISSING is not set"):
        resolve_secret(None, None, "EA_MISSING", "mqtt.password")
    with pytest.raises(ConfigError, match="cannot read secret file"):
        resolve_secret(None, str(tmp_path / "none"), None, "mqtt.password")


def test_config_cli(cli, tmp_path):
    r = cli("config", "example")
    assert r.returncode == 0 and "[inference]" in r.stdout
    p = tmp_path / "c.toml"
    p.write_text(r.stdout)
    r = cli("config", "check", str(p))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok:")
    p.write_text('[[cameras]]\nname = "a"\nsource = "x"\ndetect_fps = -3\n')
    r = cli("config", "check", str(p))
    assert r.returncode == 2
    assert "cameras[0].detect_fps: -3 is not > 0" in r.stderr
    assert "Traceback" not in r.stderr
