"""Training of the default model, kept apart from the library (as open_clip keeps `open_clip_train`):
degradations (`degrade`), prompt corpus (`prompts`), SwinFusion's loss (`losses`), the loop (`trainer`).
Nothing here is imported by `swinfuse` at startup."""
