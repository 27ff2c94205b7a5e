"""SwinFuse: SwinFusion's encoders and cross-domain fusion, decoded under a text prompt (Text-IF).

    infrared -> shallow convs -> Ex stages (RSTB) ----\
                                                       CRSTB fusion stages -> concat -> conv = fused feature
    visible  -> shallow convs -> Ex stages (RSTB) ----/
    prompt -> text encoder -> (B, D) -> FiLM before every Re stage
    fused feature -> [FiLM -> RSTB] x Re stages -> conv (+ fused) -> reconstruction head -> image

With patch_size > 1 (`FusionConfig.halfres`) the Swin stages run on a grid patch_size times coarser: the
shallow convs stay at full resolution and a strided conv embeds their output; after the Re stages a conv and a
pixel shuffle bring the feature back up, where the two sources' shallow features, fused by a conv and
modulated by the prompt, add the full-resolution detail before the head.

With output 'mix' the head gives one channel more, the logit of a per-pixel weight w, and the fusion is
w * visible + (1 - w) * infrared + the head's residual; 'mix-fine' keeps only the residual's fine detail (less
its Gaussian blur), so the fusion's large scale is the mixture. With output 'mixed-base' the fusion is
mixed_base(infrared, visible, the whole frame's means) + the head's residual: a tiled frame gives every tile its
frame's means (`frame=`), so the tiles add up to the base of the whole frame.

Inputs are reflect-padded to a multiple of window * patch_size, outputs cropped to (H * upscale, W * upscale).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from swinfuse.errors import ConfigError, ShapeError
from swinfuse.model.blocks import CRSTB, RSTB
from swinfuse.model.config import MIXING_OUTPUTS, FusionConfig
from swinfuse.model.film import FiLM
from swinfuse.model.gate import REFERENCE_PROMPT, PromptGate
from swinfuse.model.heads import build_head
from swinfuse.model.keys import remap_state_dict
from swinfuse.model.light_import import light_import
from swinfuse.model.text import build_text_encoder

trunc_normal_ = light_import("timm.layers", "weight_init").trunc_normal_  # timm.layers' (without timm's __init__)


def _drop_path_rates(rate: float, depths: tuple[int, ...]) -> list[list[float]]:
    """Stochastic depth growing linearly over a group of stages, split per stage (SwinIR's schedule)."""
    rates = torch.linspace(0, rate, sum(depths)).tolist()
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out


def _stage_kwargs(cfg: FusionConfig) -> dict:
    return dict(window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, qk_scale=cfg.qk_scale,
                drop=cfg.drop_rate, attn_drop=cfg.attn_drop_rate, resi_connection=cfg.resi_connection,
                use_checkpoint=cfg.use_checkpoint)


class Encoder(nn.Module):
    """One modality: shallow convs, optional absolute position embedding, Ex stages, norm."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        C, p = cfg.embed_dim, cfg.patch_size
        shallow = C if p == 1 else cfg.detail_width
        self.conv_first = nn.Sequential(nn.Conv2d(cfg.in_chans, max(shallow // 2, 1), 3, 1, 1),
                                        nn.LeakyReLU(0.2, inplace=True),
                                        nn.Conv2d(max(shallow // 2, 1), shallow, 3, 1, 1))
        # patch_size > 1: a strided conv embeds p x p patches of the shallow feature (Swin's patch embedding)
        self.patch_embed = nn.Conv2d(shallow, C, p, p) if p > 1 else None
        self.patch_norm = nn.LayerNorm(C) if cfg.patch_norm else nn.Identity()
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, C, cfg.img_size, cfg.img_size)) if cfg.ape else None
        if self.absolute_pos_embed is not None:
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = _drop_path_rates(cfg.drop_path_rate, cfg.ex_depths)
        self.layers = nn.ModuleList(RSTB(C, d, h, drop_path=r, **_stage_kwargs(cfg))
                                    for d, h, r in zip(cfg.ex_depths, cfg.ex_num_heads, rates))
        self.norm = nn.LayerNorm(C)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, in_chans, Hp, Wp) -> tokens (B, Hp/p, Wp/p, C) and, for p > 1, the full-resolution shallow
        feature (B, detail_width, Hp, Wp) (else None)."""
        shallow = self.conv_first(x)  # (B, C or detail_width, Hp, Wp)
        x = shallow if self.patch_embed is None else self.patch_embed(shallow)  # (B, C, Hp/p, Wp/p)
        if self.absolute_pos_embed is not None:
            # Trained at img_size; other sizes get the embedding resized (inputs may be any size).
            x = x + F.interpolate(self.absolute_pos_embed, size=x.shape[-2:], mode="bicubic", align_corners=False)
        x = self.pos_drop(self.patch_norm(x.permute(0, 2, 3, 1)))  # (B, Hp, Wp, C)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x), (None if self.patch_embed is None else shallow)


class CrossFusion(nn.Module):
    """Fusion stages (CRSTB, both directions), then concat and a conv: the fused feature."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        C = cfg.embed_dim
        rates = _drop_path_rates(cfg.drop_path_rate, cfg.fusion_depths)
        self.layers = nn.ModuleList(CRSTB(C, d, h, drop_path=r, **_stage_kwargs(cfg))
                                    for d, h, r in zip(cfg.fusion_depths, cfg.fusion_num_heads, rates))
        self.norm_ir = nn.LayerNorm(C)
        self.norm_vis = nn.LayerNorm(C)
        self.reduce = nn.Conv2d(2 * C, C, 3, 1, 1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """2 x (B, Hp, Wp, C) -> (B, C, Hp, Wp)."""
        for layer in self.layers:
            ir, vis = layer(ir, vis)
        both = torch.cat([self.norm_ir(ir), self.norm_vis(vis)], dim=-1)  # (B, Hp, Wp, 2C)
        return self.reduce(both.permute(0, 3, 1, 2))  # (B, C, Hp, Wp)


class Decoder(nn.Module):
    """Re stages (each after its FiLM by the prompt), norm, conv with a residual to the fused feature, head."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        C = cfg.embed_dim
        # Built first, so the random draws and the parameter order (an optimizer state's) are the ones of the
        # network that owned them before (keys.remap_state_dict reads its `film.*` keys).
        self.film = nn.ModuleList(FiLM(cfg.text_dim, C) for _ in cfg.re_depths)
        rates = _drop_path_rates(cfg.drop_path_rate, cfg.re_depths)
        self.layers = nn.ModuleList(RSTB(C, d, h, drop_path=r, **_stage_kwargs(cfg))
                                    for d, h, r in zip(cfg.re_depths, cfg.re_num_heads, rates))
        self.norm = nn.LayerNorm(C)
        self.conv_after_body = nn.Conv2d(C, C, 3, 1, 1)
        p = cfg.patch_size
        if p > 1:  # back to full resolution, where the sources' shallow features add the detail
            Cd = cfg.detail_width
            self.unpatch = nn.Sequential(nn.Conv2d(C, Cd * p * p, 3, 1, 1), nn.PixelShuffle(p))
            self.detail = nn.Conv2d(2 * Cd, Cd, 3, 1, 1)
            self.detail_film = FiLM(cfg.text_dim, Cd)  # the prompt reaches the full-resolution path too
            C = Cd
        else:
            self.unpatch = self.detail = self.detail_film = None
        # 'mix' adds one channel: the logit of the visible source's weight (SwinFuse.forward)
        self.head = build_head(cfg.upsampler, C, cfg.in_chans + (cfg.output in MIXING_OUTPUTS), cfg.upscale)

    def forward(self, fused: torch.Tensor, text: torch.Tensor,
                shallow: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """fused: (B, C, h, w); text: (B, D); shallow: the two sources' full-resolution shallow features
        (patch_size > 1) -> (B, in_chans, Hp * upscale, Wp * upscale)."""
        x = fused.permute(0, 2, 3, 1)  # (B, h, w, C)
        for film, layer in zip(self.film, self.layers):
            x = layer(film(x, text))
        x = self.norm(x).permute(0, 3, 1, 2)  # (B, C, h, w)
        x = self.conv_after_body(x).add_(fused)
        if self.unpatch is not None:
            detail = self.detail(torch.cat(shallow, dim=1)).permute(0, 2, 3, 1)  # (B, Hp, Wp, Cd)
            detail = self.detail_film(detail, text).permute(0, 3, 1, 2)
            x = self.unpatch(x).add_(detail)  # (B, Cd, Hp, Wp)
        return self.head(x)


class SwinFuse(nn.Module):
    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        self.encoder_ir = Encoder(config)
        self.encoder_vis = Encoder(config)
        self.fusion = CrossFusion(config)
        self.text_encoder = build_text_encoder(config.text, config.text_dim)
        self.decoder = Decoder(config)
        self._prompt_cache: dict[str, torch.Tensor] = {}
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.startswith(("text_encoder", "decoder.film")):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Built after the init above (it starts open, gate.py) and after every other module, so a network
        # without it draws the same initial weights as before.
        self.gate = PromptGate(config.text_dim, config.embed_dim, config.in_chans) if config.prompt_gate else None
        self.last_gate: torch.Tensor | None = None  # (B, 1): the gate of the last forward (training reads it)

    # -- prompts ---------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str], cache: bool | None = None) -> torch.Tensor:
        """N prompts -> (N, D). Cached per distinct prompt unless training (gradients must reach the encoder)."""
        cache = (not self.training) if cache is None else cache
        if not cache:
            return self.text_encoder(list(prompts))
        missing = sorted({p for p in prompts if p not in self._prompt_cache})
        if missing:
            with torch.no_grad():
                for p, vec in zip(missing, self.text_encoder(missing)):
                    self._prompt_cache[p] = vec.detach()
        return torch.stack([self._prompt_cache[p] for p in prompts])  # (N, D)

    def train(self, mode: bool = True):
        self._prompt_cache.clear()  # the encoder may change while training
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, also for a state of the older layout (a training state, or a warm start's)."""
        self._prompt_cache.clear()
        return super().load_state_dict(remap_state_dict(state_dict), strict=strict, assign=assign)

    def _text(self, text, B: int) -> torch.Tensor:
        """Accept a prompt string, a list of B strings, or a (B, D) / (1, D) tensor; return (B, D)."""
        D = self.config.text_dim
        if isinstance(text, str):
            text = [text]
        if isinstance(text, (list, tuple)):
            if len(text) not in (1, B):
                raise ShapeError(f"got {len(text)} prompts for a batch of {B} images; give 1 or {B}")
            text = self.encode_prompts(list(text))
        if not isinstance(text, torch.Tensor):
            raise ShapeError(f"prompt must be a string, a list of strings or a (B, {D}) tensor, got {type(text).__name__}")
        if text.dim() == 1 and text.shape[0] == D:
            text = text.unsqueeze(0)  # (D,) -> (1, D)
        if text.dim() != 2 or text.shape[1] != D or text.shape[0] not in (1, B):
            hint = " (per-token features; pass the pooled embedding, e.g. model.encode_prompts)" if text.dim() == 3 else ""
            raise ShapeError(f"prompt embedding must have shape ({B}, {D}) or (1, {D}), "
                             f"got {tuple(text.shape)}{hint}")
        return text.expand(B, D)  # (B, D); a view when broadcasting one prompt

    # -- forward ---------------------------------------------------------------------------------------
    def _check_sources(self, ir: torch.Tensor, vis: torch.Tensor) -> None:
        c = self.config.in_chans
        if ir.dim() != 4 or ir.shape != vis.shape or ir.shape[1] != c:
            raise ShapeError(f"infrared and visible must both be (B, {c}, H, W); "
                             f"got {tuple(ir.shape)} and {tuple(vis.shape)}")

    def _encode(self, ir: torch.Tensor, vis: torch.Tensor):
        """Both sources scaled and padded to the window, and their encodings: (ir_x, vis_x, (ir_t, ir_shallow),
        (vis_t, vis_shallow))."""
        cfg = self.config
        _, _, H, W = ir.shape
        unit = cfg.pad_multiple
        pad_h, pad_w = (-H) % unit, (-W) % unit
        x = torch.cat([ir, vis], dim=0) * cfg.img_range  # (2B, in, H, W): one pad for both
        if pad_h or pad_w:
            # reflect needs the pad smaller than the side; tiny images fall back to replicate
            mode = "reflect" if pad_h < H and pad_w < W else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)  # (2B, in, Hp, Wp)
        ir_x, vis_x = x.chunk(2, dim=0)
        return ir_x, vis_x, self.encoder_ir(ir_x), self.encoder_vis(vis_x)

    def _reference(self, like: torch.Tensor) -> torch.Tensor:
        return self.encode_prompts([REFERENCE_PROMPT]).to(dtype=like.dtype, device=like.device)  # (1, D)

    def prompt_gate(self, ir: torch.Tensor, vis: torch.Tensor, text) -> torch.Tensor:
        """The gate alone (encoders and gate, no fusion or decoder): how much of the prompt's effect a forward of
        these sources would apply -> (B, 1). A frame fused in tiles computes it once (on a crop of the frame)
        and gives it to every tile's forward (`gate=`), so the tiles agree."""
        if self.gate is None:
            raise ConfigError("this model has no prompt gate (FusionConfig.prompt_gate is off)")
        self._check_sources(ir, vis)
        text = self._text(text, ir.shape[0]).to(dtype=ir.dtype, device=ir.device)
        ir_x, vis_x, (ir_t, _), (vis_t, _) = self._encode(ir, vis)
        return self.gate(ir_x, vis_x, ir_t, vis_t, text, self._reference(text))

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, text, gate: torch.Tensor | float | None = None,
                frame: torch.Tensor | None = None) -> torch.Tensor:
        """ir, vis: (B, in_chans, H, W) in [0, 1]; text: prompt(s) or (B|1, D) -> (B, in_chans, H*up, W*up).
        gate: the prompt gate's value to use instead of computing it from these sources ((B|1, 1) or a number;
        a model with a gate only). frame: output 'mixed-base' only, the whole frame's `frame_means` ((B|1, 3))
        when these sources are a tile or a crop of it; None: these sources' own."""
        cfg = self.config
        self._check_sources(ir, vis)
        B, _, H, W = ir.shape
        if cfg.output == "mixed-base":
            frame = frame_means(ir, vis) if frame is None else frame.to(ir).reshape(-1, 3).expand(B, 3)
        elif frame is not None:
            raise ConfigError(f"frame= is for output 'mixed-base'; this model's output is {cfg.output!r}")
        text = self._text(text, B).to(dtype=ir.dtype, device=ir.device)
        if gate is not None and self.gate is None:
            raise ConfigError("gate= was given but this model has no prompt gate (FusionConfig.prompt_gate is off)")
        ir_x, vis_x, (ir_t, ir_shallow), (vis_t, vis_shallow) = self._encode(ir, vis)
        if self.gate is not None:
            reference = self._reference(text)
            if gate is None:
                self.last_gate = self.gate(ir_x, vis_x, ir_t, vis_t, text, reference)  # (B, 1)
            else:
                self.last_gate = torch.as_tensor(gate, dtype=text.dtype, device=text.device).reshape(-1, 1).expand(B, 1)
            text = reference + self.last_gate.to(text.dtype) * (text - reference)
        fused = self.fusion(ir_t, vis_t)  # (B, C, Hp/p, Wp/p)
        shallow = None if ir_shallow is None else (ir_shallow, vis_shallow)
        out = self.decoder(fused, text, shallow)  # (B, in [+1], Hp*up, Wp*up)
        if cfg.output in MIXING_OUTPUTS:
            out = mix_sources(out, ir_x, vis_x, fine=cfg.output == "mix-fine")  # (B, in, Hp, Wp)
        elif cfg.output == "mixed-base":
            out = out + mixed_base(ir_x, vis_x, frame, gain=cfg.base_gain)  # the padding's is cropped below
        up = cfg.upscale
        return out[..., :H * up, :W * up] / cfg.img_range  # (B, in, H*up, W*up)


FINE_SIGMA = 4.0  # output 'mix-fine': the residual keeps what a Gaussian of this sigma removes


def gaussian_blur(x: torch.Tensor, sigma: float = FINE_SIGMA) -> torch.Tensor:
    """(B, C, H, W) blurred by a separable Gaussian (radius 3 sigma), edges replicated (any size)."""
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, K): one kernel per channel
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.transpose(2, 3), groups=x.shape[1])


