/*
 * A faster Huffman decoder for sequential JPEGs, in place of libjpeg-turbo's own (progressive
 * scans use its reader and tables too: _jpeg_progressive.h).
 *
 * Most of a photo's decode is Huffman decoding. libjpeg-turbo reads the scan a byte at a time,
 * each byte checked for 0xFF, and decodes each coefficient in two steps: its code from an 8-bit
 * table, then its extra bits. This decoder:
 *   - takes eight bytes at a time into its bit reader, with one check that none of them is 0xFF
 *     (the start of a stuffed byte or of a marker, which it then reads a byte at a time);
 *   - decodes most coefficients in one step: each entry of a HUFFMAN_FAST_BITS-bit table gives
 *     the run, the value and the length of code and extra bits together;
 *   - in a sequential scan's AC tables, decodes two symbols in one step where both fit in the
 *     table's bits (a small coefficient and the next one, or the end of the block: most of a
 *     photo's last coefficients), so each look-up waits for one shift instead of two.
 * The coefficients are libjpeg's. Where libjpeg would do anything but decode a well-formed scan
 * (a code no table has, a run past the end of a block, a scan that ends in the middle of an
 * MCU, a restart marker missing, out of turn or after stray data), this decoder declines: it
 * stops decoding, sets `declined`, and the caller decodes the image again with libjpeg's
 * decoder, which then does what it always did (warnings included). It does not take scans it
 * cannot follow exactly (arithmetic-coded, lossless or 12-bit ones), and it declines a file
 * that ends without a marker after the scan when it gets there.
 *
 * libjpeg has no API for this. Its modules are objects with method pointers, and the entropy
 * decoder's first two members have been `start_pass` and `decode_mcu` since IJG's release 6
 * (struct jpeg_entropy_decoder in jpegint.h, which libjpeg-turbo does not install): after
 * jpeg_start_decompress has set libjpeg's decoder up for the scan, huffman_install points
 * `decode_mcu` here. libjpeg calls it for every MCU it reads or skips (jdcoefct.c,
 * jdapistd.c), with the MCU's blocks zeroed, or with NULL to have the MCU skipped.
 */
#ifndef ZEROFEED_JPEG_HUFFMAN_H
#define ZEROFEED_JPEG_HUFFMAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#ifndef HUFFMAN_FAST_BITS
#define HUFFMAN_FAST_BITS 10
#endif

/* Table entries: the length consumed in the low 5 bits (0: the code is longer than the table,
 * decode it bit by bit), HUFFMAN_DONE when the entry holds the coefficient's value (in the high
 * 16 bits) and run (bits 8-11), else the code's symbol in the high 16 bits.
 *
 * A sequential scan's AC tables hold their coefficients another way (huffman_pair): each
 * HUFFMAN_DONE entry gives one coefficient (run in bits 8-11, value in bits 22-31) and may give
 * the next symbol too, where the first leaves room for it in the table's bits: then either
 * HUFFMAN_END (the block ends) or a second coefficient, 1 + its run in bits 12-16 and its value in
 * bits 17-21. The length in the low bits is then both symbols'. Bit 5 is always clear (see
 * huffman_take_entry). */
#define HUFFMAN_LENGTH 0x1F
#define HUFFMAN_END 0x40
#define HUFFMAN_DONE 0x80
#define HUFFMAN_SECOND (0x1F << 12)

/* The head of libjpeg's struct jpeg_entropy_decoder (jpegint.h). */
typedef struct {
    void (*start_pass)(j_decompress_ptr cinfo);
    boolean (*decode_mcu)(j_decompress_ptr cinfo, JBLOCKROW *MCU_data);
} entropy_decoder_head;

typedef struct {
    int32_t fast[1 << HUFFMAN_FAST_BITS];
    int32_t maxcode[17]; /* the largest code of each length, -1 where there is none */
    int32_t valoffset[17];
    uint8_t huffval[256];
} huffman_table;

/* The bit reader: `bits` holds the next bits, first in the most significant. The first `count`
 * of them are valid, and the last `zeros` of those are zeros added after the scan's end; `next`
 * is the first byte of the file not yet among them. */
typedef struct {
    uint64_t bits;
    int count;
    int zeros;
    const uint8_t *next;
    const uint8_t *end;
    int truncated; /* the file ended without a marker after the scan */
} huffman_reader;

