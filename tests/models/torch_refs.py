"""Random tiny diffusers Wan models on CPU torch: the independent references for parity tests."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


def diffusers_dit(cfg, seed=0, scale=0.1):
    """A diffusers WanTransformer3DModel with cfg's sizes and every parameter random (biases,
    norms and modulation tables included, so nothing is checked against zeros or ones)."""
    torch.manual_seed(seed)
    model = diffusers.WanTransformer3DModel(
        patch_size=tuple(cfg.patch_size), num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads", eps=cfg.eps,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return model


def state_numpy(model):
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def run_diffusers_dit(model, x_bcthw, t_frames, context, tokens_per_frame):
    """Calls diffusers with per-token timesteps (B, L) expanded from per-frame (B, T)."""
    with torch.no_grad():
        t_tok = np.repeat(t_frames, tokens_per_frame, axis=1)
        y = model(torch.from_numpy(x_bcthw), torch.from_numpy(t_tok), torch.from_numpy(context), return_dict=False)[0]
    return y.numpy()


def diffusers_vae(cfg, seed=0):
    """A diffusers AutoencoderKLWan with cfg's sizes: convs keep torch's default init (so the signal
    stays in range through 20-odd layers), while every norm gain and bias is random."""
    torch.manual_seed(seed)
    model = diffusers.AutoencoderKLWan(
        base_dim=cfg.base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult), num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_downsample), latents_mean=list(cfg.latents_mean),
        latents_std=list(cfg.latents_std),
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


def run_diffusers_vae_encode(model, video_bthwc):
    """(B, T, H, W, 3) numpy -> (mean, logvar) as (B, t, h, w, z) numpy."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(video_bthwc.transpose(0, 4, 1, 2, 3)))
        dist = model.encode(x).latent_dist
        return (dist.mean.numpy().transpose(0, 2, 3, 4, 1), dist.logvar.numpy().transpose(0, 2, 3, 4, 1))


def run_diffusers_vae_decode(model, z_bthwc):
    with torch.no_grad():
        z = torch.from_numpy(np.ascontiguousarray(z_bthwc.transpose(0, 4, 1, 2, 3)))
        return model.decode(z).sample.numpy().transpose(0, 2, 3, 4, 1)
