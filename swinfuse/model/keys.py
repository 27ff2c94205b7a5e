"""State-dict key names of older module layouts, mapped to today's (as timm's `checkpoint_filter_fn`).

Both ways weights enter a model go through `remap_state_dict`: `load_checkpoint` (a safetensors file) and
`SwinFuse.load_state_dict` (a training state, or a warm start's weights). Standard library only, so the
network and the checkpoint code both import it without importing each other.
"""

from __future__ import annotations

from collections import OrderedDict

# Older key prefix -> today's, oldest first. `film.N.*`: the FiLM layers as the network's own modules, a layout
# shipped checkpoints and saved training states still have; today the decoder that applies them owns them
# (`decoder.film.N.*`).
LEGACY_PREFIXES = (("film.", "decoder.film."),)


def remap_state_dict(state):
    """A state dict of any layout swinfuse has written -> today's key names (same tensors, no copies).
    Returns `state` itself when nothing needs renaming; a key whose new name is already present is left as it
    is, so the key check reports it instead of one silently replacing the other."""
    renames = {}
    for key in state:
        for old, new in LEGACY_PREFIXES:
            if key.startswith(old) and new + key[len(old):] not in state:
                renames[key] = new + key[len(old):]
                break
    if not renames:
        return state
    out = type(state)() if isinstance(state, OrderedDict) else {}
    for key, value in state.items():
        out[renames.get(key, key)] = value
    metadata = getattr(state, "_metadata", None)  # nn.Module.state_dict's per-module versions
    if metadata is not None:
        out._metadata = type(metadata)()
        for key, value in metadata.items():
            for old, new in LEGACY_PREFIXES:
                stem = old.rstrip(".")
                if key == stem or key.startswith(old):
                    key = new.rstrip(".") + key[len(stem):]
                    break
            out._metadata[key] = value
    return out
