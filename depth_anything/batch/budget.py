"""Memory a batch run may hold for images in flight, counted in bytes, not in images.

Counting images bounds nothing: six 9400 x 9400 PNGs of 280 KB each decode to 265 MB apiece, and a run that
reads a few ahead of the model, waits for batch-mates and writes behind it held them all at once (13.5 GB).
Each task reserves what its image will cost while it is in flight (estimated from the file's header before it
is read: `image_cost`) and gives it back when its outcome is recorded; a reservation that does not fit waits.
One image larger than the whole budget runs alone, so that any image can be processed.
"""

from __future__ import annotations

import os
import threading

DEFAULT_FRACTION = 4  # by default a run holds at most a quarter of the machine's memory in images ...
DEFAULT_CAP = 4 << 30  # ... and at most 4 GiB
DEFAULT_FLOOR = 1 << 30  # ... but at least 1 GiB

# Bytes per pixel an image costs from reading to writing, measured with benchmarks/memory.py (BENCHMARKS.md):
READ_BYTES = 7  # decoding: Pillow's 4-byte pixels and the 3-byte array made from them
PLANE_BYTES = 4  # the prepare stage: one float32 channel at a time
KEEP_BYTES = 3  # the decoded picture kept for a side-by-side output or for tiling
TILE_BYTES = 16  # tiling: the float image and the blended output
WRITE_BYTES = 12  # restore and condition: depth, its [0, 1] map and the picture written
SIDE_BY_SIDE_BYTES = 9  # side-by-side: the colour map and the joined picture


def default_budget() -> int:
    """A quarter of the machine's memory, between 1 and 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not every platform reports it
        return DEFAULT_FLOOR
    return max(DEFAULT_FLOOR, min(DEFAULT_CAP, total // DEFAULT_FRACTION))


def image_cost(height: int, width: int, *, side_by_side: bool, tiled: bool) -> int:
    """Estimated peak bytes of one image of height x width pixels on its way through a batch run."""
    per_pixel = READ_BYTES + PLANE_BYTES + WRITE_BYTES
    if side_by_side or tiled:
        per_pixel += KEEP_BYTES
    if side_by_side:
        per_pixel += SIDE_BY_SIDE_BYTES
    if tiled:
        per_pixel += TILE_BYTES
    return per_pixel * height * width


class MemoryBudget:
    """A byte count shared by threads: reserve before holding an image, release when done with it.

    Example:
        >>> budget = MemoryBudget(100)
        >>> budget.try_reserve(80), budget.try_reserve(30)
        (True, False)
        >>> budget.release(80); budget.try_reserve(30)
        True
    """

    def __init__(self, limit: int | None = None):
        self.limit = default_budget() if limit is None else int(limit)
        self.used = 0
        self.peak = 0
        self._changed = threading.Condition()

    def _fits(self, amount: int) -> bool:
        return self.used == 0 or self.used + amount <= self.limit  # alone, anything fits

    def try_reserve(self, amount: int) -> bool:
        """Reserve `amount` bytes if they fit now; False (nothing reserved) if not."""
        with self._changed:
            if not self._fits(amount):
                return False
            self.used += amount
            self.peak = max(self.peak, self.used)
            return True

    def reserve(self, amount: int) -> None:
        """Reserve `amount` bytes, waiting for releases until they fit."""
        with self._changed:
            self._changed.wait_for(lambda: self._fits(amount))
            self.used += amount
            self.peak = max(self.peak, self.used)

    def release(self, amount: int) -> None:
        with self._changed:
            self.used -= amount
            self._changed.notify_all()
