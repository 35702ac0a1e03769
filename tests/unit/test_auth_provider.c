/* Unit and emulator tests for the token provider (auth/provider.c) and the
 * sources behind it: refresh arithmetic and scope names; then, against a
 * real durafs-emulator, every source's token is accepted by the API, 32
 * threads cause one token request, 32 threads refused with one token cause
 * one refresh, a short lifetime refreshes before expiry, a failed refresh
 * reaches every waiter, a rewritten file is re-read, a wrong key is
 * refused clearly, 5xx from the token endpoint are retried, and the
 * metadata probe fails fast. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/auth_meta.h"
#include "durafs/auth_oauth.h"
#include "durafs/http.h"
#include "emu_harness.h"
#include "unit_util.h"

#define NTHREADS 32
#define SA_EMAIL "robot@durafs-test.iam.gserviceaccount.com"

struct fixture {
	struct emuh *emu;
	char dir[64];
	char *priv_pem, *pub_pem;       /* the registered key */
	char *other_pem;                /* a key the emulator does not know */
	char sa_path[128];
};

static struct fixture fx;

/* ---- pure parts ------------------------------------------------------- */

static void test_refresh_after(void **state)
{
	(void)state;
	assert_int_equal(auth_refresh_after(3599), 3299);
	assert_int_equal(auth_refresh_after(3600), 3300);
	assert_int_equal(auth_refresh_after(601), 301);
	assert_int_equal(auth_refresh_after(600), 300);
	assert_int_equal(auth_refresh_after(599), 299);
	assert_int_equal(auth_refresh_after(120), 60);
	assert_int_equal(auth_refresh_after(3), 1);
	assert_int_equal(auth_refresh_after(1), 0);
	assert_int_equal(auth_refresh_after(0), -1);
	assert_int_equal(auth_refresh_after(-7), -1);
}

static void test_scope_expand(void **state)
{
	struct err err;
	char *s;

	(void)state;
	s = auth_scope_expand("gcs", &err);
	assert_string_equal(s, AUTH_SCOPE_GCS);
	free(s);
	s = auth_scope_expand("drive,drive.file gcs.ro, cloud", &err);
	assert_string_equal(s, AUTH_SCOPE_DRIVE " " AUTH_SCOPE_DRIVE_FILE
			    " https://www.googleapis.com/auth/devstorage.read_only "
			    AUTH_SCOPE_CLOUD);
	free(s);
	s = auth_scope_expand("https://example.com/x", &err);
	assert_string_equal(s, "https://example.com/x");
	free(s);
	assert_null(auth_scope_expand("drvie", &err));
	assert_int_equal(err.code, ERR_INVAL);
	assert_non_null(strstr(err.msg, "unknown scope 'drvie'"));
	assert_null(auth_scope_expand(" , ", &err));
	assert_null(auth_scope_expand(NULL, &err));
}

/* ---- helpers ---------------------------------------------------------- */

/* A fresh 2048-bit RSA key as PEM (private, and public when pub != NULL). */
static char *gen_key(char **pub)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out;
	long n;

	assert_non_null(k);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &data);
	out = strndup(data, (size_t)n);
	BIO_free(b);
	if (pub) {
		b = BIO_new(BIO_s_mem());
		assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
		n = BIO_get_mem_data(b, &data);
		*pub = strndup(data, (size_t)n);
		BIO_free(b);
	}
	EVP_PKEY_free(k);
	return out;
}

/* POST a JSON control body built by json_pack-style arguments. */
static void control(const char *path, json_t *body)
{
	struct err err;
	char *text = json_dumps(body, JSON_COMPACT);

	assert_non_null(text);
	if (emuh_call(fx.emu, "POST", path, text, NULL, &err))
		fail_msg("%s: %s", path, err.msg);
	free(text);
	json_decref(body);
}

static void write_json(const char *path, json_t *o)
{
	assert_int_equal(json_dump_file(o, path, JSON_INDENT(1)), 0);
	assert_int_equal(chmod(path, 0600), 0);
	json_decref(o);
}

