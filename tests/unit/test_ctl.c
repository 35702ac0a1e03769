/* Unit tests for fs/ctl.c: the line protocol over a socketpair (requests,
 * streamed replies, malformed input, peer hang-up seen by a long handler,
 * routed commands),
 * the server on a real socket path (mode, long paths, several clients,
 * prompt stop), and the client's timeouts and error cases. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "durafs/ctl.h"

static char tmpdir[PATH_MAX];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The test handler: "echo" returns the request; "stream" sends n progress
 * lines then ok; "wait" loops until ctl_cancelled, then records it. */
struct hstate {
	atomic_int cancelled_seen;
	atomic_int requests;
};

static void handler(void *ud, struct ctl_conn *c, const json_t *req)
{
	struct hstate *h = ud;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	json_t *r;
	int i, n;

	atomic_fetch_add(&h->requests, 1);
	if (!cmd) {
		ctl_send_error(c, "no cmd");
		return;
	}
	if (!strcmp(cmd, "echo")) {
		r = json_pack("{s:s, s:O}", "result", "ok", "req", req);
		ctl_send(c, r);
		json_decref(r);
	} else if (!strcmp(cmd, "stream")) {
		n = (int)json_integer_value(json_object_get(req, "n"));
		for (i = 0; i < n; i++) {
			r = json_pack("{s:{s:i}}", "progress", "i", i);
			ctl_send(c, r);
			json_decref(r);
		}
		r = json_pack("{s:s, s:i}", "result", "ok", "sent", n);
		ctl_send(c, r);
		json_decref(r);
	} else if (!strcmp(cmd, "wait")) {
		int64_t end = now_ms() + 10000;

		while (!ctl_cancelled(c) && now_ms() < end)
			usleep(5000);
		if (ctl_cancelled(c))
			atomic_store(&h->cancelled_seen, 1);
		ctl_send_error(c, "cancelled");
	} else if (!strcmp(cmd, "uid")) {
		r = json_pack("{s:s, s:I}", "result", "ok", "uid", (json_int_t)ctl_peer_uid(c));
		ctl_send(c, r);
		json_decref(r);
	} else {
		ctl_send_error(c, "unknown");
	}
}

struct pair {
	int sv[2];
	pthread_t th;
	struct hstate h;
	atomic_int stop;
};

static void *serve_main(void *arg)
{
	struct pair *p = arg;

	ctl_serve_fd(p->sv[1], handler, &p->h, &p->stop);
	close(p->sv[1]);
	return NULL;
}

static void pair_start(struct pair *p, struct ctl_client *c)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->sv), 0);
	assert_int_equal(pthread_create(&p->th, NULL, serve_main, p), 0);
	memset(c, 0, sizeof(*c));
	c->fd = p->sv[0];
}

static void pair_end(struct pair *p, struct ctl_client *c)
{
	ctl_client_close(c);  /* closes sv[0]: the server sees EOF */
	pthread_join(p->th, NULL);
}

static json_t *recv1(struct ctl_client *c)
{
	json_t *m = NULL;
	struct err e;
	int rc = ctl_client_recv(c, 5000, &m, &e);

	if (rc != 1)
		fail_msg("recv: rc %d: %s", rc, rc < 0 ? e.msg : "eof");
	return m;
}

static void send_raw(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_request_reply(void **state)
{
	struct pair p;
	struct ctl_client c;
	json_t *req, *m;
	struct err e;

	(void)state;
	pair_start(&p, &c);
	req = json_pack("{s:s, s:i}", "cmd", "echo", "x", 42);
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "ok");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "req"), "x")), 42);
	json_decref(m);
	/* the same connection carries a second request */
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "ok");
	json_decref(m);
	/* our own uid over a socketpair */
	json_decref(req);
	req = json_pack("{s:s}", "cmd", "uid");
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_int_equal(json_integer_value(json_object_get(m, "uid")), (json_int_t)geteuid());
	json_decref(m);
	json_decref(req);
	pair_end(&p, &c);
	assert_int_equal(atomic_load(&p.h.requests), 3);
}

/* A routed command goes to its own handler, the rest to the server's. */
static void routed(void *ud, struct ctl_conn *c, const json_t *req)
{
	json_t *r = json_pack("{s:s, s:s, s:O}", "result", "ok", "by", (const char *)ud,
			      "req", req);

	ctl_send(c, r);
	json_decref(r);
}

