/*
 * ed_config.h - the daemon's settings: built-in defaults, then the JSON
 * file given with --config (config/ecgpruned.json documents every key),
 * then command-line overrides.  With neither file nor options the daemon
 * listens on 127.0.0.1:8642 and keeps its data in ./ecgprune-data.
 */
#ifndef ED_CONFIG_H
#define ED_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "ed_log.h"

#define ED_PATH_MAX 1024
#define ED_MAX_TOKENS 32

typedef struct ed_config {
    char listen_addr[64];       /* numeric IPv4 or IPv6 address */
    int port;                   /* 0: any free port (see port_file) */
    char data_dir[ED_PATH_MAX];
    int workers;                /* libuv pool threads */
    int max_running_jobs;       /* jobs on the pool at once */
    int max_running_jobs_asked; /* before lowering to workers - 1 */
    int64_t max_body_bytes;
    int64_t max_pending_bytes;  /* request bodies held at once, all
                                 * connections together */
    int64_t max_samples;        /* per ECG signal */
    int64_t max_job_bytes;      /* a job's estimated peak memory */
    int64_t max_connections_per_ip; /* 0: only the global 512 */
    char tokens[ED_MAX_TOKENS][128];
    int n_tokens;
    char tls_cert[ED_PATH_MAX], tls_key[ED_PATH_MAX];
    ed_log_level log_level;
    char log_file[ED_PATH_MAX];
    char preload[ED_PATH_MAX];  /* model file stored at start if absent */
    char port_file[ED_PATH_MAX];/* the bound port is written here */
    int keep_inferences;        /* store one record per inference */
    int check_only;             /* --check-config */
    int show_help;
    int show_version;
} ed_config;

void ed_config_defaults(ed_config *cfg);

/* Defaults, then the --config file, then the other options.  On failure
 * err says which option or key was wrong. */
int ed_config_from_args(ed_config *cfg, int argc, char **argv, char *err,
                        size_t err_size);

/* Parse "ADDR:PORT", "[V6ADDR]:PORT" or "PORT". */
int ed_config_parse_listen(const char *s, char *addr, size_t addr_size,
                           int *port);

void ed_config_usage(FILE *out);

/* Settings that work but that an administrator should hear about: one
 * worker (a job then holds inference), an address beyond loopback without
 * tokens or without TLS.  Writes up to max messages into advice and
 * returns how many. */
/* Whether a file a setting names for reading (what: "tls.cert",
 * "preload") is a regular file: a FIFO would block the daemon on its
 * open, a directory read as nothing.  0, or -1 with why filled. */
int ed_config_input_file(const char *path, const char *what, char *why,
                         size_t why_size);

/* Whether the log file opens for appending as the daemon opens it: an
 * existing regular file or character device, or a new file in a
 * writable directory (through a symbolic link too); a test file is
 * created and removed again.  0, or -1 with why filled. */
int ed_config_log_file(const char *path, char *why, size_t why_size);

#define ED_CONFIG_ADVICE_MAX 240
int ed_config_advice(const ed_config *cfg,
                     char advice[][ED_CONFIG_ADVICE_MAX], int max);

#endif