typedef struct {
    huffman_reader reader;
    int last_dc[MAX_COMPS_IN_SCAN];
    int blocks;
    unsigned int restart_interval; /* MCUs between restart markers, 0 for none */
    unsigned int restarts_to_go;   /* MCUs before the next marker */
    int next_restart;              /* its number, 0-7 (RST0-RST7) */
    unsigned int eobrun;           /* progressive AC scans: blocks left in an end-of-band run */
    int component_of[D_MAX_BLOCKS_IN_MCU];
    boolean dc_needed[D_MAX_BLOCKS_IN_MCU];
    boolean ac_needed[D_MAX_BLOCKS_IN_MCU];
    const huffman_table *dc_of[D_MAX_BLOCKS_IN_MCU];
    const huffman_table *ac_of[D_MAX_BLOCKS_IN_MCU];
    int declined;
    huffman_table tables[2 * NUM_HUFF_TBLS]; /* DC tables, then AC tables (last: not zeroed) */
} huffman_decoder;

/* Zig-zag order to natural order, with 16 more entries so that a run past the end of a block
 * writes where libjpeg's does (jutils.c) before the block's end check declines (a pair's second
 * coefficient too: a pair whose first reaches the end is decoded alone). */
static const uint8_t huffman_natural_order[DCTSIZE2 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33,
    40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36,
    29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
};

/* The signed value of `size` extra bits (JPEG's EXTEND, section F.2.2.1). */
static inline int huffman_extend(int bits, int size) {
    return bits < (1 << (size - 1)) ? bits - (1 << size) + 1 : bits;
}

/* Builds `table` from a JPEG's code lengths and symbols; DC symbols are sizes, AC symbols a run
 * and a size. libjpeg has checked the table already (jpeg_make_d_derived_tbl). */
static void huffman_build(huffman_table *table, const JHUFF_TBL *source, int is_dc) {
    memset(table->fast, 0, sizeof(table->fast));
    memcpy(table->huffval, source->huffval, sizeof(table->huffval));
    int32_t code = 0;
    int index = 0;
    for (int length = 1; length <= 16; length++) {
        int count = source->bits[length];
        table->valoffset[length] = index - code;
        table->maxcode[length] = count ? code + count - 1 : -1;
        for (int i = 0; i < count; i++, index++, code++) {
            if (length > HUFFMAN_FAST_BITS) continue;
            int symbol = source->huffval[index];
            int run = is_dc ? 0 : symbol >> 4, size = symbol & 15;
            int spare = HUFFMAN_FAST_BITS - length;
            int32_t first = code << spare;
            for (int32_t filler = 0; filler < (1 << spare); filler++) {
                int32_t entry;
                if ((size > 0 || is_dc) && length + size <= HUFFMAN_FAST_BITS) {
                    int extra = (filler >> (spare - size)) & ((1 << size) - 1);
                    int value = size ? huffman_extend(extra, size) : 0;
                    entry = (int32_t)((uint32_t)value << 16) | run << 8 | HUFFMAN_DONE |
                            (length + size);
                } else {
                    entry = symbol << 16 | length;
                }
                table->fast[first + filler] = entry;
            }
        }
        code <<= 1;
    }
}

/* Turns a sequential scan's AC table, as huffman_build makes it, into pairs (see HUFFMAN_END):
 * every coefficient's entry takes the pair layout, and where the coefficient's code and extra
 * bits leave room in the entry's bits for the whole of the next symbol (a coefficient whose value
 * fits in 5 bits, or the end of the block), the entry gives that symbol too. The progressive
 * decoder reads one symbol an entry: its tables stay as built. */
static void huffman_pair(huffman_table *table) {
    enum { ENTRIES = 1 << HUFFMAN_FAST_BITS };
    /* a code of at least 1 bit leaves at most 9 extra bits: a value bits 22-31 hold */
    _Static_assert(HUFFMAN_FAST_BITS <= 10, "pair entries hold a value of up to 9 extra bits");
    int32_t single[ENTRIES];
    memcpy(single, table->fast, sizeof(single));
    for (int32_t index = 0; index < ENTRIES; index++) {
        int32_t first = single[index];
        if (!(first & HUFFMAN_DONE)) continue;
        int length = first & HUFFMAN_LENGTH, value = first >> 16;
        uint32_t entry = (uint32_t)value << 22 | (uint32_t)(first & 0xF00) | HUFFMAN_DONE;
        /* the entry's bits after the first symbol, then zeros: an entry no longer than those
         * bits is the next symbol's */
        int32_t second = single[(index << length) & (ENTRIES - 1)];
        int second_length = second & HUFFMAN_LENGTH, second_value = second >> 16;
        if (length < HUFFMAN_FAST_BITS && second_length &&
            length + second_length <= HUFFMAN_FAST_BITS) {
            if ((second & HUFFMAN_DONE) && second_value >= -16 && second_value <= 15) {
                entry |= (uint32_t)(1 + ((second >> 8) & 15)) << 12 |
                         (uint32_t)(second_value & 0x1F) << 17;
                length += second_length;
            } else if (!(second & HUFFMAN_DONE) && second_value == 0) { /* end of block */
                entry |= HUFFMAN_END;
                length += second_length;
            }
        }
        table->fast[index] = (int32_t)(entry | (uint32_t)length);
    }
}

