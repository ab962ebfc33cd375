import numpy as np

def decode_window(
    data: bytes,
    scale_num: int,
    x0: int,
    y0: int,
    width: int,
    height: int,
    out: np.ndarray,
    entropy: int = 1,
    /,
) -> None: ...
def plain_jpeg_size(data: bytes, /) -> tuple[int, int] | None: ...
def decode_resized(
    data: bytes,
    scale_num: int,
    x0: int,
    y0: int,
    width: int,
    height: int,
    box: tuple[float, float, float, float],
    out: np.ndarray,
    out_width: int,
    out_height: int,
    hflip: bool,
    vflip: bool,
    widest: int = 2,
    entropy: int = 1,
    /,
) -> None: ...
