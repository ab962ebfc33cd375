/*
 * Decode only a window of a JPEG, at a DCT scale of M/8, straight into a caller's RGBX buffer.
 *
 * libjpeg-turbo can skip most of the work outside a window: rows after it are never read, rows
 * before it are entropy-decoded but not transformed (jpeg_skip_scanlines), and only the iMCU
 * columns that cover it are transformed, upsampled and colour-converted (jpeg_crop_scanline).
 * A DCT scale of M/8 (scale_num = M) shrinks the image inside the inverse DCT, before any pixel
 * exists. The pixels equal those of a full decode at the same scale (the Python side checks this
 * in tests); two extra columns each side keep the chroma upsampling context of a full decode.
 *
 * plain_jpeg_size(data) -> (width, height) | None
 *   the size of a colour JPEG whose header needs nothing from Pillow (no EXIF/XMP orientation,
 *   not a multi-picture file), so a producer can crop and decode it without opening it in Pillow
 *
 * decode_window(data, scale_num, x0, y0, width, height, out) -> None
 *   data:      the JPEG file (any buffer)
 *   scale_num: 1..8, decode at scale_num/8 of the stored size
 *   x0, y0, width, height: the window, in pixels of the scaled image (within it)
 *   out:       writable C-contiguous buffer of exactly height * width * 4 bytes (RGBX)
 * Raises ValueError for corrupt data (libjpeg's message), including data libjpeg would only warn
 * about, and for a window outside the scaled image; TypeError for a wrong-size buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
    int warned;
} window_error_mgr;

static void on_error_exit(j_common_ptr cinfo) {
    window_error_mgr *err = (window_error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->escape, 1);
}

static void on_emit_message(j_common_ptr cinfo, int level) {
    window_error_mgr *err = (window_error_mgr *)cinfo->err;
    if (level < 0 && !err->warned) { /* a corrupt-data warning: strict, like simplejpeg's */
        (*cinfo->err->format_message)(cinfo, err->message);
        err->warned = 1;
    }
}

static void use_errors(struct jpeg_decompress_struct *cinfo, window_error_mgr *err) {
    memset(err, 0, sizeof(*err));
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error_exit;
    err->pub.emit_message = on_emit_message;
}

static int decode_into(const unsigned char *data, size_t size, int scale_num, JDIMENSION x0,
                       JDIMENSION y0, JDIMENSION width, JDIMENSION height, unsigned char *out,
                       char *message) {
    struct jpeg_decompress_struct cinfo;
    window_error_mgr err;
    JSAMPLE *volatile row = NULL;
    use_errors(&cinfo, &err);
    if (setjmp(err.escape)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        strncpy(message, err.message, JMSG_LENGTH_MAX);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_EXT_RGBX;
    cinfo.scale_num = (unsigned int)scale_num;
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_calc_output_dimensions(&cinfo);
    if (x0 + width > cinfo.output_width || y0 + height > cinfo.output_height || !width ||
        !height) {
        snprintf(message, JMSG_LENGTH_MAX,
                 "window %ux%u at (%u, %u) is outside the %ux%u image decoded at %d/8", width,
                 height, x0, y0, cinfo.output_width, cinfo.output_height, scale_num);
        jpeg_destroy_decompress(&cinfo);
        return -2;
    }
    jpeg_start_decompress(&cinfo);

    /* Two columns of context each side: fancy chroma upsampling treats the cropped region's
     * outermost column as an image edge, so that column may differ from a full decode. libjpeg
     * then aligns the start down to an iMCU boundary. */
    JDIMENSION context = 2;
    JDIMENSION crop_x = x0 > context ? x0 - context : 0;
    JDIMENSION crop_end = x0 + width + context;
    if (crop_end > cinfo.output_width) crop_end = cinfo.output_width;
    JDIMENSION crop_width = crop_end - crop_x;
    if (crop_x > 0 || crop_width < cinfo.output_width)
        jpeg_crop_scanline(&cinfo, &crop_x, &crop_width);

    row = malloc((size_t)crop_width * 4);
    if (row == NULL) {
        jpeg_destroy_decompress(&cinfo);
        snprintf(message, JMSG_LENGTH_MAX, "out of memory for a %u pixel row", crop_width);
        return -3;
    }
    if (y0 > 0 && jpeg_skip_scanlines(&cinfo, y0) != y0) {
        snprintf(message, JMSG_LENGTH_MAX, "could not skip %u rows", y0);
        free(row);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    size_t offset = (size_t)(x0 - crop_x) * 4, stride = (size_t)width * 4;
    for (JDIMENSION y = 0; y < height; y++) {
        JSAMPROW rows[1] = {row};
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) {
            snprintf(message, JMSG_LENGTH_MAX, "premature end of data at row %u", y0 + y);
            free(row);
            jpeg_destroy_decompress(&cinfo);
            return -1;
        }
        memcpy(out + y * stride, row + offset, stride);
    }
    free(row);
    int warned = err.warned;
    jpeg_destroy_decompress(&cinfo); /* abandons the rows after the window: never decoded */
    return warned ? -1 : 0;
}

/* Width and height of a colour JPEG that needs nothing from Pillow, else None: three
 * components, and no APP1 (EXIF or XMP: orientation) or APP2 (MPO) marker. */
static int plain_size(const unsigned char *data, size_t size, JDIMENSION *width,
                      JDIMENSION *height) {
    struct jpeg_decompress_struct cinfo;
    window_error_mgr err;
    use_errors(&cinfo, &err);
    if (setjmp(err.escape)) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 1); /* one byte kept: enough to see it is there */
    jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 1);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    int plain = jpeg_read_header(&cinfo, TRUE) == JPEG_HEADER_OK && cinfo.num_components == 3 &&
                cinfo.marker_list == NULL && !err.warned;
    *width = cinfo.image_width;
    *height = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return plain;
}

