/* durafs-emulator: command line, ready file and signal handling around the
 * emulator core (emu_core.c). Serves Google's Cloud Storage JSON API, the
 * OAuth token endpoint and the metadata server on loopback for tests. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: durafs-emulator --listen ADDR:PORT --ready-file FILE [options]\n"
		"\n"
		"A local emulator of Google Cloud Storage, OAuth2 and the GCE metadata\n"
		"server, with fault injection, for durafs' tests.\n"
		"\n"
		"  --listen ADDR:PORT   address to serve on (port 0: any free port);\n"
		"                       default 127.0.0.1:0\n"
		"  --ready-file FILE    write the base URL (http://ADDR:PORT) there once\n"
		"                       connections are accepted\n"
		"  --data-dir DIR       keep state in DIR across restarts (else memory)\n"
		"  --no-auth            do not require bearer tokens on API calls\n"
		"  --faults SPEC        fault rules: JSON text or @FILE (see README)\n"
		"  --seed N             seed of the fault PRNG (fractions)\n"
		"  --threads N          N>0: epoll thread pool of N threads;\n"
		"                       0 (default): one thread per connection\n"
		"  --max-body BYTES     request body cap (default 2 GiB; larger: 413)\n"
		"  --verbose            log one line per request to stderr\n"
		"  --help, --version\n");
}

/* Read a whole file into a malloc'd NUL-terminated string, or NULL. */
static char *read_file(const char *path, char *err, size_t errsz)
{
	char *buf = NULL, *grown;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto sysfail;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (64u << 20)) {
				snprintf(err, errsz, "%s: larger than 64 MiB", path);
				goto fail;
			}
			grown = realloc(buf, cap);
			if (!grown) {
				snprintf(err, errsz, "%s: out of memory", path);
				goto fail;
			}
			buf = grown;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto sysfail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
sysfail:
	snprintf(err, errsz, "%s: %s", path, strerror(errno));
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* Write all of buf to fd, retrying short writes and EINTR. */
static int write_all(int fd, const char *buf, size_t n)
{
	ssize_t w;

	while (n) {
		w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Atomically publish "URL\n" in path (temporary file + rename). */
static int write_ready(const char *path, const char *url)
{
	char tmp[4096], line[256];
	int fd = -1, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	n = snprintf(line, sizeof(line), "%s\n", url);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write_all(fd, line, (size_t)n) < 0 || close(fd) < 0) {
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	struct emu_opts o;
	struct emu *e = NULL;
	const char *ready = NULL, *faults_arg = NULL;
	char *faults = NULL;
	char err[1024];
	sigset_t set;
	uint64_t v;
	int i, sig = 0, rc = 1;

	memset(&o, 0, sizeof(o));
	o.listen = "127.0.0.1:0";
	if (getrandom(&o.seed, sizeof(o.seed), 0) != (ssize_t)sizeof(o.seed))
		o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	o.seed &= INT64_MAX;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("durafs-emulator %s\n", DURAFS_VERSION);
			return 0;
		} else if (!strcmp(a, "--no-auth")) {
			o.no_auth = 1;
			continue;
		} else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
			o.verbose = 1;
			continue;
		}
		if (!next) {
			fprintf(stderr, "durafs-emulator: unknown option or missing value: %s\n", a);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--listen")) {
			o.listen = next;
		} else if (!strcmp(a, "--ready-file")) {
			ready = next;
		} else if (!strcmp(a, "--data-dir")) {
			o.data_dir = next;
		} else if (!strcmp(a, "--faults")) {
			faults_arg = next;
		} else if (!strcmp(a, "--seed")) {
			if (parse_u64(next, &v) < 0 || v > INT64_MAX) {
				fprintf(stderr, "durafs-emulator: --seed: not a number: %s\n", next);
				return 2;
			}
			o.seed = v;
		} else if (!strcmp(a, "--threads")) {
			if (parse_u64(next, &v) < 0 || v > 1024) {
				fprintf(stderr, "durafs-emulator: --threads: 0..1024 expected: %s\n",
					next);
				return 2;
			}
			o.threads = (int)v;
		} else if (!strcmp(a, "--max-body")) {
			if (parse_u64(next, &v) < 0 || v == 0) {
				fprintf(stderr, "durafs-emulator: --max-body: bytes expected: %s\n",
					next);
				return 2;
			}
			o.max_body = v;
		} else {
			fprintf(stderr, "durafs-emulator: unknown option: %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (faults_arg) {
		if (faults_arg[0] == '@') {
			faults = read_file(faults_arg + 1, err, sizeof(err));
			if (!faults) {
				fprintf(stderr, "durafs-emulator: --faults: %s\n", err);
				return 2;
			}
		} else {
			faults = strdup(faults_arg);
			if (!faults)
				return 1;
		}
		o.faults = faults;
	}
	if (o.data_dir && mkdir(o.data_dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "durafs-emulator: --data-dir %s: %s\n", o.data_dir,
			strerror(errno));
		goto out;
	}

	/* Every thread inherits this mask; the main thread waits for them. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	e = emu_new(&o, err, sizeof(err));
	if (!e) {
		fprintf(stderr, "durafs-emulator: %s\n", err);
		goto out;
	}
	if (emu_start(e, err, sizeof(err)) < 0) {
		fprintf(stderr, "durafs-emulator: %s\n", err);
		goto out;
	}
	if (ready && write_ready(ready, emu_base_url(e)) < 0) {
		fprintf(stderr, "durafs-emulator: cannot write the ready file %s: %s\n", ready,
			strerror(errno));
		goto out;
	}
	if (o.verbose)
		emu_log(e, "serving on %s (%s, seed %llu%s%s)", emu_base_url(e),
			o.threads ? "thread pool" : "thread per connection",
			(unsigned long long)o.seed, o.no_auth ? ", no auth" : "",
			o.data_dir ? ", with data dir" : "");
	while (sigwait(&set, &sig) != 0 || sig == SIGHUP)
		;
	if (o.verbose)
		emu_log(e, "signal %d: shutting down", sig);
	rc = 0;
out:
	emu_free(e);
	free(faults);
	return rc;
}
