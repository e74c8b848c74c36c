"""Frames in and out for ``edge-agent detect`` / ``classify``: images, folders of images, videos.

OpenCV is imported inside the functions so ``edge-agent --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import SourceError

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


def read_frames(path: Path) -> Iterator[tuple[int, str, Any]]:
    """``(frame number, source name, BGR image)`` of an image, a folder of images or a video."""
    import cv2

    if not path.exists():
        raise SourceError(f"{path} does not exist", "give an image, a folder of images or a video file")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT)
        if not files:
            raise SourceError(
                f"{path} holds no images ({', '.join(sorted(IMAGE_EXT))})", "give a folder of images"
            )
        for i, f in enumerate(files):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise SourceError(f"cannot decode image {f}", "remove or replace the file")
            yield i, str(f), img
        return
    if path.suffix.lower() in VIDEO_EXT:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SourceError(
                f"cannot open video {path}", "check the file and that OpenCV can decode its codec"
            )
        try:
            i = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                yield i, str(path), img
                i += 1
            if i == 0:
                raise SourceError(f"no frame could be decoded from {path}", "check the file")
        finally:
            cap.release()
        return
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(
            f"cannot decode {path} as an image", "give a .jpg/.png/.bmp image, a folder or a video"
        )
    yield 0, str(path), img


def annotate(img, dets) -> Any:
    import cv2

    out = img.copy()
    for d in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 200, 255), 2)
        cv2.putText(
            out,
            f"{d.label} {d.score:.2f}",
            (x1 + 2, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 200, 255),
            1,
            cv2.LINE_AA,
        )
    return out


class OutputWriter:
    """--out: an image file (single image), a video file (video input) or a folder (folder input)."""

    def __init__(self, out: str | None, src: Path) -> None:
        self.out = Path(out) if out else None
        self.src = src
        self.video: Any = None  # a cv2.VideoWriter once the first frame gives the size

    def write(self, n: int, name: str, img) -> None:
        import cv2

        if self.out is None:
            return
        if self.src.is_dir():
            self.out.mkdir(parents=True, exist_ok=True)
            target = self.out / Path(name).name
        elif self.src.suffix.lower() in VIDEO_EXT:
            if self.video is None:
                h, w = img.shape[:2]
                cap = cv2.VideoCapture(str(self.src))
                fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
                cap.release()
                self.video = cv2.VideoWriter(str(self.out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                if not self.video.isOpened():
                    raise SourceError(
                        f"cannot write video {self.out}", "use an .mp4 or .avi file name in a writable folder"
                    )
            self.video.write(img)
            return
        else:
            target = self.out
        if not cv2.imwrite(str(target), img):
            raise SourceError(f"cannot write {target}", "use a .jpg or .png name in a writable folder")

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
