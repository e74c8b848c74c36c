"""Preprocessing: OpenCV INTER_LINEAR against a reference of TFLite's bilinear resize, quantization
tables, and the box mapping back to source pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.inference.preprocess import Transform, input_lut


def tflite_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference: TFLite RESIZE_BILINEAR with half_pixel_centers=True, align_corners=False (float math)."""
    in_h, in_w = img.shape[:2]
    sy, sx = in_h / out_h, in_w / out_w
    ys = np.maximum((np.arange(out_h) + 0.5) * sy - 0.5, 0)
    xs = np.maximum((np.arange(out_w) + 0.5) * sx - 0.5, 0)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, in_h - 1)
    x1 = np.minimum(x0 + 1, in_w - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bot = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    return np.round(top * (1 - wy) + bot * wy).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("img_name", ["grace_hopper.bmp", "cat.bmp"])
def test_preprocess_matches_reference_bilinear(engine, image, img_name):
    eng = engine("ssd_mobilenet_v1_coco")
    img = image(img_name)
    eng.set_input_from(img)
    tensor = eng.interpreter.get_tensor(eng.interpreter.get_input_details()[0]["index"])[0]
    ref = tflite_bilinear(img[:, :, ::-1], 300, 300)  # RGB
    diff = np.abs(tensor.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.6, (diff.max(), diff.mean())


def test_detections_agree_with_reference_preprocessing(engine, image):
    """Feeding the reference-resized tensor gives the same detections (scores within one quantum)."""
    eng = engine("ssd_mobilenet_v1_coco")
    img = image("grace_hopper.bmp")
    ours = eng.detect(img, threshold=0.4)
    it = eng.interpreter
    it.set_tensor(it.get_input_details()[0]["index"], tflite_bilinear(img[:, :, ::-1], 300, 300)[None])
    it.invoke()
    ref = eng.adapter.objects(0.4)
    assert [d.class_id for d in ours[:2]] == ref.class_ids[:2].tolist()
    np.testing.assert_allclose([d.score for d in ours[:2]], ref.scores[:2], atol=0.03)


def test_engine_reuses_its_input_buffer(engine, image):
    eng = engine("ssd_mobilenet_v1_coco")
    buf = eng._pre._rgb
    eng.run(image("cat.bmp"))
    eng.run(image("grace_hopper.bmp"))
    assert eng._pre._rgb is buf


def test_input_lut_quantization():
    u8 = {"dtype": np.uint8, "quantization": (1 / 128, 128), "quantization_parameters": {}}
    assert input_lut(u8, 127.5, 127.5) is None  # the usual uint8 model: raw pixels
    f32 = {"dtype": np.float32, "quantization": (0.0, 0), "quantization_parameters": {}}
    lut = input_lut(f32, 127.5, 127.5)
    assert lut[0] == pytest.approx(-1) and lut[255] == pytest.approx(1)
    i8 = {"dtype": np.int8, "quantization": (0.018658448, -14), "quantization_parameters": {}}  # YOLOv8 int8
    lut = input_lut(i8, 0.0, 255.0)
    assert lut.dtype == np.int8 and lut[0] == -14 and lut[255] == round(1 / 0.018658448 - 14)
    assert np.all(np.diff(lut.astype(int)) >= 0)


def test_letterbox_transform_maps_back():
    tf = Transform(src_w=1000, src_h=500, in_w=640, in_h=640, scale_x=0.64, scale_y=0.64, pad_x=0, pad_y=160)
    # the full content area of the input maps to the full frame
    np.testing.assert_allclose(
        tf.to_source(np.array([[0, 160 / 640, 1, 480 / 640]], np.float32)), [[0, 0, 1000, 500]], atol=1e-3
    )


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4000),
    st.integers(1, 4000),
    st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=4, max_size=4),
)
def test_stretch_boxes_are_clipped_source_pixels(w, h, coords):
    tf = Transform(src_w=w, src_h=h, in_w=300, in_h=300, scale_x=300 / w, scale_y=300 / h)
    x1, y1, x2, y2 = tf.to_source(np.array([coords], np.float32))[0]
    assert 0 <= x1 <= w and 0 <= x2 <= w and 0 <= y1 <= h and 0 <= y2 <= h
    if 0 <= coords[0] <= 1:
        assert x1 == pytest.approx(coords[0] * w, rel=1e-4, abs=1e-3)


