"""``edge-agent provision``: turn a bundle and/or flags into /etc/edge-agent/config.toml, safely.

Everything is checked before anything is written: the schema (``parse_config``, so each error
names its key path), the broker URL, and every file the config refers to (certificates must
parse, a client key must match its certificate). Then the referenced files are copied into the
config directory (``certs/``, mode 0640, group of the service user), the config is written
atomically (mode 0640) and re-read, and the API token is written (kept if one exists).
A failed run leaves the previous config untouched.
"""

from __future__ import annotations

import copy
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import __version__
from agent.api import token as tokens
from agent.config import AgentConfig, load_config, parse_config
from agent.errors import AgentError, ConfigError
from agent.fsutil import CONFIG_DIR, STATE_DIR, atomic_write, ensure_dir, ownership
from agent.service import bundle as B
from agent.service.tomlwrite import dumps

DEFAULT_OUTPUT = CONFIG_DIR / "config.toml"
FILE_SECTIONS = ("mqtt", "api")  # sections whose *file keys name files to install
SECRET_WORDS = ("password", "token", "secret")


@dataclass
class Options:
    """What the installer typed (all optional; the bundle gives the rest)."""

    bundle: Path | None = None
    site: str | None = None
    device_id: str | None = None
    broker: str | None = None
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    cameras: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    token: str | None = None
    rotate_token: bool = False
    output: Path = DEFAULT_OUTPUT
    state_dir: Path = STATE_DIR
    token_file: Path | None = None


@dataclass
class Plan:
    """A checked config, ready to write."""

    data: dict[str, Any]  # as it will be written (installed file paths)
    config: AgentConfig
    files: list[tuple[Path, Path]]  # (source, destination)
    output: Path
    token_file: Path
    token: str | None  # explicit token to write, else keep/create
    rotate_token: bool
    warnings: list[str] = field(default_factory=list)


# -- building --------------------------------------------------------------------------------------


def _base_dir(opts: Options) -> Path:
    return opts.bundle.resolve().parent if opts.bundle else Path.cwd()


def _apply_flags(data: dict[str, Any], opts: Options) -> list[str]:
    warnings: list[str] = []
    if opts.site is not None:
        B.set_path(data, "device.site", opts.site)
    if opts.device_id is not None:
        B.set_path(data, "device.id", opts.device_id)
    if opts.broker is not None:
        warnings.extend(B.apply_broker(data, opts.broker))
    for flag in ("username", "password", "password_file", "ca_cert", "client_cert", "client_key"):
        val = getattr(opts, flag)
        if val is not None:
            B.set_path(data, B.require_key(flag), str(Path(val).resolve()) if isinstance(val, Path) else val)
    for spec in opts.cameras:
        B.upsert_camera(data, spec)
    for item in opts.sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE",
                "e.g. --set mqtt.keepalive_s=30 or --set 'cameras[north].detect_fps=2.5'",
            )
        B.set_path(data, key.strip(), B.parse_value(raw.strip()))
    return warnings


def _apply_defaults(data: dict[str, Any], opts: Options, token_file: Path) -> None:
    """Absolute paths under the state directory, so `edge-agent` run from anywhere finds the same files."""
    state = opts.state_dir
    storage = data.setdefault("storage", {})
    if isinstance(storage, dict):
        storage.setdefault("path", str(state / "edge-agent.sqlite"))
    models = data.setdefault("models", {})
    if isinstance(models, dict):
        models.setdefault("dir", str(state / "models"))
    key = B.schema_key("token_file")
    if key:
        api = data.setdefault("api", {})
        if isinstance(api, dict):
            api.setdefault(key.split(".", 1)[1], str(token_file))


def _check_identity(data: dict[str, Any]) -> None:
    got = data.get("device")
    dev: dict[str, Any] = got if isinstance(got, dict) else {}
    if not dev.get("site") or dev.get("site") == "default":
        raise ConfigError("device.site is not set", "pass --site NAME or put device.site in the bundle")
    if not dev.get("id"):
        raise ConfigError(
            "device.id is not set (units flashed from one image share a hostname, so it is never guessed)",
            "pass --device-id NAME (e.g. the label on the cabinet)",
        )


