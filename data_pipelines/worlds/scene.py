"""Procedural 4D worlds: what is in a scene, how it moves, and how it is described in words.

A scene is a walled courtyard (a textured floor and four walls, open to the sky) holding boxes
and spheres, some of them moving. Everything is a frozen dataclass of plain floats, so a scene is
hashable, printable and serialisable (`dataclasses.asdict`). World axes: y up, the floor is the
plane y = 0; cameras follow `star_jax.geometry` (OpenCV axes, `w2c` world-to-camera).

`random_scene(seed)` draws a scene; `describe(scene)` writes its caption from a fixed vocabulary
(colour names of `PALETTE`, texture words of `TEXTURE_WORDS`, motion verbs of `Motion.verb`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

Vec3 = tuple[float, float, float]

PALETTE: dict[str, Vec3] = {
    "red": (0.78, 0.16, 0.14),
    "orange": (0.90, 0.50, 0.12),
    "yellow": (0.92, 0.80, 0.22),
    "green": (0.22, 0.60, 0.25),
    "teal": (0.12, 0.55, 0.55),
    "blue": (0.18, 0.32, 0.78),
    "purple": (0.50, 0.25, 0.62),
    "pink": (0.92, 0.56, 0.66),
    "brown": (0.50, 0.33, 0.20),
    "sand": (0.82, 0.72, 0.54),
    "white": (0.93, 0.93, 0.90),
    "grey": (0.50, 0.50, 0.53),
    "charcoal": (0.20, 0.20, 0.23),
}

TEXTURE_WORDS = {"solid": "plain", "checker": "checkered", "stripes": "striped", "tiles": "tiled",
                 "noise": "mottled"}


@dataclasses.dataclass(frozen=True)
class Texture:
    """A procedural texture: `kind` mixes `color` and `color2` (names in `PALETTE`) with a pattern
    of `scale` scene units (a checker square, a stripe, a tile, a noise cell). `seed` varies the
    tile shades, the noise and a faint brightness mottle that every kind carries, so repeated
    patterns still differ from place to place (a wrong warp is then visible)."""

    kind: str = "solid"  # solid | checker | stripes | tiles | noise
    color: str = "grey"
    color2: str = "white"
    scale: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if self.kind not in TEXTURE_WORDS:
            raise ValueError(f"texture kind {self.kind!r} not in {sorted(TEXTURE_WORDS)}")
        for c in (self.color, self.color2):
            if c not in PALETTE:
                raise ValueError(f"texture colour {c!r} not in PALETTE ({sorted(PALETTE)})")
        if not self.scale > 0:
            raise ValueError(f"texture scale must be positive, got {self.scale}")


@dataclasses.dataclass(frozen=True)
class Motion:
    """Rigid motion of an object over time t (seconds), added to its rest pose:
    offset(t) = shift sin(2 pi t / period) + circle_radius (1 - cos(2 pi t / period), 0,
    sin(2 pi t / period)) (a circle through the rest position), yaw(t) = spin_dps t (degrees/s,
    about the vertical axis through the object's centre)."""

    shift: Vec3 = (0.0, 0.0, 0.0)
    circle_radius: float = 0.0
    period_s: float = 3.0
    spin_dps: float = 0.0

    @property
    def is_static(self) -> bool:
        return not (any(self.shift) or self.circle_radius or self.spin_dps)

    def offset(self, t: float) -> np.ndarray:
        """(3,) translation at time t."""
        a = 2.0 * math.pi * t / self.period_s
        circle = self.circle_radius * np.array([1.0 - math.cos(a), 0.0, math.sin(a)])
        return np.asarray(self.shift, np.float64) * math.sin(a) + circle

    def yaw(self, t: float) -> float:
        """Spin angle (radians) at time t."""
        return math.radians(self.spin_dps * t)

    def reach(self) -> float:
        """Largest horizontal distance the object's centre moves from its rest position."""
        return float(np.hypot(self.shift[0], self.shift[2])) + 2.0 * self.circle_radius

    @property
    def verb(self) -> str:
        if self.circle_radius:
            return "circles"
        if any(self.shift):
            return "slides" if not self.spin_dps else "slides and spins"
        return "spins" if self.spin_dps else "stays"


@dataclasses.dataclass(frozen=True)
class Quad:
    """A one-piece rectangle (floor, wall): centre + half extents along two unit axes. Seen from
    both sides; its texture coordinates are the distances along `axis_u` and `axis_v`."""

    centre: Vec3
    axis_u: Vec3
    axis_v: Vec3
    half_u: float
    half_v: float
    texture: Texture
    name: str = "wall"


@dataclasses.dataclass(frozen=True)
class Box:
    """A box of half extents `half_size` (x, y, z in its own frame) turned by `yaw_deg` about the
    vertical axis; rests on the floor when centre y = half_size y."""

    centre: Vec3
    half_size: Vec3
    texture: Texture
    yaw_deg: float = 0.0
    motion: Motion = Motion()
    name: str = "box"


@dataclasses.dataclass(frozen=True)
class Sphere:
    centre: Vec3
    radius: float
    texture: Texture
    motion: Motion = Motion()
    name: str = "sphere"


Primitive = Quad | Box | Sphere


@dataclasses.dataclass(frozen=True)
class Scene:
    """Objects (index = object id in renders; -1 is the sky), a directional sun (unit vector
    towards it), the ambient share of the light, and the sky's horizon and zenith colours."""

    objects: tuple[Primitive, ...]
    sun: Vec3 = (0.45, 0.80, -0.40)
    ambient: float = 0.35
    sky_horizon: Vec3 = (0.78, 0.86, 0.95)
    sky_zenith: Vec3 = (0.35, 0.55, 0.85)
    half_extent: float = 6.0  # the walls stand at |x| = |z| = half_extent
    wall_height: float = 3.0

    @property
    def moving(self) -> tuple[int, ...]:
        return tuple(i for i, o in enumerate(self.objects) if not isinstance(o, Quad) and not o.motion.is_static)

    def contains(self, point, margin: float = 0.3) -> bool:
        """True if `point` (3,) is inside the courtyard, above the floor, and clear of every object's
        rest pose and path by `margin` (where a camera may stand)."""
        x, y, z = (float(v) for v in point)
        lim = self.half_extent - margin
        if not (abs(x) < lim and abs(z) < lim and margin < y < self.wall_height + 2.0):
            return False
        for o in self.objects:
            if isinstance(o, Quad):
                continue
            size = o.radius if isinstance(o, Sphere) else float(np.linalg.norm(o.half_size))
            if np.linalg.norm(np.subtract(point, o.centre)) < size + o.motion.reach() + margin:
                return False
        return True


def courtyard(half_extent: float, wall_height: float, floor: Texture, walls: tuple[Texture, ...]) -> tuple[Quad, ...]:
    """Floor (y = 0) and four walls (north z = +L, east x = +L, south, west) as quads."""
    L, h = half_extent, wall_height / 2
    quads = [Quad((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), L, L, floor, "floor")]
    sides = (("north wall", (0.0, h, L), (1.0, 0.0, 0.0)), ("east wall", (L, h, 0.0), (0.0, 0.0, 1.0)),
             ("south wall", (0.0, h, -L), (1.0, 0.0, 0.0)), ("west wall", (-L, h, 0.0), (0.0, 0.0, 1.0)))
    for (name, c, u), tex in zip(sides, walls):
        quads.append(Quad(c, u, (0.0, 1.0, 0.0), L, h, tex, name))
    return tuple(quads)


def describe(scene: Scene) -> str:
    """A one-sentence caption from the fixed vocabulary, e.g. "a courtyard with a tiled sand
    floor and striped white walls; a red box, a blue sphere and a green box; the blue sphere
    circles and the green box slides."."""
    floor = next((o for o in scene.objects if isinstance(o, Quad) and o.name == "floor"), None)
    walls = [o for o in scene.objects if isinstance(o, Quad) and "wall" in o.name]
    things = [o for o in scene.objects if not isinstance(o, Quad)]
    text = "a courtyard"
    parts = []
    if floor is not None:
        parts.append(f"a {_look(floor.texture)} floor")
    if walls:
        parts.append(f"{_look(walls[0].texture)} walls")
    if parts:
        text += " with " + " and ".join(parts)
    names = [f"a {_look(o.texture, pattern=False)} {o.name}" for o in things]
    if names:
        text += "; " + _join(names)
    verbs = [f"the {_look(o.texture, pattern=False)} {o.name} {o.motion.verb}" for o in things if not o.motion.is_static]
    if verbs:
        text += "; " + _join(verbs)
    return text + "."


def _look(tex: Texture, pattern: bool = True) -> str:
    if not pattern or tex.kind == "solid":
        return tex.color
    return f"{TEXTURE_WORDS[tex.kind]} {tex.color}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def random_scene(seed: int, num_boxes: tuple[int, int] = (2, 4), num_spheres: tuple[int, int] = (1, 3)) -> Scene:
    """A random courtyard with boxes and spheres, at least one of them moving; the same seed
    gives the same scene. Objects stand within 3 units of the centre and never overlap, paths
    included; `sample_world` puts cameras nearer the walls and checks them with `contains`."""
    rng = np.random.default_rng(seed)
    colours = sorted(PALETTE)
    L = float(rng.uniform(6.0, 8.0))
    height = float(rng.uniform(2.5, 4.0))

    def texture(kinds, scale_range):
        a, b = rng.choice(len(colours), size=2, replace=False)
        return Texture(str(rng.choice(kinds)), colours[a], colours[b], float(rng.uniform(*scale_range)),
                       int(rng.integers(1 << 30)))

    floor = texture(("checker", "tiles", "noise"), (0.5, 1.2))
    walls = tuple(texture(("stripes", "tiles", "noise", "checker", "solid"), (0.4, 1.0)) for _ in range(4))
    objects: list[Primitive] = list(courtyard(L, height, floor, walls))
    placed: list[tuple[float, float, float]] = []  # (x, z, footprint radius incl. path)
    kinds = ["box"] * int(rng.integers(num_boxes[0], num_boxes[1] + 1))
    kinds += ["sphere"] * int(rng.integers(num_spheres[0], num_spheres[1] + 1))
    rng.shuffle(kinds)
    must_move = int(rng.integers(len(kinds)))
    for n, kind in enumerate(kinds):
        moves = n == must_move or rng.uniform() < 0.4
        for _ in range(100):
            size = float(rng.uniform(0.25, 0.7))
            motion = Motion()
            if moves:
                period = float(rng.uniform(2.0, 5.0))
                if rng.uniform() < 0.5:
                    ang = rng.uniform(0, 2 * np.pi)
                    amp = float(rng.uniform(0.4, 1.2))
                    motion = Motion(shift=(amp * np.cos(ang), 0.0, amp * np.sin(ang)), period_s=period,
                                    spin_dps=float(rng.choice([0.0, rng.uniform(-90, 90)])))
                else:
                    motion = Motion(circle_radius=float(rng.uniform(0.3, 0.8)), period_s=period)
            x, z = rng.uniform(-3.0, 3.0, size=2)
            foot = size * 1.5 + motion.reach()
            if all(np.hypot(x - px, z - pz) > foot + pr + 0.1 for px, pz, pr in placed):
                break
        else:
            continue  # no room left: drop this object
        placed.append((float(x), float(z), foot))
        tex = texture(("checker", "stripes", "tiles", "noise", "solid"), (0.15, 0.4))
        if kind == "sphere":
            objects.append(Sphere((float(x), size, float(z)), size, tex, motion))
        else:
            half = (size, float(size * rng.uniform(0.6, 1.8)), float(size * rng.uniform(0.7, 1.3)))
            objects.append(Box((float(x), half[1], float(z)), half, tex, float(rng.uniform(0, 90)), motion))
    sun_az = rng.uniform(0, 2 * np.pi)
    sun_el = rng.uniform(np.radians(35), np.radians(70))
    sun = (np.cos(sun_el) * np.cos(sun_az), np.sin(sun_el), np.cos(sun_el) * np.sin(sun_az))
    return Scene(tuple(objects), tuple(float(v) for v in sun), float(rng.uniform(0.25, 0.45)),
                 half_extent=L, wall_height=height)
