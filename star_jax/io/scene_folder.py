"""InSpatio-World 1.5 scene folders: one image, four images or a video, with depth and cameras.

    scene = load_scene("scenes/kitchen")     # every field and file checked; SceneError names the file
    write_scene("scenes/copy", scene)        # the same layout, staged then renamed (never half-written)

The layout (1.5's own, so its example scenes load unchanged and ours run in 1.5):

    scene.json        output_id, kind ("image" | "video"), views, frames, valid_frames, fps,
                      resolution [H, W], target_intrinsics (a label: the targets use source view 0's
                      K), depth_encoding "uint16_minmax_v1"; star-jax adds "geometry" (where depth
                      and cameras came from: "geometry-encoder", "user-depth" or "planar-prior";
                      absent in 1.5 scenes, whose geometry Depth-Anything-3 estimated) and, when
                      prepared here, "provenance" (a free JSON object: inputs, settings)
    input/            view_00.png ... (image: V = 1 or 4 views, 8-bit RGB) or video.mp4 (video: one
                      frame per view, V = frames); prompt.txt (optional); target_tcw.txt (one
                      OpenCV world-to-camera per output frame, 16 numbers a line, row-major)
    depth/            depth.png (V = 1) / depth_XX.png (one per view) or depth.mp4 (video: high byte
                      in red, low byte in green, blue 0, lossless); metadata.txt "min max" in metres,
                      depth = min + q / 65535 (max - min), 0 = no measurement when min is 0;
                      source_intrinsics.txt (9 numbers a line, one per view); source_tcw.txt (16
                      numbers a line, one per view)

A video scene may lack depth/ (1.5's video examples: Depth-Anything-3 estimates depth and cameras
at run time); it loads with `depth`, `source_K` and `source_w2c` None, and `require_geometry`
says why it cannot be rendered yet. For kind "image", `frames` is the padded length (whole
3-latent blocks, `padded_frame_count`) and only `valid_frames` are meant to be shown.

We write videos losslessly (H.264 RGB, crf 0), so a scene round-trips exactly; depth round-trips
within one quantisation step, (max - min) / 65535. Our writer uses min = 0 (as 1.5 does for
images), so a pixel without measurement stays 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import numpy as np

from star_jax.geometry.trajectory import (
    TrajectoryError,
    check_intrinsics,
    check_w2c,
    load_intrinsics_file,
    load_w2c_file,
)
from star_jax.io.files import staged_folder
from star_jax.io.manifest import ManifestEntry, ManifestError, SceneGeometry

KINDS = ("image", "video")
IMAGE_VIEWS = (1, 4)  # what 1.5 runs: one photo or four
GEOMETRY_SOURCES = ("geometry-encoder", "user-depth", "planar-prior")
DEPTH_ENCODING = "uint16_minmax_v1"
Q_MAX = 65535
SCENE_ENTRIES = ("scene.json", "input", "depth")  # what write_scene puts in a folder
FOV_RANGE_DEG = (1.0, 170.0)  # horizontal field of view an intrinsics matrix must give


class SceneError(ManifestError):
    """A scene folder (or a Scene) that cannot be used; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class Scene:
    """A scene in memory. V views (images, or the video's frames), F = `frames` target cameras."""

    kind: str  # "image" or "video"
    views: np.ndarray  # (V, H, W, 3) uint8
    depth: np.ndarray | None  # (V, H, W) float32 z-depth in metres, 0 = no measurement; None: to estimate
    source_K: np.ndarray | None  # (V, 3, 3) float32 pinhole intrinsics of each view
    source_w2c: np.ndarray | None  # (V, 4, 4) float32 OpenCV world-to-camera of each view
    target_w2c: np.ndarray  # (F, 4, 4) float32 OpenCV world-to-camera of each output frame
    fps: float
    output_id: str
    valid_frames: int  # output frames meant to be shown (<= F; the rest pad to whole blocks)
    prompt: str = ""
    geometry: str = "planar-prior"  # one of GEOMETRY_SOURCES
    target_intrinsics: str = "source_view_00_fixed"  # 1.5's label; the targets use source_K[0]
    provenance: dict = dataclasses.field(default_factory=dict)  # JSON-ready notes (inputs, settings)

    def __post_init__(self):
        check_scene(self)

    @property
    def frames(self) -> int:
        return int(self.target_w2c.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.views.shape[1:3])

    @property
    def target_K(self) -> np.ndarray | None:
        """(3, 3): 1.5 renders every target with source view 0's intrinsics."""
        return None if self.source_K is None else self.source_K[0]

    def require_geometry(self, where: str = "scene") -> None:
        """Raises SceneError unless the scene has depth and source cameras."""
        if self.depth is None:
            raise SceneError(f"{where}: a {self.kind} scene without depth/ (depth and cameras to be estimated): the "
                             f"geometry encoder is not available yet (issue 11); prepare the scene with depth files "
                             f"or the planar prior (python -m star_jax.prepare)")