/* Adds the next bytes a byte at a time: a stuffed 0xFF 0x00 gives 0xFF; a marker ends the scan,
 * and so does the end of the file, after which zeros come in, as in libjpeg. */
static void huffman_refill_bytes(huffman_reader *r) {
    while (r->count <= 56) {
        int byte = 0;
        if (r->next >= r->end || (r->next[0] == 0xFF && r->next + 1 >= r->end)) {
            r->truncated = 1;
            r->zeros += 8;
        } else if (r->next[0] != 0xFF) {
            byte = *r->next++;
        } else if (r->next[1] == 0x00) {
            byte = 0xFF;
            r->next += 2;
        } else {
            r->zeros += 8; /* a marker: left unread */
        }
        r->bits |= (uint64_t)byte << (56 - r->count);
        r->count += 8;
    }
}

/* Tops the reader up to at least 56 bits. Eight bytes without a 0xFF among them go in at once
 * (bytes that do not fit are taken again, to the same bits, next time). */
static inline void huffman_refill(huffman_reader *r) {
    if (r->end - r->next >= 8) {
        uint64_t word;
        memcpy(&word, r->next, sizeof(word));
        if (!(~(word + 0x0101010101010101ull) & word & 0x8080808080808080ull)) { /* no 0xFF */
            r->bits |= __builtin_bswap64(word) >> r->count;
            r->next += (63 - r->count) >> 3;
            r->count |= 56;
            return;
        }
    }
    huffman_refill_bytes(r);
}

static inline int huffman_take(huffman_reader *d, int length) {
    int value = (int)(d->bits >> (64 - length));
    d->bits <<= length;
    d->count -= length;
    return value;
}

/* Takes a table entry's length. Bits 5 and 6 of an entry are always clear, so `entry & 63` is
 * the length, and the shift needs no mask of its own on x86-64 (the critical path of decoding:
 * the next look-up waits for it). */
static inline void huffman_take_entry(huffman_reader *d, int32_t entry) {
    d->bits <<= entry & 63;
    d->count -= entry & HUFFMAN_LENGTH;
}

/* The next symbol, decoded bit by bit from the canonical code, trying codes of `length` bits
 * and longer; -1 for a code no table has. */
static inline int huffman_canonical_symbol(huffman_reader *d, const huffman_table *table,
                                           int length) {
    int32_t code = (int32_t)(d->bits >> (64 - length));
    while (code > table->maxcode[length]) {
        if (length == 16) return -1;
        length++;
        code = (int32_t)(d->bits >> (64 - length));
    }
    huffman_take(d, length);
    return table->huffval[(code + table->valoffset[length]) & 0xFF];
}

/* The next symbol of a code longer than the fast table, or -1 for a code no table has. */
static inline int huffman_long_symbol(huffman_reader *d, const huffman_table *table) {
    return huffman_canonical_symbol(d, table, HUFFMAN_FAST_BITS + 1);
}

/* The next symbol, or -1; for a table entry without its value (HUFFMAN_DONE unset). */
static inline int huffman_symbol(huffman_reader *d, const huffman_table *table, int32_t entry) {
    if (entry & HUFFMAN_LENGTH) {
        huffman_take_entry(d, entry);
        return entry >> 16;
    }
    return huffman_long_symbol(d, table);
}

/* Decodes a DC difference into `difference`: 0 for a code no table has, else 1. */
static inline int huffman_dc(huffman_reader *d, const huffman_table *table, int *difference) {
    int32_t entry = table->fast[d->bits >> (64 - HUFFMAN_FAST_BITS)];
    if (entry & HUFFMAN_DONE) {
        huffman_take_entry(d, entry);
        *difference = entry >> 16;
        return 1;
    }
    int size = huffman_symbol(d, table, entry);
    if (size < 0) return 0;
    *difference = size ? huffman_extend(huffman_take(d, size), size) : 0;
    return 1;
}

