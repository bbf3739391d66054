"""The reference: Depth-Anything-3's own torch modules (the `depth-anything-3` package, installed
with `pip install --no-deps depth-anything-3 addict omegaconf`), built at our config's sizes with
random weights, on CPU in float32. Import only after `pytest.importorskip("depth_anything_3")`."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from depth_anything_3.model.cam_dec import CameraDec
from depth_anything_3.model.cam_enc import CameraEnc
from depth_anything_3.model.da3 import DepthAnything3Net
from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer
from depth_anything_3.model.dualdpt import DualDPT

CONFIGS = os.path.join(list(__import__("depth_anything_3").__path__)[0], "configs")


class SizedDinoV2(nn.Module):
    """The package's `DinoV2` wrapper (model/dinov2/dinov2.py) with free sizes instead of its
    four named ones; forward identical."""

    def __init__(self, cfg):
        super().__init__()
        self.out_layers = list(cfg.out_layers)
        self.pretrained = DinoVisionTransformer(
            img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
            num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, ffn_layer="mlp", alt_start=cfg.alt_start,
            qknorm_start=cfg.qknorm_start, rope_start=cfg.rope_start, cat_token=cfg.cat_token)

    def forward(self, x, **kwargs):
        return self.pretrained.get_intermediate_layers(x, self.out_layers, **kwargs)


def reference_model(cfg, seed: int = 0) -> DepthAnything3Net:
    """DepthAnything3Net at cfg's sizes, every parameter random (so LayerScale, norms, tokens and
    position table all matter), in eval mode."""
    torch.manual_seed(seed)
    model = DepthAnything3Net(
        net=SizedDinoV2(cfg),
        head=DualDPT(dim_in=cfg.feature_dim, output_dim=cfg.output_dim, features=cfg.head_features,
                     out_channels=list(cfg.head_out_channels)),
        cam_dec=CameraDec(dim_in=cfg.feature_dim),
        cam_enc=CameraEnc(dim_out=cfg.embed_dim, trunk_depth=cfg.cam_enc_depth, num_heads=cfg.cam_enc_heads))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "q_norm.weight", "k_norm.weight",
                              "token_norm.weight", "trunk_norm.weight", ".gamma")) or ("aux" in name and p.ndim == 1
                                                                                         and name.endswith("2.weight")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim <= 1 or name.endswith(("_token", "pos_embed")):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if "resize_layers.0" not in name and "resize_layers.1" not in name else p.shape[0]
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(fan_in))
    return model.eval()


def state_numpy(model: nn.Module) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def reference_variant(name: str) -> DepthAnything3Net:
    """The package's own DA3 model of a released size (configs/da3-<name>.yaml), random init."""
    from depth_anything_3.cfg import create_object, load_config

    return create_object(load_config(os.path.join(CONFIGS, f"da3-{name}.yaml")))