def _fail(where: str, field: str, expected: str, found) -> SceneError:
    return SceneError(f"{where}: {field}: expected {expected}, found {found}")


def check_scene(s: Scene, where: str = "Scene") -> None:
    """Checks a Scene's fields against each other (shapes, counts, dtypes, finite rigid cameras)."""
    if s.kind not in KINDS:
        raise _fail(where, "kind", " or ".join(map(repr, KINDS)), repr(s.kind))
    if s.geometry not in GEOMETRY_SOURCES:
        raise _fail(where, "geometry", "one of " + ", ".join(map(repr, GEOMETRY_SOURCES)), repr(s.geometry))
    v = s.views
    if not (isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 4 and v.shape[-1] == 3 and v.size):
        raise _fail(where, "views", "a non-empty (V, H, W, 3) uint8 array",
                    f"{getattr(v, 'dtype', type(v).__name__)} {getattr(v, 'shape', '')}")
    V, H, W = v.shape[:3]
    if s.kind == "image" and V not in IMAGE_VIEWS:
        raise _fail(where, "views", "1 or 4 views for kind 'image'", V)
    if s.kind == "video" and V != s.frames:
        raise _fail(where, "views", f"one video frame per output frame ({s.frames})", V)
    geo = (s.depth is None, s.source_K is None, s.source_w2c is None)
    if any(geo) and not all(geo):
        raise _fail(where, "depth / source_K / source_w2c", "all three or none", f"None: {geo}")
    if all(geo) and (s.kind != "video" or s.geometry != "geometry-encoder"):
        raise _fail(where, "depth", "depth and cameras (only a video scene left to the geometry encoder may lack "
                    "them)", "None")
    if s.depth is not None:
        d = s.depth
        if not (isinstance(d, np.ndarray) and d.dtype == np.float32 and d.shape == (V, H, W)):
            raise _fail(where, "depth", f"({V}, {H}, {W}) float32", f"{getattr(d, 'dtype', '?')} "
                        f"{getattr(d, 'shape', '?')}")
        if not np.isfinite(d).all() or (d < 0).any() or not (d > 0).any():
            raise _fail(where, "depth", "finite values >= 0 with some > 0", "NaN/inf, negative or all zero")
        for name in ("source_K", "source_w2c"):
            m = getattr(s, name)
            want = (V, 3, 3) if name == "source_K" else (V, 4, 4)
            if not (isinstance(m, np.ndarray) and m.dtype == np.float32 and m.shape == want):
                raise _fail(where, name, f"{want} float32", f"{getattr(m, 'dtype', '?')} {getattr(m, 'shape', '?')}")
        _checked(check_w2c, s.source_w2c, f"{where}: source_w2c")
        check_plausible_intrinsics(s.source_K, (H, W), f"{where}: source_K")
    t = s.target_w2c
    if not (isinstance(t, np.ndarray) and t.dtype == np.float32 and t.ndim == 3 and t.shape[1:] == (4, 4) and len(t)):
        raise _fail(where, "target_w2c", "(F, 4, 4) float32, F >= 1", f"{getattr(t, 'dtype', '?')} "
                    f"{getattr(t, 'shape', '?')}")
    _checked(check_w2c, t, f"{where}: target_w2c")
    if not (isinstance(s.valid_frames, int) and 1 <= s.valid_frames <= s.frames):
        raise _fail(where, "valid_frames", f"an integer in [1, frames = {s.frames}]", repr(s.valid_frames))
    if not (isinstance(s.fps, (int, float)) and math.isfinite(s.fps) and s.fps > 0):
        raise _fail(where, "fps", "a positive finite number", repr(s.fps))
    if not (isinstance(s.output_id, str) and s.output_id and "/" not in s.output_id):
        raise _fail(where, "output_id", "a non-empty name without '/'", repr(s.output_id))
    if not isinstance(s.prompt, str) or not isinstance(s.target_intrinsics, str) or not isinstance(s.provenance, dict):
        raise _fail(where, "prompt / target_intrinsics / provenance", "str / str / dict",
                    f"{type(s.prompt).__name__} / {type(s.target_intrinsics).__name__} / "
                    f"{type(s.provenance).__name__}")


