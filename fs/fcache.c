/* durafs read-cache policy: read-ahead window, fetch span and eviction
 * amount. Pure arithmetic; contract in durafs/fcache.h. */
#include "durafs/fcache.h"

#define KiB 1024ull
#define MiB (1024ull * 1024ull)

void fc_params_default(struct fc_params *p, uint64_t chunk)
{
	p->min_fetch = 256 * KiB;
	p->rand_align = 16 * KiB;
	p->first_window = 1 * MiB;
	p->max_window = 16 * MiB;
	p->whole_below = chunk ? chunk : 16 * MiB;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

void fc_ra_note(struct fc_ra *ra, uint64_t off, uint64_t len, const struct fc_params *p)
{
	uint64_t slack = max64(ra->window, max64(len, p->min_fetch));
	int seq;

	/* Multithreaded FUSE delivers the kernel's reads of one sequential
	 * stream slightly out of order: anything near the previous end
	 * counts as sequential. */
	seq = ra->started && off + slack >= ra->next && off <= ra->next + slack;
	if (seq)
		ra->window = ra->window ? min64(ra->window * 2, p->max_window)
					: min64(p->first_window, p->max_window);
	else
		ra->window = 0;
	ra->random = !seq && (ra->started || off != 0);
	ra->next = off + len;
	ra->started = 1;
}

uint64_t fc_fetch_end(const struct fc_ra *ra, uint64_t off, uint64_t len,
		      uint64_t fsize, const struct fc_params *p)
{
	uint64_t want;

	if (off >= fsize)
		return fsize;
	if (fsize < p->whole_below)
		return fsize;
	if (ra->window)
		want = max64(len, ra->window);
	else if (ra->random && p->rand_align)
		want = (off + len + p->rand_align - 1) / p->rand_align * p->rand_align - off;
	else
		want = max64(len, p->min_fetch);
	if (want < len)
		want = len;
	if (want > fsize - off)
		return fsize;
	return off + want;
}

int fc_prefetch(const struct fc_ra *ra, uint64_t off, uint64_t have, uint64_t fsize,
		const struct fc_params *p, uint64_t *end)
{
	uint64_t w = ra->window;

	if (!w || have >= fsize || off > have || have - off > w)
		return 0;
	*end = min64(fsize, have + min64(w, p->max_window));
	return 1;
}

uint64_t fc_evict_need(uint64_t usage, uint64_t limit, uint64_t fs_free,
		       uint64_t min_free)
{
	uint64_t need = 0;

	if (usage > limit)
		need = usage - limit;
	if (fs_free < min_free)
		need = max64(need, min_free - fs_free);
	return min64(need, usage);
}
