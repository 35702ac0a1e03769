/* `durafs cache warm|status|drop PATH...`: the read cache of a running mount,
 * through its control socket ("cache" command, served in the daemon by
 * fs/fs_cache.c): fetch trees with progress, show how much is local, evict
 * a tree's clean data. PATHs are paths inside the mount. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <jansson.h>

#include "durafs/cli.h"
#include "durafs/ctl.h"
#include "durafs/jsonh.h"
#include "durafs/mopts.h"
#include "durafs/mount_cli.h"
#include "durafs/progress.h"

#define CACHE_PROG "durafs cache"

static void cache_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs cache warm PATH... [--max-size SIZE] [--json]\n"
		"       durafs cache status [PATH...] [--json]\n"
		"       durafs cache drop PATH... [--json]\n"
		"\n"
		"The read cache of a running mount (PATH: a file or directory inside it; the\n"
		"mount point itself for the whole mount).\n"
		"\n"
		"  warm     fetch every file below PATH into the read cache with -o\n"
		"           prefetch_workers parallel downloads (default 16), with progress;\n"
		"           interrupted, a rerun continues (what is cached is skipped)\n"
		"  status   how much of PATH is local (files fully / partly / not cached, bytes)\n"
		"           and the cache totals (clean, dirty, limit, free); no PATH: the\n"
		"           mount holding the current directory\n"
		"  drop     evict the clean cached data below PATH (dirty data is kept)\n"
		"\n"
		"  --max-size SIZE   (warm) skip files larger than SIZE (e.g. 100M, 2G)\n"
		"  --json            JSON progress lines and the result on stdout\n");
}

struct cache_args {
	const char *op;
	char **paths;               /* argc entries, owned by the caller */
	int npaths;
	uint64_t max_size;
	int json;
};

static int bad_size(const char *v)
{
	fprintf(stderr, CACHE_PROG ": --max-size: expected a size such as 512K, 100M or 2G, "
		"got '%s'\n", v);
	return CLI_USAGE;
}

/* Options and operands in any order after `cache`. 0, -1 (help shown), or
 * CLI_USAGE. a->paths must have room for argc entries. */
static int parse(int argc, char **argv, struct cache_args *a)
{
	int i, have_max = 0, opts_done = 0;

	for (i = 1; i < argc; i++) {
		const char *s = argv[i], *v = NULL;

		if (!opts_done && !strcmp(s, "--")) {
			opts_done = 1;
			continue;
		}
		if (!opts_done && (!strcmp(s, "-h") || !strcmp(s, "--help"))) {
			cache_usage(stdout);
			return -1;
		}
		if (!opts_done && !strcmp(s, "--json")) {
			a->json = 1;
			continue;
		}
		if (!opts_done && (!strcmp(s, "--max-size") || !strncmp(s, "--max-size=", 11))) {
			if (s[10] == '=') {
				v = s + 11;
			} else if (i + 1 < argc) {
				v = argv[++i];
			} else {
				fprintf(stderr, CACHE_PROG ": --max-size needs a value\n");
				return CLI_USAGE;
			}
			if (mopts_parse_size(v, &a->max_size) < 0 || !a->max_size)
				return bad_size(v);
			have_max = 1;
			continue;
		}
		if (!opts_done && s[0] == '-' && s[1]) {
			fprintf(stderr, CACHE_PROG ": unknown option '%s' (see durafs cache --help)\n",
				s);
			return CLI_USAGE;
		}
		if (!a->op)
			a->op = s;
		else
			a->paths[a->npaths++] = argv[i];
	}
	if (!a->op) {
		fprintf(stderr, CACHE_PROG ": give warm, status or drop (see durafs cache --help)\n");
		return CLI_USAGE;
	}
	if (strcmp(a->op, "warm") && strcmp(a->op, "status") && strcmp(a->op, "drop")) {
		fprintf(stderr, CACHE_PROG ": unknown subcommand '%s' (warm, status or drop)\n",
			a->op);
		return CLI_USAGE;
	}
	if (have_max && strcmp(a->op, "warm")) {
		fprintf(stderr, CACHE_PROG ": --max-size goes with warm\n");
		return CLI_USAGE;
	}
	if (!a->npaths && strcmp(a->op, "status")) {
		fprintf(stderr, CACHE_PROG " %s: give at least one PATH inside a mount\n", a->op);
		return CLI_USAGE;
	}
	return 0;
}