def _checked(fn, *args, **kw):
    """fn(*args, **kw), its TrajectoryError (a camera file or matrix) re-raised as SceneError."""
    try:
        return fn(*args, **kw)
    except TrajectoryError as e:
        raise SceneError(str(e)) from e


def check_plausible_intrinsics(K: np.ndarray, hw: tuple[int, int], source: str,
                               lines: list[tuple[int, int]] | None = None) -> np.ndarray:
    """`trajectory.check_intrinsics`, then a pinhole that fits an (H, W) image: principal point
    inside the image and a horizontal field of view in FOV_RANGE_DEG. Raises SceneError."""
    K = _checked(check_intrinsics, K, source, lines=lines)
    H, W = hw
    for i, k in enumerate(K):
        at = f"{source}:{lines[i][0]}: matrix {i}" if lines else f"{source}: matrix {i}"
        fov = math.degrees(2 * math.atan(W / (2 * k[0, 0])))
        if not FOV_RANGE_DEG[0] <= fov <= FOV_RANGE_DEG[1]:
            raise SceneError(f"{at}: expected a horizontal field of view in [{FOV_RANGE_DEG[0]:g}, "
                             f"{FOV_RANGE_DEG[1]:g}] degrees for a {W} px wide image, found {fov:.3g} (fx = "
                             f"{k[0, 0]:g})")
        if not (-0.5 <= k[0, 2] <= W - 0.5 and -0.5 <= k[1, 2] <= H - 0.5):
            raise SceneError(f"{at}: expected the principal point inside the {H}x{W} image, found cx = {k[0, 2]:g}, "
                             f"cy = {k[1, 2]:g}")
    return K


