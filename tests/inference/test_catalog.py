"""The model catalog: shipped entries, pull from a mirror or upstream (sha256-checked, atomic), verify."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from agent.config import ModelsConfig
from agent.errors import ModelError
from agent.inference import catalog as cat

REDISTRIBUTABLE = {"Apache-2.0", "MIT", "BSD-3-Clause", "CC-BY-4.0"}


def test_shipped_catalog():
    c = cat.load_catalog()
    assert c.path.name == "catalog.toml" and c.path.parent.name == "models"
    assert {
        "ssd_mobilenet_v1_coco",
        "traffic_lstm_vehicles",
        "mobilenet_v2_imagenet",
        "traffic_frames",
    } <= set(c.entries)
    default = c.get("ssd_mobilenet_v1_coco")
    assert (
        default.url.endswith("coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.zip")
        and default.member == "detect.tflite"
    )
    for e in c.entries.values():
        assert e.license in REDISTRIBUTABLE, (e.name, e.license)  # no AGPL / unlicensed files shipped
        assert "yolo" not in e.file and "4ku" not in e.file and "fpnlite" not in e.file
        assert e.url.startswith("https://")
        if e.kind == "model":
            assert e.labels and (c.labels_dir / e.labels).is_file()
            assert e.task in ("detect", "classify") and e.family in (
                "ssd",
                "recurrent",
                "classifier",
                "yolo",
                "blazeface",
            )


def test_catalog_sha256_match_the_mirror(mirror):
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.removeprefix("./")] = digest
    for e in cat.load_catalog().entries.values():
        assert sums[f"{e.subdir}/{e.file}"] == e.sha256, e.name


def test_label_files_are_facts():
    from agent.inference.labels import coco80, packaged_labels

    coco = packaged_labels("coco_labels.txt")
    assert coco[0] == "person" and coco[2] == "car" and coco[16] == "cat" and coco[89] == "toothbrush"
    assert 11 not in coco and len(coco) == 80  # the "n/a" gaps of the 90-id space
    assert list(coco80(coco).values())[:3] == ["person", "bicycle", "car"]
    imagenet = packaged_labels("imagenet_labels.txt")
    assert len(imagenet) == 1001 and imagenet[0] == "background" and imagenet[286] == "Egyptian cat"


def test_pull_from_mirror_and_verify(tmp_path, mirror):
    mc = ModelsConfig(dir=tmp_path / "m")
    paths = cat.pull(["mobilenet_v2_imagenet", "traffic_frames"], mc, mirror)
    assert [p.name for p in paths] == ["mobilenet_v2_1.0_224_quant.tflite", "traffic_frames.mp4"]
    assert paths[1].parent.name == "media"
    status = dict((e.name, s) for e, s in cat.verify(mc))
    assert status["mobilenet_v2_imagenet"] == "ok" and status["traffic_frames"] == "ok"
    assert status["ssd_mobilenet_v1_coco"] == "missing"
    assert cat.ensure_media("traffic_frames.mp4", mc) == paths[1]
    # a file changed after install is caught by verify, and re-pulled by --force
    with open(paths[0], "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    status = dict((e.name, s) for e, s in cat.verify(mc))
    assert status["mobilenet_v2_imagenet"].startswith("sha256 mismatch")
    cat.pull(["mobilenet_v2_imagenet"], mc, mirror, force=True)
    assert dict((e.name, s) for e, s in cat.verify(mc))["mobilenet_v2_imagenet"] == "ok"


@pytest.fixture
def tampered_mirror(tmp_path, mirror):
    """A copy of the mirror whose default model has one byte changed."""
    m = tmp_path / "mirror"
    (m / "models").mkdir(parents=True)
    (m / "media").mkdir()
    src = mirror / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (m / "models" / src.name).write_bytes(bytes(data))
    shutil.copy(mirror / "media" / "traffic_frames.mp4", m / "media")
    return m


def test_pull_refuses_a_tampered_file(tmp_path, tampered_mirror):
    mc = ModelsConfig(dir=tmp_path / "m")
    with pytest.raises(ModelError) as e:
        cat.pull(["ssd_mobilenet_v1_coco"], mc, tampered_mirror)
    assert "sha256 mismatch" in e.value.message and "not installed" in e.value.message
    assert not (mc.dir / "ssd_mobilenet_v1_coco_quant.tflite").exists()
    assert list(mc.dir.iterdir()) == []  # no temp file left behind
    assert cat.pull(["traffic_frames"], mc, tampered_mirror)[0].is_file()  # the intact file is fine


def test_pull_keeps_a_good_install_when_the_new_copy_is_bad(tmp_path, mirror, tampered_mirror):
    mc = ModelsConfig(dir=tmp_path / "m")
    good = cat.pull(["ssd_mobilenet_v1_coco"], mc, mirror)[0]
    before = good.read_bytes()
    with pytest.raises(ModelError, match="sha256 mismatch"):
        cat.pull(["ssd_mobilenet_v1_coco"], mc, tampered_mirror, force=True)
    assert good.read_bytes() == before


def test_mirror_without_the_file(tmp_path):
    (tmp_path / "empty" / "models").mkdir(parents=True)
    with pytest.raises(ModelError) as e:
        cat.pull(["ssd_mobilenet_v1_coco"], ModelsConfig(dir=tmp_path / "m"), tmp_path / "empty")
    assert "not in the mirror" in e.value.message and "coco_ssd_mobilenet_v1" in e.value.hint


def test_upstream_download_extracts_the_zip_member(tmp_path, mirror, monkeypatch):
    """The upstream path (urllib + zip member), pointed at a local file:// zip shaped like Google's."""
    monkeypatch.delenv("EDGE_AGENT_MIRROR", raising=False)
    z = tmp_path / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(mirror / "models" / "ssd_mobilenet_v1_coco_quant.tflite", "detect.tflite")
        zf.writestr("labelmap.txt", "???\nperson\n")
    shipped = cat.load_catalog().get("ssd_mobilenet_v1_coco")
    catalog = tmp_path / "catalog.toml"
    (tmp_path / "labels").mkdir()
    shutil.copy(cat.labels_dir() / "coco_labels.txt", tmp_path / "labels")
    catalog.write_text(f'''[models.ssd_mobilenet_v1_coco]
task = "detect"
family = "ssd"
file = "{shipped.file}"
sha256 = "{shipped.sha256}"
url = "{z.as_uri()}"
member = "detect.tflite"
labels = "coco_labels.txt"
license = "Apache-2.0"
''')
    mc = ModelsConfig(dir=tmp_path / "m", catalog=catalog)
    p = cat.pull(["ssd_mobilenet_v1_coco"], mc)[0]
    assert cat.sha256_file(p) == shipped.sha256 and sorted(x.name for x in mc.dir.iterdir()) == [shipped.file]
    # auto-pull on load_engine goes the same way
    from agent.config import InferenceConfig
    from agent.inference import load_engine

    p.unlink()
    eng = load_engine("ssd_mobilenet_v1_coco", InferenceConfig(), mc)
    assert eng.path == p and p.is_file()


def test_bad_catalog_is_a_clear_error(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text('[models.x]\nfile = "x.tflite"\n')
    with pytest.raises(ModelError, match=r"\[models.x\] lacks sha256, url, license"):
        cat.load_catalog(ModelsConfig(catalog=bad))
    bad.write_text("[models.x\n")
    with pytest.raises(ModelError, match="not valid TOML"):
        cat.load_catalog(ModelsConfig(catalog=bad))
