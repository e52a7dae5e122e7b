"""Model families as data behind one small interface, and the registry the loader, nodes and CLI read.

A family says how its checkpoints are recognised (file names, config.json, the state dict's layout), which
checkpoints are released (known names that download, with their licences), its pre-processing rule, what its
output is (disparity, relative depth or metric depth) and how to build its network from a state dict.

Adding a family means one new module in this package that defines a `ModelFamily` (usually a subclass) and
calls `register_family`, plus its name in `BUILTIN` below. Nothing in the nodes, the command line or the
diffusers detector changes: they list `FAMILIES` and `known_models()` and call the stages.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..conditioning import OUTPUT_KINDS
from ..configs import KnownModel
from ..transforms import Preprocessing

if TYPE_CHECKING:
    import torch

    from ..loading import Checkpoint
    from ..model import DepthModel

BUILTIN = ("depth_anything_3", "video_depth_anything", "depth_anything")  # modules of this package that register families, in priority order


class ModelFamily:
    """One model family. Subclasses override what differs; instances are registered with `register_family`.

    Attributes:
        name: the family's id ("v2"), used by `family=` options.
        description: one line for lists and errors.
        output_kind: "disparity", "relative_depth" or "metric_depth" (see `depth_anything.conditioning`).
        preprocessing: the family's official pre-processing rule.
        known_models: released checkpoints `from_pretrained` fetches by name.
        aliases: other spellings accepted for `name` ("hypersim", "metric indoor", ...).
        layout: the state-dict layout; families sharing one cannot be told apart by their weights alone.
        name_pattern: a regular expression a checkpoint's file or folder name matches when it is this family.
        max_depth: metres at the top of a metric model's output range (None for relative families).
        temporal: the network sees clips, not single frames (`DepthModel.infer_video` runs its own windows);
            surfaces route videos and frame batches of such a family to `infer_video`.
        uses_focal_length: the output's scale depends on the camera's focal length (`focal_px` options).
    """

    name: str = ""
    description: str = ""
    output_kind: str = "disparity"
    preprocessing: Preprocessing = Preprocessing()
    known_models: tuple[KnownModel, ...] = ()
    aliases: tuple[str, ...] = ()
    layout: str = ""
    name_pattern: str | None = None
    max_depth: float | None = None
    temporal: bool = False
    uses_focal_length: bool = False

    @property
    def is_metric(self) -> bool:
        return self.output_kind == "metric_depth"

    def matches_name(self, name: str) -> bool:
        """Whether a checkpoint's file or folder name says it is this family."""
        if self.name_pattern is None:
            return False
        return re.search(self.name_pattern, name.lower().replace("-", "_")) is not None

    def matches_config(self, config: dict) -> bool:
        """Whether a checkpoint folder's config.json says it is this family."""
        return False

    def matches_layout(self, keys: Iterable[str]) -> bool:
        """Whether a state dict with these keys has this family's layout."""
        return False

    def build(self, checkpoint: "Checkpoint", dtype: "torch.dtype") -> "DepthModel":
        """The network with the checkpoint's weights, on the CPU in `dtype`; strict (see `loading.load_weights`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<ModelFamily {self.name}: {self.description}>"


FAMILIES: dict[str, ModelFamily] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def register_family(family: ModelFamily) -> ModelFamily:
    """Add `family` to the registry (its name and aliases must be new); returns it."""
    if family.output_kind not in OUTPUT_KINDS:
        raise ValueError(f"family {family.name!r}: output_kind must be one of {OUTPUT_KINDS}")
    for alias in (family.name, *family.aliases):
        if _key(alias) in _ALIASES:
            raise ValueError(f"family name {alias!r} is registered already")
        _ALIASES[_key(alias)] = family.name
    FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove a family (and its aliases) from the registry, e.g. a plug-in's or a test's."""
    family = FAMILIES.pop(name)
    for alias in (family.name, *family.aliases):
        _ALIASES.pop(_key(alias), None)


def get_family(name: str | ModelFamily) -> ModelFamily:
    """The family for a name or alias ("v1", "v2", "metric_indoor", "hypersim", "metric indoor", ...)."""
    if isinstance(name, ModelFamily):
        return name
    key = _ALIASES.get(_key(name))
    if key is None:
        raise ValueError(f"Unknown model family {name!r}. Use one of: {family_choices()}.")
    return FAMILIES[key]


def family_choices() -> str:
    """The family names for messages, with what each is."""
    return ", ".join(f"{f.name} ({f.description})" for f in FAMILIES.values())


def family_from_name(name: str) -> ModelFamily | None:
    """The family a checkpoint's file or folder name tells (the first in priority order), or None."""
    return next((f for f in FAMILIES.values() if f.matches_name(name)), None)


def family_from_config(config: dict) -> ModelFamily | None:
    """The family a config.json tells, or None."""
    return next((f for f in FAMILIES.values() if f.matches_config(config)), None)


def families_with_layout(keys: Iterable[str]) -> list[ModelFamily]:
    """Every family whose state-dict layout fits these keys."""
    keys = list(keys)
    return [f for f in FAMILIES.values() if f.matches_layout(keys)]


def known_models() -> dict[str, KnownModel]:
    """Every released checkpoint of every family, by name."""
    return {m.name: m for family in FAMILIES.values() for m in family.known_models}


for _module in BUILTIN:
    importlib.import_module(f"{__name__}.{_module}")