def padded_frame_count(valid_frames: int, frames_per_block: int = 3) -> int:
    """Output frames of whole blocks covering `valid_frames`: 1 + 4 (latents - 1), the latents
    (1 + ceil((valid - 1) / 4)) rounded up to a multiple of `frames_per_block` (1.5's rule)."""
    if valid_frames < 1:
        raise SceneError(f"valid_frames: expected >= 1, found {valid_frames}")
    latents = 1 + -(-(valid_frames - 1) // 4)
    latents = -(-latents // frames_per_block) * frames_per_block
    return 1 + 4 * (latents - 1)


def encode_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(..., H, W) metres -> uint16 q = round((d - lo) / (hi - lo) * 65535), clipped."""
    x = (np.asarray(depth, np.float64) - lo) / (hi - lo)
    return np.rint(np.clip(x, 0.0, 1.0) * Q_MAX).astype(np.uint16)


def decode_depth(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint16 q -> float32 metres lo + q / 65535 (hi - lo)."""
    return (lo + q.astype(np.float64) / Q_MAX * (hi - lo)).astype(np.float32)


def depth_paths(kind: str, views: int) -> list[str]:
    """Depth file names inside depth/ for a scene of `kind` with `views` views."""
    if kind == "video":
        return ["depth.mp4"]
    return ["depth.png"] if views == 1 else [f"depth_{i:02d}.png" for i in range(views)]


# ---------------------------------------------------------------------------------------------
# reading


def load_scene(folder: str | os.PathLike) -> Scene:
    """Reads and checks a scene folder (module docstring); SceneError names the file and field."""
    folder = _scene_folder(folder)
    meta = read_scene_json(os.path.join(folder, "scene.json"))
    kind, V, F = meta["kind"], meta["views"], meta["frames"]
    H, W = meta["resolution"]
    inp, dep = os.path.join(folder, "input"), os.path.join(folder, "depth")
    views = _read_views(inp, kind, V, (H, W))
    prompt = _read_prompt(os.path.join(inp, "prompt.txt"))
    target = _read_w2c(os.path.join(inp, "target_tcw.txt"), F, "output frame (scene.json frames)")
    geometry = meta.get("geometry", "geometry-encoder")
    if os.path.isdir(dep):
        depth, K, w2c = _read_depth_folder(dep, kind, V, (H, W))
    elif kind == "video":
        if geometry != "geometry-encoder":
            raise SceneError(f"{dep}: missing, but scene.json says its geometry came from {geometry!r}")
        depth = K = w2c = None
    else:
        raise SceneError(f"{dep}: expected the depth folder of an image scene (depth PNGs, metadata.txt, "
                         f"source_intrinsics.txt, source_tcw.txt), found nothing")
    return Scene(kind=kind, views=views, depth=depth, source_K=K, source_w2c=w2c, target_w2c=target,
                 fps=meta["fps"], output_id=meta["output_id"], valid_frames=meta["valid_frames"], prompt=prompt,
                 geometry=geometry, target_intrinsics=meta["target_intrinsics"],
                 provenance=meta.get("provenance", {}))


def _scene_folder(folder: str | os.PathLike) -> str:
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        found = "a file" if os.path.exists(folder) else "nothing"
        raise SceneError(f"{folder}: expected a scene folder, found {found}")
    return folder


def is_scene_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding a scene.json (what navigate takes in place of a video)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "scene.json"))


def check_scene_folder(folder: str | os.PathLike) -> dict:
    """The cheap check before a job (milliseconds, no pixel decoded): scene.json, the camera and
    range files in full, the view / depth files present with the right size in their headers.
    Returns scene.json's object; raises the SceneError `load_scene` would raise for those."""
    from PIL import Image

    from star_jax.io.video import VideoError, probe_video

    folder = _scene_folder(folder)
    meta = read_scene_json(os.path.join(folder, "scene.json"))
    kind, V, hw = meta["kind"], meta["views"], tuple(meta["resolution"])
    inp, dep = os.path.join(folder, "input"), os.path.join(folder, "depth")
    _read_w2c(os.path.join(inp, "target_tcw.txt"), meta["frames"], "output frame (scene.json frames)")
    files = [os.path.join(inp, "video.mp4")] if kind == "video" else [os.path.join(inp, n) for n in _view_names(inp, V)]
    if os.path.isdir(dep):
        _read_depth_metadata(dep, V, hw)
        files += [os.path.join(dep, n) for n in depth_paths(kind, V)]
    elif kind != "video":
        raise SceneError(f"{dep}: expected the depth folder of an image scene, found nothing")
    for path in files:
        if not os.path.isfile(path):
            raise SceneError(f"{path}: no such file")
        try:
            if path.endswith(".mp4"):
                probe = probe_video(path)
                size, n = probe.size_hw, probe.num_frames
            else:
                with Image.open(path) as im:
                    size, n = (im.height, im.width), None
        except VideoError as e:
            raise SceneError(str(e)) from e
        except Exception as e:  # noqa: BLE001 - PIL raises many types
            raise SceneError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
        if tuple(size) != hw or n not in (None, V):
            raise SceneError(f"{path}: expected {V if path.endswith('.mp4') else 1} frame(s) of {hw[0]}x{hw[1]} "
                             f"(scene.json views, resolution), found {n or 1} of {size[0]}x{size[1]}")
    return meta