def _is_file_key(key: str) -> bool:
    """Keys naming a file provision installs: ca_file, certfile, keyfile, password_file, ...

    The API token file is not one of them: it is written by provision itself.
    """
    if "token" in key:
        return False
    return key.endswith("file") or key in ("ca_certs", "client_cert", "client_key")


def _file_refs(node: Any, path: str) -> list[tuple[str, dict[str, Any], str]]:
    """(dotted path, containing dict, key) of every string that names a file to install."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}"
            if isinstance(v, str) and v and _is_file_key(k):
                out.append((p, node, k))
            elif isinstance(v, (dict, list)):
                out.extend(_file_refs(v, p))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_file_refs(v, f"{path}[{i}]"))
    return out


def _check_file(path: str, src: Path) -> None:
    try:
        with open(src, "rb") as fh:
            head = fh.read(64 * 1024)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file {src} does not exist", "check the path (relative paths are relative to the bundle)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {src}: {exc.strerror}", "check its permissions") from None
    if not head.strip():
        raise ConfigError(
            f"{path}: file {src} is empty", "copy the right file from the city's PKI / broker admin"
        )
    key = path.rsplit(".", 1)[-1]
    if "password" in key:
        return
    if ("cert" in key or key.startswith("ca")) and b"-----BEGIN CERTIFICATE-----" not in head:
        raise ConfigError(
            f"{path}: {src} is not a PEM certificate",
            "use the .pem/.crt file that starts with -----BEGIN CERTIFICATE-----",
        )
    if "key" in key and b"PRIVATE KEY-----" not in head:
        raise ConfigError(
            f"{path}: {src} is not a PEM private key",
            "use the key file that starts with -----BEGIN ... PRIVATE KEY-----",
        )


def _check_tls(section: dict[str, Any], where: str) -> None:
    """Load CA and client cert/key with ssl, so a wrong or mismatched file fails here, not on the pole."""
    flat = {k: v for k, v in section.items() if isinstance(v, str)}
    for sub in section.values():
        if isinstance(sub, dict):
            flat.update({k: v for k, v in sub.items() if isinstance(v, str)})
    ca = next((flat[k] for k in flat if _is_file_key(k) and k.startswith("ca")), None)
    cert = next((flat[k] for k in flat if _is_file_key(k) and "cert" in k and not k.startswith("ca")), None)
    key = next((flat[k] for k in flat if _is_file_key(k) and "key" in k and "password" not in k), None)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{where}: CA certificate {ca} cannot be loaded: {exc}",
                "use the broker's CA bundle in PEM form",
            ) from None
    if key and not cert:
        raise ConfigError(
            f"{where}: a client key is given without a client certificate",
            "give both (--client-cert and --client-key) or neither",
        )
    if cert:
        try:
            ctx.load_cert_chain(cert, key, password=flat.get("key_password") or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{where}: client certificate {cert} and key {key or '(in the same file)'} do not load together: {exc}",
                "check the key belongs to the certificate (and key_password if it is encrypted)",
            ) from None


def build(opts: Options) -> Plan:
    """Assemble and check the config; raises ConfigError/AgentError, writes nothing."""
    data: dict[str, Any] = {}
    token = opts.token
    if opts.bundle is not None:
        data, bundle_token = B.load_bundle(opts.bundle)
        data = copy.deepcopy(data)
        token = token or bundle_token
    if token is not None:
        token = tokens.check(token)
    warnings = _apply_flags(data, opts)
    token_file = opts.token_file or opts.state_dir / "api-token"
    _apply_defaults(data, opts, token_file)
    _check_identity(data)

    for where, url in B.broker_urls(data):
        warnings.extend(B.check_broker_url(url, where))

    base = _base_dir(opts)
    certs_dir = opts.output.parent / "certs"
    files: list[tuple[Path, Path]] = []
    installed = copy.deepcopy(data)
    for section in FILE_SECTIONS:
        for (path, node, key), (_, inode, _) in zip(
            _file_refs(data.get(section), section), _file_refs(installed.get(section), section)
        ):
            src = Path(node[key]).expanduser()
            src = src if src.is_absolute() else (base / src)
            _check_file(path, src)
            node[key] = str(src)
            dst = certs_dir / src.name
            if any(d == dst and s.resolve() != src.resolve() for s, d in files):
                raise ConfigError(
                    f"{path}: two different files are both named {src.name}", "rename one of them"
                )
            files.append((src, dst))
            inode[key] = str(dst)
        if isinstance(data.get(section), dict):
            _check_tls(data[section], section)

    source = str(opts.bundle) if opts.bundle else "provision flags"
    config = parse_config(data, source)  # with the source files, which exist now
    for cam in config.cameras:
        if cam.source.startswith("/dev/") and not Path(cam.source).exists():
            warnings.append(
                f"camera {cam.name}: {cam.source} does not exist now (plug the camera in before `edge-agent doctor`)"
            )
    return Plan(
        data=installed,
        config=config,
        files=files,
        output=opts.output,
        token_file=token_file,
        token=token,
        rotate_token=opts.rotate_token,
        warnings=warnings,
    )


# -- writing ---------------------------------------------------------------------------------------


def masked(data: Any) -> Any:
    """A copy with secret values replaced by '***' (for --dry-run output)."""
    if isinstance(data, dict):
        return {
            k: (
                "***"
                if isinstance(v, str)
                and v
                and any(w in k for w in SECRET_WORDS)
                and not _is_file_key(k)
                and not k.endswith("_env")
                else masked(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [masked(x) for x in data]
    return data


def render(plan: Plan, mask: bool = False) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    head = (
        f"edge-agent configuration, written by `edge-agent provision` (agent {__version__}) on {stamp}.\n"
        "Edit by re-running provision, or by hand followed by `edge-agent config check`.\n"
        "Every key: `edge-agent config example`."
    )
    return dumps(masked(plan.data) if mask else plan.data, comment=head)


def write(plan: Plan) -> list[str]:
    """Install the files, the config and the token; return a line per thing done."""
    shared = ownership("shared")
    done: list[str] = []
    cfg_dir = ensure_dir(plan.output.parent, 0o750, shared)
    if plan.files:
        ensure_dir(plan.files[0][1].parent, 0o750, shared)
    for src, dst in plan.files:
        if src.resolve() != dst.resolve():
            atomic_write(dst, src.read_bytes(), 0o640, shared)
            done.append(f"copied {src} -> {dst}")
    text = render(plan)
    tmp = cfg_dir / f".{plan.output.name}.check"
    try:
        atomic_write(tmp, text, 0o600)
        written = load_config(tmp)  # what we write must read back as a valid config
    finally:
        tmp.unlink(missing_ok=True)
    if plan.output.exists():
        shutil.copy2(plan.output, plan.output.with_name(plan.output.name + ".prev"))
        done.append(f"kept the previous config as {plan.output.name}.prev")
    atomic_write(plan.output, text, 0o640, shared)
    plan.config = written
    done.append(f"wrote {plan.output} (mode 0640, config hash {written.config_hash()})")

    ensure_dir(plan.token_file.parent, 0o750, ownership("secret"))
    if plan.token is not None:
        tokens.write(plan.token_file, plan.token)
        done.append(f"wrote the API token from the bundle/flags to {plan.token_file} (mode 0600)")
    elif plan.rotate_token:
        tokens.rotate(plan.token_file)
        done.append(f"wrote a new API token to {plan.token_file} (mode 0600)")
    else:
        existed = plan.token_file.exists()
        tokens.load_or_create(plan.token_file)
        done.append(
            f"{'kept the' if existed else 'created an'} API token in {plan.token_file} (see `edge-agent token show`)"
        )
    return done


def restart_service(unit: str = "edge-agent.service") -> str | None:
    """Restart the service when systemd runs and the unit is installed; return what happened."""
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return None
    known = subprocess.run(["systemctl", "cat", unit], capture_output=True, text=True)
    if known.returncode != 0:
        return f"{unit} is not installed; run scripts/install.sh to install and start it"
    subprocess.run(["systemctl", "reset-failed", unit], capture_output=True)
    res = subprocess.run(["systemctl", "restart", unit], capture_output=True, text=True)
    if res.returncode != 0:
        raise AgentError(
            f"the config is written but {unit} did not restart: {res.stderr.strip()}",
            f"see `journalctl -u {unit} -n 50`, fix, then `systemctl restart {unit}`",
        )
    return f"restarted {unit}"


def owner_note() -> str | None:
    if os.geteuid() != 0:
        return "not running as root: files keep your ownership (the service user may not read them)"
    return None
