"""The LightGBM second stage: features of the hybrid candidates and the served booster (no torch needed)."""
