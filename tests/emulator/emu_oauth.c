/* durafs-emulator OAuth2 service: Google's token endpoint (POST /token with
 * the refresh_token, JWT-bearer, authorization_code (PKCE) and device_code
 * grants), the consent page and device endpoint that feed the last two,
 * tokeninfo and revoke, the table of issued access tokens the core checks
 * bearer tokens against, and the control calls tests use to register
 * accounts, codes and approvals (see README "OAuth"). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "durafs/enc.h"
#include "emu.h"
#include "emu_oauth.h"

#define DEFAULT_LIFETIME 3599
#define DEFAULT_ACCOUNT "user@durafs-emu.example.com"
#define DEFAULT_SCOPES "https://www.googleapis.com/auth/cloud-platform"
#define NBUCKETS 4096
#define STATE_FILE "oauth.json"
#define CODE_LIFETIME 600              /* authorization codes, seconds */
#define DEVICE_LIFETIME 1800           /* device codes (Google's expires_in) */
#define DEVICE_INTERVAL 5              /* polling interval Google hands out */
#define DEVICE_URL "https://www.google.com/device"
#define MAX_PENDING 4096               /* codes and device codes kept */
#define PKCE_MIN 43                    /* RFC 7636 code_verifier length */
#define PKCE_MAX 128

/* ------------------------------------------------------------------------ */
/* JWT parsing (pure)                                                       */

static int b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
	size_t cap = n / 4 * 3 + 3;
	unsigned char *buf;
	size_t i;

	*out = NULL;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return -1;  /* padding and the standard alphabet are not JWT */
	}
	buf = malloc(cap + 1);
	if (!buf)
		return -1;
	if (enc_b64_decode(s, n, buf, cap + 1, outlen) < 0) {
		free(buf);
		return -1;
	}
	buf[*outlen] = '\0';
	*out = buf;
	return 0;
}

static json_t *decode_json_part(const char *s, size_t n, const char *what, char *why,
				size_t whysz)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	json_error_t jerr;
	json_t *j;

	if (b64url_decode(s, n, &raw, &rawlen) < 0) {
		snprintf(why, whysz, "Invalid JWT: the %s is not base64url", what);
		return NULL;
	}
	j = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, &jerr);
	free(raw);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		snprintf(why, whysz, "Invalid JWT: the %s is not a JSON object", what);
		return NULL;
	}
	return j;
}

static const char *opt_string(json_t *o, const char *key, int *bad)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return NULL;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		*bad = 1;
		return NULL;
	}
	return json_string_value(v);
}

void emu_jwt_release(struct emu_jwt *j)
{
	json_decref(j->header);
	json_decref(j->claims);
	free(j->sig);
	free(j->signed_part);
	memset(j, 0, sizeof(*j));
}

int emu_jwt_parse(const char *s, size_t n, struct emu_jwt *j, char *why, size_t whysz)
{
	const char *d1, *d2;
	int bad = 0;

	memset(j, 0, sizeof(*j));
	if (n == 0 || n > EMU_JWT_MAX_LEN) {
		snprintf(why, whysz, "Invalid JWT: empty or longer than %d bytes",
			 EMU_JWT_MAX_LEN);
		return -1;
	}
	d1 = memchr(s, '.', n);
	d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - s)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - s))) {
		snprintf(why, whysz, "Invalid JWT: expected three dot-separated parts");
		return -1;
	}
	j->header = decode_json_part(s, (size_t)(d1 - s), "header", why, whysz);
	if (!j->header)
		goto fail;
	j->claims = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1), "claim set", why, whysz);
	if (!j->claims)
		goto fail;
	if (b64url_decode(d2 + 1, n - (size_t)(d2 + 1 - s), &j->sig, &j->siglen) < 0) {
		snprintf(why, whysz, "Invalid JWT: the signature is not base64url");
		goto fail;
	}
	j->signed_len = (size_t)(d2 - s);
	j->signed_part = malloc(j->signed_len + 1);
	if (!j->signed_part) {
		snprintf(why, whysz, "out of memory");
		goto fail;
	}
	memcpy(j->signed_part, s, j->signed_len);
	j->signed_part[j->signed_len] = '\0';
	j->alg = opt_string(j->header, "alg", &bad);
	j->kid = opt_string(j->header, "kid", &bad);
	if (bad || !j->alg) {
		snprintf(why, whysz, "Invalid JWT: header \"alg\" (and \"kid\" if present) "
			 "must be strings");
		goto fail;
	}
	j->iss = opt_string(j->claims, "iss", &bad);
	j->sub = opt_string(j->claims, "sub", &bad);
	j->scope = opt_string(j->claims, "scope", &bad);
	j->aud = opt_string(j->claims, "aud", &bad);
	if (bad) {
		snprintf(why, whysz, "Invalid JWT: iss, sub, scope and aud must be strings");
		goto fail;
	}
	if (!j->iss || !j->iss[0]) {
		snprintf(why, whysz, "Invalid JWT: no \"iss\" claim");
		goto fail;
	}
	return 0;
fail:
	emu_jwt_release(j);
	return -1;
}

static int num_claim(const json_t *claims, const char *key, long long *out)
{
	json_t *v = json_object_get(claims, key);

	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (json_is_real(v) && json_real_value(v) > -1e15 && json_real_value(v) < 1e15) {
		*out = (long long)json_real_value(v);
		return 0;
	}
	return -1;
}

int emu_jwt_check_claims(const struct emu_jwt *j, long long now,
			 const char *const *auds, char *why, size_t whysz)
{
	long long iat, exp;
	size_t i;

	if (strcmp(j->alg, "RS256")) {
		snprintf(why, whysz, "Invalid JWT: algorithm \"%.32s\" is not RS256", j->alg);
		return -1;
	}
	if (!j->aud) {
		snprintf(why, whysz, "Invalid JWT: no \"aud\" claim");
		return -1;
	}
	for (i = 0; auds && auds[i]; i++)
		if (!strcmp(j->aud, auds[i]))
			break;
	if (!auds || !auds[i]) {
		snprintf(why, whysz, "Invalid JWT: Failed audience check. The expected "
			 "audience is %.200s", auds && auds[0] ? auds[0] : "the token URI");
		return -1;
	}
	if (num_claim(j->claims, "iat", &iat) < 0 || num_claim(j->claims, "exp", &exp) < 0) {
		snprintf(why, whysz, "Invalid JWT: \"iat\" and \"exp\" must be numbers");
		return -1;
	}
	if (exp <= iat || exp - iat > EMU_JWT_MAX_LIFETIME) {
		snprintf(why, whysz, "Invalid JWT: Token must be a short-lived token (60 "
			 "minutes) and in a reasonable timeframe (exp - iat = %lld s)",
			 exp - iat);
		return -1;
	}
	if (iat > now + EMU_JWT_SKEW) {
		snprintf(why, whysz, "Invalid JWT: \"iat\" is %lld s in the future",
			 iat - now);
		return -1;
	}
	if (exp < now - EMU_JWT_SKEW) {
		snprintf(why, whysz, "Invalid JWT: the token expired %lld s ago", now - exp);
		return -1;
	}
	if (!j->scope || !j->scope[0]) {
		snprintf(why, whysz, "Invalid JWT: no \"scope\" claim (space-separated "
			 "scopes are required)");
		return -1;
	}
	return 0;
}

int emu_jwt_verify_rs256(const struct emu_jwt *j, EVP_PKEY *key)
{
	EVP_MD_CTX *ctx = NULL;
	int ok = 0;

	if (!key || EVP_PKEY_base_id(key) != EVP_PKEY_RSA || !j->sig || !j->siglen)
		return 0;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return 0;
	if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestVerify(ctx, j->sig, j->siglen, (const unsigned char *)j->signed_part,
			     j->signed_len) == 1)
		ok = 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

EVP_PKEY *emu_pem_public_key(const char *pem, size_t n)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	BIO *b;

	if (n > INT32_MAX)
		return NULL;
	b = BIO_new_mem_buf(pem, (int)n);
	if (!b)
		return NULL;
	if (memmem(pem, n, "BEGIN CERTIFICATE", 17)) {
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		if (x)
			k = X509_get_pubkey(x);
		X509_free(x);
	} else if (memmem(pem, n, "PRIVATE KEY", 11)) {
		/* empty passphrase callback: never prompt on a terminal */
		k = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
	} else {
		k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	}
	BIO_free(b);
	return k;
}

/* ------------------------------------------------------------------------ */
/* Service state                                                            */

struct sa_key {
	char *email;
	char *key_id;          /* "" when registered without one */
	char *pub_pem;         /* public half only */
	EVP_PKEY *pkey;
};

struct refresh {
	char *client_id;
	char *client_secret;
	char *token;
	char *account;
	char *scopes;
	int revoked;
};

/* An authorization code registered by a test (control call auth_codes).
 * redirect_uri NULL: waiting for the consent page to hand it out, which
 * binds redirect_uri, the PKCE challenge and (if unset) the scopes. */
