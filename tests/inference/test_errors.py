"""Bad models and missing accelerators give clear errors (or a recorded CPU fallback), never tracebacks."""

from __future__ import annotations

import importlib.util

import pytest

from agent.config import InferenceConfig, ModelsConfig
from agent.errors import AcceleratorError, ModelError
from agent.inference import load_engine
from agent.inference.runtime import make_interpreter


def _edgetpu_installed() -> bool:
    import ctypes

    from agent.inference.runtime import edgetpu_library

    try:
        ctypes.CDLL(edgetpu_library())
        return True
    except OSError:
        return False


needs_no_tpu = pytest.mark.skipif(_edgetpu_installed(), reason="an Edge TPU runtime is installed here")


def _load(model, models_cfg, **kw):
    return load_engine(str(model), InferenceConfig(**kw), models_cfg)


def test_missing_model_file(tmp_path, models_cfg):
    with pytest.raises(ModelError) as e:
        _load(tmp_path / "nope.tflite", models_cfg)
    assert "does not exist" in e.value.message and "models pull" in e.value.hint


def test_random_bytes_model(tmp_path, models_cfg):
    bad = tmp_path / "random.tflite"
    bad.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ModelError) as e:
        _load(bad, models_cfg)
    assert "not a TFLite model" in e.value.message and e.value.hint


@pytest.mark.parametrize("keep", [64, 100_000, 2_000_000])
def test_truncated_model(tmp_path, models_cfg, model_path, keep):
    src = model_path("ssd_mobilenet_v1_coco_quant.tflite").read_bytes()
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(src[:keep])
    with pytest.raises(ModelError) as e:
        _load(bad, models_cfg)
    assert "truncated.tflite" in e.value.message and "pull" in e.value.hint


def test_empty_and_directory(tmp_path, models_cfg):
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(ModelError, match="not a TFLite model"):
        _load(tmp_path / "empty.tflite", models_cfg)
    (tmp_path / "d.tflite").mkdir()
    with pytest.raises(ModelError, match="directory"):
        _load(tmp_path / "d.tflite", models_cfg)


def test_model_with_unresolved_custom_op(model_path, models_cfg):
    with pytest.raises(ModelError) as e:
        _load(model_path("model_invoking_error.tflite"), models_cfg)
    assert "fake-op-double" in e.value.message and "custom op" in e.value.message
    assert "custom operator" in e.value.hint
    assert not isinstance(e.value, AcceleratorError)


@needs_no_tpu
@pytest.mark.parametrize("accel", ["auto", "cpu"])
def test_edgetpu_model_without_tpu(model_path, models_cfg, accel):
    with pytest.raises(AcceleratorError) as e:
        _load(model_path("yolov8n_full_integer_quant_edgetpu.tflite"), models_cfg, accelerator=accel)
    assert "compiled for the Edge TPU" in e.value.message and "edgetpu-custom-op" in e.value.message
    assert "libedgetpu" in e.value.hint and "CPU model" in e.value.hint


@needs_no_tpu
def test_edgetpu_model_falls_back_to_its_cpu_original(tmp_path, mirror):
    """With a catalog that knows the CPU original, auto runs it on the CPU and says why."""
    cat = tmp_path / "catalog.toml"
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "coco80.txt").write_text(
        "\n".join(
            line for line in (mirror / "models" / "coco_labels.txt").read_text().splitlines() if line != "n/a"
        )
    )
    from agent.inference.catalog import sha256_file

    cpu = mirror / "models" / "yolov8n_full_integer_quant.tflite"
    tpu = mirror / "models" / "yolov8n_full_integer_quant_edgetpu.tflite"
    cat.write_text(f'''
[models.yolo_test]
task = "detect"
file = "{cpu.name}"
sha256 = "{sha256_file(cpu)}"
url = "https://example.invalid/yolo.tflite"
license = "AGPL-3.0"
labels = "coco80.txt"
edgetpu_variant = "yolo_test_edgetpu"

[models.yolo_test_edgetpu]
task = "detect"
file = "{tpu.name}"
sha256 = "{sha256_file(tpu)}"
url = "https://example.invalid/yolo_edgetpu.tflite"
license = "AGPL-3.0"
labels = "coco80.txt"
''')
    mc = ModelsConfig(dir=tmp_path / "models", mirror=str(mirror), catalog=cat)
    for name in ("yolo_test", "yolo_test_edgetpu"):  # by either name: the CPU original on the CPU
        eng = load_engine(name, InferenceConfig(), mc)
        assert eng.accelerator == "cpu" and eng.family == "yolo" and eng.path.name == cpu.name
        assert any("libedgetpu" in r for r in eng.accelerator_reasons)
    eng = load_engine(str(mc.dir / tpu.name), InferenceConfig(), mc)  # by the TPU file's path
    assert eng.accelerator == "cpu" and eng.path.name == cpu.name
    with pytest.raises(AcceleratorError, match="libedgetpu"):
        load_engine("yolo_test", InferenceConfig(accelerator="edgetpu"), mc)


