"""Tiled high-resolution depth: alignment, blend weights, fall-backs, errors, infer(tiled=...), and a behaviour
test against ground truth with a stand-in model that sees only a low-resolution view."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from depth_anything import DepthAnything
from depth_anything.tiling import Fusion, TileAssembler, default_tile, fit_scale_shift, tile_grid, tiled_predict
from depth_anything.transforms import processing_size

from checkpoints import write_checkpoint


# --------------------------------------------------------------------------------------------- helpers


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """(3, H, W) whose pixels hold their own position: a stand-in model can tell what any view shows."""
    ys = ((torch.arange(height) + 0.5) / height)[:, None].expand(height, width)
    xs = ((torch.arange(width) + 0.5) / width)[None, :].expand(height, width)
    return torch.stack([ys, xs, torch.full((height, width), 0.5)])


def scene_disparity(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Ground-truth disparity at normalised coordinates: a ground ramp, two near boxes, thin poles."""
    disparity = 0.2 + 0.5 * ys
    disparity = torch.where((ys > 0.3) & (ys < 0.7) & (xs > 0.15) & (xs < 0.4), torch.full_like(ys, 1.2), disparity)
    disparity = torch.where((ys > 0.55) & (xs > 0.6) & (xs < 0.85), torch.full_like(ys, 1.5), disparity)
    for pole in (0.47, 0.52, 0.93):
        disparity = torch.where((xs - pole).abs() < 0.002, torch.full_like(ys, 1.0), disparity)
    return disparity


