"""TEST-ONLY PyTorch twin of TAEHV (madebyollin/taehv, `taehv.py`), written from its public source's
description to check `star_jax.models.taehv` against: NCHW, `nn.Sequential` encoder / decoder with
the published module indices (so its `state_dict()` has the published names), the reference's
"parallel" application (all frames at once, each MemBlock reading the frame before, zeros first),
its output trim (the first t_upscale - 1 frames) and clamp to [0, 1], and its `patch_tgrow_layers`
(a checkpoint's TGrow conv with more output channels than the model keeps the last ones).
Widths are parameters so that tests can build small twins; the published base variant only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(n_in, n_out, **kw):
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in * 2, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x, past):
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    def __init__(self, n_f, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f * stride, n_f, 1, bias=False)

    def forward(self, x):
        _, c, h, w = x.shape
        return self.conv(x.reshape(-1, self.stride * c, h, w))


class TGrow(nn.Module):
    def __init__(self, n_f, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x):
        _, c, h, w = x.shape
        return self.conv(x).reshape(-1, c, h, w)


def apply_parallel(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """x (N, T, C, H, W) through the blocks, all timesteps at once -> (N, T', C', H', W')."""
    n, t, c, h, w = x.shape
    x = x.reshape(n * t, c, h, w)
    for b in model:
        if isinstance(b, MemBlock):
            nt, c, h, w = x.shape
            _x = x.reshape(n, nt // n, c, h, w)
            past = F.pad(_x, (0, 0, 0, 0, 0, 0, 1, 0))[:, : nt // n].reshape(x.shape)
            x = b(x, past)
        else:
            x = b(x)
    nt, c, h, w = x.shape
    return x.view(n, nt // n, c, h, w)


class TAEHVTwin(nn.Module):
    def __init__(self, latent_channels=16, enc_width=64, dec_widths=(256, 128, 64, 64),
                 encoder_time_downscale=(True, True, False), decoder_time_upscale=(False, True, True),
                 decoder_space_upscale=(True, True, True)):
        super().__init__()
        c = enc_width
        enc = [conv(3, c), nn.ReLU()]
        for down in encoder_time_downscale:
            enc += [TPool(c, 2 if down else 1), conv(c, c, stride=2, bias=False), MemBlock(c, c), MemBlock(c, c),
                    MemBlock(c, c)]
        self.encoder = nn.Sequential(*enc, conv(c, latent_channels))
        f = dec_widths
        dec = [Clamp(), conv(latent_channels, f[0]), nn.ReLU()]
        for i in range(3):
            dec += [MemBlock(f[i], f[i]), MemBlock(f[i], f[i]), MemBlock(f[i], f[i]),
                    nn.Upsample(scale_factor=2 if decoder_space_upscale[i] else 1),
                    TGrow(f[i], 2 if decoder_time_upscale[i] else 1), conv(f[i], f[i + 1], bias=False)]
        self.decoder = nn.Sequential(*dec, nn.ReLU(), conv(f[3], 3))
        self.t_downscale = 2 ** sum(encoder_time_downscale)
        self.frames_to_trim = 2 ** sum(decoder_time_upscale) - 1

    def patch_tgrow_layers(self, sd: dict) -> dict:
        new_sd = self.state_dict()
        for i, layer in enumerate(self.decoder):
            if isinstance(layer, TGrow):
                key = f"decoder.{i}.conv.weight"
                if sd[key].shape[0] > new_sd[key].shape[0]:
                    sd[key] = sd[key][-new_sd[key].shape[0]:]
        return sd

    def encode_video(self, x):
        """x (N, T, 3, H, W) in [0, 1] -> latents (N, ceil(T / 4), z, H/8, W/8)."""
        if x.shape[1] % self.t_downscale:
            pad = self.t_downscale - x.shape[1] % self.t_downscale
            x = torch.cat([x, x[:, -1:].repeat_interleave(pad, dim=1)], 1)
        return apply_parallel(self.encoder, x)

    def decode_video(self, x):
        """latents (N, T, z, h, w) -> frames (N, 4T - 3, 3, 8h, 8w) in [0, 1]."""
        return apply_parallel(self.decoder, x).clamp(0, 1)[:, self.frames_to_trim:]
