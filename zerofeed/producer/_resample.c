/*
 * Pillow's antialiased bilinear resize, bit for bit, written straight into a batch slot.
 *
 * Image.resize(size, BILINEAR, box=...) on an RGB(X) image: the same coefficients (computed in
 * double from a float box, rounded to 22-bit fixed point), the same two passes (horizontal over
 * the rows the vertical pass needs, rounded to uint8, then vertical) and the same rounding, so
 * the pixels equal Pillow's (the Python side tests this on many boxes). What differs is the
 * work around it: no intermediate Pillow images, loops the compiler vectorises, and the result
 * lands as packed RGB in the caller's buffer, optionally mirrored, with no further copy.
 *
 * resize_into(src, src_width, src_height, box, out, out_width, out_height, hflip, vflip[, widest])
 *   src:  C-contiguous RGBX (4 bytes a pixel) buffer of src_height x src_width pixels
 *   box:  (left, top, right, bottom) in source pixels, as Pillow's box (floats)
 *   out:  writable C-contiguous buffer of out_height x out_width x 3 bytes
 *   widest: the widest instructions the horizontal pass may use: 0 plain C, 1 SSE4.1, 2 AVX2
 *           (the default; each is used only where the CPU has it); lower values are for tests
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define HALF (1 << (PRECISION_BITS - 1))

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTORISED __attribute__((target_clones("avx2", "default")))
#define HAVE_SSE41_PATH 1
#include <immintrin.h>
#else
#define VECTORISED
#define HAVE_SSE41_PATH 0
#endif

static inline uint8_t clip8(int32_t value) {
    int32_t shifted = value >> PRECISION_BITS;
    return shifted < 0 ? 0 : shifted > 255 ? 255 : (uint8_t)shifted;
}

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

typedef struct {
    int ksize;
    int *bounds;  /* per output: first input index, number of taps */
    int32_t *kk;  /* per output: ksize fixed-point weights */
} coeffs;

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter. */
static int make_coeffs(int in_size, float in0, float in1, int out_size, coeffs *c) {
    double scale = (double)(in1 - in0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (out_size > INT_MAX / (ksize * (int)sizeof(double))) return -1;
    double *weights = malloc(sizeof(double) * (size_t)ksize);
    c->kk = calloc((size_t)out_size * ksize, sizeof(int32_t));
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->ksize = ksize;
    if (!weights || !c->kk || !c->bounds) {
        free(weights);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            weights[x] = bilinear((x + xmin - center + 0.5) * ss);
            ww += weights[x];
        }
        for (int x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? weights[x] / ww : weights[x];
            c->kk[xx * ksize + x] =
                w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                      : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    free(weights);
    return 0;
}

static void free_coeffs(coeffs *c) {
    free(c->bounds);
    free(c->kk);
}

/* One row of the horizontal pass (RGBX in, RGBX out), in plain C. */
static void row_plain(const uint8_t *line, const coeffs *c, int out_w, uint8_t *dst) {
    for (int xx = 0; xx < out_w; xx++) {
        const int32_t *k = c->kk + xx * c->ksize;
        const uint8_t *p = line + (size_t)c->bounds[xx * 2] * 4;
        int32_t acc[4] = {HALF, HALF, HALF, HALF};
        for (int x = 0; x < c->bounds[xx * 2 + 1]; x++)
            for (int ch = 0; ch < 4; ch++) acc[ch] += (int32_t)p[x * 4 + ch] * k[x];
        for (int ch = 0; ch < 4; ch++) dst[xx * 4 + ch] = clip8(acc[ch]);
    }
}

#if HAVE_SSE41_PATH
/* acc + the four channels of the pixel at p times weight k. */
__attribute__((target("sse4.1"))) static inline __m128i add_tap(__m128i acc, const uint8_t *p,
                                                                int32_t k) {
    int32_t pixel;
    memcpy(&pixel, p, 4);
    __m128i wide = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(pixel));
    return _mm_add_epi32(acc, _mm_mullo_epi32(wide, _mm_set1_epi32(k)));
}

/* >> 22, then saturate to 0..255 through int16 (the same as clip8), stored as one RGBX pixel. */
__attribute__((target("sse4.1"))) static inline void store_pixel(__m128i acc, uint8_t *dst) {
    __m128i shifted = _mm_srai_epi32(acc, PRECISION_BITS);
    __m128i packed = _mm_packus_epi16(_mm_packs_epi32(shifted, shifted), shifted);
    int32_t result = _mm_cvtsi128_si32(packed);
    memcpy(dst, &result, 4);
}

/* One row of the horizontal pass, the four channels of a tap in one SSE4.1 register. */
__attribute__((target("sse4.1"))) static void row_sse41(const uint8_t *line, const coeffs *c,
                                                        int out_w, uint8_t *dst) {
    for (int xx = 0; xx < out_w; xx++) {
        const int32_t *k = c->kk + xx * c->ksize;
        const uint8_t *p = line + (size_t)c->bounds[xx * 2] * 4;
        __m128i acc = _mm_set1_epi32(HALF);
        for (int x = 0; x < c->bounds[xx * 2 + 1]; x++) acc = add_tap(acc, p + x * 4, k[x]);
        store_pixel(acc, dst + xx * 4);
    }
}

/* The same, two taps at a time: the channels of taps x and x + 1 in one AVX2 register. */
__attribute__((target("avx2"))) static void row_avx2(const uint8_t *line, const coeffs *c,
                                                     int out_w, uint8_t *dst) {
    for (int xx = 0; xx < out_w; xx++) {
        const int32_t *k = c->kk + xx * c->ksize;
        const uint8_t *p = line + (size_t)c->bounds[xx * 2] * 4;
        int taps = c->bounds[xx * 2 + 1], x = 0;
        __m256i pair_acc = _mm256_setzero_si256();
        for (; x + 1 < taps; x += 2) {
            __m256i wide = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + x * 4)));
            __m256i weights = _mm256_set_m128i(_mm_set1_epi32(k[x + 1]), _mm_set1_epi32(k[x]));
            pair_acc = _mm256_add_epi32(pair_acc, _mm256_mullo_epi32(wide, weights));
        }
        __m128i acc = _mm_add_epi32(_mm256_castsi256_si128(pair_acc),
                                    _mm256_extracti128_si256(pair_acc, 1));
        acc = _mm_add_epi32(acc, _mm_set1_epi32(HALF));
        if (x < taps) acc = add_tap(acc, p + x * 4, k[x]);
        store_pixel(acc, dst + xx * 4);
    }
}
#endif

