"""Reading, pairing, streaming and writing images (standard library only here: the CLI imports it without numpy)."""

MAX_PIXELS = 100_000_000  # per image: three times 8K UHD (7680x4320, 33 Mpx), a quarter of a 20000x20000 bomb
