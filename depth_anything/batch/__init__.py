"""Batch depth for the `depth-anything` command: inputs, the image and video jobs, outputs and engines."""
