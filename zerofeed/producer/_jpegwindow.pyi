import numpy as np

def decode_window(
    data: bytes, scale_num: int, x0: int, y0: int, width: int, height: int, out: np.ndarray, /
) -> None: ...
