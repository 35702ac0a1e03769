/* `durafs trash list|purge SOURCE`: list the Drive trash (count, bytes,
 * --json), delete trashed files for good through batch requests with a
 * progress bar (filters --older-than / --match, --dry-run, confirmation),
 * or empty the whole trash and wait until it really is empty; on gs://
 * sources, delete the noncurrent generations (the GCS backend's purge). */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/backend.h"
#include "durafs/cli.h"
#include "durafs/clock.h"
#include "durafs/drive.h"
#include "durafs/gcs.h"
#include "durafs/http.h"
#include "durafs/log.h"
#include "durafs/progress.h"

#define TAG "trash"

static void trash_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs trash list drive:[...] [--json] [SOURCE OPTIONS]\n"
		"       durafs trash purge drive:[...] [--older-than DURATION] [--match GLOB]\n"
		"                          [--dry-run] [--yes] [--empty] [--threads N] [--json]\n"
		"                          [SOURCE OPTIONS]\n"
		"       durafs trash purge gs://BUCKET[/PREFIX] [--yes] [SOURCE OPTIONS]\n"
		"\n"
		"list     every item in the Drive trash (of My Drive, or of the shared drive the\n"
		"         source is on), then how many and how many bytes.\n"
		"purge    deletes trashed items for good, in batches of up to 100 calls with\n"
		"         several batches in flight, slowing down when Google rate-limits.\n"
		"         Interrupted, run it again: it lists the trash afresh and goes on.\n"
		"         Failures are listed at the end and the exit status is 1.\n"
		"         On gs:// it deletes the noncurrent generations under the prefix.\n"
		"\n"
		"Options:\n"
		"  --older-than D    only items trashed more than D ago (trashedTime, else\n"
		"                    modifiedTime); D is a number with s, m, h, d or w (30d, 12h)\n"
		"  --match GLOB      only items whose Drive name matches GLOB (fnmatch; * ? [..])\n"
		"  --dry-run         show what would be deleted, delete nothing\n"
		"  --yes             do not ask for confirmation (required without a terminal)\n"
		"  --empty           empty the whole trash in one call (emptyTrash), then wait\n"
		"                    until listing shows it empty (no filters allowed)\n"
		"  --threads N       batches in flight (default 4)\n"
		"  --timeout S       --empty: give up waiting after S seconds (default 3600)\n"
		"  --json            machine-readable output on stdout\n"
		"\n"
		"Source options:\n"
		"  --endpoint URL    the API's base URL (an emulator: no credentials needed);\n"
		"                    also $DURAFS_DRIVE_ENDPOINT / $STORAGE_EMULATOR_HOST\n"
		"  --token-file FILE, --credentials FILE   as for `durafs auth`; otherwise the\n"
		"                    usual discovery (see `durafs auth --help`)\n"
		"  --debug           log HTTP requests (secrets are never logged)\n");
}

enum {
	OPT_JSON = 1000, OPT_OLDER, OPT_MATCH, OPT_DRY, OPT_YES, OPT_EMPTY, OPT_THREADS,
	OPT_ENDPOINT, OPT_TOKEN_FILE, OPT_CREDENTIALS, OPT_DEBUG, OPT_TIMEOUT, OPT_HELP,
};

struct targs {
	const char *cmd, *source, *older, *match, *endpoint, *token_file, *credentials;
	int json, dry, yes, empty, threads, debug;
	long timeout_s;
	int64_t older_s;
};

/* "30d", "12h", "90m", "45s", "2w", "1d12h", or a plain number of seconds. */
static int parse_duration(const char *s, int64_t *out)
{
	int64_t total = 0, v, mult;
	char *end;

	if (!s || !*s)
		return -1;
	while (*s) {
		if (*s < '0' || *s > '9')
			return -1;
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno || v < 0)
			return -1;
		switch (*end) {
		case 's': mult = 1; end++; break;
		case 'm': mult = 60; end++; break;
		case 'h': mult = 3600; end++; break;
		case 'd': mult = 86400; end++; break;
		case 'w': mult = 7 * 86400; end++; break;
		case '\0': mult = 1; break;
		default: return -1;
		}
		if (v > (INT64_MAX / 1000 - total) / mult)
			return -1;
		total += v * mult;
		s = end;
	}
	*out = total;
	return 0;
}

