"""`edge-agent provision`: bundle and flags -> a checked config, written atomically, or nothing."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import Field

import agent.config
from agent.cli import cli as main_cli
from agent.configbase import Section
from agent.errors import ConfigError
from agent.service import bundle as B
from agent.service import provision as prov

TOKEN = "hub-known-token-0123456789"


def make_bundle(tmp_path: Path, config: dict | None = None, **extra) -> Path:
    cfg = (
        config
        if config is not None
        else {
            "device": {"site": "main-st-5th", "id": "rsu-0042"},
            "cameras": [{"name": "north", "source": "/dev/video0", "detect_fps": 4, "analytics": {}}],
            "logging": {"level": "info"},
        }
    )
    p = tmp_path / "usb" / "bundle.json"
    p.parent.mkdir(exist_ok=True)
    p.write_text(json.dumps({"version": 1, "config": cfg, **extra}))
    return p


def args(tmp_path: Path) -> list[str]:
    return ["--output", str(tmp_path / "etc" / "config.toml"), "--state-dir", str(tmp_path / "state")]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_bundle_writes_a_config_that_config_check_accepts(cli, tmp_path):
    b = make_bundle(tmp_path, api_token=TOKEN)
    r = cli(
        "provision",
        "--bundle",
        str(b),
        "--camera",
        "east=rtsp://10.0.0.5/stream",
        "--set",
        "cameras[east].detect_fps=2.5",
        "--set",
        "inference.threshold=0.4",
        *args(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "etc" / "config.toml"
    assert mode(cfg) == 0o640 and mode(cfg.parent) == 0o750
    check = cli("config", "check", str(cfg))
    assert check.returncode == 0, check.stderr
    assert "main-st-5th/rsu-0042, 2 camera(s)" in check.stdout
    loaded = agent.config.load_config(cfg)
    assert [c.name for c in loaded.cameras] == ["north", "east"]
    assert loaded.cameras[1].detect_fps == 2.5 and loaded.inference.threshold == 0.4
    assert loaded.storage.path == tmp_path / "state" / "edge-agent.sqlite"  # absolute, under the state dir
    tok = tmp_path / "state" / "api-token"
    assert tok.read_text().strip() == TOKEN and mode(tok) == 0o600
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["config.toml"]  # no temp files left
    assert "doctor" in r.stdout


def test_flags_only_and_reprovision_keeps_token_and_previous_config(cli, tmp_path):
    base = [
        "provision",
        "--site",
        "elm",
        "--device-id",
        "rsu-7",
        "--camera",
        "cam1=/dev/video0",
        *args(tmp_path),
    ]
    assert cli(*base).returncode == 0
    tok = (tmp_path / "state" / "api-token").read_text()
    r = cli(*base[:-4], "--camera", "cam1=/dev/video2", *args(tmp_path))
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "etc" / "config.toml"
    assert agent.config.load_config(cfg).cameras[0].source == "/dev/video2"
    assert "/dev/video0" in (tmp_path / "etc" / "config.toml.prev").read_text()
    assert (tmp_path / "state" / "api-token").read_text() == tok
    r = cli(*base, "--rotate-token")
    assert r.returncode == 0 and (tmp_path / "state" / "api-token").read_text() != tok


@pytest.mark.parametrize(
    "bundle_text, flags, expected",
    [
        ('{"version": 1, "config": {', [], "not valid JSON"),
        ("[1, 2]", [], "a bundle is a JSON object"),
        ('{"version": 2, "config": {}}', [], "bundle version 2"),
        ('{"version": 1, "device": {}}', [], "unknown bundle key(s) device"),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}, "cameras": [{"name": "n", "source": "x", "detect_fps": -3}]}}',
            [],
            "cameras[0].detect_fps: -3 is not > 0",
        ),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}, "storage": {"pathh": "x"}}}',
            [],
            "storage.pathh: unknown key",
        ),
        ('{"version": 1, "config": {"device": {"site": "s"}}}', [], "device.id is not set"),
        ('{"version": 1, "config": {"device": {"id": "u1"}}}', [], "device.site is not set"),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}, "mqtt": {"url": "http://broker:1883"}}}',
            [],
            "scheme 'http'; expected one of mqtt, mqtts, ws, wss",
        ),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}, "mqtt": {"ca_file": "missing-ca.pem"}}}',
            [],
            "mqtt.ca_file: file",
        ),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}}}',
            ["--camera", "novalue"],
            "expected NAME=SOURCE",
        ),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}}}',
            ["--set", "cameras[ghost].detect_fps=1"],
            "there is no cameras item ghost",
        ),
        (
            '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}}, "api_token": "short"}',
            [],
            "16-256 characters",
        ),
    ],
)
def test_bad_bundle_writes_nothing(tmp_path, bundle_text, flags, expected):
    cfg = tmp_path / "etc" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text("# the old config\n")
    b = tmp_path / "bundle.json"
    b.write_text(bundle_text)
    r = CliRunner().invoke(
        main_cli, ["provision", "--bundle", str(b), *flags, *args(tmp_path)]
    )  # in-process: fast
    assert r.exit_code != 0
    assert expected in r.stderr, r.stderr
    assert "fix:" in r.stderr and "Traceback" not in r.stderr
    assert cfg.read_text() == "# the old config\n"
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["config.toml"]
    assert not (tmp_path / "state").exists()


def test_bad_bundle_through_the_real_entry_point(cli, tmp_path):
    b = tmp_path / "bundle.json"
    b.write_text(
        '{"version": 1, "config": {"device": {"site": "s", "id": "u1"}, "cameras": [{"name": "n"}]}}'
    )
    r = cli("provision", "--bundle", str(b), *args(tmp_path))
    assert r.returncode == 2 and "cameras[0].source: is required" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "etc").exists()


def test_dry_run_writes_nothing_and_masks_secrets(cli, tmp_path):
    b = make_bundle(tmp_path)
    r = cli("provision", "--bundle", str(b), "--dry-run", *args(tmp_path))
    assert r.returncode == 0, r.stderr
    assert 'site = "main-st-5th"' in r.stdout and "nothing written" in r.stderr
    assert not (tmp_path / "etc").exists() and not (tmp_path / "state").exists()
    assert prov.masked({"mqtt": {"password": "hunter2", "password_file": "/x", "password_env": "P"}}) == {
        "mqtt": {"password": "***", "password_file": "/x", "password_env": "P"}
    }


def test_set_paths_and_values():
    data: dict = {"cameras": [{"name": "a.b", "source": "x"}]}
    B.set_path(
        data, "cameras[a.b].analytics.lines", B.parse_value('[{name = "l", points = [[0, 1], [2, 3]]}]')
    )
    B.set_path(data, "cameras[0].detect_fps", B.parse_value("2"))
    B.set_path(data, "device.site", B.parse_value("main-st"))  # a bare word stays text
    assert data["cameras"][0]["analytics"]["lines"][0]["points"] == [[0, 1], [2, 3]]
    assert data["cameras"][0]["detect_fps"] == 2 and data["device"]["site"] == "main-st"
    for bad in ("a..b", "", "a[", "x]"):
        with pytest.raises(ConfigError):
            B.set_path({}, bad, 1)


# -- certificates, with a config schema whose mqtt section has broker and TLS keys ----------------


class _Mqtt(Section):
    enabled: bool = False
    url: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class _Config(agent.config.AgentConfig):
    mqtt: _Mqtt = Field(default_factory=_Mqtt)


@pytest.fixture
def tls_schema(monkeypatch):
    monkeypatch.setattr(agent.config, "AgentConfig", _Config)


def openssl(*a: str, cwd: Path) -> None:
    subprocess.run(["openssl", *a], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    for name in ("client", "other"):
        openssl(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    (d / "mqtt-password").write_text("s3cret\n")
    return d


def test_flags_fill_schema_keys_and_certs_are_installed(tls_schema, pki, tmp_path):
    b = make_bundle(tmp_path)
    opts = prov.Options(
        bundle=b,
        broker="mqtts://broker.city.example:8883",
        username="rsu-0042",
        password_file=pki / "mqtt-password",
        ca_cert=pki / "ca.pem",
        client_cert=pki / "client.pem",
        client_key=pki / "client.key",
        output=tmp_path / "etc" / "config.toml",
        state_dir=tmp_path / "state",
    )
    plan = prov.build(opts)
    done = prov.write(plan)
    assert any("copied" in line for line in done)
    certs = tmp_path / "etc" / "certs"
    assert sorted(p.name for p in certs.iterdir()) == ["ca.pem", "client.key", "client.pem", "mqtt-password"]
    assert all(mode(p) == 0o640 for p in certs.iterdir())
    cfg = agent.config.load_config(tmp_path / "etc" / "config.toml")
    assert cfg.mqtt.enabled is True and cfg.mqtt.url == "mqtts://broker.city.example:8883"
    assert cfg.mqtt.ca_file == str(certs / "ca.pem") and cfg.mqtt.key_file == str(certs / "client.key")
    assert (certs / "client.key").read_bytes() == (pki / "client.key").read_bytes()


def test_bundle_relative_cert_paths_resolve_against_the_bundle(tls_schema, pki, tmp_path):
    usb = tmp_path / "usb"
    usb.mkdir()
    for f in ("ca.pem", "client.pem", "client.key"):
        (usb / f).write_bytes((pki / f).read_bytes())
    cfg = {
        "device": {"site": "s", "id": "u1"},
        "mqtt": {
            "enabled": True,
            "url": "mqtts://b:8883",
            "ca_file": "ca.pem",
            "cert_file": "client.pem",
            "key_file": "client.key",
        },
    }
    plan = prov.build(
        prov.Options(
            bundle=make_bundle(tmp_path, cfg),
            output=tmp_path / "etc" / "config.toml",
            state_dir=tmp_path / "state",
        )
    )
    assert plan.data["mqtt"]["ca_file"] == str(tmp_path / "etc" / "certs" / "ca.pem")
    assert [s for s, _ in plan.files] == [usb / "ca.pem", usb / "client.pem", usb / "client.key"]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"key_file": "other.key"}, "do not load together"),  # key of another certificate
        ({"ca_file": "client.key"}, "is not a PEM certificate"),
        ({"key_file": "ca.pem"}, "is not a PEM private key"),
        ({"cert_file": None}, "client key is given without a client certificate"),
        ({"url": "mqtts://:8883"}, "has no host name"),
        ({"url": "mqtts://user:pw@b:8883"}, "contains a password"),
    ],
)
def test_tls_mistakes_are_caught_before_writing(tls_schema, pki, tmp_path, change, expected):
    mqtt = {
        "enabled": True,
        "url": "mqtts://b:8883",
        "ca_file": str(pki / "ca.pem"),
        "cert_file": str(pki / "client.pem"),
        "key_file": str(pki / "client.key"),
    }
    for k, v in change.items():
        if v is None:
            mqtt.pop(k)
        else:
            mqtt[k] = v if k == "url" else str(pki / v)
    opts = prov.Options(
        bundle=make_bundle(tmp_path, {"device": {"site": "s", "id": "u1"}, "mqtt": mqtt}),
        output=tmp_path / "etc" / "config.toml",
        state_dir=tmp_path / "state",
    )
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        prov.build(opts)
    assert not (tmp_path / "etc").exists()


def test_flag_without_schema_key_is_a_clear_error(monkeypatch):
    class _NoUrl(Section):
        enabled: bool = False

    class _C(agent.config.AgentConfig):
        mqtt: _NoUrl = Field(default_factory=_NoUrl)

    monkeypatch.setattr(agent.config, "AgentConfig", _C)
    with pytest.raises(ConfigError, match="--broker: this version's config schema has no key"):
        B.require_key("broker")
    assert B.schema_key("ca_cert") is None
    monkeypatch.setattr(agent.config, "AgentConfig", _Config)
    assert B.schema_key("ca_cert") == "mqtt.ca_file" and B.schema_has("mqtt.url")


def test_broker_url_split_into_host_port_and_tls(monkeypatch, tmp_path):
    class _Tls(Section):
        enabled: bool = False
        ca_file: str | None = None

    class _HostMqtt(Section):
        enabled: bool = False
        host: str = "localhost"
        port: int | None = None
        tls: _Tls = Field(default_factory=_Tls)

    class _C(agent.config.AgentConfig):
        mqtt: _HostMqtt = Field(default_factory=_HostMqtt)

    monkeypatch.setattr(agent.config, "AgentConfig", _C)
    opts = prov.Options(
        site="s",
        device_id="u1",
        broker="mqtts://broker.city.example:8884",
        output=tmp_path / "etc" / "config.toml",
        state_dir=tmp_path / "state",
    )
    plan = prov.build(opts)
    assert plan.data["mqtt"] == {
        "host": "broker.city.example",
        "port": 8884,
        "tls": {"enabled": True},
        "enabled": True,
    }
    opts.broker = "wss://broker.city.example"
    with pytest.raises(ConfigError, match="no websocket transport"):
        prov.build(opts)
    opts.broker = "tcp://broker"
    with pytest.raises(ConfigError, match="scheme 'tcp'"):
        prov.build(opts)