struct authcode {
	char *code;
	char *client_id;
	char *client_secret;
	char *redirect_uri;
	char *challenge;           /* S256 code_challenge, or NULL: no PKCE */
	char *refresh_token;       /* handed out (and registered) on exchange */
	char *account;
	char *scopes;              /* NULL: bound by the consent page */
	int64_t expires_ms;
	int used;
};

enum dev_state { DEV_PENDING, DEV_APPROVED, DEV_DENIED, DEV_USED };

/* A device-flow request (POST /device/code). */
struct devcode {
	char *device_code;
	char *user_code;
	char *client_id;
	char *scopes;
	int state;                 /* enum dev_state */
	char *refresh_token;       /* set on approval (given or generated) */
	char *account;
	char *client_secret;       /* set on approval when given: checked */
	int64_t expires_ms;
	int64_t last_poll_ms;      /* 0: never polled */
	long interval;             /* seconds; grows by 5 on slow_down */
};

struct tok {
	char *token;
	char *account;
	char *scopes;
	int64_t expires_ms;    /* CLOCK_REALTIME */
	struct tok *next;
};

struct oauth {
	struct emu *e;
	pthread_rwlock_t lock;
	struct sa_key *sas;        /* protected by lock */
	size_t nsas;
	struct refresh *rts;       /* protected by lock */
	size_t nrts;
	struct tok *buckets[NBUCKETS]; /* protected by lock */
	size_t ntoks;              /* protected by lock */
	size_t since_prune;        /* protected by lock */
	long lifetime;             /* protected by lock */
	struct authcode *codes;    /* protected by lock; memory only */
	size_t ncodes;
	struct devcode *devs;      /* protected by lock; memory only */
	size_t ndevs;
	long device_interval;      /* protected by lock */
	long device_lifetime;      /* protected by lock */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

static void sa_free(struct sa_key *k)
{
	free(k->email);
	free(k->key_id);
	free(k->pub_pem);
	EVP_PKEY_free(k->pkey);
}

static void rt_free(struct refresh *r)
{
	free(r->client_id);
	free(r->client_secret);
	free(r->token);
	free(r->account);
	free(r->scopes);
}

static void code_free(struct authcode *c)
{
	free(c->code);
	free(c->client_id);
	free(c->client_secret);
	free(c->redirect_uri);
	free(c->challenge);
	free(c->refresh_token);
	free(c->account);
	free(c->scopes);
}

static void dev_free(struct devcode *d)
{
	free(d->device_code);
	free(d->user_code);
	free(d->client_id);
	free(d->scopes);
	free(d->refresh_token);
	free(d->account);
	free(d->client_secret);
}

static void tok_free(struct tok *t)
{
	free(t->token);
	free(t->account);
	free(t->scopes);
	free(t);
}

/* Drop every account, refresh token and access token. Lock held or
 * single-threaded. */
static void clear_locked(struct oauth *o)
{
	size_t i;

	for (i = 0; i < o->nsas; i++)
		sa_free(&o->sas[i]);
	free(o->sas);
	o->sas = NULL;
	o->nsas = 0;
	for (i = 0; i < o->nrts; i++)
		rt_free(&o->rts[i]);
	free(o->rts);
	o->rts = NULL;
	o->nrts = 0;
	for (i = 0; i < NBUCKETS; i++) {
		while (o->buckets[i]) {
			struct tok *t = o->buckets[i];

			o->buckets[i] = t->next;
			tok_free(t);
		}
	}
	o->ntoks = 0;
	o->lifetime = DEFAULT_LIFETIME;
	for (i = 0; i < o->ncodes; i++)
		code_free(&o->codes[i]);
	free(o->codes);
	o->codes = NULL;
	o->ncodes = 0;
	for (i = 0; i < o->ndevs; i++)
		dev_free(&o->devs[i]);
	free(o->devs);
	o->devs = NULL;
	o->ndevs = 0;
	o->device_interval = DEVICE_INTERVAL;
	o->device_lifetime = DEVICE_LIFETIME;
}

/* Remove expired tokens. Write lock held. */
static void prune_locked(struct oauth *o)
{
	int64_t now = now_ms();
	size_t i;

	for (i = 0; i < NBUCKETS; i++) {
		struct tok **pp = &o->buckets[i];

		while (*pp) {
			struct tok *t = *pp;

			if (t->expires_ms < now - 60000) {
				*pp = t->next;
				tok_free(t);
				o->ntoks--;
			} else {
				pp = &t->next;
			}
		}
	}
	o->since_prune = 0;
}

/* Insert a token (takes ownership of t). Write lock held. */
static void insert_locked(struct oauth *o, struct tok *t)
{
	uint32_t h = hash_str(t->token) % NBUCKETS;

	if (++o->since_prune >= 4096)
		prune_locked(o);
	t->next = o->buckets[h];
	o->buckets[h] = t;
	o->ntoks++;
}

static struct tok *find_locked(struct oauth *o, const char *token)
{
	struct tok *t;

	for (t = o->buckets[hash_str(token) % NBUCKETS]; t; t = t->next)
		if (!strcmp(t->token, token))
			return t;
	return NULL;
}

static char *new_token_string(void)
{
	unsigned char raw[24];
	char b64[40], *s;
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(raw)) {
		n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		got += (size_t)n;
	}
	if (!enc_b64(raw, sizeof(raw), b64, sizeof(b64), 1))
		return NULL;
	if (asprintf(&s, "ya29.emu-%s", b64) < 0)
		return NULL;
	return s;
}

static char *issue(struct oauth *o, const char *account, const char *scopes,
		   long lifetime, long *expires_in)
{
	struct tok *t = calloc(1, sizeof(*t));
	char *ret = NULL;

	if (!t)
		return NULL;
	t->token = new_token_string();
	t->account = strdup(account ? account : DEFAULT_ACCOUNT);
	t->scopes = strdup(scopes ? scopes : DEFAULT_SCOPES);
	ret = t->token ? strdup(t->token) : NULL;
	if (!t->token || !t->account || !t->scopes || !ret) {
		free(ret);
		tok_free(t);
		return NULL;
	}
	pthread_rwlock_wrlock(&o->lock);
	if (lifetime <= 0)
		lifetime = o->lifetime;
	t->expires_ms = now_ms() + (int64_t)lifetime * 1000;
	insert_locked(o, t);
	pthread_rwlock_unlock(&o->lock);
	*expires_in = lifetime;
	return ret;
}

char *emu_oauth_issue(struct emu *e, const char *account, const char *scopes,
		      long lifetime, long *expires_in)
{
	struct oauth *o = emu_service_state(e, "oauth");
	long dummy;

	if (!o)
		return NULL;
	return issue(o, account, scopes, lifetime, expires_in ? expires_in : &dummy);
}

int emu_oauth_token_valid(struct emu *e, const char *bearer)
{
	struct oauth *o = emu_service_state(e, "oauth");
	struct tok *t;
	int ok = 0;

	if (!o || !bearer)
		return 0;
	pthread_rwlock_rdlock(&o->lock);
	t = find_locked(o, bearer);
	if (t && t->expires_ms > now_ms())
		ok = 1;
	pthread_rwlock_unlock(&o->lock);
	return ok;
}

/* ------------------------------------------------------------------------ */
/* Persistence (--data-dir): public keys, refresh tokens, access tokens.    */

static json_t *state_json(struct oauth *o)
{
	json_t *root, *sas = json_array(), *rts = json_array(), *toks = json_array();
	size_t i;

	pthread_rwlock_rdlock(&o->lock);
	for (i = 0; i < o->nsas; i++)
		json_array_append_new(sas, json_pack("{s:s, s:s, s:s}", "client_email",
			o->sas[i].email, "key_id", o->sas[i].key_id, "public_key_pem",
			o->sas[i].pub_pem));
	for (i = 0; i < o->nrts; i++)
		json_array_append_new(rts, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}",
			"client_id", o->rts[i].client_id, "client_secret",
			o->rts[i].client_secret, "refresh_token", o->rts[i].token,
			"account", o->rts[i].account, "scopes", o->rts[i].scopes,
			"revoked", o->rts[i].revoked));
	for (i = 0; i < NBUCKETS; i++) {
		struct tok *t;

		for (t = o->buckets[i]; t; t = t->next)
			json_array_append_new(toks, json_pack("{s:s, s:s, s:s, s:I}",
				"token", t->token, "account", t->account, "scopes", t->scopes,
				"expires_ms", (json_int_t)t->expires_ms));
	}
	root = json_pack("{s:i, s:i, s:i, s:o, s:o, s:o}", "token_lifetime", (int)o->lifetime,
			 "device_interval", (int)o->device_interval, "device_expires_in",
			 (int)o->device_lifetime, "service_accounts", sas, "refresh_tokens",
			 rts, "tokens", toks);
	pthread_rwlock_unlock(&o->lock);
	return root;
}

