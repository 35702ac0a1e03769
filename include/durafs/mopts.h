/* Mount options (fs/mopts.c): everything `durafs mount` accepts on its
 * command line and in -o, parsed and validated into one struct that the
 * filesystem, the scheduler and the daemon read. */
#ifndef DURAFS_MOPTS_H
#define DURAFS_MOPTS_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "durafs/err.h"

enum mopts_conflict {
	MOPTS_CONFLICT_KEEP_BOTH = 0, /* commit ours as NAME.conflict-<stamp> */
	MOPTS_CONFLICT_FAIL = 1,      /* keep ours in the journal, flagged */
};

enum mopts_docs { MOPTS_DOCS_EXPORT = 0, MOPTS_DOCS_HIDE = 1 };
enum mopts_delete { MOPTS_DELETE_TRASH = 0, MOPTS_DELETE_PERMANENT = 1 };
enum mopts_layout { MOPTS_LAYOUT_PLAIN = 0, MOPTS_LAYOUT_COLAB = 1 };
enum mopts_stream { MOPTS_STREAM_ON = 0, MOPTS_STREAM_OFF = 1 };

struct mopts {
	/* positional */
	char *source;               /* "gs://bucket[/prefix]" or "drive:..." */
	char *mountpoint;           /* absolute, resolved */
	/* --cache-dir, default $XDG_CACHE_HOME/durafs/<mount id> (mopts_default_cache_dir) */
	char *cache_dir;
	int foreground;             /* --foreground / -f */
	/* -o options (defaults in brackets) */
	uint64_t cache_size;        /* cache_size=SIZE: clean read cache cap [10G] */
	uint64_t min_free_space;    /* min_free_space=SIZE: keep free on the cache fs [1G] */
	int upload_workers;         /* upload_workers=N [8] */
	uint64_t chunk_size;        /* chunk_size=SIZE, multiple of 256K [16M] */
	int64_t writeback_delay_ms; /* writeback_delay=DUR [2s] */
	int64_t dir_cache_ttl_ms;   /* dir_cache_ttl=DUR [60s] */
	int sync_on_close;          /* sync_on_close: close blocks like fsync */
	int ro;                     /* ro / rw */
	int allow_other;            /* allow_other */
	int has_uid, has_gid;
	uid_t uid;                  /* uid=N [mounting user] */
	gid_t gid;                  /* gid=N */
	mode_t file_mode;           /* file_mode=OCTAL [0644] */
	mode_t dir_mode;            /* dir_mode=OCTAL [0755] */
	int conflict;               /* conflict=keep-both|fail */
	int64_t fsync_timeout_ms;   /* fsync_timeout=DUR [10min] */
	char *log_file;             /* log_file=PATH [stderr in foreground, else cache_dir/durafs.log] */
	int debug;                  /* debug: debug logging */
	char *endpoint;             /* endpoint=URL [STORAGE_EMULATOR_HOST / DURAFS_DRIVE_ENDPOINT / Google] */
	char *token_file;           /* token_file=PATH: static bearer token */
	char *credentials;          /* credentials=PATH: service account / authorized_user JSON */
	/* Added by the mount engineer: */
	int no_auth;                /* no_auth: send no credentials (emulators,
				     * public buckets); implied by
				     * STORAGE_EMULATOR_HOST unless token_file or
				     * credentials is given */
	int64_t retry_max_ms;       /* retry_max=DUR: longest pause between two
				     * attempts of one failed operation [30s] */
	uint64_t small_max;         /* small_file_max=SIZE: files below go in one
				     * request, larger ones resumable [8M] */
	/* Drive, remote changes, datasets, long-running writers: */
	int docs;                   /* docs=export|hide (enum mopts_docs) [export] */
	int delete_mode;            /* delete=trash|permanent (enum mopts_delete) [trash] */
	int layout;                 /* layout=plain|colab (enum mopts_layout) [plain] */
	int64_t poll_interval_ms;   /* poll_interval=DUR: remote change polling, 0 off [60s] */
	int prefetch_workers;       /* prefetch_workers=N: cache warm downloads [16] */
	int64_t open_upload_interval_ms; /* open_upload_interval=DUR: snapshot uploads
				     * of files kept open and dirty, 0 off [60s] */
	int splice_writes;          /* splice_writes: large writes spliced from the
				     * kernel into the cache file [off] */
	int stream_uploads;         /* stream_uploads=on|off (enum mopts_stream): GCS
				     * uploads of sequential writes start while
				     * they are written [on] */
};

/* Parse `SOURCE MOUNTPOINT [-o opt,...] [--cache-dir D] [--foreground]`
 * (argv[0] is "mount"). Options may come before, between or after the
 * positionals; -o may be repeated; "-oOPTS", "--cache-dir=D" and "-f" are
 * accepted. Sizes take K/M/G/T suffixes (powers of 1024), durations
 * ms/s/m/h (bare numbers are seconds). Unknown or malformed options fail
 * with ERR_INVAL and a one-line message naming the option. Options
 * mount(8) or systemd pass through a helper (_netdev, noauto, auto, nofail,
 * user, users, x-systemd.*, comment=*, defaults, dev, suid, exec...) are
 * accepted and ignored. The mountpoint must exist and be a directory (it
 * is resolved with realpath); a relative cache_dir, log_file, token_file or
 * credentials is made absolute against the current directory. The cache dir
 * defaults to mopts_default_cache_dir. On failure *o is released. */
int mopts_parse(int argc, char **argv, struct mopts *o, struct err *err);

/* Fill the defaults (called by mopts_parse first). */
void mopts_defaults(struct mopts *o);

/* Free the strings and zero o. */
void mopts_release(struct mopts *o);

/* path made absolute against the current directory (not resolved: it may
 * not exist yet). malloc'd, or NULL (ENOMEM, or no current directory). */
char *mopts_abs_path(const char *path);

/* The default cache dir for a source mounted at an absolute mountpoint:
 * $XDG_CACHE_HOME (or ~/.cache)/durafs/<sanitized source>-<8 hex of a hash
 * of source and mountpoint>. malloc'd, or NULL (ENOMEM / no HOME). */
char *mopts_default_cache_dir(const char *source, const char *mountpoint);

/* Parse a size ("0", "512", "256K", "16M", "1.5G", "10GiB": powers of 1024,
 * at most 2^62). 0, or -1 when malformed or too large. Pure. */
int mopts_parse_size(const char *s, uint64_t *out);

/* Parse a duration ("250ms", "2s", "1.5m", "10min", "1h"; a bare number is
 * seconds) into milliseconds. 0, or -1 when malformed, negative or longer
 * than a year. Pure. */
int mopts_parse_duration(const char *s, int64_t *out_ms);

/* The -o options with their defaults, one per line, for --help. */
void mopts_help(FILE *out);

#endif
