"""The recurrent traffic model: LSTM state carried frame to frame per camera, zero on reset."""

from __future__ import annotations

import numpy as np


def _state_tensors(eng):
    """(input tensors, output tensors) of the LSTM state, read from the interpreter."""
    it = eng.interpreter
    ins = {d["name"]: it.get_tensor(d["index"]) for d in it.get_input_details() if "lstm" in d["name"]}
    outs = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details() if "lstm" in d["name"]}
    return ins, outs


def test_family_and_labels(engine):
    eng = engine("traffic_lstm_vehicles")
    assert eng.family == "recurrent" and eng.input_size == (256, 256)
    assert eng.labels == {0: "sedan", 1: "pickup_suv_van", 2: "large_veh_bus"}


def test_state_is_fed_forward_per_camera_and_reset(engine, traffic_frames, image):
    eng = engine("traffic_lstm_vehicles")
    eng.reset_state()
    c_in, h_in = "raw_inputs/init_lstm_c", "raw_inputs/init_lstm_h"
    c_out, h_out = "raw_outputs/lstm_c", "raw_outputs/lstm_h"

    eng.run(traffic_frames[0], state_key="cam-a")
    ins, outs_a0 = _state_tensors(eng)
    assert not ins[c_in].any() and not ins[h_in].any()  # first frame: zero state (zero point 0)

    eng.run(image("cat.bmp"), state_key="cam-b")  # another camera in between
    ins, outs_b0 = _state_tensors(eng)
    assert not ins[c_in].any()  # cam-b starts from zero too

    prev = outs_a0
    for f in traffic_frames[1:4]:
        eng.run(f, state_key="cam-a")
        ins, outs = _state_tensors(eng)
        np.testing.assert_array_equal(ins[c_in], prev[c_out])  # frame n+1 is fed frame n's state
        np.testing.assert_array_equal(ins[h_in], prev[h_out])
        prev = outs

    eng.reset_state("cam-a")
    eng.run(traffic_frames[4], state_key="cam-a")
    ins, _ = _state_tensors(eng)
    assert not ins[c_in].any() and not ins[h_in].any()

    eng.run(traffic_frames[5], state_key="cam-b")  # cam-b kept its own state through all that
    ins, _ = _state_tensors(eng)
    np.testing.assert_array_equal(ins[c_in], outs_b0[c_out])


def test_injected_state_reaches_the_model_per_camera(engine, traffic_frames):
    """A non-zero state (this model file's own state outputs stay zero, see the README) is fed on the
    next frame of its camera only, replaced by that frame's outputs, and cleared by reset_state."""
    eng = engine("traffic_lstm_vehicles")
    ad = eng.adapter
    names = [d["name"] for d, _ in ad.pairs]
    assert names == ["raw_inputs/init_lstm_c", "raw_inputs/init_lstm_h"]
    rng = np.random.default_rng(7)
    sa = [rng.integers(1, 256, d["shape"], dtype=np.uint8) for d, _ in ad.pairs]
    sb = [rng.integers(1, 256, d["shape"], dtype=np.uint8) for d, _ in ad.pairs]
    ad.set_state("cam-a", sa)
    ad.set_state("cam-b", sb)
    eng.run(traffic_frames[0], state_key="cam-b")
    ins, outs = _state_tensors(eng)
    np.testing.assert_array_equal(ins["raw_inputs/init_lstm_c"], sb[0])
    np.testing.assert_array_equal(ins["raw_inputs/init_lstm_h"], sb[1])
    np.testing.assert_array_equal(ad.state("cam-b")[0], outs["raw_outputs/lstm_c"])  # kept for the next frame
    eng.run(traffic_frames[1], state_key="cam-a")
    ins, _ = _state_tensors(eng)
    np.testing.assert_array_equal(ins["raw_inputs/init_lstm_c"], sa[0])  # cam-a's own, untouched by cam-b
    np.testing.assert_array_equal(ins["raw_inputs/init_lstm_h"], sa[1])
    ad.set_state("cam-a", sa)
    eng.reset_state("cam-a")
    eng.run(traffic_frames[2], state_key="cam-a")
    ins, _ = _state_tensors(eng)
    assert not ins["raw_inputs/init_lstm_c"].any() and not ins["raw_inputs/init_lstm_h"].any()


def test_detects_sedans_and_vehicles_on_the_road(engine, traffic_frames):
    eng = engine("traffic_lstm_vehicles")
    eng.reset_state("clip")
    frames_with_vehicle = 0
    sedans = 0
    for f in traffic_frames:
        dets = eng.detect(f, state_key="clip", threshold=0.3)
        frames_with_vehicle += bool(dets)
        sedans += sum(d.label == "sedan" for d in dets)
        for d in dets:
            assert 250 < (d.box[1] + d.box[3]) / 2 < 540  # on the road
    assert frames_with_vehicle == len(traffic_frames)
    assert sedans >= 3
