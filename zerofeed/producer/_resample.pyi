import numpy as np

def resize_into(
    src: np.ndarray,
    src_width: int,
    src_height: int,
    box: tuple[float, float, float, float],
    out: np.ndarray,
    out_width: int,
    out_height: int,
    hflip: bool,
    vflip: bool,
    widest: int = 2,
    /,
) -> None: ...