static void write_sa(const char *path, const char *pem)
{
	char uri[256];

	snprintf(uri, sizeof(uri), "%s/token", emuh_url(fx.emu));
	write_json(path, json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "service_account",
				   "client_email", SA_EMAIL, "private_key", pem,
				   "private_key_id", "key-1", "token_uri", uri));
}

static void register_refresh_token(const char *rt)
{
	control("/_emulator/oauth/refresh_tokens",
		json_pack("{s:s, s:s, s:s, s:s}", "client_id", "cid.apps", "client_secret",
			  "csecret", "refresh_token", rt, "account", "user@example.com"));
}

static void write_user(const char *path, const char *rt)
{
	char uri[256];

	snprintf(uri, sizeof(uri), "%s/token", emuh_url(fx.emu));
	write_json(path, json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "authorized_user",
				   "client_id", "cid.apps", "client_secret", "csecret",
				   "refresh_token", rt, "token_uri", uri));
}

static struct auth_provider *provider_for(const char *path)
{
	struct auth_opts o;
	struct auth_source *src = NULL;
	struct auth_provider *p = NULL;
	struct err err;

	memset(&o, 0, sizeof(o));
	o.scopes = AUTH_SCOPE_GCS;
	if (auth_adc_from_file(path, "test", NULL, &o, &src, &err) ||
	    auth_provider_new(src, &p, &err))
		fail_msg("%s: %s", path, err.msg);
	return p;
}

static int64_t token_requests(int status)
{
	struct err err;
	int64_t v = 0;

	if (emuh_requests(fx.emu, "oauth.token", status, &v, &err))
		fail_msg("stats: %s", err.msg);
	return v;
}

/* GET the bucket list with the provider's token through the HTTP layer
 * (the provider as its http_token_fn); returns the HTTP status. */
static long api_status(struct auth_provider *p)
{
	struct http_opts ho;
	struct http_req req;
	struct http_resp resp;
	struct http *h = NULL;
	struct err err;
	char url[256];
	long st;

	memset(&ho, 0, sizeof(ho));
	ho.token = auth_provider_token_fn;
	ho.token_ud = p;
	ho.max_retries = -1;
	assert_int_equal(http_new(&ho, &h, &err), 0);
	snprintf(url, sizeof(url), "%s/storage/v1/b?project=durafs-test", emuh_url(fx.emu));
	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.url = url;
	req.body_fd = -1;
	http_do(h, &req, &resp, &err);
	st = resp.status;
	http_resp_release(&resp);
	http_free(h);
	return st;
}

static int setup_emu(void **state)
{
	struct err err;

	(void)state;
	memset(&fx, 0, sizeof(fx));
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/durafs-authprov-XXXXXX");
	assert_non_null(mkdtemp(fx.dir));
	if (emuh_start(NULL, &fx.emu, &err)) {
		fprintf(stderr, "cannot start the emulator: %s\n", err.msg);
		return -1;
	}
	fx.priv_pem = gen_key(&fx.pub_pem);
	fx.other_pem = gen_key(NULL);
	snprintf(fx.sa_path, sizeof(fx.sa_path), "%s/sa.json", fx.dir);
	return 0;
}

