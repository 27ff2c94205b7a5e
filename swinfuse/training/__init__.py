"""Training of the default model, kept apart from the library (as open_clip keeps `open_clip_train`):
the loop (`trainer`) over its options and result (`args`), samples (`sampling`: folders and augmentation;
`batches`: degraded, prompted batches and validation sets), degradations (`degrade`), the prompt corpus
(`prompts`), SwinFusion's loss (`losses`), optimizer and schedule (`schedule`), validation (`validation`),
resume state and warm start (`state`), checkpoint provenance (`provenance`) and torchrun (`distributed`).
`swinfuse.train` (api.train) is the entry. Nothing here is imported by `swinfuse` at startup."""
