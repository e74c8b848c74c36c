"""Faces found by the on-device face blur, and its cost per snapshot, on the mirror's images and clips.

    EDGE_AGENT_MIRROR=../shared/assets .venv/bin/python benchmarks/privacy_bench.py [--every 10]

For each image, and every Nth frame of the person clip: the SSD's person boxes, then the face search
(whole frame + each person's head crop); prints persons, faces found, head regions blurred instead,
and the milliseconds of `apply_privacy` in faces mode next to people mode (ratio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2

from agent.config import parse_config
from agent.inference import load_engine
from agent.privacy.blur import apply_privacy
from agent.privacy.faces import FaceFinder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=10, help="Every Nth frame of the clip.")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    mirror = Path(os.environ.get("EDGE_AGENT_MIRROR", "../shared/assets"))
    cfg = parse_config(
        {
            "models": {"dir": "/tmp/edge-agent-bench-models", "mirror": str(mirror)},
            "inference": {"accelerator": "cpu", "num_threads": args.threads},
        }
    )
    ssd = load_engine("ssd_mobilenet_v1_coco", cfg.inference, cfg.models)
    faces = FaceFinder.from_config(cfg)
    assert faces.load(), faces.why_not

    def one(name: str, img) -> tuple[int, int, int, float, float]:
        dets = [d for d in ssd.run(img, threshold=0.5)[0] if d.label == "person"]
        found = faces.search(img, [d.box for d in dets])
        t_people, t_faces = [], []
        for _ in range(3):  # best of 3 (the first call of a size warms OpenCV and XNNPACK up)
            a, b = img.copy(), img.copy()
            t0 = time.perf_counter()
            apply_privacy(a, dets, "people", ["person"])
            t1 = time.perf_counter()
            apply_privacy(b, dets, "faces", ["person"], faces)
            t2 = time.perf_counter()
            t_people.append((t1 - t0) * 1000)
            t_faces.append((t2 - t1) * 1000)
        t_people, t_faces = min(t_people), min(t_faces)
        return len(dets), len(found.faces), len(found.heads), t_faces, t_people

    print(
        f"{'image':42} {'persons':>7} {'faces':>5} {'heads':>5} {'faces ms':>8} {'people ms':>9} {'ratio':>6}"
    )
    for name in ("grace_hopper.bmp", "kite_and_cold.jpg", "parrot.jpg", "cat.bmp"):
        img = cv2.imread(str(mirror / "media" / name))
        p, f, h, tf, tp = one(name, img)
        print(f"{name:42} {p:7} {f:5} {h:5} {tf:8.1f} {tp:9.2f} {tf / max(tp, 1e-3):6.0f}")
    cap = cv2.VideoCapture(str(mirror / "media" / "intel_one-by-one-person-detection.mp4"))
    i = 0
    tot = [0, 0, 0]
    tfs, tps = [], []
    frames_with_people = 0
    frames_with_face = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % args.every == 0:
            p, f, h, tf, tp = one("clip", img)
            if p:
                frames_with_people += 1
                frames_with_face += f > 0
                tot[0] += p
                tot[1] += f
                tot[2] += h
                tfs.append(tf)
                tps.append(tp)
        i += 1
    print(
        f"{'intel clip, every ' + str(args.every) + 'th frame with people':42} {tot[0]:7} {tot[1]:5} {tot[2]:5} "
        f"{statistics.median(tfs):8.1f} {statistics.median(tps):9.2f} {statistics.median(tfs) / max(statistics.median(tps), 1e-3):6.0f}"
    )
    print(
        f"  frames with a person: {frames_with_people}, with a face found: {frames_with_face} (medians in ms)"
    )


if __name__ == "__main__":
    main()
