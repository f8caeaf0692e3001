"""Synthetic but realistic camera frames holding QR codes.

Used by the tests, ``bench/qr.py`` and the kiosk demo's camera replay. Each frame is what a
640x480 greyscale camera would see at a gate: a printed invitation or a phone screen held in
front of a cluttered background, tilted in 3-D, out of focus or moving, under uneven light,
with sensor noise and, for USB cameras, JPEG compression.

The scene is rendered at twice the output resolution and area-downscaled, so small codes are
anti-aliased like a real lens/sensor would do rather than point-sampled; phone screens carry a
pixel grid that aliases into moiré the same way.

Everything is deterministic given a seed: ``render(kind, seed)`` always returns the same pixels
(same numpy, OpenCV and segno versions), so a failing frame can be reproduced from its seed.

Kinds (``KINDS``), each a main difficulty on top of mild random amounts of all the others:

* ``paper`` -- a printed code, moderate tilt, blur and noise (the everyday case).
* ``tilt`` -- strong perspective (up to ~55 degrees out of plane) and any in-plane rotation.
* ``blur`` -- defocus (disk) plus motion blur, relative to the module size.
* ``noise`` -- a dim scene with high gain: strong shot and read noise.
* ``glare`` -- a specular highlight that saturates part of the code.
* ``low_contrast`` -- a washed-out or under-exposed code, 25-60 grey levels between ink and paper.
* ``small`` -- 1.6-2.3 pixels per module (a code held far away, or a dense payload).
* ``screen`` -- a phone: dark bezel, backlit screen, pixel-grid moiré, PWM scan lines, reflection,
  sometimes in dark mode (light modules on a dark screen).
* ``none`` -- the background alone (clutter, text, edges), no code.
* ``two`` -- two codes side by side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

WIDTH = 640
HEIGHT = 480
#: Supersampling factor of the rendered scene.
_SS = 2

KINDS: tuple[str, ...] = (
    "paper",
    "tilt",
    "blur",
    "noise",
    "glare",
    "low_contrast",
    "small",
    "screen",
    "none",
    "two",
)

#: Share of each kind in :func:`hard_set` (no-code frames are rarer than in real life on
#: purpose: the set measures decoding, the bench measures empty frames separately).
HARD_SET_WEIGHTS: dict[str, int] = {
    "paper": 2,
    "tilt": 2,
    "blur": 2,
    "noise": 2,
    "glare": 2,
    "low_contrast": 2,
    "small": 2,
    "screen": 3,
    "none": 1,
    "two": 1,
}

_BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@dataclass(frozen=True)
class SynthFrame:
    """One rendered frame and what a decoder should find in it.

    ``payloads`` lists the texts of the codes from left to right (the order
    :class:`hardware.qr.base.Decoder` returns them in); empty for a ``none`` frame.
    ``corners`` holds, per code, its four corners (top-left, top-right, bottom-right,
    bottom-left of the symbol without quiet zone) in frame coordinates.
    """

    image: np.ndarray
    payloads: tuple[str, ...]
    kind: str
    seed: int
    corners: tuple[tuple[tuple[float, float], ...], ...] = ()


def random_payload(rng: np.random.Generator) -> str:
    """Return a payload like the ones a kiosk sees.

    Mostly signed invitations (a ``PT1:`` prefix and base45 text, 60-330 characters, like a
    COSE_Sign1 token), sometimes URLs or short ids.
    """
    r = rng.random()
    if r < 0.6:
        n = int(rng.integers(60, 330))
        return "PT1:" + "".join(_BASE45[i] for i in rng.integers(0, 45, n)).strip()
    if r < 0.85:
        slug = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), 22))
        return f"https://portier.example/i/{slug}"
    return f"V-{int(rng.integers(0, 10**8)):08d}"


def render(
    kind: str,
    seed: int,
    payloads: Sequence[str] | None = None,
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SynthFrame:
    """Render one frame of the given kind.

    Args:
        kind: one of :data:`KINDS`.
        seed: makes the frame reproducible.
        payloads: texts to encode (one, or two for ``two``; ignored for ``none``);
            random ones from :func:`random_payload` when omitted.
        width, height: frame size in pixels.

    Returns:
        A :class:`SynthFrame` with a ``uint8`` array of shape ``(height, width)``.

    Raises:
        ValueError: unknown ``kind``, or the wrong number of payloads for it.
    """
    import cv2

    if kind not in KINDS:
        raise ValueError(f"kind: unknown {kind!r}, expected one of {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    n_codes = {"none": 0, "two": 2}.get(kind, 1)
    if payloads is None:
        payloads = [random_payload(rng) for _ in range(n_codes)]
    elif kind != "none" and len(payloads) != n_codes:
        raise ValueError(f"payloads: kind {kind!r} takes {n_codes}, got {len(payloads)}")
    payloads = list(payloads)[:n_codes]

    w2, h2 = width * _SS, height * _SS
    scene = _background(rng, w2, h2)
    placed: list[tuple[str, np.ndarray]] = []
    module = 3.0
    slots = _slots(kind, width)
    for payload, (x_lo, x_hi) in zip(payloads, slots, strict=False):
        quad, module = _place_code(rng, kind, scene, payload, x_lo * _SS, x_hi * _SS, h2)
        placed.append((payload, quad / _SS))
    frame = cv2.resize(scene, (width, height), interpolation=cv2.INTER_AREA)
    frame = _degrade(rng, kind, frame, [q for _, q in placed], module / _SS)
    placed.sort(key=lambda pq: (float(pq[1][:, 0].mean()), float(pq[1][:, 1].mean())))
    return SynthFrame(
        image=frame,
        payloads=tuple(p for p, _ in placed),
        kind=kind,
        seed=seed,
        corners=tuple(tuple((float(x), float(y)) for x, y in q) for _, q in placed),
    )


def hard_set(n: int = 300, seed: int = 0) -> list[SynthFrame]:
    """Return ``n`` frames mixing every kind in the proportions of :data:`HARD_SET_WEIGHTS`.

    Frame ``i`` is ``render(kind_i, seed * 1_000_003 + i)``, so the set is the same on every
    run and any frame can be rebuilt alone.
    """
    cycle = [k for k, w in HARD_SET_WEIGHTS.items() for _ in range(w)]
    return [render(cycle[i % len(cycle)], seed * 1_000_003 + i) for i in range(n)]


# -- scene ---------------------------------------------------------------------------------


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A lobby-like clutter: a lit gradient, panels, edges and text (float32, 0-255 radiance)."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / max(w, h)
    scene = rng.uniform(60, 170) + rng.uniform(-50, 50) * ramp
    # OpenCV draws text only into 8-bit images.
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        cv2.rectangle(scene, (x0, y0), (x1, y1), float(rng.uniform(20, 230)), -1)
    for _ in range(int(rng.integers(2, 8))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(scene, p0, p1, float(rng.uniform(0, 255)), int(rng.integers(2, 12)))
    for _ in range(int(rng.integers(1, 5))):
        text = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -"), 12))
        org = (int(rng.integers(0, w - 100)), int(rng.integers(30, h)))
        colour = float(rng.choice([rng.uniform(0, 60), rng.uniform(190, 255)]))
        cv2.putText(scene, text, org, cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.8, 2.5), colour, 3)
    return scene.astype(np.float32)


def _slots(kind: str, width: int) -> list[tuple[int, int]]:
    """Horizontal ranges (output pixels) each code's centre may fall into."""
    if kind == "two":
        return [(int(width * 0.22), int(width * 0.30)), (int(width * 0.70), int(width * 0.78))]
    return [(int(width * 0.3), int(width * 0.7))]