/* The first symbol of a pair entry, alone: a coefficient's run and value (as a huffman_build
 * entry), decoded bit by bit (rare: where the block ends with the first symbol). */
static int32_t huffman_first_of_pair(huffman_reader *d, const huffman_table *table) {
    int symbol = huffman_canonical_symbol(d, table, 1); /* a code the fast table has */
    int size = symbol & 15;
    return (int32_t)((uint32_t)huffman_extend(huffman_take(d, size), size) << 16) |
           (symbol >> 4) << 8;
}

/* Decodes one block's AC coefficients into `block` (natural order), or past them when `block`
 * is NULL. The index one past the last coefficient: 64 for a full block, more for a run past its
 * end, -1 for a bad code. Starts each coefficient with at least 32 bits in the reader: enough
 * for a 16-bit code and 15 extra bits. */
static inline int huffman_ac(huffman_reader *d, const huffman_table *table, JCOEF *block) {
    int k;
    for (k = 1; k < DCTSIZE2; k++) {
        if (__builtin_expect(d->count < 32, 0)) huffman_refill(d);
        int32_t entry = table->fast[d->bits >> (64 - HUFFMAN_FAST_BITS)];
        if (__builtin_expect(entry & HUFFMAN_DONE, 1)) {
            k += (entry >> 8) & 15;
            if (__builtin_expect(k >= DCTSIZE2 - 1, 0) &&
                (entry & (HUFFMAN_END | HUFFMAN_SECOND))) {
                /* the block ends with the first symbol: the second is the next block's */
                entry = huffman_first_of_pair(d, table);
                if (block) block[huffman_natural_order[k]] = (JCOEF)(entry >> 16);
                continue;
            }
            huffman_take_entry(d, entry);
            /* Both coefficients are stored, without a branch: where there is no second, its
             * position is the first's and its value 0, which the first's then overwrites. */
            int second = k + ((entry >> 12) & 31);
            if (block) {
                block[huffman_natural_order[second]] =
                    (JCOEF)((int32_t)((uint32_t)entry << 10) >> 27);
                block[huffman_natural_order[k]] = (JCOEF)(entry >> 22);
            }
            if (entry & HUFFMAN_END) return DCTSIZE2;
            k = second;
            continue;
        }
        int symbol = huffman_symbol(d, table, entry);
        if (symbol < 0) return -1;
        int run = symbol >> 4, size = symbol & 15;
        if (size) {
            k += run;
            int value = huffman_extend(huffman_take(d, size), size);
            if (block) block[huffman_natural_order[k]] = (JCOEF)value;
        } else if (run == 15) {
            k += 15;
        } else {
            return DCTSIZE2; /* end of block */
        }
    }
    return k;
}

/* Whether the reader stands before a marker with nothing of the data left but the last byte's
 * padding (fewer than 8 bits): where a well-formed interval or scan ends. The marker's code,
 * r->next[1], is the caller's to check. */
static inline int huffman_at_marker(const huffman_reader *r) {
    return r->count - r->zeros < 8 && r->end - r->next >= 2 && r->next[0] == 0xFF;
}

/* Moves past the restart marker that ends an interval, as libjpeg's process_restart does for a
 * well-formed one: what is left of the last byte is padding, the marker is the next RSTn, and
 * the DC predictions (and a progressive scan's end-of-band run) start again from 0. 0 where the
 * interval's data goes on, or the marker is not the one due (libjpeg would warn, skip data or
 * resynchronise). */
static int huffman_restart(huffman_decoder *d) {
    huffman_reader *r = &d->reader;
    if (!huffman_at_marker(r) || r->next[1] != 0xD0 + d->next_restart) return 0;
    r->next += 2;
    r->bits = 0;
    r->count = r->zeros = 0;
    memset(d->last_dc, 0, sizeof(d->last_dc));
    d->eobrun = 0;
    d->restarts_to_go = d->restart_interval;
    d->next_restart = (d->next_restart + 1) & 7;
    return 1;
}

