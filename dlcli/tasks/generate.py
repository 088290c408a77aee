"""Image generation with a DCGAN generator: a grid of samples from seeded noise, or a latent walk
(an animated GIF and a strip PNG) through K random points.

The architecture `dcgan` (dlcli/models/dcgan.py) is registered here; its weights entries come
from the bundled manifest (`dcgan.mnist`, trained with `dl generate train mnist`) or from
`--weights-file` (any generator `dl generate train` wrote). Torch is imported inside functions.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dlcli.errors import InputError
from dlcli.tasks._placed import nan_error
from dlcli.progress import NullReporter, Reporter
from dlcli.weights.presets import Preset, register_preset
from dlcli.weights import registry
from dlcli.weights.spec import Arch

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import GenerateResult
    from dlcli.device import Runtime

TASK = "generate"
ARCH = "dcgan"
MAX_SAMPLES = 1024
MAX_WALK_POINTS = 64


def build_dcgan_generator(latent_dim: int = 100, channels: int = 1, image_size: int = 28, width: int = 64,
                          upsample: str = "transposed") -> Any:
    from dlcli.models.dcgan import Generator

    return Generator(latent_dim=latent_dim, channels=channels, image_size=image_size, width=width, upsample=upsample)


registry.register_arch(Arch(
    ARCH, TASK, build_dcgan_generator,
    description="DCGAN generator (Radford et al.): latent vector -> 28/32 px grey or 64 px colour image",
    default_config={"latent_dim": 100, "channels": 1, "image_size": 28, "width": 64, "upsample": "transposed"},
))


def _dcgan_preset(spec: Any, args: dict[str, Any]) -> Callable[[Any], Any]:
    """How real images are fed to the matching discriminator: fit to the square size, -1..1."""
    from PIL import Image, ImageOps

    size = int(spec.config.get("image_size", 28))
    channels = int(spec.config.get("channels", 1))

    def transform(img: Any) -> Any:
        import numpy as np
        import torch

        img = ImageOps.fit(img.convert("L" if channels == 1 else "RGB"), (size, size), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        t = torch.from_numpy(arr)
        return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1)

    return transform


register_preset(Preset("dcgan", _dcgan_preset, "RGB", "DCGAN: square crop at the model's size, values -1..1"))


# --- sampling ------------------------------------------------------------------------------------


def latents(n: int, latent_dim: int, seed: int) -> Any:
    """n standard-normal latent vectors from a private CPU generator: the same seed gives the same
    vectors on every device and is untouched by anything else that draws random numbers."""
    import torch

    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(int(seed)))


def slerp(a: Any, b: Any, t: float) -> Any:
    """Spherical interpolation: Gaussian latents live near a sphere, and a straight line between
    two of them passes through lower-norm points the generator rarely saw (White 2016)."""
    import torch

    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1.0, 1.0))
    if float(omega) < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def walk(points: Any, frames_between: int, loop: bool = True) -> Any:
    """Latents visiting each point in turn (and back to the first when `loop`)."""
    import torch

    k = points.shape[0]
    out = []
    legs = k if loop else k - 1
    for i in range(legs):
        a, b = points[i], points[(i + 1) % k]
        for j in range(frames_between):
            out.append(slerp(a, b, j / frames_between))
    if not loop:
        out.append(points[-1])
    return torch.stack(out)


def render_images(g: Any, z: Any, runtime: Runtime, batch: int = 256) -> list[Any]:
    """G(z) as PIL images (L for grey, RGB for colour)."""
    import torch

    from dlcli.media import tensors_to_pil

    out: list[Any] = []
    with runtime.inference():
        for i in range(0, z.shape[0], batch):
            imgs = g(runtime.to(z[i:i + batch])).float().cpu()
            if not bool(torch.isfinite(imgs).all()):
                raise nan_error("the generator", runtime, "pixels")
            out += tensors_to_pil(torch.as_tensor(imgs))
    return out


def _grid_scale(size: int) -> int:
    return 2 if size <= 32 else 1


def generate(*, runtime: Runtime, model: str | None = None, weights_file: str | Path | None = None, n: int = 64,
             seed: int = 0, out: str | Path = "grid.png", interpolate: int | None = None, frames: int = 8,
             ncols: int | None = None, duration_ms: int = 80, force: bool = False, offline: bool = False,
             reporter: Reporter | None = None, model_file: str | Path | None = None, engine: str | None = None) -> GenerateResult:
    """Sample a grid (n images) or, with `interpolate=K`, a latent walk through K points: writes
    OUT's stem as .gif (animation) and .png (a strip of the frames). `model_file` (an exported ONNX
    generator) or engine="onnx" run the generator in onnxruntime. Returns a GenerateResult."""
    from dlcli.atomic import atomic_output, check_writable
    from dlcli.media import make_grid, save_image
    from dlcli.results import GenerateResult, Provenance
    from dlcli.tasks.export import load_weights

    reporter = reporter or NullReporter()
    out = Path(out).expanduser()
    if interpolate is None:
        if not 1 <= n <= MAX_SAMPLES:
            raise InputError(f"--n must be between 1 and {MAX_SAMPLES}, got {n}")
        if ncols is not None and not 1 <= ncols <= MAX_SAMPLES:
            raise InputError(f"--ncols must be between 1 and {MAX_SAMPLES}, got {ncols}")
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
            raise InputError(f"--out {out}: use an image file name (.png, .jpg)")
        check_writable(out, force)
        targets = [out]
    else:
        if not 2 <= interpolate <= MAX_WALK_POINTS:
            raise InputError(f"--interpolate needs between 2 and {MAX_WALK_POINTS} points, got {interpolate}")
        if not 1 <= frames <= 120:
            raise InputError(f"--frames must be between 1 and 120, got {frames}")
        if ncols is not None:
            raise InputError("--ncols shapes the grid; a walk (--interpolate) has one row per leg, so leave it out")
        targets = [out.with_suffix(".gif"), out.with_suffix(".png")]
        for t in targets:
            check_writable(t, force)

    t0 = time.perf_counter()
    lw = load_weights(TASK, model=model, weights_file=weights_file, model_file=model_file, engine=engine,
                      offline=offline, reporter=reporter)
    g = runtime.place(lw.model)
    latent_dim = int(getattr(lw.model, "latent_dim", lw.spec.config.get("latent_dim", 100)))
    size = int(getattr(lw.model, "image_size", lw.spec.config.get("image_size", 28)))
    scale = _grid_scale(size)

    if interpolate is None:
        images = render_images(g, latents(n, latent_dim, seed), runtime)
        cols = min(ncols or math.ceil(math.sqrt(n)), n)  # more columns than samples would only add margin
        save_image(make_grid(images, cols, pad=2, scale=scale), out, force=force)
        files = [out]
    else:
        z = walk(latents(interpolate, latent_dim, seed), frames, loop=True)
        images = render_images(g, z, runtime)
        big = [im.convert("RGB").resize((size * scale * 2, size * scale * 2), 0) for im in images]
        with atomic_output(targets[0], force) as tmp:
            big[0].save(tmp, format="GIF", save_all=True, append_images=big[1:], duration=duration_ms, loop=0)
        # The strip shows the K key points and the frames between them, one row per leg.
        save_image(make_grid(images, frames, pad=2, scale=scale), targets[1], force=force)
        files = list(targets)
        n = len(images)
    return GenerateResult(
        model=lw.spec.name, seed=seed, n=n, files=files, kind="grid" if interpolate is None else "interpolation",
        image_size=size, interpolate=interpolate, seconds=round(time.perf_counter() - t0, 3),
        provenance=Provenance.collect(runtime, lw.spec.name, lw.sha256, engine=getattr(lw.model, "engine", None)),
    )