static int teardown_emu(void **state)
{
	char cmd[128];

	(void)state;
	emuh_stop(fx.emu);
	free(fx.priv_pem);
	free(fx.pub_pem);
	free(fx.other_pem);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Before each test: fresh emulator state, the service account registered. */
static int reset(void **state)
{
	struct err err;

	(void)state;
	if (emuh_reset(fx.emu, &err)) {
		fprintf(stderr, "reset: %s\n", err.msg);
		return -1;
	}
	control("/_emulator/oauth/service_accounts",
		json_pack("{s:s, s:s, s:s}", "client_email", SA_EMAIL, "public_key_pem",
			  fx.pub_pem, "key_id", "key-1"));
	write_sa(fx.sa_path, fx.priv_pem);
	return 0;
}

/* ---- emulator tests --------------------------------------------------- */

static void test_sa_token_accepted(void **state)
{
	struct auth_provider *p;
	struct auth_info info;
	char tok[4096], tok2[4096];
	uint64_t gen = 0;
	struct err err;

	(void)state;
	p = provider_for(fx.sa_path);
	assert_int_equal(auth_provider_get(p, tok, sizeof(tok), &gen, &err), 0);
	assert_int_equal(gen, 1);
	assert_int_equal(api_status(p), 200);
	/* Cached: no second request. */
	assert_int_equal(auth_provider_get(p, tok2, sizeof(tok2), &gen, &err), 0);
	assert_string_equal(tok, tok2);
	assert_int_equal(token_requests(200), 1);
	auth_provider_info(p, &info);
	assert_string_equal(info.kind, "service_account");
	assert_string_equal(info.account, SA_EMAIL);
	assert_true(info.expires_at > time(NULL) + 3000);
	/* Too small a buffer is an error, not a truncated token. */
	assert_int_equal(auth_provider_get(p, tok, 8, &gen, &err), -1);
	assert_int_equal(err.code, ERR_INVAL);
	auth_provider_free(p);
}

struct worker {
	struct auth_provider *p;
	pthread_barrier_t *bar;
	int invalidate_after;    /* 1: get, barrier, get with invalidate */
	int rc;
	char tok[4096];
	struct err err;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (w->invalidate_after) {
		w->rc = auth_provider_token_fn(w->p, 0, w->tok, sizeof(w->tok), &w->err);
		pthread_barrier_wait(w->bar);
		if (w->rc == 0)
			w->rc = auth_provider_token_fn(w->p, 1, w->tok, sizeof(w->tok), &w->err);
		return NULL;
	}
	pthread_barrier_wait(w->bar);
	w->rc = auth_provider_get(w->p, w->tok, sizeof(w->tok), NULL, &w->err);
	return NULL;
}

static void run_workers(struct auth_provider *p, int invalidate_after, struct worker *w)
{
	pthread_t th[NTHREADS];
	pthread_barrier_t bar;
	int i;

	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].p = p;
		w[i].bar = &bar;
		w[i].invalidate_after = invalidate_after;
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
}

static void test_32_threads_one_request(void **state)
{
	static struct worker w[NTHREADS];
	struct auth_provider *p;
	struct err err;
	int i;

	(void)state;
	/* The token endpoint takes 300 ms, so every thread asks while the
	 * first request is in flight. */
	assert_int_equal(emuh_faults(fx.emu, "[{\"kind\":\"latency\",\"ms\":300,"
				     "\"path\":\"/token\"}]", &err), 0);
	p = provider_for(fx.sa_path);
	run_workers(p, 0, w);
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(w[i].rc, 0);
		assert_string_equal(w[i].tok, w[0].tok);
	}
	assert_int_equal(token_requests(0), 1);
	assert_int_equal(api_status(p), 200);
	auth_provider_free(p);
}

static void test_32_threads_401_one_refresh(void **state)
{
	static struct worker w[NTHREADS];
	struct auth_provider *p;
	char first[4096];
	struct err err;
	int i;

	(void)state;
	p = provider_for(fx.sa_path);
	assert_int_equal(auth_provider_get(p, first, sizeof(first), NULL, &err), 0);
	assert_int_equal(emuh_faults(fx.emu, "[{\"kind\":\"latency\",\"ms\":300,"
				     "\"path\":\"/token\"}]", &err), 0);
	/* Each thread gets the token, then all say it was refused. */
	run_workers(p, 1, w);
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(w[i].rc, 0);
		assert_string_equal(w[i].tok, w[0].tok);
	}
	assert_string_not_equal(w[0].tok, first);
	assert_int_equal(token_requests(0), 2);
	/* A late invalidate naming the old generation changes nothing. */
	auth_provider_invalidate(p, 1);
	assert_int_equal(auth_provider_get(p, first, sizeof(first), NULL, &err), 0);
	assert_string_equal(first, w[0].tok);
	assert_int_equal(token_requests(0), 2);
	auth_provider_free(p);
}

