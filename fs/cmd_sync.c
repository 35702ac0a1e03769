/* `durafs sync --flush MOUNTPOINT | --cache-dir DIR`: wait until every
 * change made before the call is committed remotely, with progress; through
 * the running mount's control socket, or, with no daemon running, by
 * replaying the cache dir's journal with a scheduler of our own. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durafs/cli.h"
#include "durafs/log.h"
#include "durafs/mopts.h"
#include "durafs/mount.h"
#include "durafs/mount_cli.h"
#include "durafs/progress.h"

#define SYNC_PROG "durafs sync"

static void sync_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs sync --flush MOUNTPOINT [--timeout S] [--json] [--retry-failed]\n"
		"       durafs sync --flush --cache-dir DIR [--timeout S] [--json] [--retry-failed]\n"
		"                   [--token-file FILE | --credentials FILE] [--debug]\n"
		"\n"
		"Block until every change made before the call is committed remotely (the mount\n"
		"stays). Exit 0 only when all of them are; otherwise each file that failed or\n"
		"conflicted is named with the reason, and the changes stay queued.\n"
		"\n"
		"  --flush             required: flush the pending changes\n"
		"  --cache-dir DIR     no daemon running (after a crash, before remounting):\n"
		"                      replay the journal in DIR with the source it recorded\n"
		"  --timeout S         give up after S seconds (or 500ms, 10m ...); exit 1\n"
		"  --json              JSON progress lines and the final result on stdout\n"
		"  --retry-failed      send changes that failed permanently back to the queue first\n"
		"  --token-file FILE   (--cache-dir) credentials: an access token in FILE\n"
		"  --credentials FILE  (--cache-dir) a service-account or authorized_user file\n"
		"  --debug             (--cache-dir) debug logging on stderr\n");
}

enum {
	OPT_FLUSH = 1000, OPT_CACHE_DIR, OPT_TIMEOUT, OPT_JSON, OPT_RETRY, OPT_TOKEN_FILE,
	OPT_CREDENTIALS, OPT_DEBUG, OPT_HELP,
};

struct sync_args {
	int flush, json, retry, debug;
	const char *cache_dir, *mountpoint, *token_file, *credentials;
	int64_t timeout_ms;
};

static int parse(int argc, char **argv, struct sync_args *a)
{
	static const struct option opts[] = {
		{ "flush", no_argument, NULL, OPT_FLUSH },
		{ "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "retry-failed", no_argument, NULL, OPT_RETRY },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "credentials", required_argument, NULL, OPT_CREDENTIALS },
		{ "debug", no_argument, NULL, OPT_DEBUG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	a->timeout_ms = -1;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_FLUSH: a->flush = 1; break;
		case OPT_CACHE_DIR: a->cache_dir = optarg; break;
		case OPT_JSON: a->json = 1; break;
		case OPT_RETRY: a->retry = 1; break;
		case OPT_TOKEN_FILE: a->token_file = optarg; break;
		case OPT_CREDENTIALS: a->credentials = optarg; break;
		case OPT_DEBUG: a->debug = 1; break;
		case OPT_TIMEOUT:
			if (mcli_parse_timeout(optarg, &a->timeout_ms) < 0) {
				fprintf(stderr, SYNC_PROG ": --timeout: expected seconds (or 500ms, "
					"10m ...), got '%s'\n", optarg);
				return CLI_USAGE;
			}
			break;
		case 'h':
		case OPT_HELP:
			sync_usage(stdout);
			return -1;
		default:
			fprintf(stderr, SYNC_PROG ": unknown option or missing value: '%s' (see "
				"durafs sync --help)\n", argv[optind - 1]);
			return CLI_USAGE;
		}
	}
	if (optind < argc)
		a->mountpoint = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, SYNC_PROG ": unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	if (!a->flush) {
		fprintf(stderr, SYNC_PROG ": --flush is required (see durafs sync --help)\n");
		return CLI_USAGE;
	}
	if (!!a->mountpoint == !!a->cache_dir) {
		fprintf(stderr, SYNC_PROG ": give either MOUNTPOINT or --cache-dir DIR\n");
		return CLI_USAGE;
	}
	if ((a->token_file || a->credentials) && !a->cache_dir) {
		fprintf(stderr, SYNC_PROG ": --token-file and --credentials go with --cache-dir "
			"(a running mount has its own credentials)\n");
		return CLI_USAGE;
	}
	return 0;
}

static int flush_mount(const struct sync_args *a)
{
	struct ctl_client c;
	struct err e;
	int code;

	err_clear(&e);
	if (mcli_connect(a->mountpoint, &c, &e) < 0) {
		char *dir = e.sys_errno == ENOTCONN ? mcli_dead_cache_dir(a->mountpoint) : NULL;

		if (dir)
			fprintf(stderr, SYNC_PROG ": %s; its changes are in its cache dir's journal: "
				"run `durafs sync --flush --cache-dir %s` or mount it again\n", e.msg,
				dir);
		else if (e.sys_errno == ENOTCONN)
			fprintf(stderr, SYNC_PROG ": %s; its changes are in its cache dir's journal: "
				"run `durafs sync --flush --cache-dir DIR` or mount it again\n", e.msg);
		else
			fprintf(stderr, SYNC_PROG ": %s\n", e.msg);
		free(dir);
		ctl_client_close(&c);
		return CLI_FAIL;
	}
	code = mcli_flush(&c, SYNC_PROG, a->timeout_ms, a->retry, a->json, stdout);
	ctl_client_close(&c);
	return code;
}

/* ---- no daemon: replay the journal --------------------------------------------- */

