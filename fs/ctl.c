/* Control socket: the line-delimited JSON transport between a running mount
 * and the CLI (server: accept thread + one thread per client, peer uid
 * checked; client: connect, send a request, read lines with a timeout). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "durafs/clock.h"
#include "durafs/ctl.h"
#include "durafs/log.h"

#define CTL_TAG "ctl"
#define CTL_MAX_CLIENTS 32
#define CTL_POLL_MS 200
#define CTL_REQ_MAX (64 * 1024)   /* requests are small */

struct ctl_conn {
	int fd;
	struct ctl_server *srv;     /* NULL when served by ctl_serve_fd alone */
	const atomic_int *stop;     /* may be NULL */
	ctl_handler_fn fn;
	void *ud;
	long uid;
	pthread_t th;
	atomic_int done;            /* thread finished: may be joined */
	struct ctl_conn *next;      /* protected by srv->mu */
};

struct ctl_server {
	char *path;
	int lfd;
	int wake[2];                /* self-pipe waking the accept thread */
	pthread_t th;
	int started;
	atomic_int stop;
	ctl_handler_fn fn;
	void *ud;
	pthread_mutex_t mu;
	struct ctl_conn *conns;     /* protected by mu */
	int nconns;                 /* protected by mu */
};

/* ---- addresses -------------------------------------------------------------- */

/* Fill *sa for path. A path too long for sun_path goes through an O_PATH
 * descriptor of its directory (*dirfd, closed by the caller). */
static int sock_addr(const char *path, struct sockaddr_un *sa, int *dirfd, struct err *err)
{
	const char *slash;
	char *dir = NULL;

	*dirfd = -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) < sizeof(sa->sun_path)) {
		memcpy(sa->sun_path, path, strlen(path) + 1);
		return 0;
	}
	slash = strrchr(path, '/');
	if (!slash || strlen(slash + 1) + 32 >= sizeof(sa->sun_path))
		return err_set(err, ERR_INVAL, "control socket path too long: %s", path);
	dir = strndup(path, (size_t)(slash - path) + (slash == path));
	if (!dir)
		return err_set(err, ERR_NOMEM, "out of memory");
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (*dirfd < 0)
		return err_sys(err, "control socket directory of %s", path);
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dirfd, slash + 1);
	return 0;
}

/* ---- sending ------------------------------------------------------------------ */

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = fd, .events = POLLOUT };

				if (poll(&p, 1, 1000) < 0 && errno != EINTR)
					return -1;
				continue;
			}
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_line(int fd, const json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);
	size_t n;
	int rc;

	if (!s)
		return -1;
	n = strlen(s);
	/* one buffer, one line: replace the NUL by the newline */
	{
		char *line = realloc(s, n + 1);

		if (!line) {
			free(s);
			return -1;
		}
		s = line;
	}
	s[n] = '\n';
	rc = send_all(fd, s, n + 1);
	free(s);
	return rc;
}

int ctl_send(struct ctl_conn *c, const json_t *msg)
{
	return send_line(c->fd, msg);
}

int ctl_send_error(struct ctl_conn *c, const char *msg)
{
	json_t *j = json_pack("{s:s, s:s}", "result", "error", "error", msg ? msg : "error");
	int rc;

	if (!j)
		return -1;
	rc = ctl_send(c, j);
	json_decref(j);
	return rc;
}

int ctl_cancelled(struct ctl_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };

	if (c->stop && atomic_load(c->stop))
		return 1;
	if (c->srv && atomic_load(&c->srv->stop))
		return 1;
	if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
		return 1;
	return 0;
}

long ctl_peer_uid(struct ctl_conn *c)
{
	return c->uid;
}

/* ---- routes ---------------------------------------------------------------------- */

#define CTL_ROUTES 8
#define CTL_CMD_MAX 32

static struct {
	char cmd[CTL_CMD_MAX];
	ctl_handler_fn fn;
	void *ud;
} routes[CTL_ROUTES];                   /* protected by routes_mu */
static pthread_mutex_t routes_mu = PTHREAD_MUTEX_INITIALIZER;

