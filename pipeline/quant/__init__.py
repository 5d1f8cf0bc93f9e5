"""Post-training quantisation (SPEC §4): storage schemes, rounding methods and compressors (three registries), the artifact format, size accounting."""