BASE_SHARE, BASE_GAIN = 0.3, 0.7  # output 'mixed-base': the share of the deviations' term, and their gain
# (the gain's default; FusionConfig.base_gain sets a model's)


def frame_means(ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) sources -> (B, 3): each image's mean infrared, mean visible and mean max(infrared, visible),
    what mixed_base reads of the whole frame."""
    return torch.stack([ir.mean((1, 2, 3)), vis.mean((1, 2, 3)), torch.maximum(ir, vis).mean((1, 2, 3))], 1)


def mixed_base(ir: torch.Tensor, vis: torch.Tensor, means: torch.Tensor, share: float = BASE_SHARE,
               gain: float = BASE_GAIN) -> torch.Tensor:
    """The fixed fusion under output 'mixed-base': (1 - share) x the pixel-wise max moved to the brighter
    source's mean + share x (that mean + gain x both sources' deviations from their means), each clipped to
    [0, 1]; `means` (B, 3) as frame_means gives them for the whole frame. The max keeps each source where it is
    the brighter (information, MI); the deviations keep both sources' variation where one of them is brighter
    over a whole region (SCD); both sit at the brighter source's mean (tone). Scored as a fusion of whole frames
    it beats mean(visible, infrared) on all nine metrics of the three validation sets (docs/MODEL_CARD.md);
    the training target `--intensity-target mixed-frame` is this base of the clean sources."""
    m_ir, m_vis, m_max = (m.view(-1, 1, 1, 1) for m in means.to(ir).unbind(1))
    top = torch.maximum(m_ir, m_vis)
    matched = (torch.maximum(ir, vis) + (top - m_max)).clamp(0, 1)
    both = (top + gain * ((ir - m_ir) + (vis - m_vis))).clamp(0, 1)
    return (1 - share) * matched + share * both


def mix_sources(out: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, fine: bool = False) -> torch.Tensor:
    """out: the head's (B, in + 1, H, W), a residual and the visible weight's logit; ir, vis: (B, in, H, W) ->
    w * vis + (1 - w) * ir + residual, w = sigmoid(logit) (FusionConfig.output 'mix'); fine: the residual less
    its Gaussian blur ('mix-fine'), so the large scale is the sources' mixture alone."""
    residual, logit = out[:, :-1], out[:, -1:]
    if fine:
        residual = residual - gaussian_blur(residual)
    w = torch.sigmoid(logit)  # (B, 1, H, W)
    return torch.addcmul(ir + residual, w, vis - ir)