int ctl_route_add(const char *cmd, ctl_handler_fn fn, void *ud)
{
	int i, free_slot = -1, rc = -1;

	if (!cmd || !*cmd || strlen(cmd) >= CTL_CMD_MAX || !fn)
		return -1;
	pthread_mutex_lock(&routes_mu);
	for (i = 0; i < CTL_ROUTES; i++) {
		if (routes[i].fn && !strcmp(routes[i].cmd, cmd))
			goto out;
		if (!routes[i].fn && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		goto out;
	snprintf(routes[free_slot].cmd, CTL_CMD_MAX, "%s", cmd);
	routes[free_slot].fn = fn;
	routes[free_slot].ud = ud;
	rc = 0;
out:
	pthread_mutex_unlock(&routes_mu);
	return rc;
}

void ctl_route_remove(const char *cmd, void *ud)
{
	int i;

	pthread_mutex_lock(&routes_mu);
	for (i = 0; i < CTL_ROUTES; i++) {
		if (routes[i].fn && routes[i].ud == ud && !strcmp(routes[i].cmd, cmd)) {
			memset(&routes[i], 0, sizeof(routes[i]));
			break;
		}
	}
	pthread_mutex_unlock(&routes_mu);
}

/* The routed handler of cmd: 1 and *fn, *ud, or 0. */
static int route_find(const char *cmd, ctl_handler_fn *fn, void **ud)
{
	int i, found = 0;

	if (!cmd)
		return 0;
	pthread_mutex_lock(&routes_mu);
	for (i = 0; i < CTL_ROUTES && !found; i++) {
		if (routes[i].fn && !strcmp(routes[i].cmd, cmd)) {
			*fn = routes[i].fn;
			*ud = routes[i].ud;
			found = 1;
		}
	}
	pthread_mutex_unlock(&routes_mu);
	return found;
}

/* ---- serving one connection ------------------------------------------------------ */

static int conn_stopping(const struct ctl_conn *c)
{
	return (c->stop && atomic_load(c->stop)) || (c->srv && atomic_load(&c->srv->stop));
}

static void handle_line(struct ctl_conn *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req;
	char msg[300];

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return;
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		snprintf(msg, sizeof(msg), "bad request: %s",
			 req ? "not a JSON object" : jerr.text);
		ctl_send_error(c, msg);
		json_decref(req);
		return;
	}
	{
		ctl_handler_fn rfn = NULL;
		void *rud = NULL;

		if (route_find(json_string_value(json_object_get(req, "cmd")), &rfn, &rud))
			rfn(rud, c, req);
		else
			c->fn(c->ud, c, req);
	}
	json_decref(req);
}

static void serve(struct ctl_conn *c)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		char *nl;
		ssize_t n;
		int pr;

		/* every complete line first */
		while (buf && (nl = memchr(buf, '\n', len))) {
			size_t ll = (size_t)(nl - buf);

			handle_line(c, buf, ll);
			memmove(buf, nl + 1, len - ll - 1);
			len -= ll + 1;
			if (conn_stopping(c))
				goto out;
		}
		if (len >= CTL_REQ_MAX) {
			ctl_send_error(c, "bad request: line too long");
			goto out;
		}
		if (conn_stopping(c))
			goto out;
		pr = poll(&p, 1, CTL_POLL_MS);
		if (pr < 0 && errno != EINTR)
			goto out;
		if (pr <= 0)
			continue;
		if (cap - len < 4096) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nb;

			if (ncap > CTL_REQ_MAX + 8192)
				ncap = CTL_REQ_MAX + 8192;
			nb = realloc(buf, ncap);
			if (!nb)
				goto out;
			buf = nb;
			cap = ncap;
		}
		n = recv(c->fd, buf + len, cap - len, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			goto out;
		}
		if (n == 0) {
			/* a last request without its newline still counts */
			if (len)
				handle_line(c, buf, len);
			goto out;
		}
		len += (size_t)n;
	}
out:
	free(buf);
}

void ctl_serve_fd(int fd, ctl_handler_fn fn, void *ud, const atomic_int *stop)
{
	struct ctl_conn c;
	struct ucred cr;
	socklen_t crl = sizeof(cr);

	memset(&c, 0, sizeof(c));
	c.fd = fd;
	c.fn = fn;
	c.ud = ud;
	c.stop = stop;
	c.uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) == 0 ? (long)cr.uid : -1;
	serve(&c);
}

/* ---- server ------------------------------------------------------------------------ */

static void *conn_main(void *arg)
{
	struct ctl_conn *c = arg;

	serve(c);
	shutdown(c->fd, SHUT_RDWR);
	atomic_store(&c->done, 1);
	return NULL;
}

