"""Diffusion models from a diffusers folder: the denoising UNet (unconditional or text-conditioned)
and the VAE's decoder, each as one ONNX graph with example inputs from the model's own config.

diffusers is an optional extra (`pip install 'edgeinfer[diffusion]'`). Weights are read from
safetensors only; a folder's `_class_name` picks the model class among the ones supported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinfer.core.errors import InputError, MissingDependencyError, UnsupportedError
from edgeinfer.exporters.source import SourceModel, is_diffusers_folder

# config.json `_class_name` -> what the graph takes and gives.
SUPPORTED = ("UNet2DModel", "UNet2DConditionModel", "AutoencoderKL")
__all__ = ["SUPPORTED", "is_diffusers_folder", "load_diffusers"]


def load_diffusers(path: Path, batch: tuple[int, int] = (2, 3)) -> SourceModel:
    """The model in a diffusers model folder as an export source."""
    import torch

    from edgeinfer.core.formats import read_json_object, read_safetensors_header

    path = Path(path)
    if (path / "model_index.json").is_file():
        raise UnsupportedError(
            f"{path} is a whole diffusers pipeline: export its models one by one (e.g. {path / 'unet'}, "
            f"{path / 'vae'}), each a folder of its own"
        )
    config = read_json_object(path / "config.json", "config")
    name = str(config.get("_class_name", ""))
    if name not in SUPPORTED:
        raise UnsupportedError(f"{path} holds a diffusers {name or 'model'}; edgeinfer exports {', '.join(SUPPORTED)}")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise InputError(f"{path} has no .safetensors weights; edgeinfer does not unpickle checkpoints")
    for file in weights:
        read_safetensors_header(file)
    try:
        import diffusers
    except ImportError as e:
        raise MissingDependencyError(
            "diffusers", "exporting diffusion models (pip install 'edgeinfer[diffusion]')"
        ) from e
    cls = getattr(diffusers, name)
    try:
        model = cls.from_pretrained(str(path), use_safetensors=True, local_files_only=True).eval()
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InputError(f"could not load {path} as a diffusers {name}: {first}") from None
    gen = torch.Generator().manual_seed(0)
    cfg: Any = model.config
    description = {"kind": "diffusers", "path": str(path.resolve()), "architecture": name, "model_type": name}

    def size_of(value) -> int:
        return int(value if isinstance(value, int) else value[0])

    if name == "AutoencoderKL":
        size = size_of(cfg.sample_size) // (2 ** (len(cfg.block_out_channels) - 1))

        class Decoder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.vae = model

            def forward(self, latent_sample):
                return (self.vae.decode(latent_sample).sample,)

        def latents(n: int) -> dict[str, Any]:
            return {"latent_sample": torch.randn(n, cfg.latent_channels, size, size, generator=gen)}

        return SourceModel(
            Decoder().eval(), ["latent_sample"], ["sample"], latents(batch[0]), latents(batch[1]),
            {"latent_sample": {0: "batch"}}, {**description, "part": "vae-decoder"}, task="vae-decoder",
        )  # fmt: skip

    size = size_of(cfg.sample_size)
    conditioned = name == "UNet2DConditionModel"

    class Denoiser(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = model

        def forward(self, sample, timestep, *context):
            kwargs = {"encoder_hidden_states": context[0]} if context else {}
            return (self.unet(sample, timestep, **kwargs).sample,)

    def inputs(n: int) -> dict[str, Any]:
        case = {
            "sample": torch.randn(n, cfg.in_channels, size, size, generator=gen),
            "timestep": torch.randint(0, 1000, (n,), generator=gen).float(),
        }
        if conditioned:
            case["encoder_hidden_states"] = torch.randn(n, 7, int(cfg.cross_attention_dim), generator=gen)
        return case

    names = ["sample", "timestep", *(["encoder_hidden_states"] if conditioned else [])]
    axes = {n: {0: "batch"} for n in names}
    # The noise prediction is called `sample` in diffusers, like the input: the graph says noise_pred.
    return SourceModel(
        Denoiser().eval(), names, ["noise_pred"], inputs(batch[0]), inputs(batch[1]), axes,
        {**description, "part": "unet"}, task="denoise",
    )  # fmt: skip