def read_scene_json(path: str) -> dict:
    """scene.json, every field checked (types, ranges, the kinds 1.5 supports)."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise SceneError(f"{path}: no such file (every scene folder has a scene.json)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SceneError(f"{path}: cannot read scene JSON ({e})") from e
    if not isinstance(meta, dict):
        raise _fail(path, "top level", "a JSON object", type(meta).__name__)

    def get(key, ok, expected):
        if key not in meta:
            raise _fail(path, f"field {key!r}", expected, "no such field")
        if not ok(meta[key]):
            raise _fail(path, f"field {key!r}", expected, repr(meta[key]))
        return meta[key]

    def is_int(x, lo=1):
        return isinstance(x, int) and not isinstance(x, bool) and x >= lo

    get("output_id", lambda x: isinstance(x, str) and x and "/" not in x, "a non-empty name without '/'")
    kind = get("kind", lambda x: x in KINDS, " or ".join(map(repr, KINDS)))
    views = get("views", is_int, "an integer >= 1")
    if kind == "image" and views not in IMAGE_VIEWS:
        raise _fail(path, "field 'views'", "1 or 4 for kind 'image'", views)
    frames = get("frames", is_int, "an integer >= 1")
    if kind == "video" and views != frames:
        raise _fail(path, "field 'views'", f"one per frame for kind 'video' (frames = {frames})", views)
    get("valid_frames", lambda x: is_int(x) and x <= frames, f"an integer in [1, frames = {frames}]")
    get("fps", lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0,
        "a positive number")
    get("resolution", lambda x: isinstance(x, list) and len(x) == 2 and all(is_int(v) for v in x), "[H, W], positive "
        "integers")
    get("target_intrinsics", lambda x: isinstance(x, str), "a string (1.5's label of the target intrinsics)")
    get("depth_encoding", lambda x: x == DEPTH_ENCODING, repr(DEPTH_ENCODING))
    if "geometry" in meta:
        get("geometry", lambda x: x in GEOMETRY_SOURCES, "one of " + ", ".join(map(repr, GEOMETRY_SOURCES)))
    if "provenance" in meta:
        get("provenance", lambda x: isinstance(x, dict), "a JSON object")
    return meta


def _read_views(inp: str, kind: str, V: int, hw: tuple[int, int]) -> np.ndarray:
    if not os.path.isdir(inp):
        raise SceneError(f"{inp}: expected the input folder, found nothing")
    if kind == "video":
        return _read_rgb_video(os.path.join(inp, "video.mp4"), V, hw, "views (scene.json)")
    return np.stack([_read_image(os.path.join(inp, n), hw) for n in _view_names(inp, V)])


def _view_names(inp: str, V: int) -> list[str]:
    """view_00.png ... view_{V-1}.png, checked to be exactly the view files in `inp`."""
    if not os.path.isdir(inp):
        raise SceneError(f"{inp}: expected the input folder, found nothing")
    names = sorted(f for f in os.listdir(inp) if re.fullmatch(r"view_\d+\.png", f))
    want = [f"view_{i:02d}.png" for i in range(V)]
    if names != want:
        raise SceneError(f"{inp}: expected {', '.join(want)} (views = {V} in scene.json), found "
                         f"{', '.join(names) or 'no view_XX.png'}")
    return names


def _read_image(path: str, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in ("RGB", "RGBA", "L", "P"):
                raise SceneError(f"{path}: expected an 8-bit RGB image, found mode {mode}")
            x = np.asarray(im.convert("RGB"))
    except SceneError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise SceneError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    if x.shape[:2] != tuple(hw):
        raise SceneError(f"{path}: expected {hw[0]}x{hw[1]} (HxW, scene.json resolution), found "
                         f"{x.shape[0]}x{x.shape[1]}")
    return x


def _read_rgb_video(path: str, n: int, hw: tuple[int, int], what: str) -> np.ndarray:
    from star_jax.io.video import VideoError, iter_video

    frames = []
    try:
        _, it = iter_video(path)
        for i, frame in it:
            if frame.shape[:2] != tuple(hw):
                raise SceneError(f"{path}: frame {i}: expected {hw[0]}x{hw[1]} (HxW, scene.json resolution), found "
                                 f"{frame.shape[0]}x{frame.shape[1]}")
            frames.append(frame)
    except VideoError as e:
        raise SceneError(str(e)) from e
    if len(frames) != n:
        raise SceneError(f"{path}: expected {n} frames ({what}), found {len(frames)}")
    return np.stack(frames)


def _read_prompt(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SceneError(f"{path}: cannot read the prompt as UTF-8 text ({e})") from e


def _read_w2c(path: str, n: int, what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise SceneError(f"{path}: no such file (one world-to-camera, 16 numbers a line, per {what})")
    w2c = _checked(load_w2c_file, path)
    if len(w2c) != n:
        raise SceneError(f"{path}: expected {n} matrices (one per {what}), found {len(w2c)}")
    return w2c.astype(np.float32)


def read_depth_range(path: str) -> tuple[float, float]:
    """depth/metadata.txt: two finite numbers "min max", 0 <= min < max (metres)."""
    try:
        with open(path, encoding="utf-8") as f:
            toks = f.read().split()
    except FileNotFoundError:
        raise SceneError(f"{path}: no such file (the depth range \"min max\" in metres)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SceneError(f"{path}: cannot read ({e})") from e
    try:
        lo, hi = (float(t) for t in toks) if len(toks) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not (math.isfinite(lo) and math.isfinite(hi)):
        raise SceneError(f"{path}: expected two finite numbers \"min max\" (metres), found {' '.join(toks)!r}")
    if not 0 <= lo < hi:
        raise SceneError(f"{path}: expected 0 <= min < max, found min {lo:g}, max {hi:g}")
    return lo, hi


def _read_depth_metadata(dep: str, V: int, hw: tuple[int, int]):
    """depth/'s text files, checked: ((min, max), K (V, 3, 3) float32, w2c (V, 4, 4) float32)."""
    depth_range = read_depth_range(os.path.join(dep, "metadata.txt"))
    kpath = os.path.join(dep, "source_intrinsics.txt")
    if not os.path.isfile(kpath):
        raise SceneError(f"{kpath}: no such file (one 3x3 intrinsics, 9 numbers a line, per view)")
    K = _checked(load_intrinsics_file, kpath)
    if len(K) != V:
        raise SceneError(f"{kpath}: expected {V} matrices (one per view, scene.json views), found {len(K)}")
    check_plausible_intrinsics(K, hw, kpath)
    w2c = _read_w2c(os.path.join(dep, "source_tcw.txt"), V, "view (scene.json views)")
    return depth_range, K.astype(np.float32), w2c