static int parse_args(int argc, char **argv, struct targs *a)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "older-than", required_argument, NULL, OPT_OLDER },
		{ "match", required_argument, NULL, OPT_MATCH },
		{ "dry-run", no_argument, NULL, OPT_DRY },
		{ "yes", no_argument, NULL, OPT_YES },
		{ "empty", no_argument, NULL, OPT_EMPTY },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "endpoint", required_argument, NULL, OPT_ENDPOINT },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "credentials", required_argument, NULL, OPT_CREDENTIALS },
		{ "debug", no_argument, NULL, OPT_DEBUG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	char *end = NULL;
	long v;
	int c;

	memset(a, 0, sizeof(*a));
	a->timeout_s = 3600;
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		trash_usage(stdout);
		return -1;
	}
	if (argc < 2) {
		trash_usage(stderr);
		return CLI_USAGE;
	}
	a->cmd = argv[1];
	if (strcmp(a->cmd, "list") && strcmp(a->cmd, "purge")) {
		fprintf(stderr, "durafs trash: unknown subcommand '%s' (list or purge)\n", a->cmd);
		return CLI_USAGE;
	}
	opterr = 0;
	optind = 0;
	/* Options may come before or after SOURCE. */
	while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON: a->json = 1; break;
		case OPT_OLDER: a->older = optarg; break;
		case OPT_MATCH: a->match = optarg; break;
		case OPT_DRY: a->dry = 1; break;
		case OPT_YES: a->yes = 1; break;
		case OPT_EMPTY: a->empty = 1; break;
		case OPT_ENDPOINT: a->endpoint = optarg; break;
		case OPT_TOKEN_FILE: a->token_file = optarg; break;
		case OPT_CREDENTIALS: a->credentials = optarg; break;
		case OPT_DEBUG: a->debug = 1; break;
		case OPT_THREADS:
		case OPT_TIMEOUT:
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || !*optarg || *end || v <= 0 || (c == OPT_THREADS && v > 32)) {
				fprintf(stderr, "durafs trash: --%s needs a positive number%s\n",
					c == OPT_THREADS ? "threads" : "timeout",
					c == OPT_THREADS ? " up to 32" : "");
				return CLI_USAGE;
			}
			if (c == OPT_THREADS)
				a->threads = (int)v;
			else
				a->timeout_s = v;
			break;
		case 'h':
		case OPT_HELP:
			trash_usage(stdout);
			return -1;
		default:
			fprintf(stderr, "durafs trash: unknown option or missing value '%s' (see durafs "
				"trash --help)\n", argv[optind]);
			return CLI_USAGE;
		}
	}
	if (optind + 1 != argc - 1) {
		fprintf(stderr, "durafs trash %s: expected exactly one SOURCE (drive:... or "
			"gs://...)\n", a->cmd);
		return CLI_USAGE;
	}
	a->source = argv[optind + 1];
	if (a->older && parse_duration(a->older, &a->older_s) < 0) {
		fprintf(stderr, "durafs trash: --older-than '%s' is not a duration (30d, 12h, 90m, "
			"45s, 2w)\n", a->older);
		return CLI_USAGE;
	}
	if (!strcmp(a->cmd, "list") && (a->older || a->match || a->dry || a->yes || a->empty)) {
		fprintf(stderr, "durafs trash list: takes only --json and source options\n");
		return CLI_USAGE;
	}
	if (a->empty && (a->older || a->match)) {
		fprintf(stderr, "durafs trash purge: --empty empties the whole trash; it cannot be "
			"combined with --older-than or --match\n");
		return CLI_USAGE;
	}
	return 0;
}

