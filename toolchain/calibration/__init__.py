"""Calibration: windows of calibration text, per-linear input statistics, and the
sequential block-by-block pipeline that compression passes run inside."""
