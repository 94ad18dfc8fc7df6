"""Data sets Magpie learns from and loads: MovieLens-100k and a generated e-commerce world."""