/* --- remote setup ---------------------------------------------------------- */

struct remote {
	struct auth_provider *auth;
	struct http *http;
	struct be *b;
};

static void remote_close(struct remote *r)
{
	be_free(r->b);
	http_free(r->http);
	auth_provider_free(r->auth);
	memset(r, 0, sizeof(*r));
}

static int remote_open(const struct targs *a, int drive, struct remote *r, struct err *err)
{
	struct auth_opts ao;
	struct http_opts ho;
	char ep[4200], *trail = NULL, *bucket = NULL, *prefix = NULL;
	int emulated = 0, no_auth, rc = -1;

	memset(r, 0, sizeof(*r));
	if (drive) {
		if (drive_endpoint(a->endpoint, ep, sizeof(ep), &emulated, err) < 0)
			goto out;
	} else if (gcs_endpoint(a->endpoint, ep, sizeof(ep), &emulated, err) < 0) {
		goto out;
	}
	/* An emulator needs no credentials, unless some are given explicitly. */
	no_auth = (emulated || a->endpoint) && !a->token_file && !a->credentials;
	if (!no_auth) {
		memset(&ao, 0, sizeof(ao));
		ao.token_file = a->token_file;
		ao.credentials = a->credentials;
		ao.scopes = drive ? AUTH_SCOPE_DRIVE : AUTH_SCOPE_GCS;
		if (auth_adc_open(&ao, &r->auth, &trail, err) < 0) {
			if (trail)
				fprintf(stderr, "durafs trash: credential discovery:\n%s", trail);
			goto out;
		}
	}
	memset(&ho, 0, sizeof(ho));
	ho.max_retries = 6;
	ho.backoff_initial_ms = 500;
	ho.backoff_max_ms = 16000;
	ho.backoff_jitter_ms = 500;
	ho.debug = a->debug;
	if (r->auth) {
		ho.token = auth_provider_token_fn;
		ho.token_ud = r->auth;
	}
	if (http_new(&ho, &r->http, err) < 0)
		goto out;
	if (drive) {
		struct drive_opts o;

		memset(&o, 0, sizeof(o));
		o.source = a->source;
		o.endpoint = ep;
		o.http = r->http;
		o.batch_threads = a->threads;
		if (drive_new(&o, &r->b, err) < 0)
			goto out;
	} else {
		struct gcs_opts o;

		if (gcs_parse_source(a->source, &bucket, &prefix, err) < 0)
			goto out;
		memset(&o, 0, sizeof(o));
		o.bucket = bucket;
		o.prefix = prefix;
		o.endpoint = ep;
		o.http = r->http;
		if (gcs_new(&o, &r->b, err) < 0)
			goto out;
	}
	if (be_check(r->b, err) < 0) {
		if (err->code == ERR_NET || err->code == ERR_TIMEOUT)
			err_prefix(err, "cannot reach %s", ep);
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		remote_close(r);
	free(trail);
	free(bucket);
	free(prefix);
	return rc;
}

/* --- the trash as listed ---------------------------------------------------- */

struct item {
	char *id, *name, *mime;
	uint64_t size;
	struct timespec when;     /* trashedTime, else modifiedTime */
	int has_ttime, folder, explicit_;
};

struct items {
	struct item *v;
	size_t n, cap;
	uint64_t bytes;
	int oom;
};

static void items_release(struct items *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].id);
		free(l->v[i].name);
		free(l->v[i].mime);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int collect(void *ud, const struct drive_file *f)
{
	struct items *l = ud;
	struct item *it, *nv;

	if (l->n == l->cap) {
		nv = realloc(l->v, (l->cap ? l->cap * 2 : 256) * sizeof(*nv));
		if (!nv) {
			l->oom = 1;
			return 1;
		}
		l->v = nv;
		l->cap = l->cap ? l->cap * 2 : 256;
	}
	it = &l->v[l->n];
	memset(it, 0, sizeof(*it));
	it->id = strdup(f->id);
	it->name = malloc(f->name_len + 1);
	it->mime = strdup(f->mime);
	if (!it->id || !it->name || !it->mime) {
		free(it->id);
		free(it->name);
		free(it->mime);
		l->oom = 1;
		return 1;
	}
	memcpy(it->name, f->name, f->name_len);
	it->name[f->name_len] = '\0';  /* a NUL inside cuts the shown name: fine */
	it->size = f->has_size ? f->size : 0;
	it->has_ttime = f->ttime.tv_sec != 0;
	it->when = it->has_ttime ? f->ttime : f->mtime;
	it->folder = strcmp(f->mime, DRIVE_MIME_FOLDER) == 0;
	it->explicit_ = f->explicitly_trashed;
	l->bytes += it->size;
	l->n++;
	return 0;
}

