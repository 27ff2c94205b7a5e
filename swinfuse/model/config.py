"""Model configuration: one frozen dataclass with SwinFusion's constructor parameters (snake_case) plus
the text side. It travels inside every checkpoint as JSON."""

from __future__ import annotations

import math

import dataclasses
import json
from dataclasses import dataclass, field

from swinfuse.errors import ConfigError

UPSAMPLERS = ("", "pixelshuffle", "pixelshuffledirect", "nearest+conv")
UPSCALES = (1, 2, 3, 4, 8)
PATCH_SIZES = (1, 2, 4)
OUTPUTS = ("direct", "mix", "mix-fine", "mixed-base")
MIXING_OUTPUTS = ("mix", "mix-fine")  # the outputs whose head gives a weight channel more
CLIP_RANDOM = "random"  # TextEncoderSpec.pretrained value that asks for an untrained CLIP on purpose


@dataclass(frozen=True)
class TextEncoderSpec:
    """Which text encoder turns a prompt into the (B, text_dim) vector.

    kind 'compact': open_clip's text tower at a small width (projected to the config's text_dim), trained
    with the fusion network, its weights inside the swinfuse checkpoint. kind 'clip': a frozen pretrained
    open_clip model, `model_name` + `pretrained`, where `pretrained` is one of the model's tags (such as
    'laion2b_s34b_b79k' or 'openai'; open_clip.list_pretrained_tags_by_model(model_name)) or a local weights
    file. It may not be empty: an empty value used to build a random 63 M-parameter encoder without a word.
    `pretrained='random'` (CLIP_RANDOM) asks for that on purpose (tests, speed measurements): untrained
    weights drawn from a fixed seed, so a checkpoint trained with it rebuilds the same encoder. A weights
    file literally named 'random' is given as './random'.

    Every check is made when the spec is built (the constructor, `parse`, `from_json`, a checkpoint's
    config), so each entry point refuses a bad spec with a one-line ConfigError.
    """

    kind: str = "compact"
    model_name: str = ""
    pretrained: str = ""
    width: int = 64
    layers: int = 2
    heads: int = 4
    context_length: int = 32

    def __post_init__(self):
        if self.kind not in ("compact", "clip"):
            raise ConfigError(f"text encoder kind must be 'compact' or 'clip', got {self.kind!r}")
        if self.kind == "compact":
            if self.width % self.heads:
                raise ConfigError(f"text width {self.width} is not divisible by text heads {self.heads}")
            if not 2 <= self.context_length <= 77:
                raise ConfigError(f"text context_length must be in 2..77, got {self.context_length}")
        else:
            if not self.model_name.strip():
                raise ConfigError("a 'clip' text encoder needs model_name (e.g. 'ViT-B-32')")
            if not self.pretrained.strip():
                raise ConfigError(
                    f"the CLIP text encoder {self.model_name} needs pretrained weights: a tag such as "
                    f"'laion2b_s34b_b79k' or 'openai' (open_clip.list_pretrained_tags_by_model), or a local "
                    f"weights file; '{CLIP_RANDOM}' builds it untrained on purpose")

    @classmethod
    def parse(cls, value: str) -> "TextEncoderSpec":
        """A frozen CLIP text encoder as a command line gives it: 'MODEL:TAG' ('ViT-B-32:laion2b_s34b_b79k'),
        'MODEL:FILE' ('ViT-B-32:/models/clip.safetensors') or 'MODEL:random'. Split at the first ':', so a
        file path may hold colons. Raises a one-line ConfigError naming what to give."""
        model_name, sep, pretrained = str(value).strip().partition(":")
        if not sep or not model_name.strip():
            raise ConfigError(f"a CLIP text encoder is MODEL:TAG or MODEL:FILE (e.g. 'ViT-B-32:laion2b_s34b_b79k', "
                              f"'ViT-B-32:/path/clip.safetensors', or 'ViT-B-32:{CLIP_RANDOM}' for untrained "
                              f"weights), got {value!r}")
        return cls(kind="clip", model_name=model_name.strip(), pretrained=pretrained.strip())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TextEncoderSpec":
        return cls(**json.loads(text))


