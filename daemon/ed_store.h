/*
 * ed_store.h - the daemon's only store: one SQLite database in WAL mode
 * under the data directory.
 *
 * Writer discipline: the store is opened once, by the loop thread, and
 * only the loop thread touches it.  Workers never see the connection:
 * the loop reads what a job or an inference needs before queuing it and
 * writes the results when the work comes back.  With one connection
 * there is nobody to contend with, so "database is locked" cannot occur
 * (busy_timeout is still set for outside readers such as the sqlite3
 * shell taking a WAL checkpoint).
 *
 * Bind lists are format strings, one character per parameter:
 *   'i' int64_t, 'd' double, 't' const char * (NULL binds NULL),
 *   'b' const void *, size_t (a blob).
 */
#ifndef ED_STORE_H
#define ED_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ed_store ed_store;

/* The database's file name inside the data directory, and the file that
 * names the daemon holding the directory. */
#define ED_STORE_DB_FILE "ecgpruned.sqlite3"
#define ED_STORE_LOCK_FILE "ecgpruned.lock"

/* Whether another daemon holds the data directory (the lock
 * ed_store_open takes): 0 when it is free or does not exist yet, -1 with
 * the owner's pid in err.  For --check-config: it holds the lock only
 * while it looks. */
int ed_store_dir_free(const char *data_dir, char *err, size_t err_size);

/* Whether the files in the data directory are ones ed_store_open can
 * use: a database it can bring up to date (read, never written, here)
 * and a pid file that is a regular file.  0, or -1 with err filled.  For
 * --check-config. */
int ed_store_check_dir(const char *data_dir, char *err, size_t err_size);

/* Open (creating) data_dir/ecgpruned.sqlite3 and bring its schema up to
 * date, one transaction per schema file. */
int ed_store_open(const char *data_dir, ed_store **out, char *err,
                  size_t err_size);
void ed_store_close(ed_store *s);

/* The last SQLite error message of this connection. */
const char *ed_store_errmsg(ed_store *s);
int ed_store_schema_version(ed_store *s);

/* Run a statement; returns the number of changed rows or -1. */
int ed_store_exec(ed_store *s, const char *sql, const char *binds, ...);
int64_t ed_store_last_id(ed_store *s);

/* Rows as a JSON array of objects keyed by column name (blobs left out),
 * or NULL on error. */
json_t *ed_store_rows(ed_store *s, const char *sql, const char *binds, ...);
/* The first row as an object; *found 0 when there is none.  NULL on
 * error. */
json_t *ed_store_row(ed_store *s, int *found, const char *sql,
                     const char *binds, ...);
/* An integer of the first column of the first row; -1 on error, *found
 * 0 when no row. */
int64_t ed_store_int(ed_store *s, int *found, const char *sql,
                     const char *binds, ...);
/* The first column of the first row as a malloc'd copy of a blob or
 * text; 1 found, 0 no row, -1 error. */
int ed_store_blob(ed_store *s, unsigned char **data, size_t *len,
                  const char *sql, const char *binds, ...);

/* Whether the last statement (or transaction start) failed because
 * another connection held the database locked past the busy timeout:
 * worth a retry. */
int ed_store_busy(ed_store *s);
/* The HTTP status of the last failure: 503 busy (worth a retry), 413 a
 * value past SQLite's length limit (1e9 bytes), 507 a full disk, else
 * 500. */
unsigned ed_store_http_status(ed_store *s);

/* Empty the write-ahead log into the database (a checkpoint that
 * truncates it), so that no copy of deleted rows stays in it: 0 done, 1
 * held off by another process's reader (a backup) and retried by
 * ed_store_tick, -1 error.  It does not wait for the reader. */
int ed_store_purge_log(ed_store *s);
/* Once a second: retry a log purge a reader held off. */
void ed_store_tick(ed_store *s);
int ed_store_begin(ed_store *s);
int ed_store_commit(ed_store *s);
void ed_store_rollback(ed_store *s);

/* Current UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ". */
void ed_store_now(char buf[32]);

#endif