typedef void (*row_pass)(const uint8_t *, const coeffs *, int, uint8_t *);

/* Horizontal pass: rows [first, first + rows) of src (RGBX) into tmp (RGBX, out_w wide), with
 * the widest instructions this CPU has. */
static void horizontal(const uint8_t *src, int src_w, int first, int rows, const coeffs *c,
                       int out_w, uint8_t *tmp, int widest) {
    row_pass row = row_plain;
#if HAVE_SSE41_PATH
    if (widest >= 2 && __builtin_cpu_supports("avx2"))
        row = row_avx2;
    else if (widest >= 1 && __builtin_cpu_supports("sse4.1"))
        row = row_sse41;
#else
    (void)widest;
#endif
    for (int yy = 0; yy < rows; yy++)
        row(src + (size_t)(yy + first) * src_w * 4, c, out_w, tmp + (size_t)yy * out_w * 4);
}

/* Vertical pass: tmp (RGBX, width w) into out (RGB), mirrored as asked. */
VECTORISED static void vertical(const uint8_t *tmp, int w, const coeffs *c, int out_h,
                                int row_offset, uint8_t *out, int hflip, int vflip,
                                int32_t *acc) {
    const int n = w * 4;
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *k = c->kk + yy * c->ksize;
        int ymin = c->bounds[yy * 2] - row_offset, taps = c->bounds[yy * 2 + 1];
        for (int i = 0; i < n; i++) acc[i] = HALF;
        for (int y = 0; y < taps; y++) {
            const uint8_t *line = tmp + (size_t)(ymin + y) * n;
            const int32_t ky = k[y];
            for (int i = 0; i < n; i++) acc[i] += (int32_t)line[i] * ky;
        }
        uint8_t *dst = out + (size_t)(vflip ? out_h - 1 - yy : yy) * w * 3;
        for (int xx = 0; xx < w; xx++) {
            uint8_t *px = dst + (size_t)(hflip ? w - 1 - xx : xx) * 3;
            px[0] = clip8(acc[xx * 4]);
            px[1] = clip8(acc[xx * 4 + 1]);
            px[2] = clip8(acc[xx * 4 + 2]);
        }
    }
}

