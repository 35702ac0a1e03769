/* Private half of the Drive backend, shared by sync/drive.c (the backend
 * ops), sync/drive_trash.c (trash listing and batch deletes) and the pure
 * sync/drive_names.c / sync/drive_parse.c: the instance struct, a growing
 * string, and the paced request helper. Not for use outside sync/drive*. */
#ifndef DURAFS_DRIVE_I_H
#define DURAFS_DRIVE_I_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "durafs/backend.h"
#include "durafs/drive.h"
#include "durafs/http.h"

/* --- a growing string: operations after an allocation failure do nothing and
 * drive_sb_take reports it. -------------------------------------------------- */
struct drive_sb {
	char *s;
	size_t n, cap;
	int oom;
};
void drive_sb_addn(struct drive_sb *b, const char *s, size_t n);
void drive_sb_add(struct drive_sb *b, const char *s);
void drive_sb_addf(struct drive_sb *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Percent-encoded s. */
void drive_sb_enc(struct drive_sb *b, const char *s);
/* Take the built string (NUL-terminated; *len may be NULL), or NULL with
 * *err = ERR_NOMEM. The builder is empty afterwards either way. */
char *drive_sb_take(struct drive_sb *b, size_t *len, struct err *err);

/* 1 when s (len bytes) can be a Drive file id: 1-127 bytes of
 * [A-Za-z0-9_.-] (what Google hands out, and safe in a URL path). */
int drive_id_valid(const char *s, size_t len);

/* The fields we ask for on every file resource. */
#define DRIVE_FILE_FIELDS "id,name,mimeType,size,md5Checksum,modifiedTime,createdTime," \
	"version,parents,trashed,explicitlyTrashed,trashedTime,driveId,shortcutDetails,appProperties"

/* One folder's children as shown, cached by folder id (sync/drive.c). */
struct drive_map;

/* The instance. Fields above the first lock are set by drive_new and
 * read-only afterwards. */
struct drive {
	struct be base;           /* must stay first */
	struct http *http;        /* borrowed */
	struct drive_source src;
	char *ep;                 /* endpoint, no trailing '/' */
	char *api;                /* ep/drive/v3 */
	char *upl;                /* ep/upload/drive/v3 */
	char *batch;              /* ep/batch/drive/v3 */
	int docs, delete_mode;
	uint64_t chunk;
	long page_size;
	long ttl_ms;
	int max_fail;
	long retry_base_ms;
	int rate_max;
	int batch_threads;
	long pace_backoff, pace_backoff_max, pace_interval, pace_interval_max, pace_recover;

	pthread_mutex_t root_mu;
	char root_id[BE_ID_MAX];  /* protected by root_mu; "" until resolved */
	char drive_id[BE_ID_MAX]; /* shared drive of the root, or ""; root_mu */
	int root_is_top;          /* root is My Drive's or a shared drive's top */

	pthread_mutex_t pace_mu;  /* protects the pacer fields below */
	int64_t pace_not_before;  /* monotonic ms: no write starts before */
	int64_t pace_next_slot;   /* monotonic ms: next write slot */
	int64_t pace_changed;     /* last hit or interval decay */
	long pace_cur;            /* current interval, 0 = unpaced */
	int pace_hits;            /* consecutive rate-limit replies */
	struct drive_pace_stats pstats;

	pthread_mutex_t ids_mu;   /* protects ids/nids */
	char *ids[DRIVE_BATCH_MAX * 2];
	size_t nids;

	pthread_mutex_t cache_mu; /* protects maps/nmaps and each map's refs */
	struct drive_map **maps;
	size_t nmaps, cap_maps;

	pthread_mutex_t exp_mu;   /* protects the export size table */
	struct drive_exp_size {
		char id[BE_ID_MAX];
		int64_t version;
		uint64_t size;
	} exp[256];
	size_t nexp, exp_next;
};

/* The root folder id (resolving it on first use) into buf[BE_ID_MAX]. */
int drive_root(struct drive *d, char *buf, struct err *err);

/* Perform req with the backend's policy: reads go to http_do as they are;
 * writes (write != 0) wait for the pacer first, and a rate-limit reply is
 * handed to the pacer and the write tried again (HTTP_RETRY_SAFE only; at
 * most rate_max times), other transient failures of a safe write are
 * retried by http_do's own policy. resp must be zeroed; caller releases. */
int drive_do(struct drive *d, const struct http_req *req, int write, struct http_resp *resp,
	     struct err *err);

/* The pacer (see drive_opts). wait: before a write. hit: a request was
 * refused by a rate limit (backoff for every write, spacing doubled).
 * ok: a request went through without a refusal (spacing -10%). Batches
 * whose calls are partly refused pace themselves (drive_trash.c). */
void drive_pace_wait(struct drive *d);
void drive_pace_hit(struct drive *d, long retry_after_ms);
void drive_pace_ok(struct drive *d);

/* 1 when e is worth another try (transport, 408, 429, 5xx, rate). */
int drive_err_transient(const struct err *e);

/* Append "&supportsAllDrives=true" and, for lists, the corpora of the root's
 * drive to a URL being built. */
void drive_sb_list_params(struct drive *d, struct drive_sb *u);

/* Run a files.list query q through every page, calling fn for each file.
 * fields_files is the files(...) selection (NULL: DRIVE_FILE_FIELDS);
 * all_drives adds the root's corpora. Returns 0 or -1 (a page failing
 * after retries, a parse error, fn's non-zero: ERR_CANCELED). */
int drive_list_q(struct drive *d, const char *q, long page_size, int all_drives,
		 drive_file_fn fn, void *ud, struct err *err);

#endif