/* The mount holding abs (an absolute, resolved path): *root (malloc'd, the
 * mount point) and *rel (malloc'd, the path inside it, "" for the root).
 * 0, or -1 with a message on stderr. */
static int find_mount(const char *abs, char **root, char **rel)
{
	char *cur = strdup(abs), buf[PATH_MAX + 1];
	size_t len;

	*root = *rel = NULL;
	if (!cur)
		goto nomem;
	for (;;) {
		ssize_t n = getxattr(cur, CTL_XATTR, buf, sizeof(buf) - 1);

		if (n > 0)
			break;
		if (n < 0 && errno == ENOTCONN) {
			fprintf(stderr, CACHE_PROG ": %s: the durafs daemon of this mount is gone\n",
				cur);
			free(cur);
			return -1;
		}
		if (!strcmp(cur, "/")) {
			fprintf(stderr, CACHE_PROG ": %s is not inside a durafs mount\n", abs);
			free(cur);
			return -1;
		}
		len = strlen(cur);
		while (len > 1 && cur[len - 1] != '/')
			len--;
		cur[len > 1 ? len - 1 : 1] = '\0';
	}
	len = strlen(cur);
	*rel = strdup(abs[len] == '/' ? abs + len + 1 : abs + len);
	if (!strcmp(cur, "/")) {
		free(*rel);
		*rel = strdup(abs + 1);
	}
	if (!*rel)
		goto nomem;
	*root = cur;
	return 0;
nomem:
	free(cur);
	fprintf(stderr, CACHE_PROG ": out of memory\n");
	return -1;
}

static uint64_t jget(const json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));

	return v > 0 ? (uint64_t)v : 0;
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	if (s)
		printf("%s\n", s);
	free(s);
}

static void fmt(uint64_t n, char *buf, size_t len)
{
	prog_fmt_bytes(n, buf, len);
}

/* "s" unless n is 1: "1 file", "2 files". */
static const char *plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

static void print_totals(const json_t *t)
{
	char a[32], b[32], c[32], d[32];

	fmt(jget(t, "clean_bytes"), a, sizeof(a));
	fmt(jget(t, "dirty_bytes"), b, sizeof(b));
	fmt(jget(t, "limit"), c, sizeof(c));
	fmt(jget(t, "fs_free"), d, sizeof(d));
	printf("cache: %s clean in %" PRIu64 " file%s (limit %s), %s dirty in %" PRIu64
	       " file%s; %s free on the cache disk", a, jget(t, "clean_files"),
	       plural(jget(t, "clean_files")), c, b, jget(t, "dirty_files"),
	       plural(jget(t, "dirty_files")), d);
	fmt(jget(t, "min_free"), a, sizeof(a));
	printf(" (kept above %s)\n", a);
}

static int show_status(const struct cache_args *a, const json_t *reply, const char *label)
{
	const json_t *tree = json_object_get(reply, "tree");
	char x[32], y[32];

	if (a->json) {
		print_json(reply);
		return CLI_OK;
	}
	if (tree) {
		fmt(jget(tree, "bytes_local"), x, sizeof(x));
		fmt(jget(tree, "bytes"), y, sizeof(y));
		printf("%s: %" PRIu64 " file%s, %s of %s local: %" PRIu64 " fully cached, %" PRIu64
		       " partly, %" PRIu64 " not cached, %" PRIu64 " local changes\n", label,
		       jget(tree, "files"), plural(jget(tree, "files")), x, y, jget(tree, "full"),
		       jget(tree, "partial"), jget(tree, "none"), jget(tree, "local"));
	}
	print_totals(json_object_get(reply, "cache"));
	return CLI_OK;
}

