"""Tiny random-initialised diffusers pipelines built from configs, offline, as diffusers tests itself.

The VAEs have four blocks, so the pixel-to-latent factor is the real 8 (SD / SDXL) and sizes behave as with the
released models. ControlNets start with zero convolutions (a fresh ControlNet adds nothing); `wake_controlnet`
gives those layers random weights so that the control image really reaches the UNet.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxControlPipeline,
    FluxTransformer2DModel,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
    UNet2DConditionModel,
)

SD_TEXT_DIM = 32
SDXL_TEXT_DIM = 64
SDXL_POOLED_DIM = 32
SDXL_TIME_DIM = 8  # SDXL adds 6 time ids (original size, crop, target size), each embedded to this width


def wake_controlnet(controlnet: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights for the parameters a fresh ControlNet has at exactly zero (its zero convolutions)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in controlnet.parameters():
            if not param.any():
                param.copy_(1.0 * torch.randn(param.shape, generator=gen))
    return controlnet


def tiny_vae(latent_channels: int = 4, flux: bool = False) -> AutoencoderKL:
    torch.manual_seed(0)
    extra = {}
    if flux:
        extra = dict(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=2,
        **extra,
    )


def _sd_blocks() -> dict:
    return dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        norm_num_groups=4,
        attention_head_dim=2,
    )


def tiny_sd15_pipeline() -> StableDiffusionControlNetPipeline:
    """SD1.5 ControlNet pipeline without text encoder: call it with prompt_embeds (1, 8, 32)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=SD_TEXT_DIM, **_sd_blocks(),
    )
    torch.manual_seed(1)
    controlnet = ControlNetModel(
        in_channels=4, cross_attention_dim=SD_TEXT_DIM, conditioning_embedding_out_channels=(8, 8, 8, 8), **_sd_blocks()
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    return StableDiffusionControlNetPipeline(
        vae=tiny_vae(), text_encoder=None, tokenizer=None, unet=unet, controlnet=wake_controlnet(controlnet),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _sdxl_blocks() -> dict:
    return dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        norm_num_groups=4,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_DIM,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=SDXL_POOLED_DIM + 6 * SDXL_TIME_DIM,
        cross_attention_dim=SDXL_TEXT_DIM,
    )


def tiny_sdxl_pipeline() -> StableDiffusionXLControlNetPipeline:
    """SDXL ControlNet pipeline without text encoders: call it with prompt_embeds (1, 8, 64) and
    pooled_prompt_embeds (1, 32)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_sdxl_blocks(),
    )
    torch.manual_seed(1)
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(8, 8, 8, 8), **_sdxl_blocks())
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )
    return StableDiffusionXLControlNetPipeline(
        vae=tiny_vae(), text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=unet,
        controlnet=wake_controlnet(controlnet), scheduler=scheduler, add_watermarker=False,
    )


# ------------------------------------------------------------------------- complete pipelines saved to folders
# The example scripts load pipelines by name or folder, with their text encoders: these are saved copies with
# tiny tokenizers (a letters-only vocabulary) so that the scripts run end to end offline.


def _clip_parts(hidden: int, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(string.ascii_lowercase)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=hidden, bos_token_id=len(vocab) - 2,
        eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1,
    )
    torch.manual_seed(2)
    encoder = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()
    return tokenizer, encoder


def save_sd15(folder: Path) -> tuple[Path, Path]:
    """(base pipeline folder, ControlNet folder) of a complete tiny SD1.5 ControlNet pipeline."""
    pipe = tiny_sd15_pipeline()
    pipe.tokenizer, pipe.text_encoder = _clip_parts(SD_TEXT_DIM)
    pipe.register_modules(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder)
    pipe.save_pretrained(folder / "sd15")
    pipe.controlnet.save_pretrained(folder / "sd15-controlnet")
    return folder / "sd15", folder / "sd15-controlnet"


def save_sdxl(folder: Path) -> tuple[Path, Path]:
    """(base pipeline folder, ControlNet folder) of a complete tiny SDXL ControlNet pipeline."""
    pipe = tiny_sdxl_pipeline()
    # SDXL's prompt embedding is both encoders' hidden states side by side: 32 + 32 = 64.
    tokenizer, text_encoder = _clip_parts(SDXL_TEXT_DIM // 2)
    tokenizer_2, text_encoder_2 = _clip_parts(SDXL_POOLED_DIM, projection=True)
    pipe.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, tokenizer_2=tokenizer_2,
                          text_encoder_2=text_encoder_2)
    pipe.save_pretrained(folder / "sdxl")
    pipe.controlnet.save_pretrained(folder / "sdxl-controlnet")
    return folder / "sdxl", folder / "sdxl-controlnet"


def save_flux_control(folder: Path) -> Path:
    """A complete tiny FluxControlPipeline folder (CLIP + T5 text encoders, transformer with 2 x 4 input channels)."""
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    tokenizer, text_encoder = _clip_parts(32)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in string.ascii_lowercase + "▁"]
    tokenizer_2 = T5TokenizerFast(vocab=pieces, extra_ids=0)
    torch.manual_seed(3)
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=len(pieces), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                 decoder_start_token_id=0)
    ).eval()
    torch.manual_seed(4)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=8 * 4, out_channels=4 * 4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )
    pipe = FluxControlPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(latent_channels=4, flux=True),
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(folder / "flux-depth")
    return folder / "flux-depth"
