"""Dataset tools behind `diptych data`: combine/split, pair builders, glyphs, checks and downloads."""