def test_quantize_dequantize_roundtrip():
    from agent.inference.tensors import dequantize, quantize

    d = {
        "dtype": np.int8,
        "quantization": (0.05, -3),
        "quantization_parameters": {"scales": np.array([0.05]), "zero_points": np.array([-3])},
    }
    real = np.array([-6.0, -0.05, 0.0, 1.0, 6.5, 100.0], np.float32)
    q = quantize(real, d)
    assert q.dtype == np.int8 and q[-1] == 127  # clipped
    np.testing.assert_allclose(dequantize(q, d)[:5], real[:5], atol=0.025 + 1e-6)


@pytest.mark.parametrize(
    ("model", "kw"),
    [
        ("ssd_mobilenet_v1_coco", {}),  # uint8 input, no table
        ("ssd_mobilenet_v1_coco", {"resize": "letterbox"}),
        ("face_detection_short_range", {}),  # float input: another size, normalisation table
    ],
)
def test_prepared_input_is_the_same_tensor_and_the_same_detections(engine, image, model, kw):
    """The camera thread's ``prepare`` (fresh arrays, no shared buffer) writes exactly the tensor the
    direct path writes, so the detections are identical; a prepared input made for another
    interpreter is not used (the frame is preprocessed again)."""
    eng = engine(model, **kw)
    idx = eng.interpreter.get_input_details()[0]["index"]
    for name in ("grace_hopper.bmp", "cat.bmp"):
        img = image(name)
        direct, _, _ = eng.run(img, threshold=0.2)
        t_direct = eng.interpreter.get_tensor(idx).copy()
        prepared = eng.prepare(img)
        assert prepared is not None and not np.shares_memory(prepared.data, t_direct)
        eng.run(np.zeros_like(img))  # something else in the input between the two
        via, _, _ = eng.run(img, threshold=0.2, prepared=prepared)
        assert np.array_equal(eng.interpreter.get_tensor(idx), t_direct)
        assert [(d.label, round(d.score, 4), tuple(round(v, 2) for v in d.box)) for d in via] == [
            (d.label, round(d.score, 4), tuple(round(v, 2) for v in d.box)) for d in direct
        ]
    stale = prepared._replace(key=("another", "input"))
    eng.run(np.zeros_like(img))
    again, _, _ = eng.run(img, threshold=0.2, prepared=stale)
    assert np.array_equal(eng.interpreter.get_tensor(idx), t_direct) and len(again) == len(direct)


def test_camera_thread_prepares_the_frames_it_offers(engine, media_path):
    """A file camera attached to an inference worker hands frames with the model input made on its
    own thread; with a privacy mask configured it does not (masks go on the frame first)."""
    import queue

    from agent.config import CameraConfig
    from agent.sources.camera import CameraSource
    from agent.stages import InferenceWorker

    eng = engine("ssd_mobilenet_v1_coco")
    clip = str(media_path("traffic_frames.mp4"))
    for masks, expect in (([], True), ([{"name": "m", "points": [[0, 0], [10, 0], [10, 10]]}], False)):
        cam = CameraSource(CameraConfig(name="c", source=clip, realtime=False, loop=False, masks=masks))
        InferenceWorker(eng, [cam], queue.Queue())  # attaches: not started, so frames stay in the slot
        cam.start()
        try:
            frame = cam.slot.take(timeout=30)
            assert frame is not None
            assert (frame.prepared is not None) is expect
            if expect:
                assert frame.prepared.data.shape == (300, 300, 3) and cam.prepare_errors == 0
        finally:
            cam.stop()