class LowResStandIn:
    """Sees a view at most `view` pixels on its short side and answers with a random scale and shift per image.

    It reads from the pixels which part of the scene (of `scene_size` pixels) a view shows, renders the ground
    truth there at the scene's resolution, averages it down to what it can resolve and enlarges the result
    back: detail below its resolution is lost, as with a real network.
    """

    def __init__(self, scene_size: tuple[int, int], view: int = 56, seed: int = 0, affine: bool = True):
        self.scene_size, self.view, self.affine = scene_size, view, affine
        self.generator = torch.Generator().manual_seed(seed)
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(batch), *batch.shape[-2:]))
        return torch.stack([self._predict(view) for view in batch])

    def _predict(self, view: torch.Tensor) -> torch.Tensor:
        height, width = self.scene_size
        h, w = view.shape[-2:]
        # first and last pixel centres -> the scene pixels the view covers
        step_y = (view[0, -1, 0] - view[0, 0, 0]) / max(h - 1, 1) if h > 1 else 1 / height
        step_x = (view[1, 0, -1] - view[1, 0, 0]) / max(w - 1, 1) if w > 1 else 1 / width
        top = max(0, round(float((view[0, 0, 0] - step_y / 2) * height)))
        left = max(0, round(float((view[1, 0, 0] - step_x / 2) * width)))
        rows = min(height - top, round(float(step_y * h * height)))
        columns = min(width - left, round(float(step_x * w * width)))
        image = coordinate_image(height, width)[:, top : top + rows, left : left + columns]
        truth = scene_disparity(image[0], image[1])[None, None]
        seen = processing_size(h, w, input_size=self.view)
        if seen[0] < rows:
            truth = F.interpolate(truth, size=seen, mode="area")
        depth = F.interpolate(truth, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        if not self.affine:
            return depth
        scale = math.exp(float(torch.empty(()).uniform_(-1.5, 1.5, generator=self.generator)))
        shift = float(torch.empty(()).uniform_(-1.0, 1.0, generator=self.generator))
        return scale * depth + shift


def error_after_alignment(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean absolute error after one least-squares scale and shift to the ground truth."""
    scale, shift = fit_scale_shift(prediction[None], truth[None], robust=False)
    return float((scale * prediction + shift - truth).abs().mean())


def cover(grid) -> torch.Tensor:
    weight_y, weight_x = grid.weights()
    total = torch.zeros(grid.height, grid.width, dtype=torch.float64)
    for y, x in grid.boxes():
        blend = weight_y[grid.ys.index(y)][:, None].double() * weight_x[grid.xs.index(x)][None, :].double()
        total[y : y + grid.tile_height, x : x + grid.tile_width] += blend
    return total


# --------------------------------------------------------------------------------------------- alignment


def test_fit_recovers_known_scale_and_shift_exactly():
    source = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(1))
    scales, shifts = torch.tensor([2.5, 0.01, 300.0]), torch.tensor([-0.7, 4.0, 12.0])
    target = scales[:, None, None] * source + shifts[:, None, None]
    scale, shift = fit_scale_shift(source, target)
    torch.testing.assert_close(scale, scales, rtol=1e-5, atol=0)
    torch.testing.assert_close(shift, shifts, rtol=1e-5, atol=1e-5)
    scale_only, zero = fit_scale_shift(source, 3.0 * source, scale_only=True)
    torch.testing.assert_close(scale_only, torch.full((3,), 3.0), rtol=1e-6, atol=0)
    assert zero.abs().max() == 0


def test_robust_fit_ignores_outliers_that_plain_least_squares_follows():
    source = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(2))
    target = 2.0 * source + 1.0
    target[:, :8] = 40.0  # a strip the global map gets badly wrong (an occlusion, a misplaced edge)
    scale, shift = fit_scale_shift(source, target)
    plain_scale, _ = fit_scale_shift(source, target, robust=False)
    assert abs(float(scale) - 2.0) < 0.02 and abs(float(shift) - 1.0) < 0.02
    assert abs(float(plain_scale) - 2.0) > 0.5


def test_tiles_that_are_exact_affines_of_a_smooth_scene_reproduce_it():
    """Noise-free: every view returns a random scale and shift of the same smooth disparity; tiling recovers it."""
    image = coordinate_image(300, 430)
    generator = torch.Generator().manual_seed(3)

    def predict(batch):
        truth = 0.5 + batch[:, 0] + 0.5 * batch[:, 1] ** 2
        scale = torch.exp(torch.empty(len(batch), 1, 1).uniform_(-1, 1, generator=generator))
        return scale * truth + torch.empty(len(batch), 1, 1).uniform_(-1, 1, generator=generator)

    depth = tiled_predict(image, predict, tile=126, overlap=28, model_size=56)
    truth = 0.5 + image[0] + 0.5 * image[1] ** 2
    assert error_after_alignment(depth, truth) < 2e-3 * float(truth.std())


def smooth_truth(views: torch.Tensor) -> torch.Tensor:
    """A smooth disparity of the coordinate image's positions (no edges): what the fits alone must recover."""
    return 0.5 + views[:, 0] + 0.5 * views[:, 1] ** 2


def crops_that_disagree(fault, seed: int):
    """predict(): the whole view exact up to a random scale and shift; every crop also gets `fault`."""
    generator = torch.Generator().manual_seed(seed)

    def predict(batch):
        out = []
        for view, truth in zip(batch, smooth_truth(batch)):
            whole = float(view[0, -1, 0] - view[0, 0, 0]) > 0.9 and float(view[1, 0, -1] - view[1, 0, 0]) > 0.9
            if not whole:
                truth = fault(truth, generator)
            scale = math.exp(float(torch.empty(()).uniform_(-1, 1, generator=generator)))
            out.append(scale * truth + float(torch.empty(()).uniform_(-1, 1, generator=generator)))
        return torch.stack(out)

    return predict


def ramp(truth, generator):
    """A plane across the crop, up to 15 % of the scene's range from one side to the other."""
    h, w = truth.shape
    angle = float(torch.empty(()).uniform_(0, 2 * math.pi, generator=generator))
    u = (torch.arange(w) + 0.5) / w - 0.5
    v = (torch.arange(h) + 0.5) / h - 0.5
    plane = math.cos(angle) * u[None, :] + math.sin(angle) * v[:, None]
    return truth + 0.15 * 1.5 * float(torch.empty(()).uniform_(-1, 1, generator=generator)) * plane


def range_compression(truth, generator):
    """The crop's own range to a power between 1/1.5 and 1.5."""
    low, high = truth.min(), truth.max()
    gamma = 1.5 ** float(torch.empty(()).uniform_(-1, 1, generator=generator))
    return low + (high - low) * ((truth - low) / (high - low)) ** gamma


@pytest.mark.parametrize("fault", [ramp, range_compression])
def test_a_smooth_ramp_or_curve_per_tile_is_removed(fault):
    """Crops off by a plane or a tone curve beyond scale and shift: the default fusion removes what one scale
    and shift per tile leaves as a patchwork."""
    image = coordinate_image(300, 430)
    truth = smooth_truth(image[None])[0]
    options = dict(tile=126, overlap=28, model_size=56)
    local = tiled_predict(image, crops_that_disagree(fault, seed=4), **options)
    per_tile = tiled_predict(image, crops_that_disagree(fault, seed=4), fusion="tile", **options)
    local_error, tile_error = error_after_alignment(local, truth), error_after_alignment(per_tile, truth)
    assert local_error < 0.005 * float(truth.std()), (local_error, tile_error)  # 0.002 measured; tile: 0.01-0.05
    assert local_error < 0.25 * tile_error, (local_error, tile_error)


def test_a_shifted_grid_gives_the_same_depth_when_crops_disagree():
    """Shifting the tile grid by half a stride moves every seam; with the default fusion the depth stays put."""
    image = coordinate_image(300, 430)
    truth = smooth_truth(image[None])[0]
    options = dict(tile=126, overlap=28, model_size=56)
    depth = tiled_predict(image, crops_that_disagree(ramp, seed=5), **options)
    shifted = tiled_predict(image, crops_that_disagree(ramp, seed=6), shift=(49, 49), **options)
    change = error_after_alignment(shifted, depth)
    assert change < 0.01 * float(truth.std()), change


def benchmark_module():
    """benchmarks/tiling.py (its thin-structure scene, stand-in with faults and metrics), imported by path."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tiling.py"
    spec = importlib.util.spec_from_file_location("tiling_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def test_the_correction_field_keeps_thin_structures_sharp():
    """The benchmark's thin-structure scene (poles, 1-3 px wires, a fence) at 2560 x 1440, crops with every
    non-affine fault and no noise: the field removes most of what the tone curve + tilt leave (AbsRel), and its
    edge-aware enlargement keeps their edges. Enlarged bilinearly (`Fusion(enlarge=None)`), the field pulls
    wires toward their background: boundary F1 0.75 against 0.93 without the field (0.92 by default)."""
    bench = benchmark_module()
    scene = bench.thin_structures(2560, 1440)
    model = bench.StandInModel(scene, seed=1).with_faults(bench.FAULTS["noise-free"])
    scores = {}
    for method in ("curve", "local"):
        aligned = bench.align_to_gt(bench.run_method(method, scene, model)["depth"].numpy(), scene)
        scores[method] = bench.depth_errors(aligned, scene)[0], bench.boundary_f1(aligned, scene)
    (curve_abs_rel, curve_f1), (local_abs_rel, local_f1) = scores["curve"], scores["local"]
    assert local_abs_rel < 0.6 * curve_abs_rel, scores  # 0.0157 vs 0.0376 measured
    assert local_f1 > curve_f1 - 0.04, scores
    bench.METHODS["bilinear"] = ("", {"fusion": Fusion(enlarge=None)})
    aligned = bench.align_to_gt(bench.run_method("bilinear", scene, model)["depth"].numpy(), scene)
    assert bench.boundary_f1(aligned, scene) < local_f1 - 0.1, scores  # what the enlargement is for


def test_fusion_tile_fits_one_scale_and_shift_per_tile_and_a_callable_fusion_is_used():
    image, raw, fitted = coordinate_image(200, 300), {}, {}
    base = LowResStandIn((200, 300), seed=9)

    def predict(batch):
        depth = base(batch)
        for view, d in zip(batch, depth):
            raw[(round(float(view[0, 0, 0]) * 200 - 0.5), round(float(view[1, 0, 0]) * 300 - 0.5))] = d
        return depth

    tiled_predict(image, predict, tile=84, model_size=56, fusion="tile", on_tile=lambda y, x, d: fitted.update({(y, x): d}))
    for box, depth in fitted.items():
        scale, shift = fit_scale_shift(raw[box][None], depth[None], robust=False)
        torch.testing.assert_close(scale * raw[box] + shift, depth, rtol=0, atol=1e-4)
    seen = []
    depth = tiled_predict(
        image, LowResStandIn((200, 300)), tile=84, model_size=56,
        fusion=lambda tiles, reference, scale_only: seen.append(reference.shape) or torch.zeros_like(tiles),
    )
    assert seen and depth.abs().max() == 0  # the callable's tiles are what was blended
    with pytest.raises(ValueError, match="fusion must be one of"):
        tiled_predict(image, LowResStandIn((200, 300)), tile=84, fusion="smooth")
    with pytest.raises(ValueError, match="curve must be 1, 2 or 3"):
        Fusion(curve=5)


# --------------------------------------------------------------------------------------------- grid and weights


@pytest.mark.parametrize(
    "height, width, tile, overlap, shift",
    [
        (601, 853, 126, 32, (0, 0)),
        (517, 1031, 140, 70, (0, 0)),
        (999, 333, 98, 70, (0, 0)),  # more than half a tile of overlap: three tiles share pixels
        (700, 900, 154, 38, (57, 57)),
    ],
)
def test_weights_sum_to_one_and_cover_every_pixel(height, width, tile, overlap, shift):
    grid = tile_grid(height, width, tile=tile, overlap=overlap, shift=shift)
    assert grid.ys[0] == 0 and grid.ys[-1] + grid.tile_height == height
    assert grid.xs[0] == 0 and grid.xs[-1] + grid.tile_width == width
    total = cover(grid)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)
    weight_y, weight_x = grid.weights()
    assert weight_y.min() > 0 and weight_x.min() > 0


def test_weights_fall_off_at_inner_borders_but_not_at_image_borders():
    grid = tile_grid(500, 500, tile=280, overlap=70)
    weight_y, _ = grid.weights()
    first, last = weight_y[0], weight_y[-1]
    assert first[0] == 1 and last[-1] == 1  # image borders: the only tile there counts fully
    assert first[-1] < 0.01 and last[0] < 0.01  # inner borders: almost nothing, so no step
    assert torch.all(first[:-1] >= first[1:])  # monotone ramp


def test_grid_is_shift_aware_and_tile_count_is_bounded():
    plain = tile_grid(2160, 3840)
    shifted = tile_grid(2160, 3840, shift=(200, 200))
    assert plain.tile_height == default_tile(2160, 3840) == 518  # 4K: tiles at the model's own resolution
    assert shifted.xs != plain.xs and len(shifted) > len(plain)
    huge = tile_grid(8640, 15360)  # 16K: tiles grow so that the count stays reasonable
    assert huge.tile_height == default_tile(8640, 15360) > 518 and len(huge) <= 100


# --------------------------------------------------------------------------------------------- engine behaviour


@pytest.mark.parametrize("height, width", [(301, 467), (233, 601), (600, 89)])
def test_odd_image_sizes_keep_their_size(height, width):
    depth = tiled_predict(coordinate_image(height, width), LowResStandIn((height, width)), tile=84, model_size=56)
    assert depth.shape == (height, width) and depth.dtype == torch.float32 and torch.isfinite(depth).all()


def test_channels_last_input_gives_the_same_depth():
    image = coordinate_image(200, 260)
    first = tiled_predict(image, LowResStandIn((200, 260), affine=False), tile=84, model_size=56)
    second = tiled_predict(image.permute(1, 2, 0), LowResStandIn((200, 260), affine=False), tile=84, model_size=56)
    torch.testing.assert_close(first, second)


def test_small_images_fall_back_to_one_pass():
    image = coordinate_image(100, 126)
    model = LowResStandIn((100, 126), affine=False)
    depth = tiled_predict(image, model, tile=126)
    assert model.calls == [(1, 100, 126)]
    torch.testing.assert_close(depth, LowResStandIn((100, 126), affine=False)(image[None])[0])
    # auto: 700 x 700 seen at 518 gains too little from tiles to pay for them
    auto = LowResStandIn((700, 700), affine=False)
    tiled_predict(coordinate_image(700, 700), auto, model_size=518, auto=True)
    assert auto.calls == [(1, 700, 700)]
    assert tile_grid(700, 700, model_size=518, auto=True) is None
    assert tile_grid(768, 1024, model_size=518, auto=True) is None  # seen 1.48x finer by tiles: not worth it
    assert tile_grid(1024, 1024, model_size=518, auto=True) is not None  # 1.98x
    assert tile_grid(2160, 3840, model_size=518, auto=True) is not None


def test_tiles_go_through_predict_in_batches_and_progress_counts_passes():
    model, seen = LowResStandIn((300, 400)), []
    grid = tile_grid(300, 400, tile=112, overlap=28)
    tiled_predict(coordinate_image(300, 400), model, tile=112, overlap=28, model_size=56, batch_size=5,
                  progress=lambda done, total: seen.append((done, total)))
    total = 1 + len(grid)
    assert model.calls[0][0] == 1 and all(n <= 5 for n, *_ in model.calls[1:])
    assert sum(n for n, *_ in model.calls) == total
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_raising_from_progress_stops_the_work():
    model = LowResStandIn((300, 400))

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiled_predict(coordinate_image(300, 400), model, tile=112, model_size=56, progress=stop)
    assert len(model.calls) == 1  # the global pass only


def test_tiled_depth_is_closer_to_ground_truth_than_naive_tiling_and_sharper_than_one_pass():
    height, width = 420, 630
    image = coordinate_image(height, width)
    truth = scene_disparity(image[0], image[1])

    ours = tiled_predict(image, LowResStandIn((height, width), seed=5), tile=56, overlap=14, model_size=56)
    single = LowResStandIn((height, width), seed=5)(image[None])[0]
    grid = tile_grid(height, width, tile=56, overlap=14)
    weight_y, weight_x = grid.weights()
    naive, model = torch.zeros(height, width), LowResStandIn((height, width), seed=5)
    for y, x in grid.boxes():
        tile = model(image[None, :, y : y + 56, x : x + 56])[0]
        tile = (tile - tile.min()) / (tile.max() - tile.min()).clamp_min(1e-12)
        blend = weight_y[grid.ys.index(y)][:, None] * weight_x[grid.xs.index(x)][None, :]
        naive[y : y + 56, x : x + 56] += blend * tile

    ours_error, naive_error, single_error = (error_after_alignment(d, truth) for d in (ours, naive, single))
    assert ours_error < 0.5 * naive_error, (ours_error, naive_error)
    assert ours_error < 0.7 * single_error, (ours_error, single_error)
    # the thin poles (2-3 px here) are visible in ours and lost in the single 56-px pass
    column = round(0.93 * width - 0.5)
    scale, shift = fit_scale_shift(ours[None], truth[None], robust=False)
    contrast = lambda d: float(d[50:100, column].mean() - d[50:100, column - 6].mean())  # noqa: E731
    assert contrast(scale * ours + shift) > 0.5 * contrast(truth)
    s_scale, s_shift = fit_scale_shift(single[None], truth[None], robust=False)
    assert contrast(s_scale * single + s_shift) < 0.3 * contrast(truth)


def test_scale_only_alignment_keeps_metric_depth_positive_and_in_the_global_units():
    image = coordinate_image(260, 380)
    generator = torch.Generator().manual_seed(6)

    def metric(batch):  # metres; each view off by a random factor, as a metric model on a crop
        factor = torch.exp(torch.empty(len(batch), 1, 1).uniform_(-0.5, 0.5, generator=generator))
        return factor * (2.0 + 3.0 * batch[:, 0])

    depth = tiled_predict(image, metric, tile=98, model_size=56, align="scale")
    assert depth.min() > 0
    ratio = depth / (2.0 + 3.0 * image[0])
    assert float(ratio.std() / ratio.mean()) < 0.01  # one factor everywhere (the global pass's): no shift added


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tile=112, overlap=112), "overlap must be"),
        (dict(tile=112, overlap=-1), "overlap must be"),
        (dict(tile=100), "multiple of 14"),
        (dict(tile=0), "multiple of 14"),
        (dict(model_size=500), "model_size"),
        (dict(align="log"), "align must be"),
        (dict(batch_size=0), "batch_size"),
        (dict(lowpass=0.0), "lowpass"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiled_predict(coordinate_image(200, 300), LowResStandIn((200, 300)), **kwargs)


def test_tile_assembler_fits_tiles_given_in_any_order_and_wants_each_once():
    """The fit and blend of `tiled_predict`, fed with the same predictions by a caller, in other batches and
    another order, gives the same depth."""
    image = coordinate_image(200, 300)
    model, answers = LowResStandIn((200, 300), seed=12), []

    def recording(batch):
        answers.extend(model(batch))
        return torch.stack(answers[-len(batch):])

    options = dict(tile=56, overlap=14, model_size=56)
    depth = tiled_predict(image, recording, **options)
    grid = tile_grid(200, 300, **options)
    global_map, tiles = answers[0], dict(zip(grid.boxes(), answers[1:]))
    assembler = TileAssembler(grid, global_map)
    boxes = list(reversed(grid.boxes()))
    assembler.add(boxes[:3], torch.stack([tiles[b] for b in boxes[:3]]))
    with pytest.raises(ValueError, match="never added"):
        assembler.result()
    with pytest.raises(ValueError, match="added already"):
        assembler.add(boxes[:1], tiles[boxes[0]][None])
    for box in boxes[3:]:
        assembler.add([box], tiles[box][None])
    torch.testing.assert_close(assembler.result(), depth, rtol=1e-5, atol=1e-6 * float(depth.abs().max()))


def test_bad_images_and_bad_predictions_give_clear_errors():
    image = coordinate_image(200, 300)
    broken = image.clone()
    broken[1, 150, 7] = math.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiled_predict(broken, LowResStandIn((200, 300)), tile=112)
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(H, W, 3\)"):
        tiled_predict(image[:2], LowResStandIn((200, 300)), tile=112)
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(H, W, 3\)"):
        tiled_predict(image[None], LowResStandIn((200, 300)), tile=112)
    with pytest.raises(TypeError, match="float"):
        tiled_predict((image * 255).to(torch.uint8), LowResStandIn((200, 300)), tile=112)
    with pytest.raises(ValueError, match=r"predict returned shape \(1, \d+\) for 1 image\(s\) of \d+x\d+; it must"):
        tiled_predict(image, lambda batch: batch[:, 0, :, 0], tile=112)
    with pytest.raises(ValueError, match="predict returned NaN"):
        tiled_predict(image, lambda batch: batch[:, 0] / 0 * 0, tile=112)


# --------------------------------------------------------------------------------------------- infer(tiled=...)


def test_infer_tiled_returns_finite_depth_of_the_right_shape(v2_vits):
    images = torch.rand(2, 101, 131, 3, generator=torch.Generator().manual_seed(7))
    seen = []
    depth = v2_vits.infer(images, input_size=56, tiled=True, progress=lambda d, t: seen.append((d, t)))
    assert depth.shape == (2, 101, 131) and depth.dtype == torch.float32 and torch.isfinite(depth).all()
    passes = 2 * (1 + len(tile_grid(101, 131, model_size=56)))
    assert seen[-1] == (passes, passes)
    plain = v2_vits.infer(images, input_size=56)
    assert not torch.allclose(depth, plain)  # tiles really ran
    # a clip through an image model tiles frame by frame, as infer does
    frames = v2_vits.infer_video(list(images), input_size=56, tiled=True, batch_size=1)
    torch.testing.assert_close(frames, depth, rtol=1e-5, atol=1e-5 * float(depth.abs().max()))


def test_infer_auto_leaves_small_images_alone_and_mixed_sizes_work(v2_vits):
    small = torch.rand(70, 84, 3, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(
        v2_vits.infer(small, input_size=56, tiled="auto"), v2_vits.infer(small, input_size=56)
    )
    mixed = v2_vits.infer([small, torch.rand(115, 150, 3)], input_size=56, tiled=True, tile=70, overlap=14)
    assert [tuple(d.shape) for d in mixed] == [(70, 84), (115, 150)]


def test_infer_rejects_bad_tiling_options(v2_vits):
    image = torch.rand(100, 120, 3)
    with pytest.raises(ValueError, match="tiled must be"):
        v2_vits.infer(image, tiled="yes")
    with pytest.raises(ValueError, match="multiple of 14"):
        v2_vits.infer(image, input_size=56, tiled=True, tile=60)
    with pytest.raises(ValueError, match="overlap must be"):
        v2_vits.infer(image, input_size=56, tiled=True, tile=56, overlap=56)


def test_infer_tiled_serves_v1_through_the_same_stages(tmp_path):
    model = DepthAnything.from_pretrained(write_checkpoint(tmp_path / "depth_anything_vits14.pth", seed=2), device="cpu")
    image = torch.rand(1, 100, 130, 3, generator=torch.Generator().manual_seed(3))
    depth = model.infer(image, input_size=56, tiled=True, tile=70)
    assert depth.shape == (1, 100, 130) and torch.isfinite(depth).all()
    assert not torch.allclose(depth, model.infer(image, input_size=56))


def test_infer_tiled_metric_model_gives_positive_metres(tmp_path):
    path = write_checkpoint(tmp_path / "depth_anything_v2_metric_hypersim_vits.pth", seed=1)
    model = DepthAnything.from_pretrained(path, device="cpu")
    depth = model.infer(torch.rand(1, 100, 130, 3), input_size=56, tiled=True, tile=70)
    assert depth.shape == (1, 100, 130) and torch.isfinite(depth).all() and depth.min() >= 0
    assert depth.max() <= model.max_depth * 1.5