static void test_short_lifetime_refreshes_early(void **state)
{
	struct auth_provider *p;
	char t1[4096], t2[4096];
	struct err err;
	int64_t start;

	(void)state;
	control("/_emulator/oauth/config", json_pack("{s:i}", "token_lifetime", 2));
	p = provider_for(fx.sa_path);
	start = ut_now_ms();
	assert_int_equal(auth_provider_get(p, t1, sizeof(t1), NULL, &err), 0);
	/* Before half-life: the cached token. */
	usleep(300 * 1000);
	assert_int_equal(auth_provider_get(p, t2, sizeof(t2), NULL, &err), 0);
	assert_string_equal(t1, t2);
	assert_int_equal(token_requests(0), 1);
	/* Past half-life but before expiry: a new token. */
	while (ut_now_ms() - start < 1150)
		usleep(20 * 1000);
	assert_int_equal(auth_provider_get(p, t2, sizeof(t2), NULL, &err), 0);
	assert_true(ut_now_ms() - start < 2000);
	assert_string_not_equal(t1, t2);
	assert_int_equal(token_requests(0), 2);
	assert_int_equal(api_status(p), 200);
	auth_provider_free(p);
}

static void test_failed_refresh_reaches_all(void **state)
{
	static struct worker w[NTHREADS];
	struct auth_provider *p;
	char path[160];
	struct err err;
	int i;

	(void)state;
	snprintf(path, sizeof(path), "%s/user.json", fx.dir);
	register_refresh_token("1//revoked-rt");
	control("/_emulator/oauth/revoke", json_pack("{s:s}", "refresh_token", "1//revoked-rt"));
	write_user(path, "1//revoked-rt");
	assert_int_equal(emuh_faults(fx.emu, "[{\"kind\":\"latency\",\"ms\":300,"
				     "\"path\":\"/token\"}]", &err), 0);
	p = provider_for(path);
	run_workers(p, 0, w);
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(w[i].rc, -1);
		assert_int_equal(w[i].err.code, ERR_AUTH);
		assert_string_equal(w[i].err.reason, "invalid_grant");
		assert_non_null(strstr(w[i].err.msg, path));
		assert_non_null(strstr(w[i].err.msg, "log in again"));
		assert_null(strstr(w[i].err.msg, "revoked-rt"));
		assert_null(strstr(w[i].err.msg, "csecret"));
	}
	/* One request: a refused grant is not retried, and the file did not
	 * change so it was not tried twice. */
	assert_int_equal(token_requests(0), 1);
	auth_provider_free(p);
}

static void test_user_file_reread(void **state)
{
	struct auth_provider *p;
	char path[160], tok[4096];
	struct err err;

	(void)state;
	snprintf(path, sizeof(path), "%s/adc.json", fx.dir);
	register_refresh_token("1//old-rt");
	register_refresh_token("1//new-rt");
	write_user(path, "1//old-rt");
	p = provider_for(path);
	/* Colab-like: the file is rewritten with new credentials, the old
	 * refresh token stops working. */
	control("/_emulator/oauth/revoke", json_pack("{s:s}", "refresh_token", "1//old-rt"));
	write_user(path, "1//new-rt");
	assert_int_equal(auth_provider_get(p, tok, sizeof(tok), NULL, &err), 0);
	assert_int_equal(token_requests(400), 1);
	assert_int_equal(token_requests(200), 1);
	assert_int_equal(api_status(p), 200);
	auth_provider_free(p);
}

static void test_wrong_key_refused(void **state)
{
	struct auth_provider *p;
	char tok[4096];
	struct err err;

	(void)state;
	write_sa(fx.sa_path, fx.other_pem);
	p = provider_for(fx.sa_path);
	assert_int_equal(auth_provider_get(p, tok, sizeof(tok), NULL, &err), -1);
	assert_int_equal(err.code, ERR_AUTH);
	assert_int_equal(err.http_status, 400);
	assert_string_equal(err.reason, "invalid_grant");
	assert_non_null(strstr(err.msg, SA_EMAIL));
	assert_non_null(strstr(err.msg, fx.sa_path));
	assert_non_null(strstr(err.msg, "invalid_grant"));
	assert_null(strstr(err.msg, "eyJ"));
	assert_int_equal(token_requests(0), 1);
	auth_provider_free(p);
}