@dataclass(frozen=True)
class FusionConfig:
    img_size: int = 64  # training patch size; any size runs (inputs are padded to the window)
    patch_size: int = 1
    in_chans: int = 1
    embed_dim: int = 60
    ex_depths: tuple[int, ...] = (4,)
    fusion_depths: tuple[int, ...] = (2, 2)
    re_depths: tuple[int, ...] = (4,)
    ex_num_heads: tuple[int, ...] = (6,)
    fusion_num_heads: tuple[int, ...] = (6, 6)
    re_num_heads: tuple[int, ...] = (6,)
    window_size: int = 8
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None  # None: head_dim ** -0.5
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    norm_layer: str = "layernorm"
    ape: bool = False
    patch_norm: bool = True
    use_checkpoint: bool = False  # gradient checkpointing in training; inactive under inference
    upscale: int = 1
    img_range: float = 1.0
    upsampler: str = ""
    resi_connection: str = "1conv"
    text_dim: int = 64  # length of the prompt vector the FiLM layers receive
    # Width of the full-resolution convolutional path when patch_size > 1 (shallow features, detail fusion,
    # the head); 0: embed_dim // 2. Unused at patch_size 1, where everything runs at full resolution.
    detail_dim: int = 0
    # A gate that reads both sources and scales how much of the prompt's effect the decoder gets (gate.py):
    # a prompt naming a degradation the images do not have can then leave the fusion neutral.
    prompt_gate: bool = False
    # What the reconstruction head gives. 'direct': the fused image (SwinFusion). 'mix': a per-pixel weight w
    # (a sigmoid) and a residual r, the fusion w * visible + (1 - w) * infrared + r: at every scale the output
    # starts from a mixture of the sources, whatever the network has learned of their cameras. 'mix-fine': the
    # same with the residual's large scale (its Gaussian blur, sigma 4) removed, so the large scale is the mixture.
    # 'mixed-base': the head's residual over a fixed fusion of the sources read with the whole frame's means
    # (network.mixed_base), which a windowed network cannot see: the frame's tone and large-scale mixing come
    # with the base, the network adds detail and restoration.
    output: str = "direct"
    # 'mixed-base': the gain of both sources' deviations in the base's second term (network.mixed_base)
    base_gain: float = 0.7
    text: TextEncoderSpec = field(default_factory=TextEncoderSpec)

    def __post_init__(self):
        for name in ("ex_depths", "fusion_depths", "re_depths", "ex_num_heads", "fusion_num_heads", "re_num_heads"):
            value = getattr(self, name)
            if isinstance(value, list):  # JSON gives lists; keep the dataclass hashable
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", TextEncoderSpec(**self.text))
        for depths, heads in (("ex_depths", "ex_num_heads"), ("fusion_depths", "fusion_num_heads"),
                              ("re_depths", "re_num_heads")):
            if len(getattr(self, depths)) != len(getattr(self, heads)):
                raise ConfigError(f"{depths}={getattr(self, depths)} and {heads}={getattr(self, heads)} "
                                  "must have the same length")
            if any(d < 1 for d in getattr(self, depths)):
                raise ConfigError(f"{depths} entries must be >= 1, got {getattr(self, depths)}")
            for h in getattr(self, heads):
                if h < 1 or self.embed_dim % h:
                    raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by {heads} entry {h}")
        if self.embed_dim < 1:
            raise ConfigError(f"embed_dim must be >= 1, got {self.embed_dim}")
        if self.window_size < 2:
            raise ConfigError(f"window_size must be >= 2, got {self.window_size}")
        if self.patch_size not in PATCH_SIZES:
            raise ConfigError(f"patch_size must be one of {PATCH_SIZES} (1: every Swin stage at full resolution, "
                              f"as SwinFusion; 2 or 4: a strided patch embedding), got {self.patch_size}")
        if self.detail_dim < 0:
            raise ConfigError(f"detail_dim must be >= 0 (0: embed_dim // 2), got {self.detail_dim}")
        if self.in_chans < 1:
            raise ConfigError(f"in_chans must be >= 1, got {self.in_chans}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.norm_layer not in ("layernorm",):
            raise ConfigError(f"norm_layer must be 'layernorm', got {self.norm_layer!r}")
        if self.upsampler not in UPSAMPLERS:
            raise ConfigError(f"upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}")
        if self.upscale not in UPSCALES:
            raise ConfigError(f"upscale must be one of {UPSCALES}, got {self.upscale}")
        if self.upsampler == "" and self.upscale != 1:
            raise ConfigError(f"upsampler '' (three convs) keeps the size: upscale must be 1, got {self.upscale}")
        if self.upsampler == "pixelshuffle" and self.upscale not in (2, 3, 4, 8):
            raise ConfigError(f"upsampler 'pixelshuffle' needs upscale 2, 3, 4 or 8, got {self.upscale}")
        if self.upsampler == "nearest+conv" and self.upscale not in (2, 4, 8):
            raise ConfigError(f"upsampler 'nearest+conv' needs upscale 2, 4 or 8, got {self.upscale}")
        if self.resi_connection not in ("1conv", "3conv"):
            raise ConfigError(f"resi_connection must be '1conv' or '3conv', got {self.resi_connection!r}")
        if self.resi_connection == "3conv" and self.embed_dim < 4:
            raise ConfigError(f"resi_connection '3conv' needs embed_dim >= 4, got {self.embed_dim}")
        if self.img_range <= 0:
            raise ConfigError(f"img_range must be > 0, got {self.img_range}")
        if self.text_dim < 1:
            raise ConfigError(f"text_dim must be >= 1, got {self.text_dim}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if not (math.isfinite(self.base_gain) and 0 <= self.base_gain <= 2):
            raise ConfigError(f"base_gain must be in [0, 2], got {self.base_gain}")
        if self.output != "direct" and self.upscale != 1:
            raise ConfigError(f"output {self.output!r} mixes the sources at their size: upscale must be 1, got {self.upscale}")

    @property
    def detail_width(self) -> int:
        """Channels of the full-resolution path (patch_size > 1)."""
        return self.detail_dim or max(self.embed_dim // 2, 1)

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to a multiple of this: one window of the (possibly strided) Swin stages."""
        return self.window_size * self.patch_size

    # Named presets play timm's @register_model role.
    @classmethod
    def smoke(cls, **overrides) -> "FusionConfig":
        """The 64x64 profile configuration researchers smoke-test with (DESIGN.md)."""
        base = cls(img_size=64, window_size=4, embed_dim=8, ex_depths=(1,), fusion_depths=(1,), re_depths=(1,),
                   ex_num_heads=(1,), fusion_num_heads=(1,), re_num_heads=(1,), mlp_ratio=1.0, upscale=2,
                   upsampler="pixelshuffledirect", use_checkpoint=True, text_dim=32,
                   text=TextEncoderSpec(width=32, layers=1, heads=2, context_length=32))
        return dataclasses.replace(base, **overrides)

    @classmethod
    def default(cls, **overrides) -> "FusionConfig":
        """The previous default's layout (every Swin stage at full resolution), sized for CPUs: a 480x640 pair in a few seconds on 2 cores, trainable in an hour.
        Two Re stages so the prompt modulates the decoder twice (Text-IF modulates every decoder level).
        One head of 16 channels rather than two of 8: the same weights but the position-bias tables, and a
        1.5x faster forward on CPU (a K=8 attention reduction cannot feed the FMA units; benchmarks/RESULTS.md)."""
        base = cls(img_size=64, window_size=8, embed_dim=16, ex_depths=(2,), fusion_depths=(2,), re_depths=(2, 2),
                   ex_num_heads=(1,), fusion_num_heads=(1,), re_num_heads=(1, 1), mlp_ratio=2.0, upscale=1,
                   upsampler="", drop_path_rate=0.0, text_dim=64, text=TextEncoderSpec())
        return dataclasses.replace(base, **overrides)

    @classmethod
    def halfres(cls, **overrides) -> "FusionConfig":
        """Swin stages at half resolution (a 2x2 strided patch embedding) at twice the default's width, with a
        full-resolution convolutional path for detail: a quarter of the tokens buys the width at less time
        than the default's full-resolution stages (benchmarks/RESULTS.md)."""
        base = cls.default(patch_size=2, embed_dim=32, ex_num_heads=(2,), fusion_num_heads=(2,),
                           re_num_heads=(2, 2), detail_dim=16)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def swinfusion(cls, **overrides) -> "FusionConfig":
        """SwinFusion's own test configuration (embed_dim 60, window 8, depths [4] [2,2] [4], 6 heads)."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> "FusionConfig":
        presets = {"smoke": cls.smoke, "default": cls.default, "halfres": cls.halfres, "swinfusion": cls.swinfusion}
        if name not in presets:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name](**overrides)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FusionConfig":
        try:
            data = json.loads(text)
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ConfigError(f"config has unknown fields {unknown}")
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"config JSON cannot be read: {exc}") from None

PRESETS = ("smoke", "default", "halfres", "swinfusion")