static int show_drop(const struct cache_args *a, const json_t *reply, const char *label)
{
	const json_t *d = json_object_get(reply, "drop"), *kept = json_object_get(d, "kept");
	char x[32];
	size_t i;

	if (a->json) {
		print_json(reply);
		return CLI_OK;
	}
	fmt(jget(d, "dropped_bytes"), x, sizeof(x));
	printf("%s: dropped %s of cached data of %" PRIu64 " file%s", label, x,
	       jget(d, "dropped_files"), plural(jget(d, "dropped_files")));
	if (jget(d, "kept_dirty") || jget(d, "kept_open"))
		printf("; kept %" PRIu64 " files with local changes (never dropped) and %" PRIu64
		       " open files", jget(d, "kept_dirty"), jget(d, "kept_open"));
	printf("\n");
	for (i = 0; i < json_array_size(kept); i++) {
		const json_t *k = json_array_get(kept, i);

		printf("  kept /%s (%s)\n", json_string_value(json_object_get(k, "path")),
		       json_string_value(json_object_get(k, "why")));
	}
	return CLI_OK;
}

/* Send the warm request and show its progress and summary. */
static int run_warm(const struct cache_args *a, struct ctl_client *c, const json_t *req,
		    const char *label)
{
	struct prog pg;
	json_t *msg = NULL;
	const json_t *w, *errs;
	struct err e;
	char x[32], y[32];
	int code = CLI_FAIL, rc, shown = 0;
	size_t i;

	err_clear(&e);
	if (ctl_client_send(c, req, &e) < 0) {
		fprintf(stderr, CACHE_PROG ": %s\n", e.msg);
		return CLI_FAIL;
	}
	prog_init(&pg, stdout, prog_mode_for(stdout, a->json), "warm");
	for (;;) {
		const json_t *p;
		const char *res;

		json_decref(msg);
		msg = NULL;
		rc = ctl_client_recv(c, -1, &msg, &e);
		if (rc <= 0) {
			if (shown)
				prog_finish(&pg);
			if (rc == 0)
				fprintf(stderr, CACHE_PROG ": the mount's daemon went away; what was "
					"fetched stays cached: run the same command again to continue\n");
			else
				fprintf(stderr, CACHE_PROG ": %s\n", e.msg);
			goto out;
		}
		p = json_object_get(msg, "progress");
		if (p) {
			uint64_t ft = jget(p, "files_total"), bt = jget(p, "bytes_total");
			uint64_t fd = jget(p, "files_done") + jget(p, "failed");

			prog_update(&pg, ft > fd ? ft - fd : 0,
				    bt > jget(p, "bytes_done") ? bt - jget(p, "bytes_done") : 0,
				    jget(p, "failed"));
			shown = 1;
			continue;
		}
		res = json_string_value(json_object_get(msg, "result"));
		if (!res)
			continue;
		if (shown)
			prog_finish(&pg);
		if (strcmp(res, "ok")) {
			const char *em = json_string_value(json_object_get(msg, "error"));

			if (a->json)
				print_json(msg);
			fprintf(stderr, CACHE_PROG ": %s\n", em ? em : "the daemon refused");
			goto out;
		}
		break;
	}
	w = json_object_get(msg, "warm");
	code = jget(w, "failed") || jget(w, "not_tried") ? CLI_FAIL : CLI_OK;
	if (a->json) {
		print_json(msg);
		goto out;
	}
	fmt(jget(w, "fetched_bytes"), x, sizeof(x));
	printf("%s: fetched %" PRIu64 " file%s (%s) in %.1f s", label, jget(w, "fetched_files"),
	       plural(jget(w, "fetched_files")), x,
	       (double)jget(w, "elapsed_ms") / 1000.0);
	fmt(jget(w, "cached_bytes"), x, sizeof(x));
	printf("; %" PRIu64 " already cached (%s)", jget(w, "cached_files"), x);
	if (jget(w, "local_files"))
		printf(", %" PRIu64 " with local changes", jget(w, "local_files"));
	if (jget(w, "skipped_large")) {
		fmt(jget(w, "skipped_large_bytes"), x, sizeof(x));
		printf(", %" PRIu64 " skipped above --max-size (%s)", jget(w, "skipped_large"), x);
	}
	if (jget(w, "failed"))
		printf(", %" PRIu64 " FAILED", jget(w, "failed"));
	if (jget(w, "not_tried"))
		printf(", %" PRIu64 " not tried", jget(w, "not_tried"));
	printf("\n");
	errs = json_object_get(w, "errors");
	for (i = 0; i < json_array_size(errs); i++) {
		const json_t *k = json_array_get(errs, i);

		fprintf(stderr, "  /%s: %s\n", json_string_value(json_object_get(k, "path")),
			json_string_value(json_object_get(k, "error")));
	}
	if (json_is_true(json_object_get(w, "quota")))
		fprintf(stderr, CACHE_PROG ": Google refused downloads (quota or rate limit): "
			"stopped; wait and run the same command again to continue (see the "
			"mount's log)\n");
	if (jget(w, "wanted_bytes") + jget(w, "cached_bytes") > jget(w, "cache_limit")) {
		fmt(jget(w, "cache_limit"), x, sizeof(x));
		fmt(jget(w, "wanted_bytes") + jget(w, "cached_bytes"), y, sizeof(y));
		fprintf(stderr, CACHE_PROG ": warning: the tree (%s) is larger than the cache "
			"(cache_size=%s): the least recently used files were evicted again\n", y, x);
	}
out:
	json_decref(msg);
	return code;
}