/* Join and free finished client threads (all of them when all != 0). */
static void reap(struct ctl_server *s, int all)
{
	struct ctl_conn **pp, *c, *dead = NULL;

	pthread_mutex_lock(&s->mu);
	pp = &s->conns;
	while ((c = *pp)) {
		if (all || atomic_load(&c->done)) {
			*pp = c->next;
			c->next = dead;
			dead = c;
			s->nconns--;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&s->mu);
	while ((c = dead)) {
		dead = c->next;
		pthread_join(c->th, NULL);
		close(c->fd);
		free(c);
	}
}

static void refuse(int fd, const char *why)
{
	json_t *j = json_pack("{s:s, s:s}", "result", "error", "error", why);

	if (j) {
		send_line(fd, j);
		json_decref(j);
	}
	close(fd);
}

static void accept_one(struct ctl_server *s)
{
	struct ctl_conn *c = NULL;
	struct ucred cr;
	socklen_t crl = sizeof(cr);
	int fd, rc;

	fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			log_warn(CTL_TAG, "accept on the control socket: %s", strerror(errno));
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0) {
		refuse(fd, "cannot check the peer's credentials");
		return;
	}
	if (cr.uid != geteuid() && cr.uid != 0) {
		log_warn(CTL_TAG, "refused a control connection from uid %ld (pid %ld)",
			 (long)cr.uid, (long)cr.pid);
		refuse(fd, "permission denied: the mount belongs to another user");
		return;
	}
	reap(s, 0);
	pthread_mutex_lock(&s->mu);
	if (s->nconns >= CTL_MAX_CLIENTS) {
		pthread_mutex_unlock(&s->mu);
		refuse(fd, "too many control connections; try again");
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&s->mu);
		refuse(fd, "out of memory");
		return;
	}
	c->fd = fd;
	c->srv = s;
	c->fn = s->fn;
	c->ud = s->ud;
	c->uid = (long)cr.uid;
	rc = pthread_create(&c->th, NULL, conn_main, c);  /* inherits our full mask */
	if (rc) {
		pthread_mutex_unlock(&s->mu);
		free(c);
		refuse(fd, "cannot start a thread");
		return;
	}
	c->next = s->conns;
	s->conns = c;
	s->nconns++;
	pthread_mutex_unlock(&s->mu);
}

static void *accept_main(void *arg)
{
	struct ctl_server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p[2] = {
			{ .fd = s->lfd, .events = POLLIN },
			{ .fd = s->wake[0], .events = POLLIN },
		};
		int pr = poll(p, 2, 1000);

		if (pr < 0 && errno != EINTR) {
			log_error(CTL_TAG, "poll on the control socket: %s", strerror(errno));
			break;
		}
		if (atomic_load(&s->stop))
			break;
		if (pr > 0 && (p[0].revents & POLLIN))
			accept_one(s);
		else if (pr == 0)
			reap(s, 0);
	}
	return NULL;
}

int ctl_server_start(const char *path, ctl_handler_fn fn, void *ud,
		     struct ctl_server **out, struct err *err)
{
	struct ctl_server *s = NULL;
	struct sockaddr_un sa;
	sigset_t all, old;
	int dirfd = -1, rc = -1, mu_ok = 0, bound = 0;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, ERR_NOMEM, "out of memory");
	s->lfd = -1;
	s->wake[0] = s->wake[1] = -1;
	s->fn = fn;
	s->ud = ud;
	s->path = strdup(path);
	if (!s->path || pthread_mutex_init(&s->mu, NULL)) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	mu_ok = 1;
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		err_sys(err, "control socket: pipe");
		goto out;
	}
	if (sock_addr(path, &sa, &dirfd, err) < 0)
		goto out;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->lfd < 0) {
		err_sys(err, "control socket");
		goto out;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		err_sys(err, "control socket %s: cannot remove the old one", path);
		goto out;
	}
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err_sys(err, "control socket %s: bind", path);
		goto out;
	}
	bound = 1;
	if (chmod(path, 0600) < 0 || listen(s->lfd, 16) < 0) {
		err_sys(err, "control socket %s", path);
		goto out;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&s->th, NULL, accept_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		errno = rc;
		rc = -1;
		err_sys(err, "control socket: thread");
		goto out;
	}
	s->started = 1;
	*out = s;
	s = NULL;
	rc = 0;
out:
	if (dirfd >= 0)
		close(dirfd);
	if (s) {
		if (bound)
			unlink(path);
		if (s->lfd >= 0)
			close(s->lfd);
		if (s->wake[0] >= 0)
			close(s->wake[0]);
		if (s->wake[1] >= 0)
			close(s->wake[1]);
		if (mu_ok)
			pthread_mutex_destroy(&s->mu);
		free(s->path);
		free(s);
		rc = -1;
	}
	return rc;
}

void ctl_server_stop(struct ctl_server *s)
{
	if (!s)
		return;
	if (atomic_exchange(&s->stop, 1) == 0) {
		ssize_t w;

		do
			w = write(s->wake[1], "x", 1);
		while (w < 0 && errno == EINTR);
	}
	if (s->started) {
		pthread_join(s->th, NULL);
		s->started = 0;
	}
	reap(s, 1);
	if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
		unlink(s->path);
	}
}

void ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return;
	ctl_server_stop(s);
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	pthread_mutex_destroy(&s->mu);
	free(s->path);
	free(s);
}

/* ---- client ---------------------------------------------------------------------------- */

/* mountpoint was not a durafs mount: ERR_NOTFOUND saying so, naming the
 * durafs mount it lies inside when it does (a likely mistake: `durafs
 * status ~/data/run-42`). Always returns -1. */
static int not_a_mount(const char *mountpoint, struct err *err)
{
	char cur[PATH_MAX], buf[PATH_MAX + 1];
	size_t len;

	if (!realpath(mountpoint, cur))
		return err_set(err, ERR_NOTFOUND, "%s is not a durafs mount", mountpoint);
	for (;;) {
		len = strlen(cur);
		while (len > 1 && cur[len - 1] != '/')
			len--;
		if (len <= 1 || !strcmp(cur, "/"))
			break;
		cur[len - 1] = '\0';
		if (getxattr(cur, CTL_XATTR, buf, sizeof(buf) - 1) > 0)
			return err_set(err, ERR_NOTFOUND, "%s is not a durafs mount but a path "
				       "inside the durafs mount %s: give its mount point",
				       mountpoint, cur);
	}
	return err_set(err, ERR_NOTFOUND, "%s is not a durafs mount", mountpoint);
}

int ctl_find(const char *mountpoint, char **path, struct err *err)
{
	char buf[PATH_MAX + 1];
	ssize_t n;

	*path = NULL;
	n = getxattr(mountpoint, CTL_XATTR, buf, sizeof(buf) - 1);
	if (n < 0) {
		if (errno == ENODATA || errno == ENOTSUP)
			return not_a_mount(mountpoint, err);
		if (errno == ENOTCONN)
			return err_sys(err, "%s: the durafs daemon of this mount is gone", mountpoint);
		return err_sys(err, "%s", mountpoint);
	}
	if (n == 0)
		return err_set(err, ERR_NOTFOUND, "%s is not a durafs mount", mountpoint);
	buf[n] = '\0';
	*path = strdup(buf);
	if (!*path)
		return err_set(err, ERR_NOMEM, "out of memory");
	return 0;
}

int ctl_client_open(struct ctl_client *c, const char *path, struct err *err)
{
	struct sockaddr_un sa;
	int dirfd = -1, rc = -1;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (sock_addr(path, &sa, &dirfd, err) < 0)
		goto out;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err_sys(err, "control socket");
		goto out;
	}
	while ((rc = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		err_sys(err, "cannot reach the mount's daemon at %s", path);
		close(c->fd);
		c->fd = -1;
		goto out;
	}
	rc = 0;
out:
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}

int ctl_client_send(struct ctl_client *c, const json_t *req, struct err *err)
{
	if (send_line(c->fd, req) < 0)
		return err_sys(err, "sending to the mount's daemon");
	return 0;
}

int ctl_client_recv(struct ctl_client *c, int64_t timeout_ms, json_t **msg, struct err *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : clk_mono_ms() + timeout_ms;
	json_error_t jerr;

	*msg = NULL;
	for (;;) {
		char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int wait_ms, pr;
		ssize_t n;

		if (nl) {
			size_t ll = (size_t)(nl - c->buf);

			*msg = json_loadb(c->buf, ll, 0, &jerr);
			memmove(c->buf, nl + 1, c->len - ll - 1);
			c->len -= ll + 1;
			if (!*msg)
				return err_set(err, ERR_PARSE, "malformed reply from the daemon: %s",
					       jerr.text);
			return 1;
		}
		if (c->len >= CTL_LINE_MAX)
			return err_set(err, ERR_PARSE, "reply line from the daemon too long");
		if (deadline < 0) {
			wait_ms = -1;
		} else {
			int64_t left = deadline - clk_mono_ms();

			if (left <= 0)
				return err_set(err, ERR_TIMEOUT, "no answer from the daemon in time");
			wait_ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		pr = poll(&p, 1, wait_ms);
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(err, "waiting for the daemon");
		}
		if (pr == 0)
			continue;
		if (c->cap - c->len < 4096) {
			size_t ncap = c->cap ? c->cap * 2 : 16384;
			char *nb;

			if (ncap > CTL_LINE_MAX + 16384)
				ncap = CTL_LINE_MAX + 16384;
			nb = realloc(c->buf, ncap);
			if (!nb)
				return err_set(err, ERR_NOMEM, "out of memory");
			c->buf = nb;
			c->cap = ncap;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ECONNRESET)
				return 0;
			return err_sys(err, "reading from the daemon");
		}
		if (n == 0)
			return 0;
		c->len += (size_t)n;
	}
}

void ctl_client_close(struct ctl_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}