/* Copy rows of RGBX into packed RGB (the passes Pillow would skip, when the box is the image). */
static void pack_rows(const uint8_t *src, int w, int first, int out_h, uint8_t *out, int hflip,
                      int vflip) {
    for (int yy = 0; yy < out_h; yy++) {
        const uint8_t *line = src + (size_t)(first + yy) * w * 4;
        uint8_t *dst = out + (size_t)(vflip ? out_h - 1 - yy : yy) * w * 3;
        for (int xx = 0; xx < w; xx++) {
            uint8_t *px = dst + (size_t)(hflip ? w - 1 - xx : xx) * 3;
            memcpy(px, line + (size_t)xx * 4, 3);
        }
    }
}

static int resample(int widest, const uint8_t *src, int src_w, int src_h, const float box[4],
                    uint8_t *out,
                    int out_w, int out_h, int hflip, int vflip) {
    int need_h = out_w != src_w || box[0] != 0.0f || box[2] != (float)out_w;
    int need_v = out_h != src_h || box[1] != 0.0f || box[3] != (float)out_h;
    coeffs cv = {0}, ch = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    int status = -1;
    if (make_coeffs(src_h, box[1], box[3], out_h, &cv)) goto done;
    int first = cv.bounds[0];
    int last = cv.bounds[out_h * 2 - 2] + cv.bounds[out_h * 2 - 1];
    const uint8_t *rows = src;
    int rows_w = src_w, row_offset = 0;
    if (need_h) {
        if (make_coeffs(src_w, box[0], box[2], out_w, &ch)) goto done;
        tmp = malloc((size_t)(last - first) * out_w * 4);
        if (!tmp) goto done;
        horizontal(src, src_w, first, last - first, &ch, out_w, tmp, widest);
        rows = tmp;
        rows_w = out_w;
        row_offset = first;
    }
    if (need_v) {
        acc = malloc(sizeof(int32_t) * (size_t)rows_w * 4);
        if (!acc) goto done;
        vertical(rows, rows_w, &cv, out_h, row_offset, out, hflip, vflip, acc);
    } else {
        pack_rows(rows, rows_w, 0, out_h, out, hflip, vflip);
    }
    status = 0;
done:
    free_coeffs(&cv);
    free_coeffs(&ch);
    free(tmp);
    free(acc);
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
    if (src_w < 1 || src_h < 1 || out_w < 1 || out_h < 1) {
        PyErr_SetString(PyExc_ValueError, "sizes must be positive");
    } else if (!PyBuffer_IsContiguous(&src, 'C') ||
               (size_t)src.len != (size_t)src_w * src_h * 4) {
        PyErr_Format(PyExc_TypeError, "src must be C-contiguous RGBX of %zu bytes, got %zd",
                     (size_t)src_w * src_h * 4, src.len);
    } else if (!PyBuffer_IsContiguous(&out, 'C') ||
               (size_t)out.len != (size_t)out_w * out_h * 3) {
        PyErr_Format(PyExc_TypeError, "out must be C-contiguous RGB of %zu bytes, got %zd",
                     (size_t)out_w * out_h * 3, out.len);
    } else if (!(box[0] >= 0 && box[1] >= 0 && box[2] <= src_w && box[3] <= src_h &&
                 box[2] > box[0] && box[3] > box[1])) {
        PyErr_Format(PyExc_ValueError, "box (%f, %f, %f, %f) is not inside the %dx%d image",
                     box[0], box[1], box[2], box[3], src_w, src_h);
    } else {
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