def _read_depth_folder(dep: str, kind: str, V: int, hw: tuple[int, int]):
    (lo, hi), K, w2c = _read_depth_metadata(dep, V, hw)
    if kind == "video":
        q = _read_depth_video(os.path.join(dep, "depth.mp4"), V, hw)
    else:
        q = np.stack([_read_depth_png(os.path.join(dep, n), hw) for n in depth_paths(kind, V)])
    depth = decode_depth(q, lo, hi)
    for i, d in enumerate(depth):
        if not (d > 0).any():
            name = depth_paths(kind, V)[0 if kind == "video" else i]
            raise SceneError(f"{os.path.join(dep, name)}: view {i}: expected some positive depth, found none")
    return depth, K, w2c


def _read_depth_png(path: str, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if not os.path.isfile(path):
        raise SceneError(f"{path}: no such file (one uint16 depth PNG per view)")
    try:
        with Image.open(path) as im:
            mode = im.mode
            q = np.asarray(im)
    except Exception as e:  # noqa: BLE001
        raise SceneError(f"{path}: cannot read depth PNG ({type(e).__name__}: {e})") from e
    if mode not in ("I;16", "I") or q.ndim != 2 or (q.dtype != np.uint16 and (q.min() < 0 or q.max() > Q_MAX)):
        raise SceneError(f"{path}: expected a single-channel uint16 PNG ({DEPTH_ENCODING}), found mode {mode} "
                         f"{q.dtype} {q.shape}")
    if q.shape != tuple(hw):
        raise SceneError(f"{path}: expected {hw[0]}x{hw[1]} (HxW, scene.json resolution), found {q.shape[0]}x"
                         f"{q.shape[1]}")
    return q.astype(np.uint16)


def _read_depth_video(path: str, n: int, hw: tuple[int, int]) -> np.ndarray:
    if not os.path.isfile(path):
        raise SceneError(f"{path}: no such file (the video scene's depth, uint16 in red/green, lossless)")
    rgb = _read_rgb_video(path, n, hw, "one per view")
    blue = rgb[..., 2].reshape(len(rgb), -1).max(axis=1)
    if blue.any():
        i = int(np.argmax(blue > 0))
        raise SceneError(f"{path}: frame {i}: expected blue 0 (uint16 depth as red = high byte, green = low byte, "
                         f"stored losslessly), found blue up to {int(blue[i])}: the file was re-encoded lossily")
    return (rgb[..., 0].astype(np.uint16) << 8) | rgb[..., 1].astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# writing


def scene_json(scene: Scene) -> dict:
    """The scene.json object of `scene`."""
    H, W = scene.resolution
    meta = {"output_id": scene.output_id, "kind": scene.kind, "views": int(scene.views.shape[0]),
            "frames": scene.frames, "valid_frames": int(scene.valid_frames), "fps": float(scene.fps),
            "resolution": [H, W], "target_intrinsics": scene.target_intrinsics, "depth_encoding": DEPTH_ENCODING,
            "geometry": scene.geometry}
    if scene.provenance:
        meta["provenance"] = scene.provenance
    return meta


def write_scene(folder: str | os.PathLike, scene: Scene) -> None:
    """Writes `scene` as a scene folder: staged beside `folder`, renamed into place when complete
    (a previous scene there is replaced; a folder holding other files is refused)."""
    from PIL import Image

    check_scene(scene)
    with staged_folder(folder, SCENE_ENTRIES) as d:
        inp, dep = os.path.join(d, "input"), os.path.join(d, "depth")
        os.mkdir(inp)
        with open(os.path.join(d, "scene.json"), "w", encoding="utf-8") as f:
            json.dump(scene_json(scene), f, indent=2)
            f.write("\n")
        if scene.kind == "video":
            write_lossless_video(os.path.join(inp, "video.mp4"), scene.views, scene.fps)
        else:
            for i, view in enumerate(scene.views):
                Image.fromarray(view).save(os.path.join(inp, f"view_{i:02d}.png"))
        if scene.prompt:
            with open(os.path.join(inp, "prompt.txt"), "w", encoding="utf-8") as f:
                f.write(scene.prompt + "\n")
        _write_matrices(os.path.join(inp, "target_tcw.txt"), scene.target_w2c)
        if scene.depth is None:
            return
        os.mkdir(dep)
        text = f"{0.0:.9g} {float(scene.depth.max()):.9g}"
        lo, hi = (float(v) for v in text.split())  # encode with the range exactly as the reader will see it
        with open(os.path.join(dep, "metadata.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        q = encode_depth(scene.depth, lo, hi)
        if scene.kind == "video":
            rgb = np.zeros(q.shape + (3,), np.uint8)
            rgb[..., 0], rgb[..., 1] = q >> 8, q & 0xFF
            write_lossless_video(os.path.join(dep, "depth.mp4"), rgb, scene.fps)
        else:
            for name, qi in zip(depth_paths(scene.kind, len(q)), q):
                Image.fromarray(qi).save(os.path.join(dep, name))
        _write_matrices(os.path.join(dep, "source_intrinsics.txt"), scene.source_K)
        _write_matrices(os.path.join(dep, "source_tcw.txt"), scene.source_w2c)


def _write_matrices(path: str, m: np.ndarray) -> None:
    """One matrix per line, row-major, 9 significant digits (exact for float32)."""
    rows = np.asarray(m, np.float32).reshape(len(m), -1)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(" ".join(f"{float(v):.9g}" for v in row) + "\n" for row in rows)


def write_lossless_video(path: str, frames: np.ndarray, fps: float) -> None:
    """(T, H, W, 3) uint8 -> H.264 in RGB (libx264rgb, crf 0): decoded back bit-exact (PyAV, OpenCV)."""
    import av
    from fractions import Fraction

    T, H, W, _ = frames.shape
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        stream.options = {"crf": "0", "preset": "veryfast"}
        for img in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        container.mux(stream.encode())


# ---------------------------------------------------------------------------------------------
# what navigate consumes


def scene_source_type(scene: Scene) -> str:
    """1.5's name for how a scene is rendered: "image" (one view, a static clip), "multi-image"
    (views fused per target, source latents assigned by coverage) or "video" (frame f from f)."""
    if scene.kind == "video":
        return "video"
    return "image" if len(scene.views) == 1 else "multi-image"


def scene_reference(scene: Scene, num_frames: int | None = None) -> tuple[np.ndarray, SceneGeometry]:
    """The reference clip and its geometry as navigate and `NavigationSession` take them, one entry
    per output frame (`num_frames`, default the scene's): frames (T, H, W, 3) uint8 and a
    SceneGeometry (depth (T, H, W), K (T, 3, 3), w2c (T, 4, 4)). A single image becomes a static
    clip (1.5: the image repeated); a video maps frame f to frame f (its last frame past its end).
    A four-image scene gives its V views, one entry each (T = V, whatever `num_frames`): the
    session fuses them per target (`NavigationSession(..., fuse=True)`)."""
    scene.require_geometry(scene.output_id)
    if scene_source_type(scene) == "multi-image":
        idx = np.arange(len(scene.views))
    else:
        idx = np.minimum(np.arange(num_frames or scene.frames), len(scene.views) - 1)
    kind = "planar-prior" if scene.geometry == "planar-prior" else "measured"
    return scene.views[idx], SceneGeometry(scene.depth[idx], scene.source_K[idx], scene.source_w2c[idx], kind)


def resize_scene(scene: Scene, hw: tuple[int, int]) -> Scene:
    """`scene` at (H, W): views resized to cover and centre-cropped (as videos are ingested), depth
    by nearest neighbour on the same grid, intrinsics moved with them; cameras unchanged."""
    from star_jax.geometry.cameras import resize_intrinsics
    from star_jax.io.manifest import crop_depth
    from star_jax.io.video import crop_info, resize_center_crop

    hw = tuple(int(v) for v in hw)
    if hw == scene.resolution:
        return scene
    info = crop_info(scene.resolution, hw)
    views = np.stack([resize_center_crop(v, hw) for v in scene.views])
    if scene.depth is None:
        return dataclasses.replace(scene, views=views)
    depth = np.stack([crop_depth(d, hw, info) for d in scene.depth]).astype(np.float32)
    K = np.asarray(resize_intrinsics(scene.source_K, info.scale, info.offset), np.float32)
    return dataclasses.replace(scene, views=views, depth=depth, source_K=K)


def probe_scene(folder: str | os.PathLike) -> tuple:
    """What a job's cheap check learns of a scene folder given where a video is accepted:
    (ManifestEntry(video=folder, caption=the scene's prompt), VideoProbe(reference frames, fps,
    (H, W))), after `check_scene_folder`. Raises SceneError."""
    from star_jax.io.video import VideoProbe

    meta = check_scene_folder(folder)
    prompt = _read_prompt(os.path.join(folder, "input", "prompt.txt"))
    n = meta["views"] if meta["kind"] == "video" else meta["frames"]
    probe = VideoProbe(n, float(meta["fps"]), tuple(meta["resolution"]))
    return ManifestEntry(video=os.fspath(folder), caption=prompt), probe


def scene_clip(scene: Scene, source: str, hw: tuple[int, int] | None = None):
    """`scene` as navigate's reference, at (H, W) = `hw` (default: the scene's): (VideoClip,
    SceneGeometry) as `render.load_reference` returns for a video, `source` naming the folder. A
    single image is a static clip over the scene's frames; a video is its frames; four images are
    the four views (fused per target by the session, `scene_reference`)."""
    from star_jax.io.video import VideoClip, crop_info

    hw = scene.resolution if hw is None else tuple(int(v) for v in hw)
    frames, geometry = scene_reference(resize_scene(scene, hw))
    index = np.minimum(np.arange(len(frames)), len(scene.views) - 1)  # the view each reference frame shows
    clip = VideoClip(frames=frames, fps=float(scene.fps), source=os.fspath(source), source_size=scene.resolution,
                     source_fps=float(scene.fps), source_indices=index, crop=crop_info(scene.resolution, hw),
                     source_num_frames=len(scene.views))
    return clip, geometry