static int list_trash(struct be *b, struct items *l, struct err *err)
{
	memset(l, 0, sizeof(*l));
	if (drive_trash_list(b, collect, l, err) < 0) {
		if (l->oom)
			err_set(err, ERR_NOMEM, "out of memory");
		items_release(l);
		return -1;
	}
	return 0;
}

/* A name safe on one terminal line: control bytes become '?'. */
static void print_name(FILE *out, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
}

static void fmt_time(const struct timespec *t, char *buf, size_t len)
{
	struct tm tm;
	time_t s = t->tv_sec;

	if (!s) {
		snprintf(buf, len, "-");
		return;
	}
	gmtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *item_json(const struct item *it)
{
	char t[40];

	fmt_time(&it->when, t, sizeof(t));
	return json_pack("{s:s, s:s, s:s, s:I, s:s, s:b}", "id", it->id, "name",
			 it->name, "mimeType", it->mime, "size", (json_int_t)it->size,
			 it->has_ttime ? "trashedTime" : "modifiedTime", t,
			 "explicitlyTrashed", it->explicit_);
}

static int print_json_doc(json_t *j)
{
	char *s;

	if (!j) {
		fprintf(stderr, "durafs trash: out of memory\n");
		return -1;
	}
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s) {
		fprintf(stderr, "durafs trash: out of memory\n");
		return -1;
	}
	printf("%s\n", s);
	free(s);
	return 0;
}

static int do_list(const struct targs *a, struct be *b)
{
	struct items l;
	struct err err;
	json_t *arr, *j;
	char t[40], sz[32];
	size_t i;

	err_clear(&err);
	if (list_trash(b, &l, &err) < 0) {
		fprintf(stderr, "durafs trash list: %s\n", err.msg);
		return CLI_FAIL;
	}
	if (a->json) {
		arr = json_array();
		for (i = 0; arr && i < l.n; i++)
			if (json_array_append_new(arr, item_json(&l.v[i])) < 0) {
				json_decref(arr);
				arr = NULL;
			}
		j = arr ? json_pack("{s:I, s:I, s:o}", "count", (json_int_t)l.n, "bytes",
				    (json_int_t)l.bytes, "items", arr) : NULL;
		items_release(&l);
		return print_json_doc(j) < 0 ? CLI_FAIL : CLI_OK;
	}
	for (i = 0; i < l.n; i++) {
		fmt_time(&l.v[i].when, t, sizeof(t));
		prog_fmt_bytes(l.v[i].size, sz, sizeof(sz));
		printf("%-20s %10s  ", t, l.v[i].folder ? "folder" : sz);
		print_name(stdout, l.v[i].name);
		printf("  (%s)\n", l.v[i].id);
	}
	prog_fmt_bytes(l.bytes, sz, sizeof(sz));
	printf("%zu item%s in the trash, %s (%" PRIu64 " bytes)\n", l.n, l.n == 1 ? "" : "s", sz,
	       l.bytes);
	items_release(&l);
	return CLI_OK;
}

/* --- purge ------------------------------------------------------------------- */

