/* durafs read-cache policy (fs/fcache.c): how much of a clean remote file
 * to fetch for a read (sequential read-ahead, whole small files, a floor
 * for random reads) and how much cached clean data to evict. Pure
 * arithmetic; the fetching itself is in fs/fs_file.c and the map of
 * present ranges in the journal (jnl_cache_*). */
#ifndef DURAFS_FCACHE_H
#define DURAFS_FCACHE_H

#include <stdint.h>

/* Policy knobs (fc_params_default gives the values documented there). */
struct fc_params {
	uint64_t min_fetch;     /* smallest fetch for the first read of a file
				 * (at offset 0: probably the start of a stream) */
	uint64_t rand_align;    /* random reads fetch up to the next multiple */
	uint64_t first_window;  /* read-ahead once a read is seen sequential */
	uint64_t max_window;    /* read-ahead grows by doubling up to this */
	uint64_t whole_below;   /* files smaller are fetched whole at once */
};

/* min_fetch 256 KiB, rand_align 16 KiB, first_window 1 MiB, max_window
 * 16 MiB, whole_below = chunk (the mount's chunk_size; 0 gives 16 MiB). */
void fc_params_default(struct fc_params *p, uint64_t chunk);

/* Read-ahead state of one open file. Zero-initialised = nothing read. Not
 * thread-safe: the caller serialises updates (the open file's lock). */
struct fc_ra {
	uint64_t next;          /* end of the last read */
	uint64_t window;        /* current read-ahead; 0: not sequential */
	int started;            /* a read was seen */
	int random;             /* the last read was a jump (random access) */
};

/* Record a read of [off, off+len). A read starting at (or near: within the
 * current window, or within len of) the end of the previous one is
 * sequential and doubles the window (first_window at first); any other
 * read resets it to 0 and counts as random, except the first read of the
 * file at offset 0 (the likely start of a stream). */
void fc_ra_note(struct fc_ra *ra, uint64_t off, uint64_t len, const struct fc_params *p);

/* The end of the span worth fetching for a read of [off, off+len) of a
 * file of fsize bytes, after fc_ra_note: the whole file when it is below
 * whole_below; a sequential stream: off + max(len, window); a random read:
 * off + len rounded up to rand_align (so 4 KiB random reads cost at most
 * 16 KiB each); the first read at 0: off + max(len, min_fetch). Never past
 * fsize and never before min(off + len, fsize). */
uint64_t fc_fetch_end(const struct fc_ra *ra, uint64_t off, uint64_t len,
		      uint64_t fsize, const struct fc_params *p);

/* Background read-ahead for a sequential stream: once the reader is at
 * `off` and the data known present (or being fetched) ends at `have`, the
 * span [have, *end) worth fetching now so it is local before the reader
 * gets there: 1 and *end when the reader is within one window of `have`
 * (the stream must be sequential: window > 0), else 0. Never past fsize;
 * at most max_window ahead of have. */
int fc_prefetch(const struct fc_ra *ra, uint64_t off, uint64_t have, uint64_t fsize,
		const struct fc_params *p, uint64_t *end);

/* Bytes of clean cache to evict so that usage <= limit and the cache file
 * system keeps min_free free: max(usage - limit, min_free - fs_free, 0),
 * never more than usage. */
uint64_t fc_evict_need(uint64_t usage, uint64_t limit, uint64_t fs_free,
		       uint64_t min_free);

#endif
