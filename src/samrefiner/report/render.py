"""Card thumbnails: a crop of the image with mask contours and prompts drawn on it."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from samrefiner.io.masks import mask_bbox

#: Drawing colours (RGB) shared with the page's legend (report.css uses the same values).
COLORS: dict[str, tuple[int, int, int]] = {
    "gt": (46, 204, 64),  # green
    "coarse": (255, 133, 27),  # orange
    "refined": (0, 200, 255),  # cyan
    "box": (255, 220, 0),  # yellow
    "box_grew": (240, 18, 190),  # magenta
    "positive": (46, 204, 64),
    "negative": (255, 65, 54),  # red
}


def crop_window(
    masks: list[np.ndarray],
    box: Any,
    shape: tuple[int, int],
    points: Any = (),
    margin: float = 0.15,
    floor: int = 48,
) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` (exclusive ends) covering the masks, box and points, with margin."""
    h, w = shape
    boxes = [b for b in (mask_bbox(m) for m in masks) if b is not None]
    if box is not None:
        boxes.append(tuple(round(float(v)) for v in box))
    boxes.extend((round(float(x)), round(float(y))) * 2 for x, y in points)
    if not boxes:
        return 0, 0, w, h
    arr = np.array(boxes, dtype=np.float64)
    x1, y1 = arr[:, 0].min(), arr[:, 1].min()
    x2, y2 = arr[:, 2].max() + 1, arr[:, 3].max() + 1
    pad_x = max(margin * (x2 - x1), (floor - (x2 - x1)) / 2, 4)
    pad_y = max(margin * (y2 - y1), (floor - (y2 - y1)) / 2, 4)
    return (
        int(max(0, x1 - pad_x)),
        int(max(0, y1 - pad_y)),
        int(min(w, x2 + pad_x)),
        int(min(h, y2 + pad_y)),
    )


def _draw_contour(canvas: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    # A dark under-stroke keeps thin coloured lines visible on any background.
    cv2.drawContours(canvas, contours, -1, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.drawContours(canvas, contours, -1, color, 2, cv2.LINE_AA)


def render_card(
    image: np.ndarray,
    coarse: np.ndarray,
    refined: np.ndarray,
    gt: np.ndarray | None = None,
    prompts: dict[str, Any] | None = None,
    max_side: int = 320,
) -> np.ndarray:
    """Thumbnail of one object: ``h x w x 3`` uint8 RGB, longest side ``<= max_side``.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        coarse, refined, gt: ``H x W`` bool masks (``gt`` optional); drawn as contours
            in :data:`COLORS` ``coarse`` / ``refined`` / ``gt``.
        prompts: ``{"points": [[x, y], ...], "point_labels": [1 | 0, ...], "box":
            [x1, y1, x2, y2] | None, "box_expanded": bool}`` in image pixels, or None.
    """
    prompts = prompts or {}
    box = prompts.get("box")
    masks = [m for m in (coarse, refined, gt) if m is not None]
    x1, y1, x2, y2 = crop_window(masks, box, image.shape[:2], prompts.get("points") or ())
    scale = min(1.0, max_side / max(x2 - x1, y2 - y1))
    out_w, out_h = max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))
    crop = image[y1:y2, x1:x2]
    canvas = np.ascontiguousarray(cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA))
    # Contours are traced on the resized masks so lines keep their width at any scale.
    for name, mask in (("gt", gt), ("coarse", coarse), ("refined", refined)):
        if mask is not None:
            small = cv2.resize(
                mask[y1:y2, x1:x2].astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_NEAREST
            )
            _draw_contour(canvas, small, COLORS[name])

    def to_canvas(x: float, y: float) -> tuple[int, int]:
        return round((x - x1 + 0.5) * scale - 0.5), round((y - y1 + 0.5) * scale - 0.5)

    if box is not None:
        color = COLORS["box_grew" if prompts.get("box_expanded") else "box"]
        bx1, by1 = to_canvas(box[0], box[1])
        bx2, by2 = to_canvas(box[2], box[3])
        cv2.rectangle(canvas, (bx1, by1), (bx2, by2), color, 1, cv2.LINE_AA)
    points, labels = prompts.get("points") or [], prompts.get("point_labels") or []
    for (px, py), label in zip(points, labels, strict=True):
        c = to_canvas(px, py)
        cv2.circle(canvas, c, 6, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(canvas, c, 4, COLORS["positive" if label == 1 else "negative"], -1, cv2.LINE_AA)
        if label != 1:
            cv2.line(canvas, (c[0] - 3, c[1] - 3), (c[0] + 3, c[1] + 3), (255, 255, 255), 1)
            cv2.line(canvas, (c[0] - 3, c[1] + 3), (c[0] + 3, c[1] - 3), (255, 255, 255), 1)
    return canvas