static void test_routes(void **state)
{
	static char tag[] = "route", tag2[] = "other";
	struct pair p;
	struct ctl_client c;
	json_t *req, *m;
	struct err e;

	(void)state;
	assert_int_equal(ctl_route_add("cache", routed, tag), 0);
	assert_int_equal(ctl_route_add("cache", routed, tag2), -1);    /* taken */
	assert_int_equal(ctl_route_add("", routed, tag2), -1);
	assert_int_equal(ctl_route_add("cache2", NULL, tag2), -1);
	pair_start(&p, &c);
	req = json_pack("{s:s, s:s}", "cmd", "cache", "op", "status");
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "by")), "route");
	assert_string_equal(json_string_value(json_object_get(json_object_get(m, "req"), "op")),
			    "status");
	json_decref(m);
	json_decref(req);
	/* others still reach the server's handler */
	req = json_pack("{s:s}", "cmd", "echo");
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_null(json_object_get(m, "by"));
	assert_string_equal(json_string_value(json_object_get(m, "result")), "ok");
	json_decref(m);
	json_decref(req);
	/* removing with another ud does nothing; with ours it unroutes */
	ctl_route_remove("cache", tag2);
	req = json_pack("{s:s}", "cmd", "cache");
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "by")), "route");
	json_decref(m);
	ctl_route_remove("cache", tag);
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "error");
	json_decref(m);
	json_decref(req);
	pair_end(&p, &c);
	assert_int_equal(atomic_load(&p.h.requests), 2);
	/* the slot is free again */
	assert_int_equal(ctl_route_add("cache", routed, tag2), 0);
	ctl_route_remove("cache", tag2);
}

static void test_streamed_lines(void **state)
{
	struct pair p;
	struct ctl_client c;
	json_t *req, *m;
	struct err e;
	int i;

	(void)state;
	pair_start(&p, &c);
	req = json_pack("{s:s, s:i}", "cmd", "stream", "n", 500);
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	for (i = 0; i < 500; i++) {
		m = recv1(&c);
		assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "progress"),
								     "i")), i);
		json_decref(m);
	}
	m = recv1(&c);
	assert_int_equal(json_integer_value(json_object_get(m, "sent")), 500);
	json_decref(m);
	json_decref(req);
	pair_end(&p, &c);
}

static void test_malformed_requests(void **state)
{
	struct pair p;
	struct ctl_client c;
	json_t *m;

	(void)state;
	pair_start(&p, &c);
	send_raw(c.fd, "this is not json\n");
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "error");
	assert_non_null(strstr(json_string_value(json_object_get(m, "error")), "bad request"));
	json_decref(m);
	send_raw(c.fd, "[1,2]\n");
	m = recv1(&c);
	assert_non_null(strstr(json_string_value(json_object_get(m, "error")), "not a JSON object"));
	json_decref(m);
	send_raw(c.fd, "{\"a\":1,\"a\":2}\n");  /* duplicate keys refused */
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "error");
	json_decref(m);
	/* blank lines and CRLF are tolerated; the connection is still good */
	send_raw(c.fd, "\n\r\n{\"cmd\":\"echo\"}\r\n");
	m = recv1(&c);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "ok");
	json_decref(m);
	/* a last request without its newline, then EOF on our side */
	send_raw(c.fd, "{\"cmd\":\"echo\",\"last\":true}");
	shutdown(c.fd, SHUT_WR);
	m = recv1(&c);
	assert_true(json_is_true(json_object_get(json_object_get(m, "req"), "last")));
	json_decref(m);
	pair_end(&p, &c);
}

static void test_overlong_request(void **state)
{
	struct pair p;
	struct ctl_client c;
	json_t *m = NULL;
	struct err e;
	size_t n = 200 * 1024;
	char *big = malloc(n + 1);
	int rc;

	(void)state;
	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = '\0';
	pair_start(&p, &c);
	send_raw(c.fd, big);
	m = recv1(&c);
	assert_non_null(strstr(json_string_value(json_object_get(m, "error")), "too long"));
	json_decref(m);
	/* then the server closes the connection */
	rc = ctl_client_recv(&c, 5000, &m, &e);
	assert_int_equal(rc, 0);
	pair_end(&p, &c);
	free(big);
}

static void test_peer_hangup_cancels(void **state)
{
	struct pair p;
	struct ctl_client c;
	json_t *req;
	struct err e;
	int64_t t0;

	(void)state;
	pair_start(&p, &c);
	req = json_pack("{s:s}", "cmd", "wait");
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	json_decref(req);
	usleep(50000);
	t0 = now_ms();
	pair_end(&p, &c);  /* closes our end: the handler must notice */
	assert_true(now_ms() - t0 < 3000);
	assert_int_equal(atomic_load(&p.h.cancelled_seen), 1);
}

