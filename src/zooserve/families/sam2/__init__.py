"""SAM 2 video trackers (transformers `Sam2VideoModel`): `tracker` (sam2) streams the model as
transformers runs it; `memory_tracker` runs its step from the model's parts so that `samurai`
and `sam2long` choose the mask and the memory themselves; `inputs` checks prompts and frames."""
