import numpy as np

def decode_resized(
    data: bytes,
    box: tuple[float, float, float, float],
    out: np.ndarray,
    out_width: int,
    out_height: int,
    hflip: bool,
    vflip: bool,
    widest: int = 2,
    /,
) -> bool: ...