static void test_client_errors(void **state)
{
	struct pair p;
	struct ctl_client c;
	json_t *m = NULL;
	struct err e;
	int64_t t0;
	int sv[2];

	(void)state;
	/* timeout: a peer that never answers */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&c, 0, sizeof(c));
	c.fd = sv[0];
	t0 = now_ms();
	assert_int_equal(ctl_client_recv(&c, 100, &m, &e), -1);
	assert_int_equal(e.code, ERR_TIMEOUT);
	assert_true(now_ms() - t0 >= 90);
	/* a malformed line from the daemon */
	send_raw(sv[1], "{oops\n{\"result\":\"ok\"}\n");
	assert_int_equal(ctl_client_recv(&c, 1000, &m, &e), -1);
	assert_int_equal(e.code, ERR_PARSE);
	/* the next line is still readable */
	assert_int_equal(ctl_client_recv(&c, 1000, &m, &e), 1);
	json_decref(m);
	/* end of stream */
	close(sv[1]);
	assert_int_equal(ctl_client_recv(&c, 1000, &m, &e), 0);
	ctl_client_close(&c);
	assert_int_equal(c.fd, -1);
	/* no daemon at a path */
	assert_int_equal(ctl_client_open(&c, "/nonexistent/durafs/ctl.sock", &e), -1);
	assert_int_equal(c.fd, -1);
	ctl_client_close(&c);
	/* not a durafs mount */
	assert_int_equal(ctl_find(tmpdir, (char **)&m, &e), -1);
	assert_int_equal(e.code, ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "not a durafs mount"));
	assert_int_equal(ctl_find("/nonexistent/durafs", (char **)&m, &e), -1);
	(void)p;
}

static void call_echo(const char *path, int x)
{
	struct ctl_client c;
	json_t *req, *m;
	struct err e;

	assert_int_equal(ctl_client_open(&c, path, &e), 0);
	req = json_pack("{s:s, s:i}", "cmd", "echo", "x", x);
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	m = recv1(&c);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "req"), "x")), x);
	json_decref(m);
	json_decref(req);
	ctl_client_close(&c);
}

static void test_server(void **state)
{
	struct ctl_server *s = NULL;
	struct hstate h;
	struct err e;
	struct stat st;
	char path[PATH_MAX];
	int i;

	(void)state;
	memset(&h, 0, sizeof(h));
	snprintf(path, sizeof(path), "%s/ctl.sock", tmpdir);
	/* a stale file at the path is replaced */
	fclose(fopen(path, "w"));
	assert_int_equal(ctl_server_start(path, handler, &h, &s, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	for (i = 0; i < 40; i++)
		call_echo(path, i);
	assert_int_equal(atomic_load(&h.requests), 40);
	ctl_server_free(s);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_server_long_path(void **state)
{
	struct ctl_server *s = NULL;
	struct hstate h;
	struct err e;
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;

	(void)state;
	memset(&h, 0, sizeof(h));
	snprintf(dir, sizeof(dir), "%s/%0120d", tmpdir, 7);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	assert_true(strlen(path) > 108);
	assert_int_equal(ctl_server_start(path, handler, &h, &s, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	call_echo(path, 5);
	ctl_server_free(s);
	assert_int_equal(rmdir(dir), 0);
}

static void test_server_stop_with_busy_handler(void **state)
{
	struct ctl_server *s = NULL;
	struct hstate h;
	struct ctl_client c, idle;
	json_t *req, *m = NULL;
	struct err e;
	char path[PATH_MAX];
	int64_t t0;
	int rc;

	(void)state;
	memset(&h, 0, sizeof(h));
	snprintf(path, sizeof(path), "%s/stop.sock", tmpdir);
	assert_int_equal(ctl_server_start(path, handler, &h, &s, &e), 0);
	assert_int_equal(ctl_client_open(&c, path, &e), 0);
	assert_int_equal(ctl_client_open(&idle, path, &e), 0);  /* connected, silent */
	req = json_pack("{s:s}", "cmd", "wait");
	assert_int_equal(ctl_client_send(&c, req, &e), 0);
	json_decref(req);
	usleep(100000);
	t0 = now_ms();
	ctl_server_stop(s);
	assert_true(now_ms() - t0 < 3000);
	assert_int_equal(atomic_load(&h.cancelled_seen), 1);
	/* the busy client got its final line, then EOF */
	rc = ctl_client_recv(&c, 2000, &m, &e);
	assert_int_equal(rc, 1);
	assert_string_equal(json_string_value(json_object_get(m, "result")), "error");
	json_decref(m);
	assert_int_equal(ctl_client_recv(&c, 2000, &m, &e), 0);
	assert_int_equal(ctl_client_recv(&idle, 2000, &m, &e), 0);
	ctl_client_close(&c);
	ctl_client_close(&idle);
	/* connecting now fails */
	assert_int_equal(ctl_client_open(&c, path, &e), -1);
	ctl_client_close(&c);
	ctl_server_stop(s);  /* idempotent */
	ctl_server_free(s);
	ctl_server_free(NULL);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/durafs-ctl-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char p[PATH_MAX];

	(void)state;
	snprintf(p, sizeof(p), "%s/ctl.sock", tmpdir);
	unlink(p);
	return rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_reply),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_streamed_lines),
		cmocka_unit_test(test_malformed_requests),
		cmocka_unit_test(test_overlong_request),
		cmocka_unit_test(test_peer_hangup_cancels),
		cmocka_unit_test(test_client_errors),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_server_long_path),
		cmocka_unit_test(test_server_stop_with_busy_handler),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