static PyObject *plain_jpeg_size(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    JDIMENSION width = 0, height = 0;
    int plain = data.len > 3 && ((unsigned char *)data.buf)[0] == 0xFF &&
                ((unsigned char *)data.buf)[1] == 0xD8 &&
                plain_size(data.buf, (size_t)data.len, &width, &height);
    PyBuffer_Release(&data);
    if (!plain) Py_RETURN_NONE;
    return Py_BuildValue("(II)", width, height);
}

static PyObject *decode_window(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    int scale_num;
    unsigned int x0, y0, width, height;
    if (!PyArg_ParseTuple(args, "y*iIIIIw*", &data, &scale_num, &x0, &y0, &width, &height, &out))
        return NULL;
    PyObject *result = NULL;
    if (scale_num < 1 || scale_num > 8) {
        PyErr_Format(PyExc_ValueError, "scale_num must be 1..8, got %d", scale_num);
    } else if (!PyBuffer_IsContiguous(&out, 'C') ||
               (size_t)out.len != (size_t)width * height * 4) {
        PyErr_Format(PyExc_TypeError,
                     "out must be a C-contiguous buffer of %zu bytes (height x width x 4), got %zd",
                     (size_t)width * height * 4, out.len);
    } else {
        char message[JMSG_LENGTH_MAX] = {0};
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = decode_into(data.buf, (size_t)data.len, scale_num, x0, y0, width, height,
                             out.buf, message);
        Py_END_ALLOW_THREADS
        if (status == 0) {
            result = Py_None;
            Py_INCREF(result);
        } else {
            PyErr_SetString(PyExc_ValueError, message);
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"plain_jpeg_size", plain_jpeg_size, METH_VARARGS,
     "plain_jpeg_size(data): (width, height) of a 3-component JPEG without APP1/APP2 markers, "
     "else None."},
    {"decode_window", decode_window, METH_VARARGS,
     "decode_window(data, scale_num, x0, y0, width, height, out): decode a window of a JPEG at "
     "scale_num/8 into out (height x width x 4 bytes, RGBX)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegwindow",
    "Windowed, DCT-scaled JPEG decoding with libjpeg-turbo (optional accelerator).", -1, methods,
};

PyMODINIT_FUNC PyInit__jpegwindow(void) { return PyModule_Create(&module); }
