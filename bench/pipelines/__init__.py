"""The pipelines compared, one module per family; each ``run_*`` returns a JSON-ready dict.

Every pipeline does the same per-image work (decode, random resized crop over 35-100 % of the area
with aspect ratio 3/4-4/3, antialiased or plain bilinear resize to 224x224, random horizontal
flip, uint8) in batches of 64; see ``bench/README.md`` for what each row measures.
"""
