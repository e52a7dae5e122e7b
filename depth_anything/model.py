"""`DepthModel`: a loaded network of any family, with the stages and `infer` every surface uses.

A family's network subclasses `DepthModel` and implements `forward` (normalised images in, raw prediction out).
Everything else is shared: loading (`from_pretrained`), the backend the network runs on, the prepare / predict /
restore stages (`depth_anything.pipeline`) and `infer`, tiled or not.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn

from . import pipeline
from .backends import Backend, BackendUnavailableError, EagerBackend, make_backend
from .images import ImageInput, exif_focal_px, image_size, split_images, to_tensor
from .options import batch_size_problem, check, input_size_problem, max_size_problem, tile_problem
from .pipeline import NetworkBatch, OutputWindow
from .transforms import Preprocessing
from .work import check_work

if TYPE_CHECKING:
    from .configs import EncoderConfig
    from .families import ModelFamily
    from .loading import Checkpoint

Progress = Callable[[int, int], None]


class DepthModel(nn.Module):
    """A depth network of any family, ready to run.

    Build one with `DepthModel.from_pretrained` (or `DepthAnything.from_pretrained`, the same call) and run it
    with `infer`. Power users can call the stages themselves: `prepare`, `predict`, `restore`.

    Attributes:
        family: the `ModelFamily` (how its checkpoints look, its pre-processing, what it outputs).
        source: what it was loaded from.
        checkpoint: the resolved `Checkpoint` (file, family, licence), when loaded with `from_pretrained`.
    """

    family: "ModelFamily"

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.checkpoint: Checkpoint | None = None
        self._backend: Backend | None = None
        self._interrupt: Callable[[], None] | None = None  # set by `interruptible`, called before each pass

    # ---------------------------------------------------------------------------------------- what it is

    config: "EncoderConfig | None" = None  # the ViT encoder's configuration, for families built on one

    @property
    def encoder(self) -> str:
        """The size variant ("vits", "vitl", ...), as the family names it."""
        return self.config.name if self.config is not None else ""

    @property
    def output_kind(self) -> str:
        """"disparity" (near = large), "relative_depth" or "metric_depth" (metres, far = large)."""
        return self.family.output_kind

    @property
    def is_metric(self) -> bool:
        return self.output_kind == "metric_depth"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def activation_memory(self, batch: int, height: int, width: int) -> int:
        """Rough peak activation bytes of a forward pass on `batch` images of `height` x `width` (network size):
        a dense head's full-resolution feature maps dominate. Families with other heads override it."""
        element = torch.finfo(self.dtype).bits // 8
        return int(batch * height * width * self.head_features * element * 4)

    head_features = 256  # channels of the head's full-resolution maps; set by each family's network
    has_sky = False  # the network also predicts where the sky is (`predict_maps`, `infer(..., return_sky=True)`)
    sky_threshold = 0.5  # a restored sky probability at least this is sky; families with a sky head set their own

    def pass_flops(self, height: int, width: int) -> float:
        """Rough FLOPs of one forward pass at network size `height` x `width`, for `depth_anything.work`.

        This default counts every weight once per patch token (a lower bound for a ViT without its attention);
        families override it with their network's own count.
        """
        tokens = (height // 14) * (width // 14)
        return 2.0 * sum(p.numel() for p in self.parameters()) * tokens

    # --------------------------------------------------------------------------------------------- backend

    @property
    def backend(self) -> Backend:
        """What runs the network (eager PyTorch unless another was chosen)."""
        if self._backend is None:
            self._backend = EagerBackend(self)
        return self._backend

    def use_backend(self, backend: str | Backend) -> "DepthModel":
        """Run the network on `backend` (a registered name or a `Backend`); returns self.

        A temporal family (Video Depth Anything) runs on eager PyTorch: the fast backends export or compile the
        network for single frames, and its windows are clips whose micro-batching a traced graph would fix.
        "auto" picks eager for it; another named backend is refused.
        """
        if isinstance(backend, str) and self.family.temporal and backend != "eager":
            if backend != "auto":
                raise BackendUnavailableError(
                    f"backend {backend!r} runs frame-by-frame networks, and {self.family.name} ("
                    f"{self.family.description}) sees clips: use backend 'eager' or 'auto' for it."
                )
            backend = "eager"
        self._backend = make_backend(backend, self) if isinstance(backend, str) else backend
        return self

    def __getstate__(self) -> dict:
        # A copy or pickle of the model carries its weights, not the sessions or engines its backend holds.
        state = dict(self.__dict__)
        state["_backend"] = None
        return state

    def _apply(self, fn, *args, **kwargs):
        if self._backend is not None:
            self._backend.reset()  # weights or device changed: compiled or copied forms are stale
        return super()._apply(fn, *args, **kwargs)

    # ---------------------------------------------------------------------------------------------- stages

    def prepare(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        input_size: int | None = None,
        max_size: int | None = None,
        batch_size: int = 8,
        focal_px: float | Sequence[float | None] | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> Iterator[NetworkBatch]:
        """Inputs -> network batches on this model's device, with this family's pre-processing (or `preprocessing`).

        See `depth_anything.pipeline.prepare`.
        """
        return pipeline.prepare(
            images, preprocessing or self.family.preprocessing, input_size=input_size, max_size=max_size,
            batch_size=batch_size, device=self.device, focal_px=focal_px,
        )

    @torch.inference_mode()
    def predict(self, batch: NetworkBatch | torch.Tensor) -> torch.Tensor:
        """A network batch (or its pixels) -> raw float32 prediction (N, h, w), never inf / NaN from fp16 range.

        A float16 result that overflowed (float16 tops out at 65504) is recomputed in float32, with a warning.
        """
        pixels = batch.pixels if isinstance(batch, NetworkBatch) else batch
        backend = self.backend
        if self._interrupt is not None:
            self._interrupt()  # before each pass: a compiled graph (ONNX, TensorRT) cannot stop inside one
        prediction = backend(pixels)
        if backend.dtype == torch.float16 and not torch.isfinite(prediction).all():
            warnings.warn(
                "fp16 overflowed for this input; recomputing in float32 (use dtype='bf16' to avoid the retry).",
                RuntimeWarning,
                stacklevel=2,
            )
            prediction = backend.float32()(pixels)
        return prediction

    def predict_maps(self, batch: NetworkBatch | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(depth, sky) of a batch in one network pass: depth as `predict` gives it, and (N, h, w) sky probability
        in [0, 1] from networks with a sky head (`has_sky`), else None."""
        return self.predict(batch), None

    def sky_mask(self, sky: torch.Tensor) -> torch.Tensor:
        """A restored sky probability -> float32 1 where it is sky (by the family's threshold), else 0."""
        return (sky >= self.sky_threshold).float()

    def restore(
        self,
        prediction: torch.Tensor,
        sizes: NetworkBatch | Sequence[tuple[int, int]],
        windows: Sequence[OutputWindow | None] | None = None,
    ) -> list[torch.Tensor]:
        """Raw prediction -> float32 maps at each image's size, or at output windows (see `pipeline.restore`)."""
        return pipeline.restore(prediction, sizes, windows)

    # ----------------------------------------------------------------------------------------------- infer

    @torch.inference_mode()
    def infer(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        input_size: int | None = None,
        max_size: int | None = None,
        batch_size: int = 8,
        progress: Progress | None = None,
        tiled: bool | str = False,
        tile: int | None = None,
        overlap: int | None = None,
        interrupt: Callable[[], None] | None = None,
        focal_px: float | Sequence[float | None] | None = None,
        return_sky: bool = False,
        preprocessing: Preprocessing | None = None,
    ):
        """Depth for one image or a batch, at each image's own size, with the family's official pre-processing.

        Before any work the run is estimated (`depth_anything.work`: passes x tokens at this device's speed):
        an image over the limit is refused with the estimate and a setting that fits, a long one warns.

        Args:
            images: a PIL image, numpy HW / HWC (uint8, uint16 or float in [0, 1]), torch (B, H, W, 3) in
                [0, 1] (ComfyUI's IMAGE) or (B, 3, H, W), an image file's path, or a list of these; sizes may
                differ. EXIF orientation is applied.
            input_size: the size the network sees (multiple of 14; default the family's, 518 for v1 / v2).
                Larger sees more detail.
            max_size: cap on the longest processed side (default 3 x input_size), so thin or huge images do
                not run out of memory.
            batch_size: images that go through the network together (grouped by the size the network sees),
                or tiles of one image.
            progress: called as progress(done, total) after each batch; raise from it to stop. When tiling,
                it counts network passes (one global pass and the tiles of each image).
            tiled: False for one pass per image; True for high-resolution depth from a global pass plus
                overlapping native-resolution tiles (`depth_anything.tiling.tiled_predict`); "auto" to tile
                only images large enough to gain. Metric models align tiles by scale only.
            tile: tile side in pixels, a multiple of 14 (default: input_size, or a fifth of the short side).
            overlap: pixels shared by neighbouring tiles (default: a quarter of the tile).
            focal_px: the camera's focal length in image pixels, one for all images or one per image, for
                models whose metres depend on it (Depth Anything 3 metric); None reads it from each photo's
                EXIF where it can. Other models ignore it.
            return_sky: also return where the sky is, for models with a sky head (`has_sky`; a ValueError for
                others). When tiling, the sky comes from one more whole-image pass per image.
            preprocessing: a pre-processing rule to use instead of the family's, e.g. Depth Anything 3's
                `model.family.preprocessing.with_method("lower_bound")`.
            interrupt: called before each layer of the network (and so between tiles and batches); raise from it
                to stop at once, even inside one long pass (ComfyUI's Cancel uses it).

        Raises:
            WorkLimitError: an image's estimated work is over the limit (see `depth_anything.work`).

        Returns:
            float32 (B, H, W) on the CPU, in the family's own quantity (`output_kind`): disparity for v1 / v2,
            relative depth for Depth Anything 3, metres for metric models. When the images differ in size, a list
            of (H, W) tensors. With `return_sky`, (depth, sky), the sky likewise: 1.0 where it is sky, else 0.

        Example:
            >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits")  # doctest: +SKIP
            >>> depth = model.infer(Image.open("photo.jpg"))  # (1, H, W)  # doctest: +SKIP
        """
        if tiled not in (False, True, "auto"):
            raise ValueError(f"tiled must be False, True or 'auto', got {tiled!r}.")
        if return_sky and not self.has_sky:
            raise ValueError(f"return_sky: {self.family.description} has no sky output.")
        check(
            None if input_size is None else input_size_problem(input_size, maximum=None),
            max_size_problem(max_size),
            batch_size_problem(batch_size),
            tile_problem(tile, overlap) if tiled else None,
        )
        items = split_images(images)
        if not items:
            raise ValueError("No images given: pass at least one image.")
        check_work(
            self, [image_size(item) for item in items], input_size=input_size, max_size=max_size, tiled=tiled,
            tile=tile, overlap=overlap,
        )
        with self.interruptible(interrupt):
            focals = pipeline.per_image(focal_px, len(items))
            options = dict(input_size=input_size, max_size=max_size, batch_size=batch_size, preprocessing=preprocessing)
            if tiled:
                depth = self._infer_tiled(items, tiled == "auto", tile, overlap, focals, progress, **options)
                return (depth, self._whole_image_maps(items, focals, None, **options)[1]) if return_sky else depth
            depth, sky = self._whole_image_maps(items, focals, progress, **options)
            return (depth, sky) if return_sky else depth

    @contextmanager
    def interruptible(self, interrupt: Callable[[], None] | None) -> Iterator[None]:
        """Within this block, `interrupt()` runs before every network pass and, on the eager backend, before
        every layer, so that raising from it stops a long pass between layers (a forward pre-hook on each
        submodule; other backends run a compiled graph, which hooks would not reach or would recompile)."""
        if interrupt is None:
            yield
            return
        self._interrupt = interrupt
        if not isinstance(self.backend, EagerBackend):
            try:
                yield
            finally:
                self._interrupt = None
            return

        def before_layer(*_) -> None:
            interrupt()  # its return value is ignored: a pre-hook that returns one would replace the inputs

        handles = [module.register_forward_pre_hook(before_layer) for module in self.modules()]
        try:
            yield
        finally:
            self._interrupt = None
            for handle in handles:
                handle.remove()

    def _whole_image_maps(self, items, focals, progress, **options):
        """(depth, sky mask or None) of each image from one network pass each, batched by network size."""
        depths: list[torch.Tensor | None] = [None] * len(items)
        skies: list[torch.Tensor | None] = [None] * len(items)
        done = 0
        for batch in self.prepare(items, focal_px=focals, **options):
            depth, sky = self.predict_maps(batch) if self.has_sky else (self.predict(batch), None)
            for index, restored in zip(batch.indices, self.restore(depth, batch)):
                depths[index] = restored
            if sky is not None:
                for index, restored in zip(batch.indices, self.restore(sky, batch)):
                    skies[index] = self.sky_mask(restored)
            done += len(batch)
            if progress is not None:
                progress(done, len(items))
        sky_maps = pipeline.stack_if_same_size(skies) if self.has_sky else None
        return pipeline.stack_if_same_size(depths), sky_maps

    def infer_video(
        self,
        frames: Iterable[ImageInput] | torch.Tensor,
        *,
        input_size: int | None = None,
        max_size: int | None = None,
        batch_size: int = 8,
        progress: Progress | None = None,
        tiled: bool | str = False,
        tile: int | None = None,
        overlap: int | None = None,
    ) -> torch.Tensor | Iterator[torch.Tensor]:
        """Depth for the frames of a clip, in order.

        A temporal family (`family.temporal`, e.g. Video Depth Anything) overrides this with its own windows over
        the clip; every other family runs the frames through `infer`, `batch_size` at a time.

        Args:
            frames: a list of frames, a (T, H, W, 3) / (T, 3, H, W) tensor or array, or any iterable of frames
                (a decoder): a long clip is then never held whole.
            input_size, max_size, batch_size: as for `infer`.
            progress: called as progress(frames done, total frames or None) after each batch; raise to stop.
            tiled, tile, overlap: as for `infer`, frame by frame (a temporal family tiles in time instead).

        Returns:
            float32 (T, H, W) on the CPU for a list, tensor or array; for any other iterable, a generator that
            yields each frame's (H, W) depth as soon as it is known.

        Example:
            >>> depth = model.infer_video(frames)  # (T, H, W)  # doctest: +SKIP
            >>> for frame_depth in model.infer_video(decoder):  # streamed  # doctest: +SKIP
            ...     write(frame_depth)
        """
        whole = isinstance(frames, (list, tuple, torch.Tensor, np.ndarray))
        total = len(frames) if whole else None
        options = dict(input_size=input_size, max_size=max_size, batch_size=batch_size)
        if tiled:
            options.update(tiled=tiled, tile=tile, overlap=overlap)

        def stream() -> Iterator[torch.Tensor]:
            done = 0
            for chunk in _chunks(frames, batch_size):
                depths = self.infer(chunk, **options)
                yield from depths
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

        if whole:
            if total == 0:
                raise ValueError("No frames given: pass at least one frame.")
            return pipeline.stack_if_same_size(list(stream()))
        return stream()

    def tile_predictor(
        self,
        input_size: int | None = None,
        max_size: int | None = None,
        *,
        focal_px: float | None = None,
        image_size: tuple[int, int] | None = None,
        preprocessing: Preprocessing | None = None,
    ):
        """`predict(images (N, 3, h, w) in [0, 1]) -> (N, h, w)` through the stages, for the tiling engine.

        `focal_px` (in pixels of an image of `image_size`) reaches each pass scaled to the pass's own size: right
        for the whole-image pass, and for tiles, whose scale is fitted to that pass, it does not matter.
        """

        def predict(images: torch.Tensor) -> torch.Tensor:
            focal = None
            if focal_px is not None and image_size is not None:
                focal = focal_px * max(images.shape[-2:]) / max(image_size)
            depths = []
            for batch in self.prepare(
                images, input_size=input_size, max_size=max_size, batch_size=len(images), focal_px=focal,
                preprocessing=preprocessing,
            ):
                depths.extend(self.restore(self.predict(batch), batch))
            return torch.stack(depths)

        return predict

    def _infer_tiled(
        self,
        items: list[ImageInput],
        auto: bool,
        tile: int | None,
        overlap: int | None,
        focals: list[float | None],
        progress: Progress | None,
        *,
        input_size: int | None,
        max_size: int | None,
        batch_size: int,
        preprocessing: Preprocessing | None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Each image through `tiled_predict`, its tiles batched; progress counts network passes."""
        from .tiling import tile_grid, tiled_predict

        rule = preprocessing or self.family.preprocessing
        model_size = rule.input_size if input_size is None else input_size
        options = dict(
            tile=tile, overlap=overlap, model_size=model_size, max_size=max_size, auto=auto,
            net_size=lambda height, width: rule.net_size(height, width, input_size, max_size),
        )
        grids = [tile_grid(*image_size(item), **options) for item in items]  # checks the options up front
        passes = [1 if grid is None else 1 + len(grid) for grid in grids]
        # Tiles are aligned where a crop changes the values by a scale and shift: disparity as it is, relative
        # depth as inverse depth, and metric depth by a scale alone (zero stays zero).
        align = "scale" if self.is_metric else "affine"

        results = []
        for index, item in enumerate(items):
            focal = exif_focal_px(item) if focals[index] is None else focals[index]
            predict = self.tile_predictor(
                input_size, max_size, focal_px=focal, image_size=image_size(item), preprocessing=preprocessing
            )
            if self.output_kind == "relative_depth":
                predict = _inverted(predict)
            report = None
            if progress is not None:
                done_before = sum(passes[:index])
                report = lambda done, _total: progress(done_before + done, sum(passes))  # noqa: E731
            depth = tiled_predict(
                to_tensor(item), predict, progress=report, batch_size=batch_size, align=align, **options
            )
            results.append(1.0 / depth.clamp_min(1e-12) if self.output_kind == "relative_depth" else depth)
        return pipeline.stack_if_same_size(results)

    # --------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        family: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        backend: str = "eager",
    ) -> "DepthModel":
        """Load a checkpoint of any registered family.

        Args:
            source: an official `.pth`, a `.safetensors` repack (fp16 or fp32), a transformers-format folder
                (config.json + model.safetensors), or a known model name from `depth_anything.list_models()`,
                downloaded on first use.
            family: a family name from `depth_anything.FAMILIES` ("v1", "v2", "metric_indoor",
                "metric_outdoor", ...). Needed when neither the file name, a config.json nor the weights tell
                (v1 and v2 weights have identical keys).
            device: defaults to CUDA, then MPS, then CPU.
            dtype: "fp32", "fp16", "bf16" or a torch dtype; defaults to fp16 on CUDA / MPS and fp32 on CPU.
            cache_dir: where known models are downloaded (default: $DEPTH_ANYTHING_CACHE or
                ~/.cache/depth_anything).
            backend: what runs the network: "eager" (PyTorch itself, the default), "compile" (torch.compile),
                "onnx" (ONNX Runtime; `pip install depth-anything-preprocessor[onnx]`), "tensorrt" (NVIDIA GPUs;
                the `[tensorrt]` extra) or "auto" (the fastest of them installed here and measured exact; decided
                once, remembered). Compiled forms are kept in the cache folder's `backends/`, and each is
                compared with the eager network before use; see `depth_anything.backends`.

        Returns:
            The family's network class (a `DepthModel`), e.g. `DepthAnything` for v1 / v2 / v2-metric.

        Example:
            >>> model = DepthAnything.from_pretrained("depth_anything_v2_vits", device="cpu")  # doctest: +SKIP
            >>> fast = DepthAnything.from_pretrained("depth_anything_v2_vits", backend="onnx")  # doctest: +SKIP
        """
        from .loading import load_model, resolve_checkpoint

        checkpoint = resolve_checkpoint(source, family=family, cache_dir=cache_dir)
        return load_model(checkpoint, device=device, dtype=dtype, backend=backend)

    def extra_repr(self) -> str:
        encoder = f"encoder={self.encoder}, " if self.encoder else ""
        return f"{encoder}family={self.family.name}, source={self.source}"


def _chunks(frames, size: int) -> Iterator[list]:
    """Lists of at most `size` frames from a list, a batch or any iterable, read lazily."""
    chunk = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _inverted(predict: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A tile predictor of relative depth as one of inverse depth (where crops differ by scale and shift)."""

    def inverse(images: torch.Tensor) -> torch.Tensor:
        return 1.0 / predict(images).clamp_min(1e-12)

    return inverse


def __getattr__(name: str):
    # `from depth_anything.model import DepthAnything` keeps working: the v1 / v2 network lives in its family.
    if name == "DepthAnything":
        from .families.depth_anything import DepthAnything

        return DepthAnything
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
