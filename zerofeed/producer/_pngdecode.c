/*
 * A PNG's pixels, resized straight into a batch slot: libdeflate inflates the image data in one
 * call (about twice as fast as zlib's inflate), each row is unfiltered and handed to Pillow's
 * resize arithmetic (_resample_core.h) as soon as it is ready, so the image is never stored as
 * RGB(X), and rows below the last one the resize reads are not unfiltered.
 *
 * decode_resized(data, box, out, out_width, out_height, hflip, vflip[, widest]) -> bool
 *   data: the whole PNG file
 *   box:  (left, top, right, bottom) in the image's pixels, as Pillow's resize box (floats)
 *   out:  writable C-contiguous buffer of out_height x out_width x 3 bytes
 *   Returns True with `out` written, or False with nothing written when this is not a PNG this
 *   module takes: 8-bit greyscale, grey+alpha, RGB or RGBA, not interlaced, not animated, whose
 *   chunks and image data decode cleanly. The caller then decodes with Pillow, which also gives
 *   the error of a damaged file. Pixels equal Pillow's convert("RGB") (alpha dropped, grey in
 *   each channel) followed by resize(BILINEAR, box).
 *
 * What it checks is what Pillow's decoder relies on: the chunk lengths, every row's filter
 * type, the zlib stream (with its Adler-32) and that it holds exactly the image's bytes.
 * Chunk CRCs are not checked, as Pillow does not check those of the image data.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <libdeflate.h>

#include "_resample_core.h"

#define ROW_SLACK 64 /* bytes after each row buffer: the SIMD passes may load past the end */

typedef struct {
    uint32_t width, height;
    int channels;       /* 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
    uint8_t *idat;      /* the image data chunks' payloads, concatenated (malloc'd) */
    size_t idat_len;
} png_info;

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 0 with `info` filled (free info->idat), or -1 when this is not a PNG this module takes. */
static int parse_png(const uint8_t *data, size_t len, png_info *info) {
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(info, 0, sizeof(*info));
    if (len < 8 + 25 || memcmp(data, signature, 8) != 0) return -1;
    const uint8_t *ihdr = data + 8;
    if (be32(ihdr) != 13 || memcmp(ihdr + 4, "IHDR", 4) != 0) return -1;
    const uint8_t *h = ihdr + 8;
    info->width = be32(h);
    info->height = be32(h + 4);
    int depth = h[8], colour = h[9];
    if (info->width == 0 || info->height == 0 || info->width > INT_MAX / 4 ||
        info->height > INT_MAX || depth != 8 || h[10] != 0 || h[11] != 0 || h[12] != 0)
        return -1; /* not 8 bits, unknown compression or filter method, or interlaced */
    switch (colour) {
        case 0: info->channels = 1; break;
        case 4: info->channels = 2; break;
        case 2: info->channels = 3; break;
        case 6: info->channels = 4; break;
        default: return -1; /* palette: Pillow's palette conversion */
    }
    /* First pass: the chunk lengths are sound, the image data is one run; count its bytes. */
    size_t pos = 8, total = 0;
    int in_run = 0, run_done = 0, ended = 0;
    while (pos + 8 <= len) {
        size_t n = be32(data + pos);
        const uint8_t *type = data + pos + 4;
        if (n > len - pos - 8 || len - pos - 8 - n < 4) return -1; /* runs past the file */
        if (memcmp(type, "IDAT", 4) == 0) {
            if (run_done) return -1; /* image data split by other chunks */
            in_run = 1;
            total += n;
        } else {
            if (in_run) run_done = 1;
            if (memcmp(type, "acTL", 4) == 0) return -1; /* animated: Pillow picks the frame */
            if (memcmp(type, "IEND", 4) == 0) {
                ended = 1;
                break;
            }
        }
        pos += 12 + n;
    }
    if (!in_run || !ended) return -1;
    info->idat = malloc(total ? total : 1);
    if (!info->idat) return -1;
    for (pos = 8; pos + 8 <= len;) { /* second pass: gather the image data */
        size_t n = be32(data + pos);
        if (memcmp(data + pos + 4, "IDAT", 4) == 0) {
            memcpy(info->idat + info->idat_len, data + pos + 8, n);
            info->idat_len += n;
        } else if (memcmp(data + pos + 4, "IEND", 4) == 0) {
            break;
        }
        pos += 12 + n;
    }
    return 0;
}

static inline uint8_t paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Undo the Sub filter: each byte adds the byte one pixel to its left. The pixel to the left is
 * kept in `left` (in registers, where `bpp` is a constant the compiler sees), not read back from
 * the row it was just stored to, which would make each byte wait for the last one's store. */
static inline void unfilter_sub(uint8_t *row, size_t n, int bpp) {
    uint8_t left[4];
    memcpy(left, row, (size_t)bpp);
    for (size_t i = (size_t)bpp; i < n; i += (size_t)bpp)
        for (int c = 0; c < bpp; c++) row[i + c] = left[c] = (uint8_t)(row[i + c] + left[c]);
}

