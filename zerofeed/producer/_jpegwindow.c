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
 *   the size of a colour, greyscale or CMYK JPEG whose header needs nothing from Pillow (no
 *   EXIF/XMP orientation, not a multi-picture file), so a producer can crop and decode it without
 *   opening it in Pillow
 *
 * decode_window(data, scale_num, x0, y0, width, height, out[, entropy]) -> None
 *   data:      the JPEG file (any buffer)
 *   scale_num: 1..8, decode at scale_num/8 of the stored size
 *   x0, y0, width, height: the window, in pixels of the scaled image (within it)
 *   out:       writable C-contiguous buffer of exactly height * width * 4 bytes (RGBX)
 *   entropy:   which Huffman decoder reads the scans: 1 (the default) this module's where it
 *              can (_jpeg_huffman.h, _jpeg_progressive.h), else libjpeg-turbo's; 0
 *              libjpeg-turbo's; 2 this module's or a ValueError where it declines; 3 as 2, with
 *              none of the instruction-set extensions the CPU may offer (0, 2 and 3 are for
 *              tests). The pixels do not depend on it.
 * decode_resized(data, scale_num, x0, y0, width, height, box, out, out_width, out_height,
 *                hflip, vflip[, widest[, entropy]]) -> None
 *   the same window, resized as _resample.resize_into(window, width, height, box, out, ...)
 *   would, with the same pixels: each row goes through the horizontal pass as it is decoded,
 *   so the window never exists as a whole, and only the rows the resize reads are decoded
 * Both raise ValueError for corrupt data (libjpeg's message), including data libjpeg would only
 * warn about, and for a window outside the scaled image; TypeError for a wrong-size buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#include "_jpeg_huffman.h"
#include "_jpeg_progressive.h"
#include "_resample_core.h"

/* Which Huffman decoder reads the scans: libjpeg's, this module's where it can, or this
 * module's only, an error where it declines, with the CPU's extensions or without (for tests). */
enum { ENTROPY_LIBJPEG = 0, ENTROPY_FAST = 1, ENTROPY_FAST_ONLY = 2, ENTROPY_FAST_PORTABLE = 3 };
#define DECODE_DECLINED (-4)

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

/* Adobe CMYK (or YCCK) samples, as libjpeg gives them, to RGBX in place, as Pillow does: it
 * reads a 4-component JPEG as inverted CMYK ("CMYK;I") and its convert("RGB") gives each channel
 * nk - MULDIV255(c, nk) with nk = 255 - k, for c and k the un-inverted values. */
static void cmyk_to_rgbx(unsigned char *pixels, JDIMENSION count) {
    for (JDIMENSION i = 0; i < count; i++, pixels += 4) {
        int nk = pixels[3]; /* 255 - (255 - stored k) */
        for (int channel = 0; channel < 3; channel++) {
            int product = (255 - pixels[channel]) * nk + 128;
            pixels[channel] = (unsigned char)(nk - (((product >> 8) + product) >> 8));
        }
        pixels[3] = 255;
    }
}

/* Receives the decoded rows of a window, one at a time: `pixels` is the window's part of row
 * `index` (counted from the window's first row), width x 4 bytes of RGBX. */
typedef void (*row_sink)(void *sink, JDIMENSION index, const unsigned char *pixels);

/* Decode rows [first, first + rows) of the window (x0, y0, width, height) of the image at
 * scale_num/8 and hand each to `sink`. 0, or negative with `message` set. */
static int decode_rows_once(const unsigned char *data, size_t size, int scale_num,
                            JDIMENSION x0, JDIMENSION y0, JDIMENSION width, JDIMENSION height,
                            JDIMENSION first, JDIMENSION rows, row_sink sink, void *sink_state,
                            int entropy, int extensions, char *message) {
    struct jpeg_decompress_struct cinfo;
    window_error_mgr err;
    JSAMPLE *volatile row_memory = NULL;
    JSAMPLE *row = NULL;
    huffman_decoder *volatile huffman = NULL;
    int status = 0;
    use_errors(&cinfo, &err);
    if (setjmp(err.escape)) {
        strncpy(message, err.message, JMSG_LENGTH_MAX);
        status = -1;
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_EXT_RGBX; /* both 4 bytes a pixel */
    cinfo.scale_num = (unsigned int)scale_num;
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_calc_output_dimensions(&cinfo);
    if (x0 + width > cinfo.output_width || y0 + height > cinfo.output_height || !width ||
        !height || first + rows > height) {
        snprintf(message, JMSG_LENGTH_MAX,
                 "window %ux%u at (%u, %u) is outside the %ux%u image decoded at %d/8", width,
                 height, x0, y0, cinfo.output_width, cinfo.output_height, scale_num);
        status = -2;
        goto done;
    }
    /* A progressive file's scans are all read by jpeg_start_decompress: its decoder goes in
     * first. A sequential file's one scan is read as rows are: its decoder goes in after. */
    if (entropy != ENTROPY_LIBJPEG && cinfo.progressive_mode) {
        huffman = progressive_install(&cinfo, extensions);
        if (huffman == NULL && entropy != ENTROPY_FAST) {
            status = DECODE_DECLINED;
            goto done;
        }
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

    /* The row starts 4 bytes past malloc's alignment (at least 8), so never 16- or 32-byte
     * aligned: libjpeg-turbo's SIMD colour conversion writes an aligned output with
     * non-temporal stores, which bypass the cache, and the resize would read the row back from
     * memory. */
    row_memory = malloc((size_t)crop_width * 4 + 4);
    if (row_memory != NULL) row = row_memory + 4;
    if (row == NULL) {
        snprintf(message, JMSG_LENGTH_MAX, "out of memory for a %u pixel row", crop_width);
        status = -3;
        goto done;
    }
    if (entropy != ENTROPY_LIBJPEG && !cinfo.progressive_mode) {
        huffman = huffman_install(&cinfo);
        if (huffman == NULL && entropy != ENTROPY_FAST) {
            status = DECODE_DECLINED;
            goto done;
        }
    }
    JDIMENSION skip = y0 + first;
    if (skip > 0 && jpeg_skip_scanlines(&cinfo, skip) != skip) {
        snprintf(message, JMSG_LENGTH_MAX, "could not skip %u rows", skip);
        status = -1;
        goto done;
    }
    size_t offset = (size_t)(x0 - crop_x) * 4;
    for (JDIMENSION y = 0; y < rows; y++) {
        JSAMPROW rows_out[1] = {row};
        if (jpeg_read_scanlines(&cinfo, rows_out, 1) != 1) {
            snprintf(message, JMSG_LENGTH_MAX, "premature end of data at row %u", skip + y);
            status = -1;
            goto done;
        }
        if (cmyk) cmyk_to_rgbx(row + offset, width);
        sink(sink_state, first + y, row + offset);
    }
    if (err.warned) { /* libjpeg went on, but the data was corrupt */
        strncpy(message, err.message, JMSG_LENGTH_MAX);
        status = -1;
    }
done:
    jpeg_destroy_decompress(&cinfo); /* abandons the rows after the window: never decoded */
    free(row_memory);
    /* whatever libjpeg said after this module's decoder gave up is about zero-filled blocks:
     * the caller decodes the image again with libjpeg's own */
    if (huffman != NULL && huffman->declined) status = DECODE_DECLINED;
    huffman_free(huffman);
    return status;
}

/* decode_rows_once with the given Huffman decoder; where this module's declines, the image is
 * decoded again with libjpeg's, as if this module's had never been tried (the sinks take each
 * row again, in place). */
static int decode_rows(const unsigned char *data, size_t size, int scale_num, JDIMENSION x0,
                       JDIMENSION y0, JDIMENSION width, JDIMENSION height, JDIMENSION first,
                       JDIMENSION rows, row_sink sink, void *sink_state, int entropy,
                       int extensions, char *message) {
    int status = decode_rows_once(data, size, scale_num, x0, y0, width, height, first, rows,
                                  sink, sink_state, entropy, extensions, message);
    if (status != DECODE_DECLINED) return status;
    if (entropy != ENTROPY_FAST) {
        snprintf(message, JMSG_LENGTH_MAX, "the fast Huffman decoder declined this JPEG");
        return -1;
    }
    return decode_rows_once(data, size, scale_num, x0, y0, width, height, first, rows, sink,
                            sink_state, ENTROPY_LIBJPEG, 0, message);
}

/* What the module keeps: the instruction-set extensions the progressive decoder uses, found
 * once as it loads. */
typedef struct {
    int extensions;
} module_state;

/* The extensions a call's `entropy` asks for: the CPU's, or none (for tests). */
static int extensions_for(PyObject *self, int entropy) {
    const module_state *state = PyModule_GetState(self);
    return entropy == ENTROPY_FAST_PORTABLE ? 0 : state->extensions;
}

typedef struct {
    unsigned char *out;
    size_t stride;
} window_copy;

static void copy_row(void *state, JDIMENSION index, const unsigned char *pixels) {
    window_copy *copy = state;
    memcpy(copy->out + index * copy->stride, pixels, copy->stride);
}

static void resample_row(void *state, JDIMENSION index, const unsigned char *pixels) {
    resampler_feed(state, (int)index, pixels);
}

/* Width and height of a JPEG that needs nothing from Pillow, else None: three components, one
 * greyscale component (libjpeg-turbo expands it to RGBX as Pillow's convert("RGB") does: the same
 * value in each channel) or four CMYK/YCCK ones (cmyk_to_rgbx), and no APP1 (EXIF or XMP:
 * orientation) or APP2 (MPO) marker. */
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
    int plain = jpeg_read_header(&cinfo, TRUE) == JPEG_HEADER_OK &&
                (cinfo.num_components == 3 ||
                 (cinfo.num_components == 1 && cinfo.jpeg_color_space == JCS_GRAYSCALE) ||
                 (cinfo.num_components == 4 && (cinfo.jpeg_color_space == JCS_CMYK ||
                                                cinfo.jpeg_color_space == JCS_YCCK))) &&
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

/* None after a decode that succeeded, else NULL with ValueError(libjpeg's message). */
static PyObject *none_or_error(int status, const char *message) {
    if (status != 0) {
        PyErr_SetString(PyExc_ValueError, message);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *decode_window(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    int scale_num;
    unsigned int x0, y0, width, height;
    int entropy = ENTROPY_FAST;
    if (!PyArg_ParseTuple(args, "y*iIIIIw*|i", &data, &scale_num, &x0, &y0, &width, &height,
                          &out, &entropy))
        return NULL;
    PyObject *result = NULL;
    int extensions = extensions_for(self, entropy);
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
        window_copy copy = {out.buf, (size_t)width * 4};
        status = decode_rows(data.buf, (size_t)data.len, scale_num, x0, y0, width, height, 0,
                             height, copy_row, &copy, entropy, extensions, message);
        Py_END_ALLOW_THREADS
        result = none_or_error(status, message);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *decode_resized(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    int scale_num, out_w, out_h, hflip, vflip;
    unsigned int x0, y0, width, height;
    float box[4];
    int widest = 2; /* as _resample.resize_into's: lower values are for tests */
    int entropy = ENTROPY_FAST;
    if (!PyArg_ParseTuple(args, "y*iIIII(ffff)w*iipp|ii", &data, &scale_num, &x0, &y0, &width,
                          &height, &box[0], &box[1], &box[2], &box[3], &out, &out_w, &out_h,
                          &hflip, &vflip, &widest, &entropy))
        return NULL;
    PyObject *result = NULL;
    int extensions = extensions_for(self, entropy);
    if (scale_num < 1 || scale_num > 8) {
        PyErr_Format(PyExc_ValueError, "scale_num must be 1..8, got %d", scale_num);
    } else if (width > INT_MAX || height > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "window %ux%u is too large", width, height);
    } else if (resize_args_ok((int)width, (int)height, box, &out, out_w, out_h)) {
        char message[JMSG_LENGTH_MAX] = {0};
        int status;
        resampler r;
        Py_BEGIN_ALLOW_THREADS
        status = resampler_init(&r, widest, (int)width, (int)height, box, out_w, out_h);
        if (status == 0) {
            status = decode_rows(data.buf, (size_t)data.len, scale_num, x0, y0, width, height,
                                 (JDIMENSION)r.first, (JDIMENSION)(r.last - r.first),
                                 resample_row, &r, entropy, extensions, message);
            if (status == 0) resampler_finish(&r, out.buf, hflip, vflip);
        } else {
            snprintf(message, JMSG_LENGTH_MAX, "out of memory to resize a %ux%u window", width,
                     height);
        }
        resampler_free(&r);
        Py_END_ALLOW_THREADS
        result = none_or_error(status, message);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"plain_jpeg_size", plain_jpeg_size, METH_VARARGS,
     "plain_jpeg_size(data): (width, height) of a colour, greyscale or CMYK JPEG without "
     "APP1/APP2 markers, else None."},
    {"decode_window", decode_window, METH_VARARGS,
     "decode_window(data, scale_num, x0, y0, width, height, out[, entropy]): decode a window of "
     "a JPEG at scale_num/8 into out (height x width x 4 bytes, RGBX)."},
    {"decode_resized", decode_resized, METH_VARARGS,
     "decode_resized(data, scale_num, x0, y0, width, height, box, out, out_width, out_height, "
     "hflip, vflip[, widest[, entropy]]): decode the window as decode_window would and resize "
     "its box into out (packed RGB) as _resample.resize_into would, one row at a time."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegwindow",
    "Windowed, DCT-scaled JPEG decoding with libjpeg-turbo and a faster Huffman decoder "
    "(optional accelerator).",
    sizeof(module_state), methods,
};

PyMODINIT_FUNC PyInit__jpegwindow(void) {
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) return NULL;
    module_state *state = PyModule_GetState(created);
    state->extensions = progressive_extensions();
    return created;
}