def _module_px(rng: np.random.Generator, kind: str) -> float:
    """Output pixels per module for this kind."""
    if kind == "small":
        return float(rng.uniform(1.8, 2.5))
    if kind == "two":
        return float(rng.uniform(2.2, 3.2))
    return float(rng.uniform(2.4, 5.5))


def _code_modules(payload: str, rng: np.random.Generator) -> np.ndarray:
    """The QR matrix (1 = dark) with a 4-module quiet zone."""
    import segno

    error = str(rng.choice(["L", "M", "M", "Q"]))
    qr = segno.make(payload, error=error, micro=False, boost_error=False)
    return np.pad(np.array(qr.matrix, dtype=np.uint8), 4)


def _place_code(
    rng: np.random.Generator,
    kind: str,
    scene: np.ndarray,
    payload: str,
    x_lo: int,
    x_hi: int,
    h2: int,
) -> tuple[np.ndarray, float]:
    """Draw a paper or phone showing ``payload`` into ``scene``.

    Returns the symbol's corners and its module size, both in scene pixels.
    """
    import cv2

    modules = _code_modules(payload, rng)
    n = modules.shape[0]
    module_out = _module_px(rng, kind) * _SS
    # A code larger than ~70% of the frame height is not held that way: shrink the modules.
    module_out = min(module_out, 0.7 * h2 / n)
    if kind == "two":
        module_out = min(module_out, 0.42 * (scene.shape[1] / 2) / n)
    k = max(2, math.ceil(module_out * 1.5))  # source pixels per module, >= destination size
    screen = kind == "screen"

    # The object (paper sheet or phone) in its own flat coordinates, radiance 0-255.
    code = np.kron(modules, np.ones((k, k), np.uint8)).astype(np.float32)
    margin = int(k * rng.uniform(1, 6))
    side = code.shape[0]
    if screen:
        white, ink = rng.uniform(200, 255), rng.uniform(5, 35)
        bezel = int(side * rng.uniform(0.06, 0.14))
        extra_h = int(side * rng.uniform(0.3, 0.9))
        obj_h, obj_w = side + 2 * margin + extra_h + 2 * bezel, side + 2 * margin + 2 * bezel
        obj = np.full((obj_h, obj_w), rng.uniform(5, 30), np.float32)
        sy0, sx0 = bezel, bezel
        sh, sw = obj_h - 2 * bezel, obj_w - 2 * bezel
        obj[sy0 : sy0 + sh, sx0 : sx0 + sw] = white
        cy0 = sy0 + margin + int(extra_h * rng.uniform(0.2, 0.8))
        cx0 = sx0 + margin
        if rng.random() < 0.15:
            # Dark mode: some wallet apps show the code light on dark.
            white, ink = ink + 10, white
            obj[sy0 : sy0 + sh, sx0 : sx0 + sw] = white
        obj[cy0 : cy0 + side, cx0 : cx0 + side] = np.where(code > 0, ink, white)
        # The screen's own pixel grid (a few screen pixels per module) aliases into moiré.
        pitch = k / rng.uniform(2.5, 6.0)
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        grid = 0.5 + 0.5 * np.cos(2 * math.pi * xx / pitch) * np.cos(2 * math.pi * yy / pitch)
        depth = rng.uniform(0.1, 0.35)
        obj[sy0 : sy0 + sh, sx0 : sx0 + sw] *= 1 - depth * grid
        mask = np.ones_like(obj)
        corner_r = bezel * 2
        for cy, cx in ((0, 0), (0, obj_w - 1), (obj_h - 1, 0), (obj_h - 1, obj_w - 1)):
            cv2.rectangle(
                mask,
                (max(0, cx - corner_r), max(0, cy - corner_r)),
                (min(obj_w - 1, cx + corner_r), min(obj_h - 1, cy + corner_r)),
                0,
                -1,
            )
            ccx = corner_r if cx == 0 else obj_w - 1 - corner_r
            ccy = corner_r if cy == 0 else obj_h - 1 - corner_r
            cv2.circle(mask, (ccx, ccy), corner_r, 1, -1)
    else:
        white, ink = rng.uniform(170, 250), rng.uniform(15, 70)
        obj_h = obj_w = side + 2 * margin
        obj = np.full((obj_h, obj_w), white, np.float32)
        cy0 = cx0 = margin
        obj[cy0 : cy0 + side, cx0 : cx0 + side] = np.where(code > 0, ink, white)
        # Ink spread and paper grain.
        obj = cv2.GaussianBlur(obj, (0, 0), 0.07 * k) + rng.normal(0, 4, (obj_h, obj_w)).astype(
            np.float32
        )
        mask = np.ones_like(obj)

    # 3-D pose: in-plane rotation, then tilt about a random axis, pinhole projection.
    tilt_max = 55.0 if kind == "tilt" else 25.0
    tilt = math.radians(rng.uniform(0, tilt_max))
    axis = rng.uniform(0, 2 * math.pi)
    roll = rng.uniform(-180, 180) if kind == "tilt" else rng.uniform(-35, 35)
    focal = rng.uniform(500, 900) * _SS
    sym_size = module_out * n  # output size of the whole symbol incl. quiet zone, facing us
    scale = sym_size / side
    cx = rng.uniform(x_lo, x_hi)
    cy = rng.uniform(0.3 * h2, 0.7 * h2)

    # Object corners centred on the symbol, in "facing" output pixels.
    ox, oy = cx0 + side / 2, cy0 + side / 2
    obj_pts = np.array([[0, 0], [obj_w, 0], [obj_w, obj_h], [0, obj_h]], np.float32)
    sym_pts = np.array(
        [[cx0, cy0], [cx0 + side, cy0], [cx0 + side, cy0 + side], [cx0, cy0 + side]], np.float32
    )
    # Corners of the symbol itself without the quiet zone, for the caller's ground truth.
    q = 4 * k
    inner = sym_pts + np.array([[q, q], [-q, q], [-q, -q], [q, -q]], np.float32)

    def project(pts: np.ndarray) -> np.ndarray:
        p = (pts - [ox, oy]) * scale
        c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        p = p @ np.array([[c, s], [-s, c]], np.float32)
        xyz = np.column_stack([p, np.zeros(len(p))])
        u = np.array([math.cos(axis), math.sin(axis), 0.0])
        kx = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
        rot = np.eye(3) + math.sin(tilt) * kx + (1 - math.cos(tilt)) * kx @ kx
        xyz = xyz @ rot.T
        z = focal + xyz[:, 2]
        return np.column_stack([cx + focal * xyz[:, 0] / z, cy + focal * xyz[:, 1] / z]).astype(
            np.float32
        )

    # Keep the whole symbol (with its quiet zone) in the frame: a person centres the code.
    for _ in range(20):
        box = project(sym_pts)
        if box.min() >= 0 and box[:, 0].max() < scene.shape[1] and box[:, 1].max() < h2:
            break
        scale *= 0.93
    dst = project(obj_pts)
    hom = cv2.getPerspectiveTransform(obj_pts, dst)
    size = (scene.shape[1], scene.shape[0])
    warped = cv2.warpPerspective(obj, hom, size, flags=cv2.INTER_AREA)
    alpha = cv2.warpPerspective(mask, hom, size, flags=cv2.INTER_LINEAR)
    scene *= 1 - alpha
    scene += warped * alpha
    return project(inner), scale * k


