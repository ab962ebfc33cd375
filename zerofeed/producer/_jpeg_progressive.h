/*
 * Progressive JPEG scans read with the fast Huffman decoder's reader and tables
 * (_jpeg_huffman.h), in place of libjpeg-turbo's jdphuff.c.
 *
 * A progressive JPEG sends each block's coefficients over several scans: the DC coefficients
 * first (all components interleaved), then bands of AC coefficients one component at a time,
 * each first to a few bits of precision (Al) and then refined a bit at a time. libjpeg reads
 * every scan into whole-image coefficient buffers inside jpeg_start_decompress, before any row
 * comes out, and its refinement scans read each correction bit with a check and a call: they
 * are most of a progressive image's time. This decoder reads the same scans with the eight-bytes-
 * at-a-time reader and the one-look-up tables of the sequential decoder, and in a refinement scan
 * visits only the coefficients that take a correction bit, found from a mask of the block's
 * nonzero ones, instead of every position of the band (progressive_ac_refine_with).
 *
 * It takes a scan after libjpeg has started it: libjpeg's own start_pass has checked the scan's
 * parameters and recorded its progression (coef_bits), and set up its decoder, and libjpeg calls
 * the progress monitor before it asks for the scan's first MCU. There this decoder points
 * `decode_mcu` at its own (see _jpeg_huffman.h) and reads the scan from where libjpeg's marker
 * reader stopped. After the scan's last MCU it leaves libjpeg's source at the marker that ends
 * the scan, as libjpeg's own reader would. Where libjpeg would do anything else (a code no table
 * has, a band that overruns, a refinement bit wider than 1, a scan that ends early or leaves
 * data over, a restart marker out of turn), it declines: the decode stops there with libjpeg's
 * error machinery and the caller decodes the image again with libjpeg's decoder alone.
 */
#ifndef ZEROFEED_JPEG_PROGRESSIVE_H
#define ZEROFEED_JPEG_PROGRESSIVE_H

#include <limits.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "_jpeg_huffman.h"

/* The instruction-set extensions this decoder may use (progressive_extensions). */
enum { PROGRESSIVE_SSSE3 = 1, PROGRESSIVE_BMI2 = 2 };

/* Those this CPU runs well: SSSE3 where it has it; BMI2's bit deposit on Intel's processors and
 * on AMD's from Zen 3 (family 19h), as Zen 1 and 2 run it in microcode, in up to hundreds of
 * cycles. Asks the CPU (cpuid, slow in a virtual machine): call it once, as the module loads. */
static int progressive_extensions(void) {
    int extensions = 0;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("ssse3")) extensions |= PROGRESSIVE_SSSE3;
    unsigned int eax, ebx, ecx, edx, family = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        family = (eax >> 8) & 0xF;
        if (family == 0xF) family += (eax >> 20) & 0xFF;
    }
    if (__builtin_cpu_supports("bmi2") &&
        (__builtin_cpu_is("intel") || (__builtin_cpu_is("amd") && family >= 0x19)))
        extensions |= PROGRESSIVE_BMI2;
#endif
    return extensions;
}

/* The block's nonzero coefficients in zig-zag order: bit k for the k-th coefficient. */
typedef uint64_t (*nonzero_finder)(const JCOEF *block, const uint8_t (*gather)[16]);

enum { SCAN_DC_FIRST, SCAN_DC_REFINE, SCAN_AC_FIRST, SCAN_AC_REFINE };

typedef struct progressive_decoder progressive_decoder;

struct progressive_decoder {
    huffman_decoder huffman; /* first: the reader, tables, restart state and `declined` */
    struct jpeg_progress_mgr progress;
    int scan; /* the scan (libjpeg's input_scan_number) this decoder last set up */
    int kind, Ss, Se, Al;
    JDIMENSION mcus_left; /* the scan's MCUs libjpeg has still to ask for */
    uint64_t band;            /* zig-zag bits Ss to Se */
    nonzero_finder nonzero;   /* progressive_nonzero, or a faster one the CPU can run */
    int (*ac_refine)(progressive_decoder *p, huffman_reader *r, JCOEF *block); /* too */
    uint8_t gather[16][16];   /* its byte shuffles: natural order to zig-zag order */
    uint8_t select_in_byte[256][8]; /* [byte][rank]: where the byte's (rank + 1)-th set bit is */
};

static uint64_t progressive_nonzero(const JCOEF *block, const uint8_t (*gather)[16]) {
    (void)gather;
    uint64_t nonzero = 0;
    for (int k = 0; k < DCTSIZE2; k++)
        nonzero |= (uint64_t)(block[huffman_natural_order[k]] != 0) << k;
    return nonzero;
}

