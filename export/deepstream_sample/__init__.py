"""Files ``python -m export.deepstream`` copies into a DeepStream package (run on the device, not imported here)."""