@needs_no_tpu
def test_edgetpu_requested_without_runtime(models_cfg):
    with pytest.raises(AcceleratorError) as e:
        _load("ssd_mobilenet_v1_coco", models_cfg, accelerator="edgetpu")
    assert "edgetpu" in e.value.message and "libedgetpu" in e.value.hint


@needs_no_tpu
def test_auto_falls_back_to_cpu_and_records_why(model_path):
    info = make_interpreter(
        model_path("ssd_mobilenet_v1_coco_quant.tflite"),
        accelerator="auto",
        edgetpu_model_path=model_path("yolov8n_full_integer_quant_edgetpu.tflite"),
    )
    assert info.accelerator == "cpu"
    assert info.reasons[0].startswith("edgetpu: cannot load libedgetpu")
    assert info.reasons[1].startswith("gpu:")


def test_gpu_requested_with_missing_library(model_path, tmp_path):
    with pytest.raises(AcceleratorError) as e:
        make_interpreter(
            model_path("ssd_mobilenet_v1_coco_quant.tflite"),
            accelerator="gpu",
            gpu_delegate_path=str(tmp_path / "libtensorflowlite_gpu_delegate.so"),
        )
    assert "gpu" in e.value.message and "gpu_delegate_path" in e.value.hint


def test_external_delegate_that_is_not_a_delegate(model_path):
    import ctypes.util

    libm = ctypes.util.find_library("m")
    with pytest.raises(AcceleratorError) as e:
        make_interpreter(model_path("ssd_mobilenet_v1_coco_quant.tflite"), delegate_path=libm)
    assert libm in e.value.message


def test_tflite_runtime_requested(model_path):
    if importlib.util.find_spec("tflite_runtime") is None:
        with pytest.raises(ModelError) as e:
            make_interpreter(model_path("ssd_mobilenet_v1_coco_quant.tflite"), runtime="tflite-runtime")
        assert "tflite_runtime" in e.value.message and "pip install" in e.value.hint
    else:
        info = make_interpreter(
            model_path("ssd_mobilenet_v1_coco_quant.tflite"), runtime="tflite-runtime", accelerator="cpu"
        )
        assert info.runtime == "tflite-runtime"


def test_unknown_name_lists_catalog(models_cfg):
    with pytest.raises(ModelError) as e:
        _load("ssd_mobilenet_v9", models_cfg)
    assert "not in the model catalog" in e.value.message and "ssd_mobilenet_v1_coco" in e.value.hint


def test_not_installed_without_auto_pull(tmp_path):
    mc = ModelsConfig(dir=tmp_path, auto_pull=False)
    with pytest.raises(ModelError) as e:
        load_engine("mobilenet_v2_imagenet", InferenceConfig(), mc)
    assert (
        "not installed" in e.value.message and "edge-agent models pull mobilenet_v2_imagenet" in e.value.hint
    )


def test_wrong_family_forced(model_path, models_cfg):
    with pytest.raises(ModelError, match="does not fit family 'yolo'"):
        load_engine(
            str(model_path("ssd_mobilenet_v1_coco_quant.tflite")),
            InferenceConfig(),
            models_cfg,
            family="yolo",
        )


def test_bad_frame(engine):
    import numpy as np

    with pytest.raises(ModelError, match="expected a BGR image"):
        engine("ssd_mobilenet_v1_coco").detect(np.zeros((10, 10), np.uint8))