#if defined(__x86_64__)
/* The same with SSSE3: a byte per coefficient (0xFF for a zero), gathered into zig-zag order
 * sixteen at a time with byte shuffles (`gather`: progressive_install). */
__attribute__((target("ssse3"))) static uint64_t progressive_nonzero_ssse3(
    const JCOEF *block, const uint8_t (*gather)[16]) {
    const __m128i zero = _mm_setzero_si128();
    __m128i zeros[4];
    for (int i = 0; i < 4; i++) {
        __m128i low = _mm_loadu_si128((const __m128i *)(block + 16 * i));
        __m128i high = _mm_loadu_si128((const __m128i *)(block + 16 * i + 8));
        zeros[i] = _mm_packs_epi16(_mm_cmpeq_epi16(low, zero), _mm_cmpeq_epi16(high, zero));
    }
    uint64_t zero_bits = 0;
    for (int j = 0; j < 4; j++) {
        __m128i out = _mm_setzero_si128();
        for (int i = 0; i < 4; i++) {
            __m128i control = _mm_loadu_si128((const __m128i *)gather[4 * j + i]);
            out = _mm_or_si128(out, _mm_shuffle_epi8(zeros[i], control));
        }
        zero_bits |= (uint64_t)(uint32_t)_mm_movemask_epi8(out) << (16 * j);
    }
    return ~zero_bits;
}
#endif

/* A correction bit for each coefficient in `pending` (zig-zag bits), in zig-zag order: 1 adds
 * `p1` to the coefficient's magnitude unless it has that bit already, as libjpeg's
 * decode_mcu_AC_refine does. */
static inline void progressive_correct(huffman_reader *r, JCOEF *block, uint64_t pending,
                                       int p1) {
    for (; pending; pending &= pending - 1) {
        if (__builtin_expect(r->count < 1, 0)) huffman_refill(r);
        int bit = huffman_take(r, 1);
        JCOEF *coefficient = block + huffman_natural_order[__builtin_ctzll(pending)];
        int value = *coefficient;
        int step = bit && !(value & p1) ? (value >= 0 ? p1 : -p1) : 0;
        *coefficient = (JCOEF)(value + step);
    }
}

/* Where a run of zeros ends: the position of the (rank + 1)-th set bit of `bits` (rank < 16),
 * or 64 where there are not that many. Done without a loop, as Vigna's broadword select: the
 * bytes' counts of set bits, summed up to each byte, show which byte holds the bit, and
 * `in_byte` (progressive_install) finds it there. */
