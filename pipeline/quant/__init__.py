"""Post-training quantisation (SPEC §4): per-row int6/int8, the artifact format, size accounting."""
