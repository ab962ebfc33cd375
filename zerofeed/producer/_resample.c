/*
 * Pillow's antialiased bilinear resize, bit for bit, written straight into a batch slot (the
 * arithmetic is in _resample_core.h).
 *
 * resize_into(src, src_width, src_height, box, out, out_width, out_height, hflip, vflip[, widest])
 *   src:  C-contiguous RGBX (4 bytes a pixel) buffer of src_height x src_width pixels
 *   box:  (left, top, right, bottom) in source pixels, as Pillow's box (floats)
 *   out:  writable C-contiguous buffer of out_height x out_width x 3 bytes
 *   widest: the widest instructions the passes may use: 0 plain C, 1 SSE4.1 (horizontal pass),
 *           2 AVX2 (both passes; the default); each is used only where the CPU has it; lower
 *           values are for tests
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_resample_core.h"

static int resample(int widest, const uint8_t *src, int src_w, int src_h, const float box[4],
                    uint8_t *out, int out_w, int out_h, int hflip, int vflip) {
    resampler r;
    int status = resampler_init(&r, widest, src_w, src_h, box, out_w, out_h);
    if (status == 0) {
        for (int y = r.first; y < r.last; y++) resampler_feed(&r, y, src + (size_t)y * src_w * 4);
        resampler_finish(&r, out, hflip, vflip);
    }
    resampler_free(&r);
    return status;
}

static PyObject *resize_into(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer src, out;
    int src_w, src_h, out_w, out_h, hflip, vflip;
    float box[4];
    int widest = 2; /* 0: plain C, 1: up to SSE4.1, 2: up to AVX2 (for tests) */
    if (!PyArg_ParseTuple(args, "y*ii(ffff)w*iipp|i", &src, &src_w, &src_h, &box[0], &box[1],
                          &box[2], &box[3], &out, &out_w, &out_h, &hflip, &vflip, &widest))
        return NULL;
    PyObject *result = NULL;
    if (!PyBuffer_IsContiguous(&src, 'C') || src_w < 0 || src_h < 0 ||
        (size_t)src.len != (size_t)src_w * src_h * 4) {
        PyErr_Format(PyExc_TypeError, "src must be C-contiguous RGBX of %zu bytes, got %zd",
                     (size_t)src_w * src_h * 4, src.len);
    } else if (resize_args_ok(src_w, src_h, box, &out, out_w, out_h)) {
        int status;
        Py_BEGIN_ALLOW_THREADS
        status =
            resample(widest, src.buf, src_w, src_h, box, out.buf, out_w, out_h, hflip, vflip);
        Py_END_ALLOW_THREADS
        if (status == 0) {
            result = Py_None;
            Py_INCREF(result);
        } else {
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"resize_into", resize_into, METH_VARARGS,
     "resize_into(src, src_width, src_height, box, out, out_width, out_height, hflip, vflip"
     "[, widest]): "
     "Pillow's bilinear resize of an RGBX box into packed RGB, bit-exact."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample",
    "Pillow-exact antialiased bilinear resize into a caller's buffer (optional accelerator).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__resample(void) { return PyModule_Create(&module); }
