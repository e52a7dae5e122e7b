"""Stand-ins for ComfyUI core's video nodes (LoadVideo, GetVideoComponents, CreateVideo, SaveVideo) on a ComfyUI
that predates them (the tests' March-2024 server), so that the shipped newer-core workflow runs end to end.

Their inputs and outputs are read from scripts/comfyui_core_video_nodes.json, written from ComfyUI's public
source; the work is done with PyAV as core does it. A ComfyUI that has the real nodes keeps them: nothing is
registered under a name it knows.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import folder_paths
import nodes

DEFINITIONS = json.loads(
    (Path(__file__).resolve().parents[1] / "scripts" / "comfyui_core_video_nodes.json").read_text()
)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


class VideoFile:
    """A VIDEO from Load Video: a file, decoded when its components are asked for."""

    def __init__(self, path: str):
        self.path = path


class VideoComponents:
    """A VIDEO from Create Video: frames, frame rate and (optional) audio."""

    def __init__(self, images: torch.Tensor, fps: float, audio: dict | None):
        self.images, self.fps, self.audio = images, fps, audio


def _defined(name: str, function: str):
    """A node class skeleton with the public definition's inputs and outputs."""
    definition = DEFINITIONS[name]

    def decorate(cls):
        cls.CATEGORY = definition["category"]
        cls.FUNCTION = function
        cls.RETURN_TYPES = tuple(definition["output"])
        cls.RETURN_NAMES = tuple(definition["output_name"])
        cls.OUTPUT_NODE = definition["output_node"]
        if not hasattr(cls, "INPUT_TYPES"):
            cls.INPUT_TYPES = classmethod(lambda c: {k: {n: tuple(s) for n, s in v.items()}
                                                     for k, v in definition["input"].items()})
        return cls

    return decorate


@_defined("LoadVideo", "load")
class LoadVideo:
    @classmethod
    def INPUT_TYPES(cls):
        folder = folder_paths.get_input_directory()
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_SUFFIXES))
        options = DEFINITIONS["LoadVideo"]["input"]["required"]["file"][1]
        return {"required": {"file": (files, options)}}

    def load(self, file):
        return (VideoFile(folder_paths.get_annotated_filepath(file)),)


@_defined("GetVideoComponents", "components")
class GetVideoComponents:
    def components(self, video):
        if isinstance(video, VideoComponents):
            return video.images, video.audio, video.fps
        import av

        with av.open(video.path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        images = torch.from_numpy(np.stack(frames).astype(np.float32) / 255.0)
        audio = None
        with av.open(video.path) as container:
            if container.streams.audio:
                resampler = av.AudioResampler(format="fltp")  # planar float: (channels, samples) arrays
                planes = [r.to_ndarray() for f in container.decode(audio=0) for r in resampler.resample(f)]
                rate = container.streams.audio[0].codec_context.sample_rate
                waveform = torch.from_numpy(np.concatenate(planes, axis=1).astype(np.float32))[None]
                audio = {"waveform": waveform, "sample_rate": rate}
        return images, audio, fps


@_defined("CreateVideo", "create")
class CreateVideo:
    def create(self, images, fps, audio=None):
        return (VideoComponents(images, fps, audio),)


@_defined("SaveVideo", "save")
class SaveVideo:
    """Writes the frames as H.264 at the video's frame rate (the stand-in leaves the sound out)."""

    def save(self, video, filename_prefix, format, codec):
        import av

        if isinstance(video, VideoFile):
            video = VideoComponents(*GetVideoComponents().components(video)[::2], None)
        images = video.images
        count, height, width = images.shape[:3]
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height
        )
        name = f"{filename}_{counter:05}_.mp4"
        rate = Fraction(round(video.fps * 1000), 1000)
        with av.open(os.path.join(folder, name), "w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
            for image in images:
                array = (image[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                array = np.pad(array, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode(None))
        return {"ui": {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": (True,)}}


NODE_CLASS_MAPPINGS = {
    name: cls
    for name, cls in {"LoadVideo": LoadVideo, "GetVideoComponents": GetVideoComponents, "CreateVideo": CreateVideo,
                      "SaveVideo": SaveVideo}.items()
    if name not in nodes.NODE_CLASS_MAPPINGS
}