static int local_progress(void *ud, const struct jnl_progress *p)
{
	prog_update(ud, p->ops_left, p->bytes_left, p->failed);
	return 0;
}

static int set_path(char **field, const char *val)
{
	char *v = mopts_abs_path(val);

	if (!v)
		return -1;
	free(*field);
	*field = v;
	return 0;
}

static int flush_cache_dir(const struct sync_args *a)
{
	struct mopts mo;
	struct mnt m;
	struct jnl *j = NULL;
	struct prog pg;
	json_t *failed = NULL;
	struct err e;
	char *dir = NULL;
	int code = CLI_FAIL;

	memset(&mo, 0, sizeof(mo));
	memset(&m, 0, sizeof(m));
	err_clear(&e);
	log_set_level(a->debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	if (mnt_cache_dir_open(a->cache_dir, "durafs sync --flush MOUNTPOINT", &dir, &j, &mo,
			       &e) < 0) {
		fprintf(stderr, SYNC_PROG ": %s\n", e.msg);
		goto out;
	}
	if ((a->token_file && set_path(&mo.token_file, a->token_file) < 0) ||
	    (a->credentials && set_path(&mo.credentials, a->credentials) < 0)) {
		fprintf(stderr, SYNC_PROG ": out of memory\n");
		goto out;
	}
	if (a->token_file) {
		free(mo.credentials);
		mo.credentials = NULL;
	} else if (a->credentials) {
		free(mo.token_file);
		mo.token_file = NULL;
	}
	mo.debug = a->debug;
	if (mnt_init(&m, &mo, &e) < 0) {
		fprintf(stderr, SYNC_PROG ": %s\n", e.msg);
		goto out;
	}
	m.jnl = j;
	j = NULL;
	if (mnt_remote_open(&m, &e) < 0 || mnt_check(&m, &e) < 0 ||
	    mnt_sched_start(&m, &e) < 0) {
		fprintf(stderr, SYNC_PROG ": %s\n", e.msg);
		goto out;
	}
	prog_init(&pg, stdout, prog_mode_for(stdout, a->json), "flush");
	if (a->retry && mnt_retry_failed(&m, NULL, &e) < 0) {
		fprintf(stderr, SYNC_PROG ": %s\n", e.msg);
		goto out;
	}
	if (mnt_flush(&m, a->timeout_ms, local_progress, &pg, &failed, &e) == 0) {
		prog_finish(&pg);
		if (a->json)
			printf("{\"result\":\"ok\"}\n");
		code = CLI_OK;
		goto out;
	}
	prog_finish(&pg);
	if (a->json) {
		json_t *r = json_pack("{s:s, s:s, s:s}", "result", "error", "error", e.msg, "code",
				      err_code_name(e.code));
		char *s = NULL;

		if (r && failed)
			json_object_set(r, "failed", failed);
		s = r ? json_dumps(r, JSON_COMPACT) : NULL;
		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(r);
	}
	if (failed && json_array_size(failed)) {
		fprintf(stderr, SYNC_PROG ": %zu change%s not committed:\n", json_array_size(failed),
			json_array_size(failed) == 1 ? "" : "s");
		mcli_print_failed(stderr, "  ", failed);
		fprintf(stderr, SYNC_PROG ": the data stays in %s and its journal\n", dir);
	} else {
		fprintf(stderr, SYNC_PROG ": %s\n", e.msg);
	}
out:
	json_decref(failed);
	mnt_release(&m);
	jnl_close(j);
	mopts_release(&mo);
	free(dir);
	return code;
}

int cmd_sync(int argc, char **argv)
{
	struct sync_args a;
	int rc = parse(argc, argv, &a);

	if (rc < 0)
		return CLI_OK;
	if (rc > 0)
		return rc;
	return a.cache_dir ? flush_cache_dir(&a) : flush_mount(&a);
}
