/* The token provider (include/durafs/auth.h): a cache in front of one token
 * source, shared by every thread, refreshing before expiry with a single
 * refresh in flight, and a generation number so one 401 is one refresh. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "durafs/auth.h"
#include "durafs/clock.h"
#include "durafs/log.h"

/* A token is not handed out in its last moments: margin before expiry. */
#define AUTH_EXPIRY_MARGIN_MS 10000
/* After a failed refresh while the old token is still good, wait this long
 * (at most half the time left) before trying again. */
#define AUTH_RETRY_AFTER_FAIL_MS 10000

struct auth_provider {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* signalled when a refresh completes */
	struct auth_source *src;     /* immutable after new */
	/* Everything below is protected by mu. */
	char *token;                 /* current token or NULL */
	char *granted;               /* scopes granted with it, or NULL */
	uint64_t gen;                /* generation of token; 0: none yet */
	int valid;                   /* token may be handed out (not refused) */
	int64_t refresh_at;          /* monotonic ms; INT64_MAX: never */
	int64_t expire_at;           /* monotonic ms past which token is unusable */
	time_t expires_wall;         /* wall-clock expiry, 0 if unknown */
	int refreshing;              /* a fetch is in flight */
	uint64_t done_seq;           /* completed refreshes */
	int last_failed;             /* the last completed refresh failed */
	struct err last_err;         /* ...with this error */
	uint64_t fetches;
};

/* Per thread: the provider and generation of the last token handed out,
 * so an invalidate from the HTTP layer names the token that was refused. */
static _Thread_local const struct auth_provider *tl_provider;
static _Thread_local uint64_t tl_gen;