static void save_state(struct oauth *o)
{
	const char *dir = emu_data_dir(o->e);
	char path[4096], tmp[4200];
	json_t *j;
	int fd = -1;

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	j = state_json(o);
	if (!j)
		goto fail;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(j, fd, JSON_COMPACT) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	json_decref(j);
	return;
fail:
	emu_log(o->e, "oauth: cannot save %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	json_decref(j);
}

static char *jdup(json_t *o, const char *key, const char *def)
{
	json_t *v = json_object_get(o, key);

	if (json_is_string(v))
		return strdup(json_string_value(v));
	return def ? strdup(def) : NULL;
}

static int load_state(struct oauth *o)
{
	const char *dir = emu_data_dir(o->e);
	char path[4096];
	json_error_t jerr;
	json_t *j, *a, *v;
	size_t i;

	if (!dir)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, STATE_FILE);
	if (access(path, F_OK) < 0)
		return 0;
	j = json_load_file(path, 0, &jerr);
	if (!j || !json_is_object(j)) {
		emu_log(o->e, "oauth: %s is not valid JSON: %s (line %d)", path, jerr.text,
			jerr.line);
		json_decref(j);
		return -1;
	}
	if (json_is_integer(json_object_get(j, "token_lifetime")))
		o->lifetime = (long)json_integer_value(json_object_get(j, "token_lifetime"));
	v = json_object_get(j, "device_interval");
	if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 300)
		o->device_interval = (long)json_integer_value(v);
	v = json_object_get(j, "device_expires_in");
	if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 86400)
		o->device_lifetime = (long)json_integer_value(v);
	a = json_object_get(j, "service_accounts");
	json_array_foreach(a, i, v) {
		struct sa_key k = { 0 };
		struct sa_key *grown;

		k.email = jdup(v, "client_email", NULL);
		k.key_id = jdup(v, "key_id", "");
		k.pub_pem = jdup(v, "public_key_pem", NULL);
		if (k.pub_pem)
			k.pkey = emu_pem_public_key(k.pub_pem, strlen(k.pub_pem));
		grown = realloc(o->sas, (o->nsas + 1) * sizeof(*grown));
		if (!k.email || !k.key_id || !k.pkey || !grown) {
			if (grown)
				o->sas = grown;
			sa_free(&k);
			continue;
		}
		o->sas = grown;
		o->sas[o->nsas++] = k;
	}
	a = json_object_get(j, "refresh_tokens");
	json_array_foreach(a, i, v) {
		struct refresh r = { 0 };
		struct refresh *grown;

		r.client_id = jdup(v, "client_id", NULL);
		r.client_secret = jdup(v, "client_secret", NULL);
		r.token = jdup(v, "refresh_token", NULL);
		r.account = jdup(v, "account", DEFAULT_ACCOUNT);
		r.scopes = jdup(v, "scopes", DEFAULT_SCOPES);
		r.revoked = json_is_true(json_object_get(v, "revoked"));
		grown = realloc(o->rts, (o->nrts + 1) * sizeof(*grown));
		if (!r.client_id || !r.client_secret || !r.token || !r.account ||
		    !r.scopes || !grown) {
			if (grown)
				o->rts = grown;
			rt_free(&r);
			continue;
		}
		o->rts = grown;
		o->rts[o->nrts++] = r;
	}
	a = json_object_get(j, "tokens");
	json_array_foreach(a, i, v) {
		struct tok *t = calloc(1, sizeof(*t));

		if (!t)
			break;
		t->token = jdup(v, "token", NULL);
		t->account = jdup(v, "account", DEFAULT_ACCOUNT);
		t->scopes = jdup(v, "scopes", DEFAULT_SCOPES);
		t->expires_ms = json_integer_value(json_object_get(v, "expires_ms"));
		if (!t->token || !t->account || !t->scopes) {
			tok_free(t);
			continue;
		}
		insert_locked(o, t);
	}
	json_decref(j);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The token endpoint                                                       */

static void oauth_error(struct emu_resp *r, int status, const char *error,
			const char *desc)
{
	emu_resp_json(r, status, json_pack("{s:s, s:s}", "error", error,
					   "error_description", desc));
	emu_resp_header(r, "Cache-Control", "no-store");
}

static void token_reply(struct emu_resp *r, const char *token, long expires_in,
			const char *scopes)
{
	emu_resp_json(r, 200, json_pack("{s:s, s:i, s:s, s:s}", "access_token", token,
					 "expires_in", (int)expires_in, "token_type",
					 "Bearer", "scope", scopes));
	emu_resp_header(r, "Cache-Control", "no-store");
}

/* Form fields of a token request (form-encoded, or a JSON object). */
static int read_params(const struct emu_req *req, struct emu_kv **kv, size_t *n)
{
	const char *ct = emu_req_header(req, "Content-Type");
	json_t *j, *v;
	const char *key;
	size_t i = 0;

	if (ct && !strncasecmp(ct, "application/json", 16)) {
		j = json_loadb(req->body, req->body_len, 0, NULL);
		if (!json_is_object(j)) {
			json_decref(j);
			return -1;
		}
		*kv = calloc(json_object_size(j) + 1, sizeof(**kv));
		if (!*kv) {
			json_decref(j);
			return -1;
		}
		json_object_foreach(j, key, v) {
			if (!json_is_string(v))
				continue;
			(*kv)[i].key = strdup(key);
			(*kv)[i].value = strdup(json_string_value(v));
			if (!(*kv)[i].key || !(*kv)[i].value) {
				emu_kv_free(*kv, i + 1);
				json_decref(j);
				return -1;
			}
			i++;
		}
		*n = i;
		json_decref(j);
		return 0;
	}
	return emu_form_parse(req->body, req->body_len, kv, n);
}

static void grant_refresh(struct oauth *o, struct emu_kv *kv, size_t n,
			  struct emu_resp *r)
{
	const char *cid = emu_kv_get(kv, n, "client_id");
	const char *secret = emu_kv_get(kv, n, "client_secret");
	const char *rtok = emu_kv_get(kv, n, "refresh_token");
	const char *scope = emu_kv_get(kv, n, "scope");
	char *account = NULL, *scopes = NULL, *token = NULL;
	long expires_in = 0;
	int client_known = 0, found = -1;
	size_t i;

