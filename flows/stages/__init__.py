"""The pipeline's stages, one module each: validate, synthesize, render, upload."""