int cmd_cache(int argc, char **argv)
{
	struct cache_args a;
	struct ctl_client c;
	json_t *req = NULL, *paths = NULL, *reply = NULL;
	char *root = NULL, *rel = NULL, *abs = NULL, **plist = NULL;
	char *dot[1] = { (char *)"." };
	const char *label;
	struct err e;
	int rc, code = CLI_FAIL, i;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	plist = calloc((size_t)argc + 1, sizeof(*plist));
	if (!plist) {
		fprintf(stderr, CACHE_PROG ": out of memory\n");
		return CLI_FAIL;
	}
	memset(&a, 0, sizeof(a));
	a.paths = plist;
	rc = parse(argc, argv, &a);
	if (rc < 0) {
		free(plist);
		return CLI_OK;
	}
	if (rc > 0) {
		free(plist);
		return rc;
	}
	if (!a.npaths) {
		a.paths = dot;
		a.npaths = 1;
	}
	paths = json_array();
	if (!paths)
		goto nomem;
	for (i = 0; i < a.npaths; i++) {
		char *r2 = NULL, *l2 = NULL;

		abs = realpath(a.paths[i], NULL);
		if (!abs) {
			fprintf(stderr, CACHE_PROG ": %s: %s\n", a.paths[i], strerror(errno));
			goto out;
		}
		if (find_mount(abs, &r2, &l2) < 0)
			goto out;
		free(abs);
		abs = NULL;
		if (root && strcmp(root, r2)) {
			fprintf(stderr, CACHE_PROG ": %s and %s are in different mounts (%s, %s): "
				"one mount per command\n", a.paths[0], a.paths[i], root, r2);
			free(r2);
			free(l2);
			goto out;
		}
		if (!root)
			root = r2;
		else
			free(r2);
		if (!jsonh_utf8_valid(l2)) {
			/* the mount cannot create such a name either */
			fprintf(stderr, CACHE_PROG ": %s: the path is not valid UTF-8 (durafs "
				"names are UTF-8)\n", a.paths[i]);
			free(l2);
			goto out;
		}
		if (json_array_append_new(paths, json_string(l2)) < 0) {
			free(l2);
			goto nomem;
		}
		free(rel);
		rel = l2;
	}
	label = a.npaths == 1 ? a.paths[0] : "total";
	req = json_pack("{s:s, s:s, s:O}", "cmd", "cache", "op", a.op, "paths", paths);
	if (!req)
		goto nomem;
	if (a.max_size && json_object_set_new(req, "max_size", json_integer((json_int_t)a.max_size)))
		goto nomem;
	err_clear(&e);
	if (mcli_connect(root, &c, &e) < 0) {
		fprintf(stderr, CACHE_PROG ": %s\n", e.msg);
		goto out;
	}
	if (!strcmp(a.op, "warm")) {
		code = run_warm(&a, &c, req, label);
		goto out;
	}
	if (mcli_call(&c, req, -1, &reply, &e) < 0) {
		if (a.json && reply)
			print_json(reply);
		fprintf(stderr, CACHE_PROG ": %s\n", e.msg);
		goto out;
	}
	code = !strcmp(a.op, "status") ? show_status(&a, reply, label) : show_drop(&a, reply, label);
	goto out;
nomem:
	fprintf(stderr, CACHE_PROG ": out of memory\n");
out:
	ctl_client_close(&c);
	json_decref(reply);
	json_decref(req);
	json_decref(paths);
	free(abs);
	free(root);
	free(rel);
	free(plist);
	return code;
}