static int confirm(const char *what)
{
	char line[32];

	if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
		fprintf(stderr, "durafs trash purge: refusing to %s without --yes (no terminal to "
			"ask for confirmation)\n", what);
		return 0;
	}
	fprintf(stderr, "%s? This cannot be undone. [y/N] ", what);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	return line[0] == 'y' || line[0] == 'Y';
}

struct pstate {
	struct prog prog;
	uint64_t total, bytes_total;
};

static int on_progress(void *ud, uint64_t done, uint64_t bytes, uint64_t failed)
{
	struct pstate *p = ud;
	uint64_t left = p->total > done + failed ? p->total - done - failed : 0;

	prog_update(&p->prog, left, p->bytes_total > bytes ? p->bytes_total - bytes : 0, failed);
	return 0;
}

/* now: wall clock in ms. */
static int selected(const struct targs *a, const struct item *it, int64_t now)
{
	int64_t when = (int64_t)it->when.tv_sec * 1000 + it->when.tv_nsec / 1000000;

	if (a->match && fnmatch(a->match, it->name, 0) != 0)
		return 0;
	if (a->older && now - when <= a->older_s * 1000)
		return 0;
	return 1;
}

static int purge_empty(const struct targs *a, struct be *b, const struct items *first)
{
	struct pstate ps;
	struct items l;
	struct err err;
	time_t start = time(NULL);
	int rc = CLI_FAIL;

	err_clear(&err);
	if (drive_empty_trash(b, &err) < 0) {
		fprintf(stderr, "durafs trash purge: %s\n", err.msg);
		return CLI_FAIL;
	}
	memset(&ps, 0, sizeof(ps));
	prog_init(&ps.prog, stderr, prog_mode_for(stderr, a->json), "empty trash");
	prog_update(&ps.prog, first->n, first->bytes, 0);
	/* Google empties in the background: watch the trash go. */
	for (;;) {
		if (list_trash(b, &l, &err) < 0) {
			prog_finish(&ps.prog);
			fprintf(stderr, "durafs trash purge: %s\n", err.msg);
			return CLI_FAIL;
		}
		prog_update(&ps.prog, l.n, l.bytes, 0);
		if (l.n == 0) {
			items_release(&l);
			rc = CLI_OK;
			break;
		}
		items_release(&l);
		if (time(NULL) - start > a->timeout_s) {
			fprintf(stderr, "durafs trash purge: the trash is still not empty after %ld s\n",
				a->timeout_s);
			break;
		}
		sleep(1);
	}
	prog_finish(&ps.prog);
	if (rc == CLI_OK) {
		if (a->json) {
			print_json_doc(json_pack("{s:I, s:I, s:o}", "deleted", (json_int_t)first->n,
						 "bytes", (json_int_t)first->bytes, "failed",
						 json_array()));
		} else {
			char sz[32];

			prog_fmt_bytes(first->bytes, sz, sizeof(sz));
			printf("emptied the trash: %zu item%s, %s freed\n", first->n,
			       first->n == 1 ? "" : "s", sz);
		}
	}
	return rc;
}