def compile_layer_norms(model: SwinFuse) -> int:
    """torch.compile the image path's LayerNorms in place (`--compile`); returns how many.

    Measured on the 2-core CPU at 480x640 (benchmarks/RESULTS.md, table 2): compiling the whole model makes
    the two-thread forward slower, while aten's LayerNorm over 16 channels is the largest single op (17-25 %)
    and compiling it alone makes the whole forward 10-14 % faster. The first forward compiles (seconds, a C++
    compiler is needed on CPU); shapes are dynamic, so other sizes reuse it. The text encoder runs once per
    prompt and is left alone."""
    import logging

    # Inductor loads torch.utils.cpp_extension, which warns on every CPU-only machine that no CUDA runtime
    # was found: noise on the CLI's stderr for a CPU compile.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and not name.startswith("text_encoder"):
            module.compile(dynamic=True)
            count += 1
    return count


def build_model(config: FusionConfig) -> SwinFuse:
    return SwinFuse(config)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per part, as `profile` reports them."""
    films = [model.decoder.film] + ([model.decoder.detail_film] if model.decoder.detail_film is not None else [])
    parts = {"infrared encoder": [model.encoder_ir], "visible encoder": [model.encoder_vis], "fusion": [model.fusion],
             "text encoder": [model.text_encoder], "FiLM": films, "decoder/head": [model.decoder]}
    if model.gate is not None:
        parts["prompt gate"] = [model.gate]
    counts = {name: sum(p.numel() for m in ms for p in m.parameters()) for name, ms in parts.items()}
    counts["decoder/head"] -= counts["FiLM"]  # the decoder owns the FiLM layers; reported apart, as before
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
