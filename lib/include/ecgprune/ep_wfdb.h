/*
 * ep_wfdb.h - reading PhysioNet WFDB records: headers (.hea), signal files
 * in formats 212, 16 and 80, and MIT-format annotation files (.atr).
 *
 * A record is named as WFDB tools name it, by its path without extension
 * ("data/mitdb/100").  Parsers take the whole file as a buffer so that the
 * fuzz targets exercise exactly the code the readers use.  Every error
 * names the file and the line or byte offset and what was expected.
 */
#ifndef ECGPRUNE_EP_WFDB_H
#define ECGPRUNE_EP_WFDB_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EP_WFDB_NAME_MAX 64
/* Most signals a header may declare; more is taken as a corrupt header. */
#define EP_WFDB_MAX_SIGNALS 256

typedef struct ep_signal_info {
    char file[EP_WFDB_NAME_MAX];      /* signal file name from the header */
    int format;                        /* 212, 16 or 80 */
    double gain;                       /* ADC units per physical unit */
    int baseline;                      /* ADC value of 0 physical units */
    int adc_resolution;                /* bits */
    int adc_zero;
    int initial_value, has_initial_value;
    int initial_value_ok;              /* 1 ok, 0 mismatch, -1 not given */
    int checksum, has_checksum;        /* 16-bit sum from the header */
    int computed_checksum;             /* after decoding */
    int checksum_ok;                   /* 1 ok, 0 mismatch, -1 not given */
    char units[16];                    /* "mV" when not given */
    char name[EP_WFDB_NAME_MAX];       /* description, e.g. "MLII" */
    int block_size;                    /* 0 when not given */
    long byte_offset;                  /* bytes to skip ("212+N"), 0 default */
} ep_signal_info;

typedef struct ep_record {
    char name[EP_WFDB_NAME_MAX];
    int n_signals;
    double sampling_rate;              /* frames per second */
    int64_t n_samples;                 /* per signal */
    ep_signal_info *signals;           /* n_signals entries */
    int32_t **samples;                 /* [signal][n_samples], ADC units;
                                          NULL until signals are read */
} ep_record;

/* Parse a header held in memory (CR-LF or LF line endings). */
int ep_wfdb_parse_header(const char *text, size_t len, const char *what,
                         ep_record **out, ep_error *err);

/* Decode one signal file's bytes into rec->samples for every signal that
 * lives in `file`, verifying checksums and first values.  The file must
 * hold exactly the samples the header declares; when the header gives no
 * length (0), rec->n_samples is taken from the file.  On a checksum or
 * first-value mismatch the samples are kept, checksum_ok and
 * initial_value_ok say which check failed, and EP_ECHECKSUM is returned. */
int ep_wfdb_decode_signals(ep_record *rec, const char *file,
                           const unsigned char *buf, size_t len,
                           ep_error *err);

/* Read header and all signal files of a record ("dir/100"). A checksum or
 * first-value mismatch is an EP_ECHECKSUM error. */
int ep_wfdb_read_record(const char *record, ep_record **out, ep_error *err);
/* Like ep_wfdb_read_record, but a checksum or first-value mismatch is not
 * an error: the record is returned and each signal's checksum_ok tells. */
int ep_wfdb_read_record_unverified(const char *record, ep_record **out,
                                   ep_error *err);
void ep_wfdb_free_record(ep_record *rec);

/* Index of the signal whose name is `name`, or EP_ENOTFOUND. */
int ep_wfdb_find_signal(const ep_record *rec, const char *name);

/* The signals' names quoted and separated by commas ("'MLII', 'V5'")
 * into buf, cut to size - 1 bytes; for messages that say what a record
 * holds.  Returns buf. */
const char *ep_wfdb_signal_names(const ep_record *rec, char *buf,
                                 size_t size);

/* Physical values (units of the header, mV for MIT-BIH) of one signal:
 * (adc - baseline) / gain.  out holds n_samples floats.
 * Limitation: WFDB's "invalid sample" values (-2048 in format 212,
 * -32768 in format 16) are converted like any other value. */
int ep_wfdb_signal_physical(const ep_record *rec, int signal, float *out,
                            ep_error *err);

/* The same in millivolts, whatever voltage unit the header gives ("mV",
 * the default; "uV" or "µV"; "V"); a signal in any other unit (a
 * temperature, a pressure) is refused with EP_EINVAL, since reading it
 * as ECG would be silently wrong. */
int ep_wfdb_signal_mv(const ep_record *rec, int signal, float *out,
                      ep_error *err);

/* One annotation.  aux is NUL-terminated or NULL. */
typedef struct ep_annotation {
    int64_t sample;
    int code;                          /* MIT code, 1..49 */
    int subtype, chan, num;
    char *aux;
} ep_annotation;

typedef struct ep_annotations {
    ep_annotation *items;
    size_t count;
} ep_annotations;

/* An annotation file's bytes (what names it in errors).  The items come
 * in time order: a file whose negative SKIP moves time back (WFDB writes
 * none) is sorted, stably, so that annotations at one sample keep the
 * file's order and every reader sees the same list. */
int ep_wfdb_parse_annotations(const unsigned char *buf, size_t len,
                              const char *what, ep_annotations **out,
                              ep_error *err);
/* Read RECORD.EXT (ext "atr" for reference annotations). */
int ep_wfdb_read_annotations(const char *record, const char *ext,
                             ep_annotations **out, ep_error *err);
void ep_wfdb_free_annotations(ep_annotations *ann);

/* The MIT mnemonic of a code ("N", "V", "+", ...), or "?" if unknown. */
const char *ep_wfdb_code_symbol(int code);
/* A one-line description of a code ("Normal beat"), "" if unassigned. */
const char *ep_wfdb_code_description(int code);
/* Inverse of ep_wfdb_code_symbol; EP_ENOTFOUND for an unknown symbol. */
int ep_wfdb_symbol_code(const char *symbol);
/* 1 if the code is a beat annotation (WFDB isqrs), else 0. */
int ep_wfdb_is_beat(int code);
/* EP_OK, or EP_EFORMAT naming the first beat of ann (in time order)
 * outside samples 0..n_samples-1 (the annotation file of another, longer
 * record, whose beats would be counted and scored as missed) or at the
 * sample of the beat before it (one beat annotated twice, which would be
 * scored twice).  Notes and rhythm changes may lie anywhere (excerpts
 * often end with one past the signal). */
int ep_wfdb_check_beats(const ep_annotations *ann, int64_t n_samples,
                        ep_error *err);

#ifdef __cplusplus
}
#endif

#endif