	if (!rtok || !rtok[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: refresh_token");
		return;
	}
	if (!cid || !cid[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: client_id");
		return;
	}
	pthread_rwlock_rdlock(&o->lock);
	for (i = 0; i < o->nrts; i++) {
		if (!strcmp(o->rts[i].client_id, cid))
			client_known = 1;
		if (!strcmp(o->rts[i].token, rtok))
			found = (int)i;
	}
	if (!client_known) {
		pthread_rwlock_unlock(&o->lock);
		oauth_error(r, 401, "invalid_client", "The OAuth client was not found.");
		return;
	}
	if (found < 0) {
		pthread_rwlock_unlock(&o->lock);
		oauth_error(r, 400, "invalid_grant", "Bad Request: unknown refresh token");
		return;
	}
	if (strcmp(o->rts[found].client_id, cid) || !secret ||
	    strcmp(o->rts[found].client_secret, secret)) {
		pthread_rwlock_unlock(&o->lock);
		oauth_error(r, 401, "invalid_client", "Unauthorized: wrong client id or secret "
			    "for this refresh token");
		return;
	}
	if (o->rts[found].revoked) {
		pthread_rwlock_unlock(&o->lock);
		oauth_error(r, 400, "invalid_grant", "Token has been expired or revoked.");
		return;
	}
	account = strdup(o->rts[found].account);
	scopes = strdup(scope && scope[0] ? scope : o->rts[found].scopes);
	pthread_rwlock_unlock(&o->lock);
	if (account && scopes)
		token = issue(o, account, scopes, 0, &expires_in);
	if (!token) {
		oauth_error(r, 500, "internal_failure", "out of memory");
	} else {
		token_reply(r, token, expires_in, scopes);
		emu_stat_add(o->e, "oauth.tokens_issued", 1);
	}
	free(token);
	free(account);
	free(scopes);
}

static void grant_jwt(struct oauth *o, const struct emu_req *req, struct emu_kv *kv,
		      size_t n, struct emu_resp *r)
{
	const char *assertion = emu_kv_get(kv, n, "assertion");
	const char *host = emu_req_header(req, "Host");
	struct emu_jwt jwt;
	char why[512], aud1[600], aud2[600], *token = NULL, *account = NULL, *scopes = NULL;
	const char *auds[3];
	long expires_in = 0;
	int have_jwt = 0, account_known = 0, key_known = 0, verified = 0;
	size_t i;

	if (!assertion || !assertion[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: assertion");
		goto out;
	}
	if (emu_jwt_parse(assertion, strlen(assertion), &jwt, why, sizeof(why)) < 0) {
		oauth_error(r, 400, "invalid_grant", why);
		goto out;
	}
	have_jwt = 1;
	pthread_rwlock_rdlock(&o->lock);
	for (i = 0; i < o->nsas && !verified; i++) {
		if (strcmp(o->sas[i].email, jwt.iss))
			continue;
		account_known = 1;
		if (jwt.kid && strcmp(o->sas[i].key_id, jwt.kid))
			continue;
		key_known = 1;
		verified = emu_jwt_verify_rs256(&jwt, o->sas[i].pkey);
	}
	pthread_rwlock_unlock(&o->lock);
	if (!account_known) {
		oauth_error(r, 400, "invalid_grant", "Invalid grant: account not found");
		goto out;
	}
	if (!key_known) {
		oauth_error(r, 400, "invalid_grant", "Invalid JWT Signature: unknown key id "
			    "(\"kid\") for this account");
		goto out;
	}
	if (!verified) {
		oauth_error(r, 400, "invalid_grant", "Invalid JWT Signature.");
		goto out;
	}
	snprintf(aud1, sizeof(aud1), "%s%s", emu_base_url(o->e), req->path);
	snprintf(aud2, sizeof(aud2), "http://%s%s", host ? host : "", req->path);
	auds[0] = aud1;
	auds[1] = host ? aud2 : NULL;
	auds[2] = NULL;
	if (emu_jwt_check_claims(&jwt, (long long)(now_ms() / 1000), auds, why,
				 sizeof(why)) < 0) {
		oauth_error(r, 400, "invalid_grant", why);
		goto out;
	}
	account = strdup(jwt.sub && jwt.sub[0] ? jwt.sub : jwt.iss);
	scopes = strdup(jwt.scope);
	if (account && scopes)
		token = issue(o, account, scopes, 0, &expires_in);
	if (!token) {
		oauth_error(r, 500, "internal_failure", "out of memory");
		goto out;
	}
	token_reply(r, token, expires_in, scopes);
	emu_stat_add(o->e, "oauth.tokens_issued", 1);
out:
	if (have_jwt)
		emu_jwt_release(&jwt);
	free(token);
	free(account);
	free(scopes);
}

static void grant_code(struct oauth *o, struct emu_kv *kv, size_t n, struct emu_resp *r);
static void grant_device(struct oauth *o, struct emu_kv *kv, size_t n, struct emu_resp *r);

static void handle_token(struct oauth *o, const struct emu_req *req, struct emu_resp *r)
{
	struct emu_kv *kv = NULL;
	size_t n = 0;
	const char *gt;

	r->kind = "oauth.token";
	if (strcmp(req->method, "POST")) {
		oauth_error(r, 405, "invalid_request", "The token endpoint takes POST");
		return;
	}
	if (read_params(req, &kv, &n) < 0) {
		oauth_error(r, 400, "invalid_request", "Malformed request body: expected "
			    "application/x-www-form-urlencoded");
		return;
	}
	gt = emu_kv_get(kv, n, "grant_type");
	if (!gt || !gt[0])
		oauth_error(r, 400, "invalid_request", "Missing required parameter: grant_type");
	else if (!strcmp(gt, "refresh_token"))
		grant_refresh(o, kv, n, r);
	else if (!strcmp(gt, "urn:ietf:params:oauth:grant-type:jwt-bearer"))
		grant_jwt(o, req, kv, n, r);
	else if (!strcmp(gt, "authorization_code"))
		grant_code(o, kv, n, r);
	else if (!strcmp(gt, "urn:ietf:params:oauth:grant-type:device_code"))
		grant_device(o, kv, n, r);
	else
		oauth_error(r, 400, "unsupported_grant_type", "Invalid grant_type");
	emu_kv_free(kv, n);
}

/* ------------------------------------------------------------------------ */
/* Authorization-code (PKCE) and device grants                              */

/* n bytes from the kernel's random source. 0 or -1. */
static int random_bytes(unsigned char *buf, size_t n)
{
	size_t got = 0;
	ssize_t k;

	while (got < n) {
		k = getrandom(buf + got, n - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* n random bytes as base64url into out (needs 4 * n / 3 + 2 bytes). */
static int random_b64url(char *out, size_t outsz, size_t n)
{
	unsigned char raw[48];

	if (n > sizeof(raw) || random_bytes(raw, n) < 0)
		return -1;
	return enc_b64(raw, n, out, outsz, 1) ? 0 : -1;
}

/* "1//emu-" and 32 random base64url characters (malloc'd), as Google's
 * refresh tokens start with "1//". */
static char *new_refresh_string(void)
{
	char b64[48], *s = NULL;

	if (random_b64url(b64, sizeof(b64), 24) < 0 || asprintf(&s, "1//emu-%s", b64) < 0)
		return NULL;
	return s;
}

/* RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge, the verifier
 * being 43..128 unreserved characters. */
static int pkce_ok(const char *verifier, const char *challenge)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char want[64];
	size_t i, n = strlen(verifier);

	if (n < PKCE_MIN || n > PKCE_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = verifier[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~'))
			return 0;
	}
	if (EVP_Digest(verifier, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return 0;
	if (!enc_b64(md, 32, want, sizeof(want), 1))
		return 0;
	return strlen(challenge) == strlen(want) &&
	       CRYPTO_memcmp(challenge, want, strlen(want)) == 0;
}

/* A well-formed S256 challenge: 43 base64url characters. */
static int challenge_ok(const char *c)
{
	size_t i;

	if (strlen(c) != 43)
		return 0;
	for (i = 0; c[i]; i++)
		if (!((c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= 'a' && c[i] <= 'z') ||
		      (c[i] >= '0' && c[i] <= '9') || c[i] == '-' || c[i] == '_'))
			return 0;
	return 1;
}

/* Register (or replace, same token) a refresh token. 0, or -1 (ENOMEM). */
static int add_refresh(struct oauth *o, const char *cid, const char *secret,
		       const char *token, const char *account, const char *scopes)
{
	struct refresh n = { 0 }, *grown;
	size_t i;

	n.client_id = strdup(cid);
	n.client_secret = strdup(secret);
	n.token = strdup(token);
	n.account = strdup(account ? account : DEFAULT_ACCOUNT);
	n.scopes = strdup(scopes ? scopes : DEFAULT_SCOPES);
	if (!n.client_id || !n.client_secret || !n.token || !n.account || !n.scopes) {
		rt_free(&n);
		return -1;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->nrts; i++) {
		if (!strcmp(o->rts[i].token, token)) {
			rt_free(&o->rts[i]);
			o->rts[i] = n;
			pthread_rwlock_unlock(&o->lock);
			return 0;
		}
	}
	grown = realloc(o->rts, (o->nrts + 1) * sizeof(*grown));
	if (!grown) {
		pthread_rwlock_unlock(&o->lock);
		rt_free(&n);
		return -1;
	}
	o->rts = grown;
	o->rts[o->nrts++] = n;
	pthread_rwlock_unlock(&o->lock);
	return 0;
}

/* A client id the emulator knows of (a registered refresh token or code).
 * Lock held. */
static int client_known_locked(struct oauth *o, const char *cid)
{
	size_t i;

	for (i = 0; i < o->nrts; i++)
		if (!strcmp(o->rts[i].client_id, cid))
			return 1;
	for (i = 0; i < o->ncodes; i++)
		if (!strcmp(o->codes[i].client_id, cid))
			return 1;
	return 0;
}

/* Drop used or expired codes and device codes. Write lock held. */
static void prune_codes_locked(struct oauth *o)
{
	int64_t now = now_ms();
	size_t i, k;

	for (i = k = 0; i < o->ncodes; i++) {
		if (o->codes[i].used || o->codes[i].expires_ms < now)
			code_free(&o->codes[i]);
		else
			o->codes[k++] = o->codes[i];
	}
	o->ncodes = k;
	for (i = k = 0; i < o->ndevs; i++) {
		if (o->devs[i].state == DEV_USED || o->devs[i].expires_ms < now)
			dev_free(&o->devs[i]);
		else
			o->devs[k++] = o->devs[i];
	}
	o->ndevs = k;
}

/* Access token (and refresh token) reply of a code or device grant. */
static void issue_with_refresh(struct oauth *o, struct emu_resp *r, const char *cid,
			       const char *secret, const char *rtok, const char *account,
			       const char *scopes)
{
	char *token = NULL;
	long expires_in = 0;

	if (add_refresh(o, cid, secret, rtok, account, scopes) < 0 ||
	    !(token = issue(o, account, scopes, 0, &expires_in))) {
		oauth_error(r, 500, "internal_failure", "out of memory");
		return;
	}
	save_state(o);
	emu_resp_json(r, 200, json_pack("{s:s, s:i, s:s, s:s, s:s}", "access_token", token,
					 "expires_in", (int)expires_in, "refresh_token", rtok,
					 "scope", scopes, "token_type", "Bearer"));
	emu_resp_header(r, "Cache-Control", "no-store");
	emu_stat_add(o->e, "oauth.tokens_issued", 1);
	free(token);
}

/* grant_type=authorization_code: single use, same client (id and secret)
 * and redirect_uri as the code was issued for, and the PKCE verifier
 * matching its S256 challenge. */
static void grant_code(struct oauth *o, struct emu_kv *kv, size_t n, struct emu_resp *r)
{
	const char *code = emu_kv_get(kv, n, "code");
	const char *cid = emu_kv_get(kv, n, "client_id");
	const char *secret = emu_kv_get(kv, n, "client_secret");
	const char *ruri = emu_kv_get(kv, n, "redirect_uri");
	const char *verifier = emu_kv_get(kv, n, "code_verifier");
	char *rtok = NULL, *account = NULL, *scopes = NULL;
	struct authcode *c = NULL;
	int status = 400;
	const char *error = "invalid_grant", *desc = NULL;
	size_t i;

	if (!code || !code[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: code");
		return;
	}
	if (!cid || !cid[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: client_id");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->ncodes; i++)
		if (!strcmp(o->codes[i].code, code))
			c = &o->codes[i];
	if (!c || !c->redirect_uri) {
		desc = "Malformed auth code.";
	} else if (c->used) {
		desc = "Bad Request: the authorization code was already used.";
	} else if (c->expires_ms < now_ms()) {
		desc = "Bad Request: the authorization code expired.";
	} else if (strcmp(c->client_id, cid)) {
		if (client_known_locked(o, cid)) {
			desc = "Bad Request: the code was issued to another client.";
		} else {
			status = 401;
			error = "invalid_client";
			desc = "The OAuth client was not found.";
		}
	} else if (!secret || strcmp(c->client_secret, secret)) {
		status = 401;
		error = "invalid_client";
		desc = "Unauthorized";
	} else if (!ruri || strcmp(c->redirect_uri, ruri)) {
		error = "redirect_uri_mismatch";
		desc = "Bad Request: redirect_uri differs from the authorization request's.";
	} else if (c->challenge && (!verifier || !verifier[0])) {
		desc = "Missing code verifier.";
	} else if (c->challenge && !pkce_ok(verifier, c->challenge)) {
		desc = "Invalid code verifier.";
	} else {
		c->used = 1;
		rtok = strdup(c->refresh_token);
		account = strdup(c->account);
		scopes = strdup(c->scopes);
	}
	pthread_rwlock_unlock(&o->lock);
	if (desc) {
		oauth_error(r, status, error, desc);
	} else if (!rtok || !account || !scopes) {
		oauth_error(r, 500, "internal_failure", "out of memory");
	} else {
		issue_with_refresh(o, r, cid, secret, rtok, account, scopes);
		emu_stat_add(o->e, "oauth.codes_exchanged", 1);
	}
	free(rtok);
	free(account);
	free(scopes);
}

/* Scopes Google allows in the device flow ("Allowed scopes" of its
 * limited-input device guide): sign-in, and among Drive's only drive.file
 * and drive.appdata. */
static int device_scope_ok(const char *scope, size_t n)
{
	static const char *const ok[] = {
		"openid", "email", "profile",
		"https://www.googleapis.com/auth/userinfo.email",
		"https://www.googleapis.com/auth/userinfo.profile",
		"https://www.googleapis.com/auth/drive.file",
		"https://www.googleapis.com/auth/drive.appdata",
		"https://www.googleapis.com/auth/youtube",
		"https://www.googleapis.com/auth/youtube.readonly",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strlen(ok[i]) == n && !strncmp(ok[i], scope, n))
			return 1;
	return 0;
}

/* POST /device/code: client_id and scope; hands out a device code and a
 * user code for the control call device_approve. */
static void handle_device_code(struct oauth *o, const struct emu_req *req,
			       struct emu_resp *r)
{
	static const char letters[] = "BCDFGHJKLMNPQRSTVWXZ";
	struct emu_kv *kv = NULL;
	size_t n = 0, i;
	const char *cid, *scope, *p;
	struct devcode d = { 0 }, *grown;
	json_t *reply;
	unsigned char raw[8];
	char b64[48], ucode[16];
	long interval, lifetime;

	r->kind = "oauth.device_code";
	if (strcmp(req->method, "POST")) {
		oauth_error(r, 405, "invalid_request", "The device endpoint takes POST");
		return;
	}
	if (read_params(req, &kv, &n) < 0) {
		oauth_error(r, 400, "invalid_request", "Malformed request body: expected "
			    "application/x-www-form-urlencoded");
		return;
	}
	cid = emu_kv_get(kv, n, "client_id");
	scope = emu_kv_get(kv, n, "scope");
	if (!cid || !cid[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: client_id");
		goto out;
	}
	if (!scope || !scope[0]) {
		oauth_error(r, 400, "invalid_scope", "Missing required parameter: scope");
		goto out;
	}
	for (p = scope; *p;) {
		size_t len = strcspn(p, " ");

		if (len && !device_scope_ok(p, len)) {
			oauth_error(r, 400, "invalid_scope", "Invalid device flow scope: the "
				    "device flow allows only sign-in scopes, drive.file and "
				    "drive.appdata");
			goto out;
		}
		p += len;
		while (*p == ' ')
			p++;
	}
	if (random_b64url(b64, sizeof(b64), 24) < 0 || random_bytes(raw, sizeof(raw)) < 0) {
		oauth_error(r, 500, "internal_failure", "no randomness");
		goto out;
	}
	for (i = 0; i < 8; i++)
		ucode[i < 4 ? i : i + 1] = letters[raw[i] % (sizeof(letters) - 1)];
	ucode[4] = '-';
	ucode[9] = '\0';
	d.user_code = strdup(ucode);
	d.client_id = strdup(cid);
	d.scopes = strdup(scope);
	if (asprintf(&d.device_code, "AH-1Ng%s", b64) < 0)
		d.device_code = NULL;
	if (!d.device_code || !d.user_code || !d.client_id || !d.scopes) {
		dev_free(&d);
		oauth_error(r, 500, "internal_failure", "out of memory");
		goto out;
	}
	pthread_rwlock_wrlock(&o->lock);
	prune_codes_locked(o);
	interval = o->device_interval;
	lifetime = o->device_lifetime;
	d.interval = interval;
	d.state = DEV_PENDING;
	d.expires_ms = now_ms() + (int64_t)lifetime * 1000;
	grown = o->ndevs < MAX_PENDING ? realloc(o->devs, (o->ndevs + 1) * sizeof(*grown))
				       : NULL;
	if (!grown) {
		pthread_rwlock_unlock(&o->lock);
		dev_free(&d);
		oauth_error(r, 503, "temporarily_unavailable", "too many pending device codes");
		goto out;
	}
	o->devs = grown;
	o->devs[o->ndevs++] = d;
	/* built under the lock: a reset may free d's strings once it is gone */
	reply = json_pack("{s:s, s:s, s:s, s:i, s:i}", "device_code", d.device_code,
			  "user_code", d.user_code, "verification_url", DEVICE_URL,
			  "expires_in", (int)lifetime, "interval", (int)interval);
	pthread_rwlock_unlock(&o->lock);
	emu_resp_json(r, 200, reply);
	emu_resp_header(r, "Cache-Control", "no-store");
	emu_stat_add(o->e, "oauth.device_codes", 1);
out:
	emu_kv_free(kv, n);
}

/* grant_type=urn:ietf:params:oauth:grant-type:device_code, with Google's
 * answers while it waits: 428 authorization_pending, 403 slow_down (a poll
 * sooner than the interval, which then grows by 5 s), 403 access_denied,
 * 400 expired_token. */
static void grant_device(struct oauth *o, struct emu_kv *kv, size_t n, struct emu_resp *r)
{
	const char *dcode = emu_kv_get(kv, n, "device_code");
	const char *cid = emu_kv_get(kv, n, "client_id");
	const char *secret = emu_kv_get(kv, n, "client_secret");
	char *rtok = NULL, *account = NULL, *scopes = NULL;
	struct devcode *d = NULL;
	int status = 400;
	const char *error = NULL, *desc = NULL;
	int64_t now = now_ms();
	size_t i;

	if (!dcode || !dcode[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: device_code");
		return;
	}
	if (!cid || !cid[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: client_id");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->ndevs; i++)
		if (!strcmp(o->devs[i].device_code, dcode))
			d = &o->devs[i];
	if (!d) {
		error = "invalid_grant";
		desc = "Malformed device code.";
	} else if (strcmp(d->client_id, cid)) {
		status = 401;
		error = "invalid_client";
		desc = "The OAuth client was not found.";
	} else if (d->state == DEV_USED) {
		error = "invalid_grant";
		desc = "Bad Request: the device code was already used.";
	} else if (d->expires_ms < now) {
		error = "expired_token";
		desc = "Expired";
	} else if (d->last_poll_ms && now - d->last_poll_ms < d->interval * 1000 - 50) {
		d->last_poll_ms = now;
		d->interval += 5;
		status = 403;
		error = "slow_down";
		desc = "Forbidden: polling too fast";
	} else {
		d->last_poll_ms = now;
		if (d->state == DEV_PENDING) {
			status = 428;
			error = "authorization_pending";
			desc = "Precondition Required";
		} else if (d->state == DEV_DENIED) {
			status = 403;
			error = "access_denied";
			desc = "Forbidden";
			d->state = DEV_USED;
		} else if (!secret || !secret[0] ||
			   (d->client_secret && strcmp(d->client_secret, secret))) {
			status = 401;
			error = "invalid_client";
			desc = "Unauthorized";
		} else {
			d->state = DEV_USED;
			rtok = strdup(d->refresh_token);
			account = strdup(d->account);
			scopes = strdup(d->scopes);
		}
	}
	pthread_rwlock_unlock(&o->lock);
	if (error) {
		oauth_error(r, status, error, desc);
	} else if (!rtok || !account || !scopes) {
		oauth_error(r, 500, "internal_failure", "out of memory");
	} else {
		issue_with_refresh(o, r, cid, secret, rtok, account, scopes);
		emu_stat_add(o->e, "oauth.device_grants", 1);
	}
	free(rtok);
	free(account);
	free(scopes);
}

/* The consent page, GET /o/oauth2/v2/auth (or /o/oauth2/auth): the user
 * "approves" at once by the first code registered for the client without a
 * redirect_uri (control call auth_codes), which gets this request's
 * redirect_uri, code_challenge and (if it has none) scope; the browser is
 * sent back with 302 to redirect_uri?code=..&scope=..&state=.. */
static void handle_authorize(struct oauth *o, const struct emu_req *req, struct emu_resp *r)
{
	const char *rt = emu_req_query(req, "response_type");
	const char *cid = emu_req_query(req, "client_id");
	const char *ruri = emu_req_query(req, "redirect_uri");
	const char *state = emu_req_query(req, "state");
	const char *chal = emu_req_query(req, "code_challenge");
	const char *method = emu_req_query(req, "code_challenge_method");
	const char *scope = emu_req_query(req, "scope");
	char *e_code = NULL, *e_scope = NULL, *e_state = NULL;
	struct authcode *c = NULL;
	int64_t now = now_ms();
	const char *rest;
	size_t i;
	int ok = 0;

	r->kind = "oauth.authorize";
	if (strcmp(req->method, "GET")) {
		oauth_error(r, 405, "invalid_request", "The authorization endpoint takes GET");
		return;
	}
	if (!cid || !cid[0] || !ruri || !ruri[0]) {
		oauth_error(r, 400, "invalid_request", "Missing required parameter: client_id "
			    "and redirect_uri are required");
		return;
	}
	if (!rt || strcmp(rt, "code")) {
		oauth_error(r, 400, "unsupported_response_type", "response_type must be code");
		return;
	}
	if (strncmp(ruri, "http://127.0.0.1", 16) && strncmp(ruri, "http://localhost", 16) &&
	    strncmp(ruri, "http://[::1]", 12)) {
		oauth_error(r, 400, "redirect_uri_mismatch", "a desktop client may only "
			    "redirect to a loopback address (http://127.0.0.1:PORT)");
		return;
	}
	if (chal && (!method || strcmp(method, "S256") || !challenge_ok(chal))) {
		oauth_error(r, 400, "invalid_request", "code_challenge must be 43 base64url "
			    "characters with code_challenge_method=S256");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->ncodes && !c; i++)
		if (!o->codes[i].redirect_uri && !o->codes[i].used &&
		    o->codes[i].expires_ms >= now && !strcmp(o->codes[i].client_id, cid))
			c = &o->codes[i];
	if (c) {
		c->redirect_uri = strdup(ruri);
		c->challenge = chal ? strdup(chal) : NULL;
		if (!c->scopes)
			c->scopes = strdup(scope && scope[0] ? scope : DEFAULT_SCOPES);
		ok = c->redirect_uri && (!chal || c->challenge) && c->scopes;
		e_code = enc_url(c->code);
		e_scope = c->scopes ? enc_url(c->scopes) : NULL;
	}
	pthread_rwlock_unlock(&o->lock);
	e_state = state ? enc_url(state) : NULL;
	if (!c) {
		oauth_error(r, 400, "access_denied", "The emulator has no consent registered "
			    "for this client: register a code first (POST "
			    "/_emulator/oauth/auth_codes without redirect_uri)");
	} else if (!ok || !e_code || !e_scope || (state && !e_state)) {
		oauth_error(r, 500, "internal_failure", "out of memory");
	} else {
		/* http://127.0.0.1:PORT has no path: a browser asks for "/". */
		rest = strstr(ruri, "://") + 3;
		emu_resp_text(r, 302, "text/html", "", 0);
		emu_resp_header(r, "Location", "%s%s%ccode=%s&scope=%s%s%s", ruri,
				strpbrk(rest, "/?") ? "" : "/", strchr(ruri, '?') ? '&' : '?',
				e_code, e_scope, e_state ? "&state=" : "",
				e_state ? e_state : "");
		emu_stat_add(o->e, "oauth.consents", 1);
	}
	free(e_code);
	free(e_scope);
	free(e_state);
}

/* GET/POST /oauth2/v3/tokeninfo?access_token=T */
static void handle_tokeninfo(struct oauth *o, const struct emu_req *req,
			     struct emu_resp *r)
{
	struct emu_kv *kv = NULL;
	size_t n = 0;
	const char *t = emu_req_query(req, "access_token");
	struct tok *tk;
	char exp[32], left[32];
	int64_t now = now_ms();

	r->kind = "oauth.tokeninfo";
	if (!t && req->body_len && emu_form_parse(req->body, req->body_len, &kv, &n) == 0)
		t = emu_kv_get(kv, n, "access_token");
	pthread_rwlock_rdlock(&o->lock);
	tk = t ? find_locked(o, t) : NULL;
	if (!tk || tk->expires_ms <= now) {
		pthread_rwlock_unlock(&o->lock);
		oauth_error(r, 400, "invalid_token", "Invalid Value");
		emu_kv_free(kv, n);
		return;
	}
	snprintf(exp, sizeof(exp), "%lld", (long long)(tk->expires_ms / 1000));
	snprintf(left, sizeof(left), "%lld", (long long)((tk->expires_ms - now) / 1000));
	emu_resp_json(r, 200, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "azp",
		"durafs-emulator", "aud", "durafs-emulator", "scope", tk->scopes, "exp", exp,
		"expires_in", left, "email", tk->account));
	pthread_rwlock_unlock(&o->lock);
	emu_kv_free(kv, n);
}

/* POST /revoke?token=T (access or refresh token). */
static void handle_revoke(struct oauth *o, const struct emu_req *req, struct emu_resp *r)
{
	struct emu_kv *kv = NULL;
	size_t n = 0, i;
	const char *t = emu_req_query(req, "token");
	struct tok *tk;
	int hit = 0;

	r->kind = "oauth.revoke";
	if (!t && req->body_len && emu_form_parse(req->body, req->body_len, &kv, &n) == 0)
		t = emu_kv_get(kv, n, "token");
	if (t) {
		pthread_rwlock_wrlock(&o->lock);
		tk = find_locked(o, t);
		if (tk) {
			tk->expires_ms = 0;
			hit = 1;
		}
		for (i = 0; i < o->nrts; i++) {
			if (!strcmp(o->rts[i].token, t)) {
				o->rts[i].revoked = 1;
				hit = 1;
			}
		}
		pthread_rwlock_unlock(&o->lock);
	}
	if (hit)
		emu_resp_json(r, 200, json_object());
	else
		oauth_error(r, 400, "invalid_token", "Token expired or revoked");
	emu_kv_free(kv, n);
}

static int oauth_handle(struct emu *e, void *state, const struct emu_req *req,
			struct emu_resp *resp)
{
	struct oauth *o = state;

	(void)e;
	if (req->truncated)
		return 0;  /* a cut request: nothing to persist */
	if (!strcmp(req->path, "/token") || !strcmp(req->path, "/oauth2/v4/token") ||
	    !strcmp(req->path, "/o/oauth2/token"))
		handle_token(o, req, resp);
	else if (!strcmp(req->path, "/oauth2/v3/tokeninfo") ||
		 !strcmp(req->path, "/tokeninfo"))
		handle_tokeninfo(o, req, resp);
	else if (!strcmp(req->path, "/revoke") || !strcmp(req->path, "/o/oauth2/revoke"))
		handle_revoke(o, req, resp);
	else if (!strcmp(req->path, "/device/code"))
		handle_device_code(o, req, resp);
	else if (!strcmp(req->path, "/o/oauth2/v2/auth") || !strcmp(req->path, "/o/oauth2/auth"))
		handle_authorize(o, req, resp);
	else
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Control calls: /_emulator/oauth/...                                      */

static json_t *control_body(const struct emu_req *req, struct emu_resp *r)
{
	json_error_t jerr;
	json_t *j;

	if (strcmp(req->method, "POST")) {
		emu_resp_error(r, 405, "methodNotAllowed", "oauth control calls take POST");
		return NULL;
	}
	j = json_loadb(req->body, req->body_len, 0, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		emu_resp_error(r, 400, "parseError", "expected a JSON object: %s",
			       j ? "not an object" : jerr.text);
		return NULL;
	}
	return j;
}

static const char *str_field(json_t *j, const char *key, int required,
			     struct emu_resp *r)
{
	json_t *v = json_object_get(j, key);

	if (!v && !required)
		return NULL;
	if (!json_is_string(v) || !json_string_length(v) ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		if (!r->status)
			emu_resp_error(r, 400, "invalid", "\"%s\" must be a non-empty string",
				       key);
		return NULL;
	}
	return json_string_value(v);
}

static char *pubkey_pem(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data = NULL, *s = NULL;
	long n;

	if (!b)
		return NULL;
	if (PEM_write_bio_PUBKEY(b, k) == 1) {
		n = BIO_get_mem_data(b, &data);
		if (n > 0) {
			s = malloc((size_t)n + 1);
			if (s) {
				memcpy(s, data, (size_t)n);
				s[n] = '\0';
			}
		}
	}
	BIO_free(b);
	return s;
}

static void ctl_service_account(struct oauth *o, json_t *j, struct emu_resp *r)
{
	const char *email = str_field(j, "client_email", 1, r);
	const char *pem = str_field(j, "public_key_pem", 0, r);
	const char *priv = str_field(j, "private_key", 0, r);
	const char *kid = str_field(j, "key_id", 0, r);
	struct sa_key k = { 0 }, *grown;
	size_t i;

	if (!kid && !r->status)
		kid = str_field(j, "private_key_id", 0, r);
	if (r->status)
		return;
	if (!pem)
		pem = priv;
	if (!pem) {
		emu_resp_error(r, 400, "invalid", "need \"public_key_pem\" (or the service "
			       "account's \"private_key\")");
		return;
	}
	k.pkey = emu_pem_public_key(pem, strlen(pem));
	if (!k.pkey || EVP_PKEY_base_id(k.pkey) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k.pkey);
		emu_resp_error(r, 400, "invalid", "the key is not an RSA key in PEM form");
		return;
	}
	k.email = strdup(email);
	k.key_id = strdup(kid ? kid : "");
	k.pub_pem = pubkey_pem(k.pkey);
	if (!k.email || !k.key_id || !k.pub_pem) {
		sa_free(&k);
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->nsas; i++) {
		if (!strcmp(o->sas[i].email, k.email) && !strcmp(o->sas[i].key_id, k.key_id)) {
			sa_free(&o->sas[i]);
			o->sas[i] = k;
			goto done;
		}
	}
	grown = realloc(o->sas, (o->nsas + 1) * sizeof(*grown));
	if (!grown) {
		pthread_rwlock_unlock(&o->lock);
		sa_free(&k);
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	o->sas = grown;
	o->sas[o->nsas++] = k;
done:
	pthread_rwlock_unlock(&o->lock);
	emu_resp_json(r, 200, json_pack("{s:s, s:s}", "client_email", email, "key_id",
					 kid ? kid : ""));
}

static void ctl_refresh_token(struct oauth *o, json_t *j, struct emu_resp *r)
{
	const char *cid = str_field(j, "client_id", 1, r);
	const char *secret = str_field(j, "client_secret", 1, r);
	const char *tok = str_field(j, "refresh_token", 1, r);
	const char *account = str_field(j, "account", 0, r);
	const char *scopes = str_field(j, "scopes", 0, r);
	struct refresh n = { 0 }, *grown;
	size_t i;

	if (r->status)
		return;
	n.client_id = strdup(cid);
	n.client_secret = strdup(secret);
	n.token = strdup(tok);
	n.account = strdup(account ? account : DEFAULT_ACCOUNT);
	n.scopes = strdup(scopes ? scopes : DEFAULT_SCOPES);
	if (!n.client_id || !n.client_secret || !n.token || !n.account || !n.scopes) {
		rt_free(&n);
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->nrts; i++) {
		if (!strcmp(o->rts[i].token, tok)) {
			rt_free(&o->rts[i]);
			o->rts[i] = n;
			goto done;
		}
	}
	grown = realloc(o->rts, (o->nrts + 1) * sizeof(*grown));
	if (!grown) {
		pthread_rwlock_unlock(&o->lock);
		rt_free(&n);
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	o->rts = grown;
	o->rts[o->nrts++] = n;
done:
	pthread_rwlock_unlock(&o->lock);
	emu_resp_json(r, 200, json_pack("{s:s, s:s}", "client_id", cid, "account",
					 account ? account : DEFAULT_ACCOUNT));
}

/* A config field: an integer in lo..hi, or absent (*out untouched).
 * -1 with r set when present and out of range. */
static int config_int(json_t *j, const char *key, long lo, long hi, long *out,
		      struct emu_resp *r)
{
	json_t *v = json_object_get(j, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		emu_resp_error(r, 400, "invalid", "\"%s\" must be an integer number of "
			       "seconds in %ld..%ld", key, lo, hi);
		return -1;
	}
	*out = (long)json_integer_value(v);
	return 0;
}

static void ctl_config(struct oauth *o, json_t *j, struct emu_resp *r)
{
	const char *key;
	json_t *x;
	long lifetime = -1, interval = -1, dlife = -1;

	json_object_foreach(j, key, x) {
		if (strcmp(key, "token_lifetime") && strcmp(key, "device_interval") &&
		    strcmp(key, "device_expires_in")) {
			emu_resp_error(r, 400, "invalid", "unknown config field \"%.64s\"", key);
			return;
		}
	}
	if (config_int(j, "token_lifetime", 1, 7 * 86400, &lifetime, r) < 0 ||
	    config_int(j, "device_interval", 1, 300, &interval, r) < 0 ||
	    config_int(j, "device_expires_in", 1, 86400, &dlife, r) < 0)
		return;
	pthread_rwlock_wrlock(&o->lock);
	if (lifetime > 0)
		o->lifetime = lifetime;
	if (interval > 0)
		o->device_interval = interval;
	if (dlife > 0)
		o->device_lifetime = dlife;
	lifetime = o->lifetime;
	interval = o->device_interval;
	dlife = o->device_lifetime;
	pthread_rwlock_unlock(&o->lock);
	emu_resp_json(r, 200, json_pack("{s:i, s:i, s:i}", "token_lifetime", (int)lifetime,
					 "device_interval", (int)interval,
					 "device_expires_in", (int)dlife));
}

static void ctl_revoke(struct oauth *o, json_t *j, struct emu_resp *r)
{
	const char *rt = str_field(j, "refresh_token", 0, r);
	const char *at = str_field(j, "access_token", 0, r);
	struct tok *t;
	int hits = 0;
	size_t i;

	if (r->status)
		return;
	if (!rt && !at) {
		emu_resp_error(r, 400, "invalid", "need \"refresh_token\" or \"access_token\"");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; rt && i < o->nrts; i++) {
		if (!strcmp(o->rts[i].token, rt)) {
			o->rts[i].revoked = 1;
			hits++;
		}
	}
	if (at && (t = find_locked(o, at))) {
		t->expires_ms = 0;
		hits++;
	}
	pthread_rwlock_unlock(&o->lock);
	if (!hits) {
		emu_resp_error(r, 404, "notFound", "no such token");
		return;
	}
	emu_resp_json(r, 200, json_pack("{s:i}", "revoked", hits));
}

static void ctl_issue(struct oauth *o, json_t *j, struct emu_resp *r)
{
	json_t *v = json_object_get(j, "lifetime");
	const char *account = str_field(j, "account", 0, r);
	const char *scopes = str_field(j, "scopes", 0, r);
	long lifetime = 0, expires_in = 0;
	char *token;

	if (r->status)
		return;
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 7 * 86400) {
			emu_resp_error(r, 400, "invalid", "\"lifetime\" must be an integer "
				       "number of seconds in 1..604800");
			return;
		}
		lifetime = (long)json_integer_value(v);
	}
	token = issue(o, account, scopes, lifetime, &expires_in);
	if (!token) {
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	emu_resp_json(r, 200, json_pack("{s:s, s:i, s:s, s:s}", "access_token", token,
					"expires_in", (int)expires_in, "token_type", "Bearer",
					"scope", scopes ? scopes : DEFAULT_SCOPES));
	free(token);
}

/* auth_codes: {"code"?, "client_id", "client_secret", "redirect_uri"?,
 * "code_challenge"?, "refresh_token"?, "account"?, "scopes"?,
 * "expires_in"?}. Without redirect_uri the code waits for the consent page
 * (which binds redirect_uri and code_challenge); a missing code or refresh
 * token is generated. Replies with the code and refresh token. */
static void ctl_auth_code(struct oauth *o, json_t *j, struct emu_resp *r)
{
	const char *code = str_field(j, "code", 0, r);
	const char *cid = str_field(j, "client_id", 1, r);
	const char *secret = str_field(j, "client_secret", 1, r);
	const char *ruri = str_field(j, "redirect_uri", 0, r);
	const char *chal = str_field(j, "code_challenge", 0, r);
	const char *rtok = str_field(j, "refresh_token", 0, r);
	const char *account = str_field(j, "account", 0, r);
	const char *scopes = str_field(j, "scopes", 0, r);
	json_t *v = json_object_get(j, "expires_in");
	struct authcode c = { 0 }, *grown;
	char gen[48];
	long life = CODE_LIFETIME;
	size_t i;

	if (r->status)
		return;
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 86400) {
			emu_resp_error(r, 400, "invalid", "\"expires_in\" must be an integer "
				       "number of seconds in 1..86400");
			return;
		}
		life = (long)json_integer_value(v);
	}
	if (chal && !challenge_ok(chal)) {
		emu_resp_error(r, 400, "invalid", "\"code_challenge\" must be an S256 "
			       "challenge: 43 base64url characters");
		return;
	}
	if (chal && !ruri) {
		emu_resp_error(r, 400, "invalid", "a \"code_challenge\" needs its "
			       "\"redirect_uri\" (or register neither: the consent page "
			       "binds both)");
		return;
	}
	if (!code) {
		if (random_b64url(gen, sizeof(gen), 30) < 0) {
			emu_resp_error(r, 500, "backendError", "no randomness");
			return;
		}
		if (asprintf(&c.code, "4/0Aemu%s", gen) < 0)
			c.code = NULL;
	} else {
		c.code = strdup(code);
	}
	c.client_id = strdup(cid);
	c.client_secret = strdup(secret);
	c.redirect_uri = ruri ? strdup(ruri) : NULL;
	c.challenge = chal ? strdup(chal) : NULL;
	c.refresh_token = rtok ? strdup(rtok) : new_refresh_string();
	c.account = strdup(account ? account : DEFAULT_ACCOUNT);
	c.scopes = scopes ? strdup(scopes) : NULL;
	c.expires_ms = now_ms() + (int64_t)life * 1000;
	if (!c.code || !c.client_id || !c.client_secret || (ruri && !c.redirect_uri) ||
	    (chal && !c.challenge) || !c.refresh_token || !c.account ||
	    (scopes && !c.scopes)) {
		code_free(&c);
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	if (!ruri && !scopes)
		c.scopes = NULL;  /* the consent page sets the requested scope */
	else if (!c.scopes && !(c.scopes = strdup(DEFAULT_SCOPES))) {
		code_free(&c);
		emu_resp_error(r, 500, "backendError", "out of memory");
		return;
	}
	pthread_rwlock_wrlock(&o->lock);
	prune_codes_locked(o);
	for (i = 0; i < o->ncodes; i++) {
		if (!strcmp(o->codes[i].code, c.code)) {
			code_free(&o->codes[i]);
			o->codes[i] = c;
			goto done;
		}
	}
	grown = o->ncodes < MAX_PENDING ? realloc(o->codes, (o->ncodes + 1) * sizeof(*grown))
					: NULL;
	if (!grown) {
		pthread_rwlock_unlock(&o->lock);
		code_free(&c);
		emu_resp_error(r, 503, "backendError", "too many pending codes");
		return;
	}
	o->codes = grown;
	o->codes[o->ncodes++] = c;
done:
	emu_resp_json(r, 200, json_pack("{s:s, s:s, s:s, s:b}", "code", c.code, "client_id",
					 c.client_id, "refresh_token", c.refresh_token,
					 "awaiting_consent", c.redirect_uri == NULL));
	pthread_rwlock_unlock(&o->lock);
}

/* device_approve: {"user_code", "refresh_token"?, "account"?, "scopes"?,
 * "client_secret"?, "deny"?}: the user approved (or denied) on another
 * device. A missing refresh token is generated. */
static void ctl_device_approve(struct oauth *o, json_t *j, struct emu_resp *r)
{
	const char *ucode = str_field(j, "user_code", 1, r);
	const char *rtok = str_field(j, "refresh_token", 0, r);
	const char *account = str_field(j, "account", 0, r);
	const char *scopes = str_field(j, "scopes", 0, r);
	const char *secret = str_field(j, "client_secret", 0, r);
	json_t *deny = json_object_get(j, "deny");
	struct devcode *d = NULL;
	char *nrt = NULL, *nacc = NULL, *nsc = NULL, *nsec = NULL;
	size_t i;

	if (r->status)
		return;
	if (deny && !json_is_boolean(deny)) {
		emu_resp_error(r, 400, "invalid", "\"deny\" must be a boolean");
		return;
	}
	nrt = rtok ? strdup(rtok) : new_refresh_string();
	nacc = strdup(account ? account : DEFAULT_ACCOUNT);
	nsc = scopes ? strdup(scopes) : NULL;
	nsec = secret ? strdup(secret) : NULL;
	if (!nrt || !nacc || (scopes && !nsc) || (secret && !nsec)) {
		emu_resp_error(r, 500, "backendError", "out of memory");
		goto out;
	}
	pthread_rwlock_wrlock(&o->lock);
	for (i = 0; i < o->ndevs; i++)
		if (!strcasecmp(o->devs[i].user_code, ucode))
			d = &o->devs[i];
	if (!d) {
		emu_resp_error(r, 404, "notFound", "no such user code");
	} else if (d->expires_ms < now_ms()) {
		emu_resp_error(r, 410, "gone", "the device code expired");
	} else if (d->state != DEV_PENDING) {
		emu_resp_error(r, 409, "conflict", "already approved or denied");
	} else if (json_is_true(deny)) {
		d->state = DEV_DENIED;
		emu_resp_json(r, 200, json_pack("{s:s, s:b}", "user_code", d->user_code,
						 "approved", 0));
	} else {
		d->state = DEV_APPROVED;
		d->refresh_token = nrt;
		d->account = nacc;
		d->client_secret = nsec;
		nrt = nacc = nsec = NULL;
		if (nsc) {
			free(d->scopes);
			d->scopes = nsc;
			nsc = NULL;
		}
		emu_resp_json(r, 200, json_pack("{s:s, s:b, s:s}", "user_code", d->user_code,
						 "approved", 1, "refresh_token",
						 d->refresh_token));
	}
	pthread_rwlock_unlock(&o->lock);
out:
	free(nrt);
	free(nacc);
	free(nsc);
	free(nsec);
}

static int oauth_control(struct emu *e, void *state, const char *sub,
			 const struct emu_req *req, struct emu_resp *r)
{
	struct oauth *o = state;
	json_t *j;
	int changed = 1;

	(void)e;
	if (strcmp(sub, "service_accounts") && strcmp(sub, "refresh_tokens") &&
	    strcmp(sub, "config") && strcmp(sub, "revoke") && strcmp(sub, "issue") &&
	    strcmp(sub, "auth_codes") && strcmp(sub, "device_approve"))
		return -1;
	j = control_body(req, r);
	if (!j)
		return 0;
	if (!strcmp(sub, "service_accounts")) {
		ctl_service_account(o, j, r);
	} else if (!strcmp(sub, "refresh_tokens")) {
		ctl_refresh_token(o, j, r);
	} else if (!strcmp(sub, "config")) {
		ctl_config(o, j, r);
	} else if (!strcmp(sub, "revoke")) {
		ctl_revoke(o, j, r);
	} else if (!strcmp(sub, "auth_codes")) {
		ctl_auth_code(o, j, r);
		changed = 0;  /* codes live in memory only */
	} else if (!strcmp(sub, "device_approve")) {
		ctl_device_approve(o, j, r);
		changed = 0;
	} else {
		ctl_issue(o, j, r);
		changed = 0;
	}
	json_decref(j);
	if (changed && r->status == 200)
		save_state(o);
	return 0;
}

/* ------------------------------------------------------------------------ */

static int oauth_init(struct emu *e, void **state)
{
	struct oauth *o = calloc(1, sizeof(*o));

	if (!o)
		return -1;
	o->e = e;
	o->lifetime = DEFAULT_LIFETIME;
	o->device_interval = DEVICE_INTERVAL;
	o->device_lifetime = DEVICE_LIFETIME;
	if (pthread_rwlock_init(&o->lock, NULL)) {
		free(o);
		return -1;
	}
	if (load_state(o) < 0) {
		clear_locked(o);
		pthread_rwlock_destroy(&o->lock);
		free(o);
		return -1;
	}
	*state = o;
	return 0;
}

static void oauth_reset(struct emu *e, void *state)
{
	struct oauth *o = state;

	(void)e;
	pthread_rwlock_wrlock(&o->lock);
	clear_locked(o);
	pthread_rwlock_unlock(&o->lock);
	save_state(o);
}

static void oauth_fini(struct emu *e, void *state)
{
	struct oauth *o = state;

	(void)e;
	if (!o)
		return;
	save_state(o);
	clear_locked(o);
	pthread_rwlock_destroy(&o->lock);
	free(o);
}

static const char *const oauth_prefixes[] = {
	"/token", "/oauth2/", "/o/oauth2/", "/revoke", "/tokeninfo", "/device/", NULL,
};

const struct emu_service emu_oauth_service = {
	.name = "oauth",
	.prefixes = oauth_prefixes,
	.needs_auth = 0,
	.init = oauth_init,
	.handle = oauth_handle,
	.control = oauth_control,
	.reset = oauth_reset,
	.fini = oauth_fini,
};