static void wipe_free(char *s)
{
	if (!s)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void auth_token_release(struct auth_token *t)
{
	if (!t)
		return;
	wipe_free(t->access_token);
	wipe_free(t->refresh_token);
	wipe_free(t->id_token);
	free(t->scope);
	memset(t, 0, sizeof(*t));
}

int auth_source_set(char **field, const char *val)
{
	char *copy = NULL;

	if (val) {
		copy = strdup(val);
		if (!copy)
			return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

int auth_source_new(const struct auth_source_ops *ops, void *ctx, const char *origin,
		    const char *path, const char *account, const char *scopes,
		    struct auth_source **out, struct err *err)
{
	struct auth_source *s = NULL;
	int rc = -1;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		err_set(err, ERR_NOMEM, "out of memory");
		ops->free(ctx);
		goto out;
	}
	s->ops = ops;
	s->ctx = ctx;
	if (auth_source_set(&s->origin, origin) || auth_source_set(&s->path, path) ||
	    auth_source_set(&s->account, account) || auth_source_set(&s->scopes, scopes)) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	auth_source_free(s);
	return rc;
}

void auth_source_free(struct auth_source *s)
{
	if (!s)
		return;
	if (s->ctx)
		s->ops->free(s->ctx);
	free(s->origin);
	free(s->path);
	free(s->account);
	free(s->scopes);
	free(s);
}

long auth_refresh_after(long lifetime)
{
	if (lifetime <= 0)
		return -1;
	if (lifetime > 600)
		return lifetime - 300;
	return lifetime / 2;
}

static const struct {
	const char *name;
	const char *url;
} scope_names[] = {
	{ "gcs", AUTH_SCOPE_GCS },
	{ "gcs.ro", "https://www.googleapis.com/auth/devstorage.read_only" },
	{ "cloud", AUTH_SCOPE_CLOUD },
	{ "cloud-platform", AUTH_SCOPE_CLOUD },
	{ "drive", AUTH_SCOPE_DRIVE },
	{ "drive.file", AUTH_SCOPE_DRIVE_FILE },
	{ "drive.readonly", AUTH_SCOPE_DRIVE_RO },
};

char *auth_scope_expand(const char *names, struct err *err)
{
	char *out = NULL, *res = NULL;
	size_t len = 0, cap = 0;
	const char *p = names, *url;
	size_t n, i, ul;

	if (!names) {
		err_set(err, ERR_INVAL, "no scope given");
		goto out;
	}
	for (;;) {
		while (*p == ',' || *p == ' ')
			p++;
		if (!*p)
			break;
		n = strcspn(p, ", ");
		url = NULL;
		if (n > 8 && !strncmp(p, "https://", 8)) {
			url = p;
			ul = n;
		} else {
			for (i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
				if (strlen(scope_names[i].name) == n &&
				    !strncmp(scope_names[i].name, p, n))
					url = scope_names[i].url;
			if (!url) {
				err_set(err, ERR_INVAL, "unknown scope '%.*s' (use gcs, gcs.ro, cloud, "
					"drive, drive.file, drive.readonly or an https:// scope URL)",
					(int)(n > 100 ? 100 : n), p);
				goto out;
			}
			ul = strlen(url);
		}
		if (len + ul + 2 > cap) {
			char *bigger;

			cap = (len + ul + 2) * 2;
			bigger = realloc(out, cap);
			if (!bigger) {
				err_set(err, ERR_NOMEM, "out of memory");
				goto out;
			}
			out = bigger;
		}
		if (len)
			out[len++] = ' ';
		memcpy(out + len, url, ul);
		len += ul;
		out[len] = '\0';
		p += n;
	}
	if (!len) {
		err_set(err, ERR_INVAL, "no scope given");
		goto out;
	}
	res = out;
	out = NULL;
out:
	free(out);
	return res;
}

int auth_provider_new(struct auth_source *src, struct auth_provider **out, struct err *err)
{
	struct auth_provider *p = NULL;
	int rc = -1;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		err_set(err, ERR_NOMEM, "out of memory");
		auth_source_free(src);
		goto out;
	}
	if (pthread_mutex_init(&p->mu, NULL)) {
		err_set(err, ERR_NOMEM, "cannot create a mutex");
		auth_source_free(src);
		free(p);
		goto out;
	}
	if (pthread_cond_init(&p->cv, NULL)) {
		err_set(err, ERR_NOMEM, "cannot create a condition variable");
		pthread_mutex_destroy(&p->mu);
		auth_source_free(src);
		free(p);
		goto out;
	}
	p->src = src;
	p->refresh_at = INT64_MAX;
	p->expire_at = INT64_MAX;
	*out = p;
	rc = 0;
out:
	return rc;
}

void auth_provider_free(struct auth_provider *p)
{
	if (!p)
		return;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	wipe_free(p->token);
	free(p->granted);
	auth_source_free(p->src);
	free(p);
}

/* Whether the cached token may be handed out at time now. Caller holds mu. */
static int usable(const struct auth_provider *p, int64_t now)
{
	return p->token && p->valid && now < p->expire_at;
}

/* Copy the cached token out. Caller holds mu; token is usable. */
static int hand_out(struct auth_provider *p, char *buf, size_t buflen, uint64_t *gen,
		    struct err *err)
{
	size_t n = strlen(p->token);

	if (n + 1 > buflen)
		return err_set(err, ERR_INVAL, "access token of %zu bytes does not fit a "
			       "buffer of %zu", n, buflen);
	memcpy(buf, p->token, n + 1);
	if (gen)
		*gen = p->gen;
	return 0;
}

/* Install a fetched token (its strings are taken). Caller holds mu. */
static void install(struct auth_provider *p, struct auth_token *t, int64_t start)
{
	long after;
	int64_t life_ms, margin;

	wipe_free(p->token);
	p->token = t->access_token;
	t->access_token = NULL;
	if (t->scope) {
		free(p->granted);
		p->granted = t->scope;
		t->scope = NULL;
	}
	p->gen++;
	p->valid = 1;
	after = auth_refresh_after(t->expires_in);
	if (after < 0) {
		p->refresh_at = INT64_MAX;
		p->expire_at = INT64_MAX;
		p->expires_wall = 0;
	} else {
		life_ms = (int64_t)t->expires_in * 1000;
		margin = life_ms / 10 < AUTH_EXPIRY_MARGIN_MS ? life_ms / 10 : AUTH_EXPIRY_MARGIN_MS;
		/* Times count from when the request started: the token cannot
		 * have been issued earlier than that. */
		p->refresh_at = start + (int64_t)after * 1000;
		p->expire_at = start + life_ms - margin;
		p->expires_wall = time(NULL) + t->expires_in;
	}
}

int auth_provider_get(struct auth_provider *p, char *buf, size_t buflen, uint64_t *gen,
		      struct err *err)
{
	struct auth_token t = { 0 };
	struct err ferr;
	uint64_t seq;
	int64_t now, start, left;
	int rc = -1, frc;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		now = clk_mono_ms();
		if (usable(p, now) && (now < p->refresh_at || p->refreshing)) {
			rc = hand_out(p, buf, buflen, gen, err);
			break;
		}
		if (p->refreshing) {
			/* No usable token: wait for the refresh in flight and
			 * share its outcome. */
			seq = p->done_seq;
			while (p->refreshing && p->done_seq == seq)
				pthread_cond_wait(&p->cv, &p->mu);
			if (p->done_seq == seq)
				continue;
			if (usable(p, clk_mono_ms())) {
				/* Fresh (or still-valid) token: take it even
				 * if already past a very short refresh point. */
				rc = hand_out(p, buf, buflen, gen, err);
				break;
			}
			if (p->last_failed) {
				if (err)
					*err = p->last_err;
				break;
			}
			continue;
		}
		/* This thread refreshes. */
		p->refreshing = 1;
		p->fetches++;
		pthread_mutex_unlock(&p->mu);
		err_clear(&ferr);
		start = clk_mono_ms();
		frc = p->src->ops->fetch(p->src->ctx, &t, &ferr);
		if (frc == 0 && (!t.access_token || !t.access_token[0]))
			frc = err_set(&ferr, ERR_PARSE, "the token source returned an empty token");
		pthread_mutex_lock(&p->mu);
		p->refreshing = 0;
		p->done_seq++;
		p->last_failed = frc != 0;
		if (frc == 0) {
			install(p, &t, start);
			err_clear(&p->last_err);
			log_debug("auth", "new access token from %s (generation %llu, lifetime "
				  "%ld s)", p->src->ops->kind, (unsigned long long)p->gen,
				  t.expires_in);
		} else {
			p->last_err = ferr;
			now = clk_mono_ms();
			if (usable(p, now)) {
				/* Keep serving the old token; try again a
				 * little later. */
				log_warn("auth", "token refresh failed, the current token stays in "
					 "use until it expires: %s", ferr.msg);
				left = (p->expire_at - now) / 2;
				p->refresh_at = now + (left < AUTH_RETRY_AFTER_FAIL_MS ?
						       left : AUTH_RETRY_AFTER_FAIL_MS);
			}
		}
		pthread_cond_broadcast(&p->cv);
		auth_token_release(&t);
		if (frc == 0 || usable(p, clk_mono_ms()))
			rc = hand_out(p, buf, buflen, gen, err);
		else if (err)
			*err = ferr;
		break;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void auth_provider_invalidate(struct auth_provider *p, uint64_t gen)
{
	pthread_mutex_lock(&p->mu);
	if (p->token && gen == p->gen)
		p->valid = 0;
	pthread_mutex_unlock(&p->mu);
}

int auth_provider_token_fn(void *ud, int invalidate, char *buf, size_t buflen,
			   struct err *err)
{
	struct auth_provider *p = ud;
	uint64_t gen = 0;

	if (invalidate) {
		if (tl_provider == p) {
			auth_provider_invalidate(p, tl_gen);
		} else {
			/* This thread never got a token from p: drop the
			 * current one, the conservative reading. */
			pthread_mutex_lock(&p->mu);
			gen = p->gen;
			pthread_mutex_unlock(&p->mu);
			auth_provider_invalidate(p, gen);
		}
	}
	if (auth_provider_get(p, buf, buflen, &gen, err))
		return -1;
	tl_provider = p;
	tl_gen = gen;
	return 0;
}

void auth_provider_info(struct auth_provider *p, struct auth_info *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->mu);
	out->kind = p->src->ops->kind;
	out->origin = p->src->origin;
	out->path = p->src->path;
	out->account = p->src->account;
	out->scopes = p->granted ? p->granted : p->src->scopes;
	out->expires_at = p->token && p->valid ? p->expires_wall : 0;
	out->generation = p->gen;
	out->fetches = p->fetches;
	pthread_mutex_unlock(&p->mu);
}