def _disk(radius: float) -> np.ndarray:
    import cv2

    r = max(1, math.ceil(radius))
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    cv2.circle(kernel, (r, r), r, 1.0, -1, lineType=cv2.LINE_AA)
    return kernel / kernel.sum()


def _motion(length: float, angle: float) -> np.ndarray:
    import cv2

    r = max(1, math.ceil(length / 2))
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cv2.line(
        kernel,
        (round(r - dx), round(r - dy)),
        (round(r + dx), round(r + dy)),
        1.0,
        1,
        lineType=cv2.LINE_AA,
    )
    return kernel / kernel.sum()


def _degrade(
    rng: np.random.Generator,
    kind: str,
    frame: np.ndarray,
    quads: list[np.ndarray],
    module: float,
) -> np.ndarray:
    """Optics, light and sensor: blur, glare, exposure, scan lines, noise, quantisation, JPEG."""
    import cv2

    h, w = frame.shape
    img: np.ndarray = frame.astype(np.float32)

    # Optics: defocus radius and motion length in pixels. The blur kind scales them to the
    # module size, up to a defocus disk 1.2 modules wide plus 0.8 module of motion: past about
    # that, neighbouring modules merge and no decoder can separate them.
    if kind == "blur":
        defocus, motion = module * rng.uniform(0.3, 0.6), module * rng.uniform(0, 0.8)
    else:
        defocus, motion = rng.uniform(0, 0.75), rng.uniform(0, 1.3)
    if defocus > 0.5:
        img = cv2.filter2D(img, -1, _disk(defocus))
    if motion > 1:
        img = cv2.filter2D(img, -1, _motion(motion, rng.uniform(0, math.pi)))

    # Glare: a specular highlight over part of the code (glossy paper, phone glass).
    if kind == "glare" or (kind in ("paper", "screen") and rng.random() < 0.25):
        quad = quads[0] if quads else np.array([[w / 2, h / 2]])
        centre = quad.mean(axis=0)
        spread = float(np.ptp(quad[:, 0])) if len(quad) > 1 else 100.0
        gx = centre[0] + rng.uniform(-0.35, 0.35) * spread
        gy = centre[1] + rng.uniform(-0.35, 0.35) * spread
        sigma = spread * rng.uniform(0.08, 0.22)
        peak = rng.uniform(120, 260) if kind == "glare" else rng.uniform(40, 120)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img += peak * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma**2))

    # Exposure: black level, gain (contrast), vignetting.
    if kind == "low_contrast":
        span = rng.uniform(25, 60) / 255 * rng.uniform(0.9, 1.4)
        base = rng.uniform(10, 180)
    elif kind == "noise":
        span, base = rng.uniform(0.25, 0.45), rng.uniform(5, 25)
    else:
        span, base = rng.uniform(0.6, 1.0), rng.uniform(0, 30)
    img = base + img * span
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    img *= 1 - rng.uniform(0, 0.35) * r2

    # Screens flicker under a rolling shutter: horizontal bands.
    if kind == "screen":
        period = rng.uniform(6, 40)
        depth = rng.uniform(0.05, 0.3)
        bands = 1 - depth * (0.5 + 0.5 * np.sin(2 * math.pi * yy / period + rng.uniform(0, 6.3)))
        img *= bands

    # Sensor: shot noise (proportional to sqrt of signal) and read noise.
    if kind == "noise":
        shot, read = rng.uniform(0.5, 1.1), rng.uniform(3, 7)
    else:
        shot, read = rng.uniform(0.1, 0.4), rng.uniform(0.5, 3)
    img += rng.standard_normal(img.shape).astype(np.float32) * (
        shot * np.sqrt(np.clip(img, 0, None)) + read
    )
    out: np.ndarray = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    # USB cameras stream MJPEG.
    if rng.random() < 0.5:
        quality = int(rng.integers(50, 92))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is not None:  # never None for the JPEG it has just encoded
            out = decoded
    return out
