"""The ImageNet classifier (uint8 MobileNet v2, 1001 classes with background at 0)."""

from __future__ import annotations

import pytest

from agent.errors import ModelError


@pytest.mark.parametrize(
    "img,expected",
    [
        ("cat.bmp", {"Egyptian cat", "tabby, tabby cat", "tiger cat"}),
        ("bird.bmp", {"chickadee"}),
    ],
)
def test_top1(engine, image, img, expected):
    eng = engine("mobilenet_v2_imagenet")
    assert eng.family == "classifier" and eng.input_size == (224, 224) and eng.labels[0] == "background"
    top = eng.classify(image(img), threshold=0.0, top_k=3)
    assert len(top) == 3 and top[0].label in expected, [(c.label, c.score) for c in top]
    assert top[0].score > 0.5
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)


def test_cat_reference_and_threshold(engine, image):
    eng = engine("mobilenet_v2_imagenet")
    top = eng.classify(image("cat.bmp"), threshold=0.0, top_k=5)
    assert (
        top[0].label == "Egyptian cat"
        and top[0].class_id == 286
        and top[0].score == pytest.approx(0.84, abs=0.05)
    )
    assert all(c.class_id != 0 for c in top)  # background never reported
    high = eng.classify(image("cat.bmp"), threshold=0.5)
    assert [c.label for c in high] == ["Egyptian cat"]


def test_classifier_by_path_gets_imagenet_labels(engine, image, model_path):
    eng = engine(model_path("mobilenet_v2_1.0_224_quant.tflite"))
    assert (
        eng.family == "classifier" and eng.classify(image("cat.bmp"), threshold=0)[0].label == "Egyptian cat"
    )


def test_task_mismatch_is_clear(engine, image):
    with pytest.raises(ModelError, match="classifier, not a detector"):
        engine("mobilenet_v2_imagenet").detect(image("cat.bmp"))
    with pytest.raises(ModelError, match="detector, not a classifier"):
        engine("ssd_mobilenet_v1_coco").classify(image("cat.bmp"))
