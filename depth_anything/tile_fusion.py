"""How a tile's depth is fitted to the global pass before blending: a tone curve, a tilt and an edge-aware field.

A network shown a crop does not answer with the whole view's disparity up to one scale and shift: the crop
re-normalises its own depth range (a curve, not a line), tilts the planes it sees without context, and lifts
its flat regions. `fuse_tiles` fits each tile to the global map in three steps, all on a grid as coarse as the
global map (the only scale at which the two can be compared):

1. one robust scale and shift per tile (a pairwise-median start, then Cauchy re-weighting): the starting point,
   and what a tile falls back to when nothing more can be fitted safely;
2. a robust monotone tone curve of the tile's disparity (cubic) together with a plane in position: the disparity
   of any plane in the scene is linear in image position, so a crop that misjudges the scene's orientation is
   off by a plane;
3. what the tile still disagrees with the global map about (a lifted region, a bend), smoothed edge-aware: the
   correction may step where the fitted tile has a depth edge and is smooth everywhere else, so it leaves no
   halo; it is enlarged to the tile edge-aware too (each tile pixel takes the correction of the neighbouring
   coarse samples whose depth is like its own, so a wire or a pole keeps its own correction, not its
   background's) and added.

Everything finer than the global map comes from the tile alone; nothing of the image's size is held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROBUST_ITERATIONS = 4
FIT_GRID = 64  # per-tile fits use at most 64 x 64 samples: plenty for a handful of unknowns, and cheap
PAIRS = 8192  # sample pairs for the robust starting slope
MIN_SPREAD = 0.01  # robust weights never treat residuals below 1% of the target's spread as outliers
MIN_SCALE_FRACTION = 0.25  # a tile's scale never drops below this share of (global spread / tile spread)
CURVE_RIDGE = 1e-3  # pull of the tone curve's bends toward a straight line, relative to the data's weight
MIN_CURVE_SLOPE = 0.1  # a tone curve flatter than this share of the straight fit's slope falls back to the line


@dataclass(frozen=True)
class Fusion:
    """How tiles are fitted to the global map (see the module's docstring).

    Args:
        curve: degree of each tile's tone curve (1: one scale and shift per tile; 3: the default).
        tilt: fit a plane in position along with the curve.
        field: radius, in global-map pixels, of the edge-aware correction field; None for no field.
        edge: the depth step, as a share of the tile's depth range, that the field does not smooth across.
        enlarge: width of the value kernel that enlarges the field to the tile, in multiples of `edge`; None
            enlarges it bilinearly. It compares a tile pixel with coarse samples that average it with its
            surroundings, hence wider than `edge` (BENCHMARKS.md: 5 keeps thin structures' edges, 1 loses some to
            noise, bilinear pulls them toward their background).

    Example:
        >>> FUSIONS["tile"]
        Fusion(curve=1, tilt=False, field=None, edge=0.03, enlarge=5.0)
    """

    curve: int = 3
    tilt: bool = True
    field: float | None = 4.0
    edge: float = 0.03
    enlarge: float | None = 5.0

    def __post_init__(self):
        if self.curve not in (1, 2, 3):
            raise ValueError(f"Fusion curve must be 1, 2 or 3, got {self.curve!r}.")
        if self.field is not None and not self.field > 0:
            raise ValueError(f"Fusion field must be a positive radius or None, got {self.field!r}.")
        if not self.edge > 0:
            raise ValueError(f"Fusion edge must be positive, got {self.edge!r}.")
        if self.enlarge is not None and not self.enlarge > 0:
            raise ValueError(f"Fusion enlarge must be a positive width or None, got {self.enlarge!r}.")


# "local" is the default (BENCHMARKS.md: it holds when crops disagree beyond scale and shift); "tile" is one
# robust scale and shift per tile, the fusion before it.
FUSIONS = {"local": Fusion(), "tile": Fusion(curve=1, tilt=False, field=None)}


def fit_scale_shift(
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    scale_only: bool = False,
    robust: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust least squares: per item, `scale * source + shift` closest to `target`.

    Args:
        source, target: (N, ...) tensors of the same shape; each of the N items is fitted on its own.
        scale_only: fit a scale alone (shift = 0), for metric depth whose zero is meaningful.
        robust: re-weight outliers (depth edges, occlusions) with Cauchy weights over a few iterations.

    Returns:
        (scale, shift), each (N,) float32.

    Example:
        >>> x = torch.rand(2, 16, 16)
        >>> scale, shift = fit_scale_shift(x, 3 * x - 1)
        >>> [round(v, 4) for v in scale.tolist() + shift.tolist()]
        [3.0, 3.0, -1.0, -1.0]
    """
    if source.shape != target.shape or source.ndim < 2:
        raise ValueError(
            f"source and target must have the same (N, ...) shape, got {tuple(source.shape)} and {tuple(target.shape)}."
        )
    x, y = source.reshape(source.shape[0], -1), target.reshape(target.shape[0], -1)
    scale, shift, _ = _robust_fit(x, y, scale_only=scale_only, iterations=ROBUST_ITERATIONS if robust else 0)
    return scale.float(), shift.float()


def fuse_tiles(
    depth: torch.Tensor,
    target: torch.Tensor,
    *,
    fusion: Fusion,
    scale_only: bool,
    lowpass: float | None = None,
) -> torch.Tensor:
    """Tiles (N, h, w) fitted to the global map sampled on a coarse grid over each of them (N, gh, gw).

    `scale_only` keeps zero at zero (metric depth): the curve has no constant term and corrections multiply.
    `lowpass` (a Gaussian sigma in global-map pixels) is the older guard that replaces each tile's frequencies
    below it with the global map's after step 1; it measured worse than the default field (BENCHMARKS.md).
    """
    pooled = tuple(target.shape[-2:])
    coarse = F.interpolate(depth[:, None], size=pooled, mode="area")[:, 0]
    fit_size = (min(pooled[0], FIT_GRID), min(pooled[1], FIT_GRID))
    fit_tile = F.interpolate(coarse[:, None], size=fit_size, mode="area")[:, 0]
    fit_target = F.interpolate(target[:, None], size=fit_size, mode="area")[:, 0]
    scale, shift, spread = _robust_fit(
        fit_tile.flatten(1), fit_target.flatten(1), scale_only=scale_only, iterations=ROBUST_ITERATIONS
    )
    curve = _ToneCurve.line(scale, shift, scale_only)
    if lowpass is not None:
        correction = _lowpass_correction(curve.values(coarse), target, spread, lowpass, depth.shape[-2:])
        return curve.values(depth) - correction
    if fusion.curve > 1 or fusion.tilt:
        curve = _fit_curve(fit_tile, fit_target, curve, spread, fusion, scale_only)
    # The tilt is kept at the coarse grid and enlarged bilinearly: a plane survives that exactly.
    plane = curve.plane(pooled)
    fitted = curve.apply(depth, plane)
    if fusion.field is None:
        return fitted
    fitted_coarse = curve.apply(coarse, plane)
    edge = _edge_width(fitted_coarse, fusion)
    field = _field(fitted_coarse, target, edge, fusion.field, scale_only)
    if fusion.enlarge is None:
        field = F.interpolate(field[:, None], size=fitted.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    else:
        field = _enlarge_edge_aware(field, fitted_coarse, fitted, fusion.enlarge * edge)
    return fitted * (1.0 + field) if scale_only else fitted + field


# --------------------------------------------------------------------------------------------- step 1


def _robust_fit(
    x: torch.Tensor, y: torch.Tensor, *, scale_only: bool, iterations: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Iteratively re-weighted least squares on (N, P) samples.

    Returns (scale, shift, spread), each (N,) float64; `spread` is the residual scale of the Cauchy weights.
    """
    x, y = x.double(), y.double()
    # Where most samples fit exactly (a tile mostly inside one flat object) the median deviation is zero; the
    # floor keeps the weights from collapsing onto those samples alone, and noise-free fits stay exact.
    floor = 1e-12 + MIN_SPREAD * y.std(dim=1)
    if iterations == 0:
        return (*_weighted_fit(x, y, torch.ones_like(x), scale_only), floor)
    # A least-squares start would let high-leverage outliers (a pole only the tile sees) pull every
    # re-weighting after it to a wrong scale; a pairwise-median start does not.
    scale, shift = _pairwise_fit(x, y, scale_only)
    spread = floor
    for _ in range(iterations):
        residual = scale[:, None] * x + shift[:, None] - y
        spread = _robust_spread(residual, floor)
        scale, shift = _weighted_fit(x, y, _cauchy(residual, spread), scale_only)
    return scale, shift, spread


def _robust_spread(residual: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """The residual scale of Cauchy weights from (N, P) residuals: 2.385 (95 % efficiency) x the MAD's sigma."""
    mad = (residual - residual.median(dim=1, keepdim=True).values).abs().median(dim=1).values
    return torch.maximum(2.385 * 1.4826 * mad, floor)


def _pairwise_fit(x: torch.Tensor, y: torch.Tensor, scale_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Theil-Sen start: the median slope over sample pairs, then the median offset.

    Robust to outliers in the tile (x) as well as in the global map (y): a thin pole the global map cannot
    see, or a tile that is mostly one flat object, would drag a least-squares start to a wrong scale.
    """
    if scale_only:
        ratio = torch.where(x > 0, y / torch.where(x > 0, x, 1.0), torch.nan)
        scale = ratio.nanmedian(dim=1).values.nan_to_num(0.0).clamp_min(0.0)
        return scale, torch.zeros_like(scale)
    count = x.shape[1]
    generator = torch.Generator().manual_seed(0)  # the same pairs every time: results are reproducible
    first = torch.randint(count, (PAIRS,), generator=generator).to(x.device)
    second = torch.randint(count, (PAIRS,), generator=generator).to(x.device)
    dx, dy = x[:, first] - x[:, second], y[:, first] - y[:, second]
    levels = torch.tensor([0.05, 0.95], dtype=x.dtype, device=x.device)
    low, high = torch.quantile(x, levels, dim=1)
    # Pairs closer than a twentieth of the tile's range say more about noise than about the slope.
    informative = dx.abs() > 0.05 * (high - low)[:, None] + 1e-30
    slope = torch.where(informative, dy / torch.where(informative, dx, 1.0), torch.nan)
    scale = slope.nanmedian(dim=1).values.nan_to_num(0.0)  # no informative pair: a flat tile
    shift = (y - scale[:, None] * x).median(dim=1).values
    return scale, shift


def _cauchy(residual: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    spread = spread.view(-1, *([1] * (residual.ndim - 1))).to(residual.dtype)
    return 1.0 / (1.0 + (residual / spread) ** 2)


def _weighted_fit(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, scale_only: bool):
    total = weight.sum(dim=1)
    if scale_only:
        scale = (weight * x * y).sum(dim=1) / (weight * x * x).sum(dim=1).clamp_min(1e-30)
        return scale.clamp_min(0.0), torch.zeros_like(scale)
    mean_x = (weight * x).sum(dim=1) / total
    mean_y = (weight * y).sum(dim=1) / total
    dx, dy = x - mean_x[:, None], y - mean_y[:, None]
    var_x = (weight * dx * dx).sum(dim=1) / total
    var_y = (weight * dy * dy).sum(dim=1) / total
    cov = (weight * dx * dy).sum(dim=1) / total
    flat = var_x <= 1e-12 * (mean_x.abs() + var_y.sqrt()).clamp_min(1e-30) ** 2
    scale = torch.where(flat, 0.0, cov / var_x.clamp_min(1e-30))
    # A tile that barely correlates with the global map (sky, a wall, anything the global pass cannot see)
    # keeps part of its own contrast instead of being flattened or turned upside down.
    floor = MIN_SCALE_FRACTION * (var_y / var_x.clamp_min(1e-30)).sqrt()
    scale = torch.where(flat, scale, torch.maximum(scale, floor))
    return scale, mean_y - scale * mean_x


def _lowpass_correction(coarse, target, spread, sigma: float, size) -> torch.Tensor:
    # What the tile still disagrees with the global map about, smoothed with robust weights so that an edge the
    # coarse global map misplaces does not bleed into the sharp tile (normalised convolution).
    residual = (coarse - target)[:, None]
    weight = _cauchy(residual, spread)
    smooth = _gaussian_blur(weight * residual, sigma) / _gaussian_blur(weight, sigma).clamp_min(1e-6)
    return F.interpolate(smooth, size=size, mode="bilinear", align_corners=False)[:, 0]


def _gaussian_blur(values: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    values = F.pad(values, (radius, radius, 0, 0), mode="replicate")
    values = F.conv2d(values, kernel.view(1, 1, 1, -1))
    values = F.pad(values, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(values, kernel.view(1, 1, -1, 1))


# --------------------------------------------------------------------------------------------- step 2


class _ToneCurve:
    """Per tile: value -> polynomial of t = a * value + b on [0, 1], straight on beyond it, and a plane.

    For relative disparity the polynomial and the plane are in the global map's units and add; for metric depth
    (`scale_only`) the polynomial has no constant term and the plane is relative: it multiplies.
    """

    def __init__(self, coefficients, a, b, output_scale, plane, scale_only: bool):
        self.coefficients = coefficients.float()  # (N, degree + 1), t^0 first; t^0 is 0 for metric depth
        self.a, self.b = a.float(), b.float()  # (N,): value -> t
        self.output_scale = output_scale.float()  # (N,): the polynomial's unit in the global map's
        self.plane_coefficients = None if plane is None else plane.float()  # (N, 2): along u (x) and v (y)
        self.scale_only = scale_only

    @classmethod
    def line(cls, scale, shift, scale_only: bool) -> "_ToneCurve":
        """Step 1's fit as a curve: value -> scale * value + shift (t = value, a straight polynomial)."""
        ones, zeros = torch.ones_like(scale), torch.zeros_like(scale)
        return cls(torch.stack([shift, scale], dim=1), ones, zeros, ones, None, scale_only)

    def values(self, values: torch.Tensor) -> torch.Tensor:
        """The polynomial part at (N, h, w) values, Horner's scheme in float32."""
        c = self.coefficients.to(values.device)[:, :, None, None]  # (N, K, 1, 1)
        t = torch.addcmul(self.b.to(values.device)[:, None, None], values, self.a.to(values.device)[:, None, None])
        inside = t.clamp(0.0, 1.0)
        out = c[:, -1].expand_as(t)
        for k in range(c.shape[1] - 2, -1, -1):
            out = torch.addcmul(c[:, k], out, inside)
        # beyond the values the fit saw (a pole only the tile resolves): straight on with the end slope
        degrees = torch.arange(c.shape[1], dtype=c.dtype, device=c.device)[None, :, None, None]
        slope_low, slope_high = c[:, 1], (degrees * c).sum(dim=1)
        beyond = t - inside
        out = torch.addcmul(out, torch.where(beyond < 0, slope_low, slope_high), beyond)
        return out * self.output_scale.to(values.device)[:, None, None]

    def plane(self, size: tuple[int, int]) -> torch.Tensor:
        """The tilt over a (h, w) grid spanning each tile: (N, h, w), zeros without one."""
        count = self.coefficients.shape[0]
        if self.plane_coefficients is None:
            return torch.zeros(count, *size, device=self.coefficients.device)
        u, v = _positions(size, self.coefficients.device)
        p = self.plane_coefficients[:, :, None, None]
        return p[:, 0] * u.float() + p[:, 1] * v.float()

    def apply(self, values: torch.Tensor, slow: torch.Tensor) -> torch.Tensor:
        """values(values), plus (or, for metric depth, times 1 +) the slowly varying `slow`, enlarged to fit."""
        if slow.shape[-2:] != values.shape[-2:]:
            slow = F.interpolate(slow[:, None], size=values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        out = self.values(values)
        return out * (1.0 + slow) if self.scale_only else out + slow


def _positions(size, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres of a tile across [-0.5, 0.5], as (1, w) and (h, 1): the same at any resolution."""
    height, width = size
    v = (torch.arange(height, dtype=torch.float64, device=device) + 0.5) / height - 0.5
    u = (torch.arange(width, dtype=torch.float64, device=device) + 0.5) / width - 0.5
    return u[None, :], v[:, None]


def _fit_curve(tile, target, line: _ToneCurve, spread, fusion: Fusion, scale_only: bool) -> _ToneCurve:
    """Robust fit of a `_ToneCurve` to (N, gh, gw) samples of the raw tile against the global map.

    The tile's values are first put through step 1's `line`, then spread over t in [0, 1] (for metric depth
    [0, max]: zero stays zero). A curve that is not increasing over the fitted values (too little range to tell
    its shape) gives way to the straight line of step 1, without a tilt.
    """
    x = line.values(tile).double().flatten(1)
    y = target.double().flatten(1)
    count = x.shape[0]
    low = torch.zeros(count, dtype=x.dtype, device=x.device) if scale_only else x.amin(dim=1)
    span = (x.amax(dim=1) - low).clamp_min(1e-30)
    t = (x - low[:, None]) / span[:, None]
    first = 1 if scale_only else 0  # metric depth: no constant term
    columns = [t**k for k in range(first, fusion.curve + 1)]
    if fusion.tilt:
        u, v = (p.expand(tile.shape[-2:]).flatten()[None] for p in _positions(tile.shape[-2:], x.device))
        columns += [u * t, v * t] if scale_only else [u.expand_as(t), v.expand_as(t)]
    design = torch.stack(columns, dim=-1)  # (N, P, K)
    y_fit = y / span[:, None] if scale_only else y  # metric depth: in units of the span, like t
    ridge = torch.full((design.shape[-1],), 1e-9, dtype=x.dtype, device=x.device)  # never singular
    ridge[2 - first : fusion.curve + 1 - first] = CURVE_RIDGE  # the bends, not the line or the plane
    weight = _cauchy(x - y, spread)
    solved = torch.ones(count, dtype=torch.bool, device=x.device)
    for _ in range(ROBUST_ITERATIONS):
        weighted = design.transpose(1, 2) * weight[:, None, :]
        normal = weighted @ design + torch.diag_embed(ridge * weight.sum(dim=1, keepdim=True))
        coefficients, info = torch.linalg.solve_ex(normal, weighted @ y_fit[..., None])
        coefficients, solved = coefficients[..., 0].nan_to_num(0.0), solved & (info == 0)
        residual = (design @ coefficients[..., None])[..., 0] - y_fit
        weight = _cauchy(residual, _robust_spread(residual, 1e-12 + MIN_SPREAD * y_fit.std(dim=1)))
    polynomial = coefficients[:, : fusion.curve + 1 - first]
    if first:
        polynomial = torch.cat([torch.zeros_like(polynomial[:, :1]), polynomial], dim=1)
    # the curve's slope over the fitted values, against the straight line's (span; 1 for metric depth)
    grid = torch.linspace(0.0, 1.0, 33, dtype=x.dtype, device=x.device)
    slope = sum(k * polynomial[:, k, None] * grid ** (k - 1) for k in range(1, fusion.curve + 1))
    straight = torch.ones_like(span) if scale_only else span
    increasing = solved & (slope.amin(dim=1) >= MIN_CURVE_SLOPE * straight)
    # step 1's line in the same form: t -> low + span t (metric depth: t, in units of the span)
    straight_line = torch.zeros_like(polynomial)
    straight_line[:, 0], straight_line[:, 1] = (0.0, 1.0) if scale_only else (low, span)
    polynomial = torch.where(increasing[:, None], polynomial, straight_line)
    plane = None
    if fusion.tilt:
        plane = torch.where(increasing[:, None], coefficients[:, fusion.curve + 1 - first :], 0.0)
    # value -> t: t = (line(value) - low) / span, and line is scale * value + shift
    a = line.coefficients[:, 1].double() / span
    b = (line.coefficients[:, 0].double() - low) / span
    output_scale = span if scale_only else torch.ones_like(span)
    return _ToneCurve(polynomial, a, b, output_scale, plane, scale_only)


# --------------------------------------------------------------------------------------------- step 3


def _edge_width(fitted: torch.Tensor, fusion: Fusion) -> torch.Tensor:
    """Per tile (N, 1, 1): the depth step the field does not smooth across, a share of the tile's range."""
    levels = torch.tensor([0.02, 0.98], dtype=fitted.dtype, device=fitted.device)
    low, high = torch.quantile(fitted.flatten(1), levels, dim=1)
    return (fusion.edge * (high - low)).clamp_min(1e-30)[:, None, None]


def _field(fitted: torch.Tensor, target: torch.Tensor, edge: torch.Tensor, sigma: float, scale_only: bool):
    """What the fitted coarse tiles (N, gh, gw) still miss of the global map, smoothed edge-aware over `sigma`
    global-map pixels: an additive correction (for metric depth a relative one)."""
    if scale_only:
        residual = (target - fitted) / fitted.abs().clamp_min(1e-6 * float(target.abs().max()) + 1e-30)
    else:
        residual = target - fitted
    flat = residual.flatten(1)
    weight = _cauchy(residual, _robust_spread(flat, 1e-12 + MIN_SPREAD * flat.std(dim=1)).float())
    numerator, denominator = weight * residual, weight
    for dim in (-1, -2):
        numerator, denominator = _bilateral_pass(numerator, denominator, fitted, sigma, edge, dim)
    return numerator / denominator.clamp_min(1e-12)


def _enlarge_edge_aware(field, guide_coarse, guide, edge, floor: float = 1e-3) -> torch.Tensor:
    """The coarse `field` (N, gh, gw) at the resolution of `guide` (N, h, w): joint-bilateral upsampling.

    Each pixel weighs its four bilinear neighbours on the coarse grid by how close their `guide_coarse` value
    is to its own `guide` value (a Gaussian `edge` wide); `floor` keeps a pixel unlike all four (a wire thinner
    than a coarse sample) at their bilinear mean instead of dividing by nothing.
    """
    (height, width), (coarse_h, coarse_w) = guide.shape[-2:], field.shape[-2:]
    rows, cols = _bilinear_taps(height, coarse_h, guide.device), _bilinear_taps(width, coarse_w, guide.device)
    unit = edge * math.sqrt(2.0)  # exp(-(difference / unit)^2) is the value weight
    scaled = guide / unit
    numerator, denominator = torch.zeros_like(guide), torch.zeros_like(guide)
    for row_index, row_weight in rows:
        for col_index, col_weight in cols:
            neighbour = (guide_coarse[:, row_index][:, :, col_index] / unit).sub_(scaled).square_()
            kernel = neighbour.clamp_(max=40.0).neg_().exp_().add_(floor)
            kernel.mul_(row_weight[:, None] * col_weight[None, :])
            numerator.addcmul_(kernel, field[:, row_index][:, :, col_index])
            denominator.add_(kernel)
    return numerator.div_(denominator)


def _bilinear_taps(size: int, coarse: int, device) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """For each of `size` fine positions: its two coarse neighbours and their bilinear weights, as
    `F.interpolate(mode="bilinear", align_corners=False)` places them (edges clamped)."""
    position = ((torch.arange(size, device=device, dtype=torch.float32) + 0.5) * (coarse / size) - 0.5)
    position = position.clamp(0.0, coarse - 1)
    first = position.floor().long()
    second = (first + 1).clamp(max=coarse - 1)
    fraction = position - first
    return (first, 1.0 - fraction), (second, fraction)


def _bilateral_pass(numerator, denominator, guide, sigma: float, edge, dim: int):
    """One axis of a separable joint-bilateral filter of (N, gh, gw) sums: Gaussian in space (cut at 2 sigma),
    Gaussian in the guide's value (`edge` wide), so that nothing is averaged across a depth step of the guide.
    """
    radius = max(1, math.ceil(2 * sigma))
    length = guide.shape[dim]
    pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
    scaled = guide / (edge * math.sqrt(2.0))  # exp(-(difference of scaled)^2) is the value weight
    scaled_p = F.pad(scaled[:, None], pad, mode="replicate")[:, 0]
    numerator_p, denominator_p = F.pad(numerator, pad), F.pad(denominator, pad)  # zeros outside: no weight
    out_numerator, out_denominator = torch.zeros_like(numerator), torch.zeros_like(denominator)
    for offset in range(-radius, radius + 1):
        window = slice(radius + offset, radius + offset + length)
        index = (..., window) if dim == -1 else (..., window, slice(None))
        exponent = (scaled_p[index] - scaled).square_().add_(0.5 * (offset / sigma) ** 2)
        # capped: weights below e^-40 are nothing, and the denormal floats beyond would be slow to multiply
        kernel = exponent.clamp_(max=40.0).neg_().exp_()
        out_numerator.addcmul_(kernel, numerator_p[index])
        out_denominator.addcmul_(kernel, denominator_p[index])
    return out_numerator, out_denominator