static int purge_drive(const struct targs *a, struct be *b)
{
	struct items l;
	struct pstate ps;
	struct err err;
	const char **ids = NULL;
	uint64_t *sizes = NULL, sel_bytes = 0, freed = 0;
	long *status = NULL;
	char (*reasons)[64] = NULL, sz[32], what[160];
	size_t i, k, n = 0, nfail = 0;
	int64_t now = clk_wall_ms();
	json_t *fails = NULL, *j;
	struct timespec t0, t1;
	int rc = CLI_FAIL, r;

	err_clear(&err);
	if (list_trash(b, &l, &err) < 0) {
		fprintf(stderr, "durafs trash purge: %s\n", err.msg);
		return CLI_FAIL;
	}
	ids = calloc(l.n ? l.n : 1, sizeof(*ids));
	sizes = calloc(l.n ? l.n : 1, sizeof(*sizes));
	status = calloc(l.n ? l.n : 1, sizeof(*status));
	reasons = calloc(l.n ? l.n : 1, sizeof(*reasons));
	if (!ids || !sizes || !status || !reasons) {
		fprintf(stderr, "durafs trash purge: out of memory\n");
		goto out;
	}
	/* Files first, then folders (a folder takes what is left inside). */
	for (k = 0; k < 2; k++)
		for (i = 0; i < l.n; i++) {
			if (l.v[i].folder != (int)k || !selected(a, &l.v[i], now))
				continue;
			ids[n] = l.v[i].id;
			sizes[n] = l.v[i].size;
			sel_bytes += l.v[i].size;
			n++;
		}
	prog_fmt_bytes(sel_bytes, sz, sizeof(sz));
	if (a->dry) {
		if (a->json) {
			fails = json_array();
			for (i = 0; fails && i < l.n; i++)
				if (selected(a, &l.v[i], now))
					json_array_append_new(fails, item_json(&l.v[i]));
			print_json_doc(json_pack("{s:b, s:I, s:I, s:o}", "dry_run", 1, "selected",
						 (json_int_t)n, "bytes", (json_int_t)sel_bytes,
						 "items", fails ? fails : json_array()));
			fails = NULL;
		} else {
			for (i = 0; i < l.n; i++) {
				if (!selected(a, &l.v[i], now))
					continue;
				printf("would delete ");
				print_name(stdout, l.v[i].name);
				printf("  (%s)\n", l.v[i].id);
			}
			printf("dry run: %zu of %zu trashed items selected, %s; nothing deleted\n", n,
			       l.n, sz);
		}
		rc = CLI_OK;
		goto out;
	}
	if (n == 0) {
		if (a->json)
			print_json_doc(json_pack("{s:I, s:I, s:o}", "deleted", (json_int_t)0, "bytes",
						 (json_int_t)0, "failed", json_array()));
		else
			printf("nothing to delete (%zu items in the trash, none selected)\n", l.n);
		rc = CLI_OK;
		goto out;
	}
	snprintf(what, sizeof(what), "permanently delete %zu trashed item%s (%s)", n,
		 n == 1 ? "" : "s", sz);
	if (!a->yes && !confirm(what))
		goto out;
	if (a->empty) {
		rc = purge_empty(a, b, &l);
		goto out;
	}
	memset(&ps, 0, sizeof(ps));
	ps.total = n;
	ps.bytes_total = sel_bytes;
	prog_init(&ps.prog, stderr, prog_mode_for(stderr, a->json), "purge");
	prog_update(&ps.prog, n, sel_bytes, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = drive_delete_ids(b, ids, sizes, n, a->threads, on_progress, &ps, status, reasons, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	prog_finish(&ps.prog);
	fails = json_array();
	for (i = 0; i < n; i++) {
		if ((status[i] >= 200 && status[i] < 300) || status[i] == 404) {
			freed += sizes[i];
			continue;
		}
		nfail++;
		for (k = 0; k < l.n && l.v[k].id != ids[i]; k++)
			;
		if (a->json) {
			j = json_pack("{s:s, s:s, s:i, s:s}", "id", ids[i], "name",
				      k < l.n ? l.v[k].name : "", "status", (int)status[i],
				      "reason", reasons[i]);
			if (fails && j)
				json_array_append_new(fails, j);
		} else {
			fprintf(stderr, "failed: ");
			if (k < l.n)
				print_name(stderr, l.v[k].name);
			fprintf(stderr, " (%s): HTTP %ld %s\n", ids[i], status[i], reasons[i]);
		}
	}
	prog_fmt_bytes(freed, sz, sizeof(sz));
	if (a->json) {
		print_json_doc(json_pack("{s:I, s:I, s:o, s:f}", "deleted", (json_int_t)(n - nfail),
					 "bytes", (json_int_t)freed, "failed",
					 fails ? fails : json_array(), "seconds",
					 (double)(t1.tv_sec - t0.tv_sec) +
					 (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
		fails = NULL;
	} else {
		printf("deleted %zu of %zu items, %s freed, in %.1f s\n", n - nfail, n, sz,
		       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	if (r < 0 && nfail == 0)
		fprintf(stderr, "durafs trash purge: %s\n", err.msg);
	if (r < 0 || nfail)
		fprintf(stderr, "durafs trash purge: %zu item%s could not be deleted; run it again "
			"to retry\n", nfail, nfail == 1 ? "" : "s");
	rc = (r < 0 || nfail) ? CLI_FAIL : CLI_OK;
out:
	json_decref(fails);
	items_release(&l);
	free(ids);
	free(sizes);
	free(status);
	free(reasons);
	return rc;
}

struct gprog {
	time_t last;
	uint64_t items, bytes;
};

static int gcs_progress(void *ud, uint64_t items, uint64_t bytes)
{
	struct gprog *g = ud;
	time_t now = time(NULL);
	char sz[32];

	g->items = items;
	g->bytes = bytes;
	if (now - g->last >= 2) {
		prog_fmt_bytes(bytes, sz, sizeof(sz));
		fprintf(stderr, "purge: %" PRIu64 " noncurrent generations deleted, %s\n", items, sz);
		g->last = now;
	}
	return 0;
}

static int purge_gcs(const struct targs *a, struct be *b)
{
	struct gprog g;
	struct err err;
	char sz[32];

	if (a->older || a->match || a->dry || a->empty) {
		fprintf(stderr, "durafs trash purge: --older-than, --match, --dry-run and --empty "
			"apply to drive: sources only\n");
		return CLI_USAGE;
	}
	if (!a->yes && !confirm("permanently delete every noncurrent generation under this "
				"source"))
		return CLI_FAIL;
	memset(&g, 0, sizeof(g));
	g.last = time(NULL);
	err_clear(&err);
	if (be_purge(b, "", gcs_progress, &g, &err) < 0) {
		fprintf(stderr, "durafs trash purge: %s\n", err.msg);
		return CLI_FAIL;
	}
	prog_fmt_bytes(g.bytes, sz, sizeof(sz));
	if (a->json)
		print_json_doc(json_pack("{s:I, s:I, s:o}", "deleted", (json_int_t)g.items, "bytes",
					 (json_int_t)g.bytes, "failed", json_array()));
	else
		printf("deleted %" PRIu64 " noncurrent generations, %s freed\n", g.items, sz);
	return CLI_OK;
}

int cmd_trash(int argc, char **argv)
{
	struct targs a;
	struct remote r;
	struct err err;
	int drive, rc;

	rc = parse_args(argc, argv, &a);
	if (rc != 0)
		return rc < 0 ? CLI_OK : rc;
	log_set_level(a.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	drive = strncmp(a.source, "drive:", 6) == 0;
	if (!drive && strncmp(a.source, "gs://", 5) != 0) {
		fprintf(stderr, "durafs trash: bad source '%s': expected drive:... or "
			"gs://BUCKET[/PREFIX]\n", a.source);
		return CLI_USAGE;
	}
	if (!drive && !strcmp(a.cmd, "list")) {
		fprintf(stderr, "durafs trash list: only drive: sources have a trash; on gs:// use "
			"`durafs trash purge gs://...` to delete noncurrent generations\n");
		return CLI_USAGE;
	}
	err_clear(&err);
	if (remote_open(&a, drive, &r, &err) < 0) {
		fprintf(stderr, "durafs trash: %s\n", err.msg);
		return err.code == ERR_INVAL ? CLI_USAGE : CLI_FAIL;
	}
	if (!strcmp(a.cmd, "list"))
		rc = do_list(&a, r.b);
	else if (drive)
		rc = purge_drive(&a, r.b);
	else
		rc = purge_gcs(&a, r.b);
	remote_close(&r);
	return rc;
}
