"""Triton kernels for the selective scan, installed as autohm.kernels (never a top-level
`kernels` package: an unrelated PyPI project has that name): selective_scan (the differentiable
scan, dead channel blocks skipped) and state_update (one decoding step)."""
