/*
 * ed_schema.h - the store's schema files, embedded at build time from
 * schema/NNNN_name.sql by gen_schema.py.  File N brings the database from
 * PRAGMA user_version N-1 to N.
 */
#ifndef ED_SCHEMA_H
#define ED_SCHEMA_H

typedef struct ed_schema_file {
    int version;
    const char *name;
    const char *const *lines;   /* the file's lines, NULL-terminated */
} ed_schema_file;

extern const ed_schema_file ed_schema_files[];
extern const int ed_schema_count;

#endif