static boolean huffman_decode_mcu(j_decompress_ptr cinfo, JBLOCKROW *MCU_data) {
    huffman_decoder *d = cinfo->client_data;
    if (d->declined) return TRUE; /* the caller decodes the image again */
    if (d->restart_interval) {
        if (d->restarts_to_go == 0 && !huffman_restart(d)) {
            d->declined = 1;
            return TRUE;
        }
        d->restarts_to_go--;
    }
    huffman_reader reader = d->reader; /* a local: kept in registers */
    for (int b = 0; b < d->blocks; b++) {
        JCOEF *block = MCU_data ? MCU_data[b][0] : NULL;
        if (reader.count < 32) huffman_refill(&reader);
        int difference;
        if (!huffman_dc(&reader, d->dc_of[b], &difference)) goto decline;
        if (d->dc_needed[b]) {
            int *last = &d->last_dc[d->component_of[b]];
            *last = (int)((unsigned)*last + (unsigned)difference); /* libjpeg's wrap-around */
            if (block) block[0] = (JCOEF)*last;
        }
        int end = d->ac_needed[b] && block ? huffman_ac(&reader, d->ac_of[b], block)
                                           : huffman_ac(&reader, d->ac_of[b], NULL);
        if (end != DCTSIZE2) goto decline;
    }
    d->reader = reader;
    if (reader.zeros > reader.count || reader.truncated) goto decline; /* libjpeg would warn */
    return TRUE;
decline:
    d->declined = 1;
    return TRUE;
}

/* Takes over the entropy decoding of the scan libjpeg is about to read, where this decoder can:
 * a new decoder (cinfo->client_data points to it), else NULL. Call after jpeg_start_decompress
 * and jpeg_crop_scanline, before reading or skipping rows; free with huffman_free after
 * jpeg_destroy_decompress. */
static huffman_decoder *huffman_install(j_decompress_ptr cinfo) {
#ifndef LIBJPEG_TURBO_VERSION_NUMBER
    return NULL; /* IJG's libjpeg: its decoders may not do as libjpeg-turbo's */
#endif
    entropy_decoder_head *entropy = (entropy_decoder_head *)cinfo->entropy;
    if (cinfo->progressive_mode || cinfo->arith_code ||
        cinfo->data_precision != 8 || cinfo->Ss != 0 || cinfo->Se != DCTSIZE2 - 1 ||
        cinfo->Ah != 0 || cinfo->Al != 0 || cinfo->comps_in_scan != cinfo->num_components ||
        cinfo->blocks_in_MCU > D_MAX_BLOCKS_IN_MCU || entropy == NULL ||
        entropy->decode_mcu == NULL || cinfo->src->bytes_in_buffer < 2)
        return NULL;
    for (int c = 0; c < cinfo->comps_in_scan; c++) {
        const jpeg_component_info *component = cinfo->cur_comp_info[c];
        if (cinfo->dc_huff_tbl_ptrs[component->dc_tbl_no] == NULL ||
            cinfo->ac_huff_tbl_ptrs[component->ac_tbl_no] == NULL)
            return NULL;
    }
    huffman_decoder *d = malloc(sizeof(*d));
    if (d == NULL) return NULL;
    memset(d, 0, offsetof(huffman_decoder, tables));
    d->reader.next = cinfo->src->next_input_byte;
    d->reader.end = d->reader.next + cinfo->src->bytes_in_buffer;
    d->blocks = cinfo->blocks_in_MCU;
    d->restart_interval = d->restarts_to_go = cinfo->restart_interval;
    int built[2 * NUM_HUFF_TBLS] = {0};
    for (int b = 0; b < d->blocks; b++) {
        int c = cinfo->MCU_membership[b];
        const jpeg_component_info *component = cinfo->cur_comp_info[c];
        int dc = component->dc_tbl_no, ac = NUM_HUFF_TBLS + component->ac_tbl_no;
        if (!built[dc]) huffman_build(&d->tables[dc], cinfo->dc_huff_tbl_ptrs[dc], 1);
        if (!built[ac]) {
            huffman_build(&d->tables[ac], cinfo->ac_huff_tbl_ptrs[component->ac_tbl_no], 0);
            huffman_pair(&d->tables[ac]);
        }
        built[dc] = built[ac] = 1;
        d->component_of[b] = c;
        d->dc_of[b] = &d->tables[dc];
        d->ac_of[b] = &d->tables[ac];
        /* as libjpeg's start_pass_huff_decoder: no AC coefficients for a 1/8 scale */
        d->dc_needed[b] = component->component_needed;
        d->ac_needed[b] = component->component_needed && component->DCT_scaled_size > 1;
    }
    cinfo->client_data = d;
    entropy->decode_mcu = huffman_decode_mcu;
    return d;
}

static void huffman_free(huffman_decoder *d) { free(d); }

#endif
