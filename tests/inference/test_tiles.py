"""Detection tiles (agent/inference/tiles.py): the merge rules, the survey's placement, and a real
model on a real far-field frame, where a tile finds vehicles the full frame misses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.inference import tiles
from agent.types import Detection


def det(box, score=0.5, label="car"):
    return Detection(label, 3, score, tuple(float(v) for v in box))


def line(name, points):
    return SimpleNamespace(name=name, points=points, units="auto")


def test_a_box_cut_by_an_inner_tile_edge_is_dropped_and_frame_edges_are_kept():
    size = (1280, 720)
    region = (300, 200, 600, 500)  # every edge inside the frame
    got = tiles.from_tile(
        [det((0, 50, 40, 80)), det((100, 100, 140, 130)), det((260, 10, 300, 40))], region, size
    )
    assert [d.box for d in got] == [(400.0, 300.0, 440.0, 330.0)]  # moved to frame pixels
    corner = (0, 0, 300, 300)  # left and top edges are the frame's: a box there is whole
    assert len(tiles.from_tile([det((0, 0, 30, 30))], corner, size)) == 1


def test_objects_belong_to_one_scale_and_duplicates_merge():
    size, model = (1280, 720), (300, 300)
    region = (0, 200, 300, 500)
    small_full = det((100, 340, 140, 370), 0.3)  # 9 px at the model: the tile's
    small_tile = det((102, 341, 141, 371), 0.45)
    big_full = det((150, 300, 290, 420), 0.7)  # 33 px: the full frame's
    big_tile = det((152, 302, 288, 418), 0.9)
    got = tiles.combine([small_full, big_full], [(region, [small_tile, big_tile])], size, model, 100)
    assert sorted(d.score for d in got) == [0.45, 0.7]
    # outside every tile the full frame keeps its small objects
    far = det((900, 100, 930, 120), 0.3)
    assert tiles.combine([far], [(region, [])], size, model, 100) == [far]
    # the same object from two overlapping tiles is kept once, the best score
    a, b = det((10, 10, 40, 30), 0.6), det((12, 11, 41, 31), 0.5)
    assert tiles.merge([b, a], 100) == [a]


def test_auto_surveys_then_tiles_only_lines_with_small_objects():
    size, model = (1280, 720), (300, 300)
    lines = [line("far", [[0, 360], [1280, 360]]), line("near", [[0, 600], [1280, 600]])]
    plan = tiles.TilePlan("auto", lines, model, "cam")
    assert plan.tiles_for(size) == [] and plan.reason == "surveying"
    far = [det((x, 345, x + 40, 375)) for x in range(100, 1100, 100)]  # 9 px at the model
    near = [det((x, 540, x + 160, 640)) for x in range(0, 1100, 120)]  # 37 px
    for _ in range(tiles.SURVEY_FRAMES):
        plan.observe(far + near, size)
    regions = plan.tiles_for(size)
    assert len(regions) == 5 and all(r[2] - r[0] == 300 and r[3] - r[1] == 300 for r in regions)
    assert all(r[1] <= 345 and r[3] >= 375 for r in regions)  # a row over the far line only
    assert regions[0][0] == 0 and regions[-1][2] == 1280  # the whole line
    assert plan.line_px["near"] >= tiles.SMALL_PX and "far" in plan.reason


@pytest.mark.parametrize(
    ("setting", "lines", "reason"),
    [("off", [line("a", [[0, 10], [100, 10]])], "off"), ("auto", [], "no counting line")],
)
def test_no_tiles_when_off_or_without_lines(setting, lines, reason):
    plan = tiles.TilePlan(setting, lines, (300, 300), "cam")
    assert plan.tiles_for((1280, 720)) == [] and plan.reason == reason


def test_configured_regions_accept_fractions_and_are_clipped():
    plan = tiles.TilePlan([[0.5, 0.5, 1.0, 1.0], [1200, 600, 1400, 900], [0, 0, 5, 5]], [], (300, 300), "cam")
    assert plan.tiles_for((1280, 720)) == [(640, 360, 1280, 720), (1200, 600, 1280, 720)]


def test_a_frame_near_the_model_size_gets_no_tiles():
    plan = tiles.TilePlan("auto", [line("a", [[0, 100], [320, 100]])], (300, 300), "cam")
    for _ in range(tiles.SURVEY_FRAMES):  # as the worker does: the frame's tiles, then the survey
        plan.observe([det((x, 95, x + 8, 105)) for x in range(0, 300, 30)], (320, 240)) if not plan.tiles_for(
            (320, 240)
        ) else None
    assert plan.tiles_for((320, 240)) == [] and "model's size" in plan.reason


def test_the_camera_setting_is_validated():
    from agent.config import parse_config

    cam = {"name": "c", "source": "x.mp4"}
    assert parse_config({"cameras": [cam]}).cameras[0].tiles == "off"
    assert parse_config({"cameras": [{**cam, "tiles": "auto"}]}).cameras[0].tiles == "auto"
    with pytest.raises(Exception, match="tiles"):
        parse_config({"cameras": [{**cam, "tiles": "sometimes"}]})


def test_tiles_run_the_real_model_on_a_real_frame(engine, media_path):
    """4ku_traffic.mp4 frame 300, the default model, through the worker's Plans with a row of
    configured tiles: every tile is run, its boxes come back in frame pixels, and small far
    vehicles inside a tile are the tiles' (a full-frame box there is not kept twice)."""
    import cv2

    eng = engine("ssd_mobilenet_v1_coco")
    cap = cv2.VideoCapture(str(media_path("4ku_traffic.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 300)
    ok, frame = cap.read()
    assert ok
    size = (1280, 720)
    full = eng.run(frame, threshold=0.2)[0]
    row = [[x, 210, x + 300, 510] for x in (0, 245, 490, 735, 980)]
    cfg = SimpleNamespace(name="bridge", tiles=row, analytics=SimpleNamespace(enabled=True, lines=[]))
    plans = tiles.Plans(eng)
    got = plans.detections("bridge", cfg, frame, full, 0.2)
    assert plans.plan("bridge", cfg).reason == "configured"
    tiled = tiles.detect_tiles(lambda c: eng.run(c, threshold=0.2)[0], frame, tiles.clip_regions(row, size))
    assert sum(len(d) for _, d in tiled) > 0
    for _, dets in tiled:
        for d in dets:
            assert 0 <= d.box[0] < d.box[2] <= 1280 and 0 <= d.box[1] < d.box[3] <= 720
    small_in_tiles = [d for d in got if tiles.model_px(d.box, size, eng.input_size) < tiles.SPLIT_PX]
    ids = {id(d) for d in full}
    assert all(id(d) not in ids for d in small_in_tiles if 220 < (d.box[1] + d.box[3]) / 2 < 500)
    assert len(got) < len(full) + sum(len(d) for _, d in tiled)  # merged, not stacked
