"""The base layer: project paths and the full-disk message (`paths`), shared validators
(`checks`), the stable hash and cache lookup (`cache`), crash-safe file writes (`files`),
float32 loss regions under autocast (`precision`). It imports nothing of the package above it."""