/* Undo the row's filter in place; `prev` is the previous row, unfiltered (zeros for the first). */
static void unfilter(int type, uint8_t *row, const uint8_t *prev, size_t n, int bpp) {
    size_t i;
    switch (type) {
        case 1:
            switch (bpp) { /* each a copy with `bpp` constant */
                case 1: unfilter_sub(row, n, 1); break;
                case 2: unfilter_sub(row, n, 2); break;
                case 3: unfilter_sub(row, n, 3); break;
                default: unfilter_sub(row, n, 4); break;
            }
            break;
        case 2:
            for (i = 0; i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
            break;
        case 3:
            for (i = 0; i < (size_t)bpp; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
            for (; i < n; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
            break;
        case 4:
            for (i = 0; i < (size_t)bpp; i++) row[i] = (uint8_t)(row[i] + prev[i]);
            for (; i < n; i++) row[i] = (uint8_t)(row[i] + paeth(row[i - bpp], prev[i], prev[i - bpp]));
            break;
        default: /* 0: none */
            break;
    }
}

/* One unfiltered row as RGBX: grey in each channel, alpha (dropped later) where X goes. */
static void to_rgbx(const uint8_t *row, int channels, uint32_t width, uint8_t *rgbx) {
    uint32_t x;
    switch (channels) {
        case 1:
            for (x = 0; x < width; x++, rgbx += 4)
                rgbx[0] = rgbx[1] = rgbx[2] = row[x], rgbx[3] = 255;
            break;
        case 2:
            for (x = 0; x < width; x++, rgbx += 4)
                rgbx[0] = rgbx[1] = rgbx[2] = row[2 * x], rgbx[3] = 255;
            break;
        case 3:
            for (x = 0; x < width; x++, rgbx += 4, row += 3)
                rgbx[0] = row[0], rgbx[1] = row[1], rgbx[2] = row[2], rgbx[3] = 255;
            break;
        default:
            memcpy(rgbx, row, (size_t)width * 4);
            break;
    }
}

/* 0 done, 1 not taken (bad image data), -1 out of memory. */
static int decode(const png_info *info, int widest, const float box[4], uint8_t *out, int out_w,
                  int out_h, int hflip, int vflip) {
    size_t stride = (size_t)info->width * info->channels, pitch = stride + 1;
    if (info->height > SIZE_MAX / pitch) return 1;
    size_t raw_len = pitch * info->height, got = 0;
    /* DEFLATE expands at most 1032-fold: a header promising more than the data can hold is not
     * worth the allocation (Pillow then says what is wrong with the file) */
    if (raw_len / 1032 > info->idat_len + 64) return 1;
    uint8_t *raw = malloc(raw_len + ROW_SLACK); /* RGBA rows are resized in place */
    uint8_t *zeros = calloc(1, stride + ROW_SLACK);
    uint8_t *line = malloc((size_t)info->width * 4 + ROW_SLACK);
    struct libdeflate_decompressor *inflater = libdeflate_alloc_decompressor();
    resampler r;
    int status = resampler_init(&r, widest, (int)info->width, (int)info->height, box, out_w, out_h);
    if (!raw || !zeros || !line || !inflater || status != 0) {
        status = -1;
    } else if (libdeflate_zlib_decompress(inflater, info->idat, info->idat_len, raw, raw_len,
                                          &got) != LIBDEFLATE_SUCCESS ||
               got != raw_len) {
        status = 1;
    } else {
        for (uint32_t y = 0; y < info->height && status == 0; y++)
            if (raw[y * pitch] > 4) status = 1; /* Pillow refuses it */
        for (int y = 0; y < r.last && status == 0; y++) {
            uint8_t *row = raw + y * pitch + 1;
            unfilter(row[-1], row, y ? row - pitch : zeros, stride, info->channels);
            if (y < r.first) continue;
            if (info->channels == 4) {
                resampler_feed(&r, y, row); /* RGBA is RGBX already; X is never read out */
            } else {
                to_rgbx(row, info->channels, info->width, line);
                resampler_feed(&r, y, line);
            }
        }
        if (status == 0) resampler_finish(&r, out, hflip, vflip);
    }
    resampler_free(&r);
    if (inflater) libdeflate_free_decompressor(inflater);
    free(line);
    free(zeros);
    free(raw);
    return status;
}

static PyObject *decode_resized(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, out;
    int out_w, out_h, hflip, vflip;
    float box[4];
    int widest = 2; /* 0: plain C, 1: up to SSE4.1, 2: up to AVX2 (for tests) */
    if (!PyArg_ParseTuple(args, "y*(ffff)w*iipp|i", &data, &box[0], &box[1], &box[2], &box[3],
                          &out, &out_w, &out_h, &hflip, &vflip, &widest))
        return NULL;
    PyObject *result = NULL;
    png_info info;
    int status = 1;
    Py_BEGIN_ALLOW_THREADS
    status = parse_png(data.buf, (size_t)data.len, &info) == 0 ? 0 : 1;
    Py_END_ALLOW_THREADS
    if (status != 0) {
        result = Py_False;
    } else if (resize_args_ok((int)info.width, (int)info.height, box, &out, out_w, out_h)) {
        Py_BEGIN_ALLOW_THREADS
        status = decode(&info, widest, box, out.buf, out_w, out_h, hflip, vflip);
        Py_END_ALLOW_THREADS
        if (status < 0)
            PyErr_NoMemory();
        else
            result = status == 0 ? Py_True : Py_False;
    }
    free(info.idat);
    Py_XINCREF(result);
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_resized", decode_resized, METH_VARARGS,
     "decode_resized(data, box, out, out_width, out_height, hflip, vflip[, widest]) -> bool: "
     "an 8-bit greyscale/RGB(A) PNG's box, resized with Pillow's bilinear arithmetic into out; "
     "False, writing nothing, for any other PNG."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pngdecode",
    "PNG decode (libdeflate) resized straight into a caller's buffer (optional accelerator).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__pngdecode(void) { return PyModule_Create(&module); }