static void test_token_endpoint_5xx_retried(void **state)
{
	struct auth_provider *p;
	char tok[4096];
	struct err err;

	(void)state;
	assert_int_equal(emuh_faults(fx.emu, "[{\"kind\":\"status\",\"status\":503,"
				     "\"path\":\"/token\",\"count\":2}]", &err), 0);
	p = provider_for(fx.sa_path);
	assert_int_equal(auth_provider_get(p, tok, sizeof(tok), NULL, &err), 0);
	assert_int_equal(token_requests(200), 1);
	assert_int_equal(api_status(p), 200);
	auth_provider_free(p);
}

static void test_metadata_source(void **state)
{
	struct auth_source *src = NULL;
	struct auth_provider *p = NULL;
	struct auth_info info;
	const char *host = emuh_url(fx.emu) + strlen("http://");
	char tok[4096];
	struct err err;

	(void)state;
	control("/_emulator/metadata/config", json_pack("{s:s}", "email",
							"vm@durafs-test.iam.gserviceaccount.com"));
	assert_int_equal(auth_meta_probe(host, 0, &err), 0);
	assert_int_equal(auth_meta_new(host, AUTH_SCOPE_GCS, "test", &src, &err), 0);
	assert_int_equal(auth_provider_new(src, &p, &err), 0);
	assert_int_equal(auth_provider_get(p, tok, sizeof(tok), NULL, &err), 0);
	assert_int_equal(api_status(p), 200);
	auth_provider_info(p, &info);
	assert_string_equal(info.kind, "metadata");
	assert_string_equal(info.account, "vm@durafs-test.iam.gserviceaccount.com");
	auth_provider_free(p);

	/* Disabled (not on GCE): the probe says no. */
	control("/_emulator/metadata/config", json_pack("{s:b}", "disabled", 1));
	assert_int_equal(auth_meta_probe(host, 0, &err), -1);
	assert_non_null(strstr(err.msg, "Metadata-Flavor"));
}

static void test_metadata_probe_fails_fast(void **state)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	char host[64];
	struct err err;
	int64_t t0, dt;
	int fd;

	(void)state;
	/* Something that accepts connections but never answers. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(host, sizeof(host), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
	t0 = ut_now_ms();
	assert_int_equal(auth_meta_probe(host, 0, &err), -1);
	dt = ut_now_ms() - t0;
	assert_true(dt < 2000);
	assert_int_equal(err.code == ERR_NET || err.code == ERR_TIMEOUT, 1);
	close(fd);

	/* Nothing listening: refused at once. */
	t0 = ut_now_ms();
	assert_int_equal(auth_meta_probe(host, 0, &err), -1);
	assert_true(ut_now_ms() - t0 < 500);
	assert_non_null(strstr(err.msg, "no metadata server"));
}

int main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_refresh_after),
		cmocka_unit_test(test_scope_expand),
	};
	const struct CMUnitTest emu[] = {
		cmocka_unit_test_setup(test_sa_token_accepted, reset),
		cmocka_unit_test_setup(test_32_threads_one_request, reset),
		cmocka_unit_test_setup(test_32_threads_401_one_refresh, reset),
		cmocka_unit_test_setup(test_short_lifetime_refreshes_early, reset),
		cmocka_unit_test_setup(test_failed_refresh_reaches_all, reset),
		cmocka_unit_test_setup(test_user_file_reread, reset),
		cmocka_unit_test_setup(test_wrong_key_refused, reset),
		cmocka_unit_test_setup(test_token_endpoint_5xx_retried, reset),
		cmocka_unit_test_setup(test_metadata_source, reset),
		cmocka_unit_test_setup(test_metadata_probe_fails_fast, reset),
	};
	int failed;

	failed = cmocka_run_group_tests_name("auth_provider", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("auth_provider_emulator", emu, setup_emu,
					      teardown_emu);
	return failed;
}