static inline int progressive_select(uint64_t bits, int rank, const uint8_t (*in_byte)[8]) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t counts = bits - ((bits >> 1) & 0x5555555555555555ull);
    counts = (counts & 0x3333333333333333ull) + ((counts >> 2) & 0x3333333333333333ull);
    counts = (counts + (counts >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    uint64_t sums = counts * ones; /* byte i: the set bits of bytes 0 to i */
    uint64_t at_most = (((uint64_t)rank * ones | highs) - sums) & highs; /* sums <= rank */
    int byte = (int)((at_most >> 7) * ones >> 56); /* how many: the byte that holds the bit */
    if (byte >= 8) return 64;
    int before = (int)(((sums << 8) >> (8 * byte)) & 0xFF);
    return 8 * byte + in_byte[(bits >> (8 * byte)) & 0xFF][rank - before];
}

#if defined(__x86_64__)
/* The same in one instruction (BMI2's bit deposit), where it is fast: a fifth less time for a
 * progressive photo than the broadword select on an Intel Xeon. */
__attribute__((target("bmi2"))) static inline int progressive_select_bmi2(
    uint64_t bits, int rank, const uint8_t (*in_byte)[8]) {
    (void)in_byte;
    uint64_t bit = _pdep_u64(1ull << rank, bits);
    return bit ? __builtin_ctzll(bit) : 64;
}
#endif

/* Zig-zag bits k to 63 (k <= 64). */
static inline uint64_t progressive_from(int k) { return k < 64 ? ~0ull << k : 0; }

/* A DC scan's MCU (the first pass, or a refinement bit per block). 0 to decline. */
static int progressive_dc(progressive_decoder *p, huffman_reader *r, JBLOCKROW *MCU_data) {
    huffman_decoder *d = &p->huffman;
    for (int b = 0; b < d->blocks; b++) {
        JCOEF *block = MCU_data[b][0];
        if (r->count < 32) huffman_refill(r);
        if (p->kind == SCAN_DC_REFINE) {
            if (huffman_take(r, 1)) block[0] = (JCOEF)(block[0] | (1 << p->Al));
            continue;
        }
        int difference;
        if (!huffman_dc(r, d->dc_of[b], &difference)) return 0;
        int *last = &d->last_dc[d->component_of[b]];
        if ((*last >= 0 && difference > INT_MAX - *last) ||
            (*last < 0 && difference < INT_MIN - *last))
            return 0; /* libjpeg: JERR_BAD_DCT_COEF */
        *last += difference;
        block[0] = (JCOEF)((unsigned int)*last << p->Al);
    }
    return 1;
}

/* An AC scan's first pass over one block: the band's coefficients to Al bits, or a block of an
 * end-of-band run. 0 to decline. */
static int progressive_ac_first(progressive_decoder *p, huffman_reader *r, JCOEF *block) {
    huffman_decoder *d = &p->huffman;
    if (d->eobrun) {
        d->eobrun--;
        return 1;
    }
    const huffman_table *table = d->ac_of[0];
    for (int k = p->Ss; k <= p->Se; k++) {
        if (r->count < 32) huffman_refill(r);
        int32_t entry = table->fast[r->bits >> (64 - HUFFMAN_FAST_BITS)];
        int value;
        if (entry & HUFFMAN_DONE) {
            huffman_take_entry(r, entry);
            k += (entry >> 8) & 15;
            value = entry >> 16;
        } else {
            int symbol = huffman_symbol(r, table, entry);
            if (symbol < 0) return 0;
            int run = symbol >> 4, size = symbol & 15;
            if (!size) {
                if (run == 15) {
                    k += 15; /* sixteen zeros */
                    continue;
                }
                d->eobrun = (1u << run) - 1; /* this block ends the band, and so do the next */
                if (run) d->eobrun += (unsigned int)huffman_take(r, run);
                return 1;
            }
            k += run;
            value = huffman_extend(huffman_take(r, size), size);
        }
        if (k > p->Se) return 0; /* past the band: libjpeg writes where it should not */
        block[huffman_natural_order[k]] = (JCOEF)((unsigned int)value << p->Al);
    }
    return 1;
}

typedef int (*bit_selector)(uint64_t bits, int rank, const uint8_t (*in_byte)[8]);

/* An AC refinement scan over one block: a correction bit for each coefficient already nonzero,
 * and the band's newly nonzero coefficients (magnitude 1 << Al) with the zeros between them.
 * The block's nonzero coefficients are found once, as a mask: a run of zeros ends at the mask's
 * (run + 1)-th clear bit, and the nonzero ones it passes take their correction bits in turn. */
__attribute__((always_inline)) static inline int progressive_ac_refine_with(
    progressive_decoder *p, huffman_reader *r, JCOEF *block, bit_selector select) {
    huffman_decoder *d = &p->huffman;
    const huffman_table *table = d->ac_of[0];
    int p1 = 1 << p->Al, k = p->Ss;
    uint64_t nonzero = p->nonzero(block, p->gather) & p->band;
    if (d->eobrun == 0) {
        while (k <= p->Se) {
            if (r->count < 32) huffman_refill(r);
            int32_t entry = table->fast[r->bits >> (64 - HUFFMAN_FAST_BITS)];
            int run, value = 0;
            if (entry & HUFFMAN_DONE) {
                huffman_take_entry(r, entry);
                run = (entry >> 8) & 15;
                value = entry >> 16;
                if (value != 1 && value != -1) return 0; /* libjpeg: JWRN_HUFF_BAD_CODE */
            } else {
                int symbol = huffman_symbol(r, table, entry);
                if (symbol < 0) return 0;
                int size = symbol & 15;
                run = symbol >> 4;
                if (size > 1) return 0;
                if (size) {
                    value = huffman_take(r, 1) ? 1 : -1;
                } else if (run != 15) {
                    d->eobrun = 1u << run; /* the band ends here, in this block and the next */
                    if (run) d->eobrun += (unsigned int)huffman_take(r, run);
                    break;
                }
            }
            /* past `run` zeros and the nonzero coefficients among them, to the next zero */
            uint64_t zeros = ~nonzero & p->band & progressive_from(k);
            int target = select(zeros, run, p->select_in_byte);
            if (target > p->Se) target = p->Se + 1;
            uint64_t passed = nonzero & progressive_from(k) & ~progressive_from(target);
            progressive_correct(r, block, passed, p1);
            if (value) {
                if (target > p->Se) return 0; /* past the band: libjpeg writes out of place */
                block[huffman_natural_order[target]] = (JCOEF)(value > 0 ? p1 : -p1);
            }
            k = target + 1;
        }
    }
    if (d->eobrun > 0) {
        progressive_correct(r, block, nonzero & progressive_from(k), p1);
        d->eobrun--;
    }
    return 1;
}

static int progressive_ac_refine(progressive_decoder *p, huffman_reader *r, JCOEF *block) {
    return progressive_ac_refine_with(p, r, block, progressive_select);
}

#if defined(__x86_64__)
__attribute__((target("bmi2"))) static int progressive_ac_refine_bmi2(progressive_decoder *p,
                                                                     huffman_reader *r,
                                                                     JCOEF *block) {
    return progressive_ac_refine_with(p, r, block, progressive_select_bmi2);
}
#endif

/* The scan ended well-formed (libjpeg's reader would stop on the same marker with nothing
 * left over): hand libjpeg's source the marker. 0 where it did not. */
static int progressive_end_scan(j_decompress_ptr cinfo, progressive_decoder *p) {
    const huffman_reader *r = &p->huffman.reader;
    if (!huffman_at_marker(r) || r->zeros > r->count || r->truncated || r->next[1] == 0x00 ||
        r->next[1] == 0xFF)
        return 0; /* data left over, or fill bytes (0xFF 0xFF 0x00 is data to libjpeg) */
    cinfo->src->next_input_byte = r->next;
    cinfo->src->bytes_in_buffer = (size_t)(r->end - r->next);
    return 1;
}

static void progressive_decline(j_decompress_ptr cinfo, progressive_decoder *p) {
    p->huffman.declined = 1;
    (*cinfo->err->error_exit)((j_common_ptr)cinfo); /* the caller's escape: it decodes again */
}

static boolean progressive_decode_mcu(j_decompress_ptr cinfo, JBLOCKROW *MCU_data) {
    progressive_decoder *p = cinfo->client_data;
    huffman_decoder *d = &p->huffman;
    if (d->declined) return TRUE; /* (progressive_decline does not return) */
    if (d->restart_interval) {
        if (d->restarts_to_go == 0 && !huffman_restart(d)) {
            progressive_decline(cinfo, p);
            return TRUE;
        }
        d->restarts_to_go--;
    }
    huffman_reader reader = d->reader; /* a local: kept in registers */
    int ok;
    switch (p->kind) {
    case SCAN_AC_FIRST:
        ok = progressive_ac_first(p, &reader, MCU_data[0][0]);
        break;
    case SCAN_AC_REFINE:
        ok = p->ac_refine(p, &reader, MCU_data[0][0]);
        break;
    default:
        ok = progressive_dc(p, &reader, MCU_data);
    }
    d->reader = reader;
    if (!ok || reader.zeros > reader.count || reader.truncated ||
        (--p->mcus_left == 0 && !progressive_end_scan(cinfo, p)))
        progressive_decline(cinfo, p);
    return TRUE;
}

/* Sets this decoder up for the scan libjpeg has just started (its parameters checked by
 * libjpeg's start_pass, which leaves few of the checks below able to fail). 0 where it cannot
 * take it. */
static int progressive_begin_scan(j_decompress_ptr cinfo, progressive_decoder *p) {
    entropy_decoder_head *entropy = (entropy_decoder_head *)cinfo->entropy;
    huffman_decoder *d = &p->huffman;
    int dc = cinfo->Ss == 0;
    if (entropy == NULL || cinfo->blocks_in_MCU > D_MAX_BLOCKS_IN_MCU || cinfo->Al > 13 ||
        cinfo->Se >= DCTSIZE2 || (!dc && cinfo->comps_in_scan != 1) || cinfo->src == NULL ||
        cinfo->src->bytes_in_buffer < 2)
        return 0;
    p->kind = dc ? (cinfo->Ah ? SCAN_DC_REFINE : SCAN_DC_FIRST)
                 : (cinfo->Ah ? SCAN_AC_REFINE : SCAN_AC_FIRST);
    p->Ss = cinfo->Ss;
    p->Se = cinfo->Se;
    p->Al = cinfo->Al;
    p->band = progressive_from(cinfo->Ss) & ~progressive_from(cinfo->Se + 1);
    p->mcus_left = cinfo->MCUs_per_row * cinfo->MCU_rows_in_scan;
    memset(&d->reader, 0, sizeof(d->reader));
    d->reader.next = cinfo->src->next_input_byte;
    d->reader.end = d->reader.next + cinfo->src->bytes_in_buffer;
    memset(d->last_dc, 0, sizeof(d->last_dc));
    d->eobrun = 0;
    d->restart_interval = d->restarts_to_go = cinfo->restart_interval;
    d->next_restart = 0;
    d->blocks = cinfo->blocks_in_MCU;
    int built[NUM_HUFF_TBLS] = {0};
    for (int b = 0; b < d->blocks; b++) {
        int c = cinfo->MCU_membership[b];
        const jpeg_component_info *component = cinfo->cur_comp_info[c];
        d->component_of[b] = c;
        if (p->kind == SCAN_DC_REFINE) continue; /* no codes: a bit per block */
        int number = dc ? component->dc_tbl_no : component->ac_tbl_no;
        if (number < 0 || number >= NUM_HUFF_TBLS) return 0;
        JHUFF_TBL *source = dc ? cinfo->dc_huff_tbl_ptrs[number] : cinfo->ac_huff_tbl_ptrs[number];
        if (source == NULL) return 0;
        huffman_table *table = &d->tables[dc ? number : NUM_HUFF_TBLS + number];
        if (!built[number]) huffman_build(table, source, dc); /* a scan may bring new tables */
        built[number] = 1;
        d->dc_of[b] = d->ac_of[b] = table;
    }
    entropy->decode_mcu = progressive_decode_mcu;
    return 1;
}

/* libjpeg's progress monitor, which it calls before each step of reading the file: where a new
 * scan has started, take it. */
static void progressive_monitor(j_common_ptr common) {
    j_decompress_ptr cinfo = (j_decompress_ptr)common;
    progressive_decoder *p = cinfo->client_data;
    if (cinfo->input_scan_number == p->scan) return; /* the same scan, or rows going out */
    p->scan = cinfo->input_scan_number;
    /* a scan libjpeg has begun to read already (never in jpeg_start_decompress's loop) */
    if (cinfo->input_iMCU_row != 0 || !progressive_begin_scan(cinfo, p))
        progressive_decline(cinfo, p);
}

/* Takes over the entropy decoding of a progressive JPEG's scans, where this decoder can: a new
 * decoder (cinfo->client_data and cinfo->progress point into it), else NULL. `extensions`:
 * progressive_extensions(), or fewer (the same coefficients, more slowly). Call after
 * jpeg_read_header, before jpeg_start_decompress (which reads every scan, calling the monitor
 * before each step; not in buffered-image mode, where jpeg_consume_input reads without it);
 * free with huffman_free (it starts with a huffman_decoder) after jpeg_destroy_decompress. */
static huffman_decoder *progressive_install(j_decompress_ptr cinfo, int extensions) {
#ifndef LIBJPEG_TURBO_VERSION_NUMBER
    return NULL; /* IJG's libjpeg: its decoders may not do as libjpeg-turbo's */
#endif
    if (!cinfo->progressive_mode || cinfo->arith_code || cinfo->data_precision != 8 ||
        cinfo->buffered_image || cinfo->progress != NULL || cinfo->src->bytes_in_buffer < 2)
        return NULL;
    progressive_decoder *p = calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->nonzero = progressive_nonzero;
    p->ac_refine = progressive_ac_refine;
#if defined(__x86_64__)
    if (extensions & PROGRESSIVE_SSSE3) p->nonzero = progressive_nonzero_ssse3;
    if (extensions & PROGRESSIVE_BMI2) p->ac_refine = progressive_ac_refine_bmi2;
#endif
    for (int byte = 0; byte < 256; byte++)
        for (int bit = 0, rank = 0; bit < 8; bit++)
            if ((byte >> bit) & 1) p->select_in_byte[byte][rank++] = (uint8_t)bit;
    /* gather[4 * j + i]: for the zig-zag coefficients 16 j to 16 j + 15, where each is among
     * natural-order bytes 16 i to 16 i + 15 (0x80, a zero, where it is not) */
    for (int k = 0; k < DCTSIZE2; k++)
        for (int i = 0; i < 4; i++)
            p->gather[4 * (k / 16) + i][k % 16] =
                huffman_natural_order[k] / 16 == i ? huffman_natural_order[k] % 16 : 0x80;
    p->progress.progress_monitor = progressive_monitor;
    cinfo->progress = &p->progress;
    cinfo->client_data = p;
    return &p->huffman;
}

#endif
