/* `durafs status MOUNTPOINT [--json]`: what a mount has not committed yet
 * (pending operations and bytes, uploads in flight, retries, failures,
 * conflicts) and its cache use, from the running daemon, or from a cache
 * dir's journal when no daemon runs (--cache-dir). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durafs/backend.h"
#include "durafs/cli.h"
#include "durafs/log.h"
#include "durafs/mount.h"
#include "durafs/mount_cli.h"
#include "durafs/progress.h"

#define STATUS_PROG "durafs status"
#define STATUS_TIMEOUT_MS 30000

static void status_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs status MOUNTPOINT [--json] [--ack-conflicts]\n"
		"       durafs status --cache-dir DIR [--json]\n"
		"\n"
		"Show what the mount has not committed yet: pending operations and bytes,\n"
		"uploads in flight with their progress, retries, failures and conflicts with\n"
		"their reasons, and the cache use. --json prints one JSON object whose keys are\n"
		"documented in docs/mount.md.\n"
		"\n"
		"  --json            machine-readable output\n"
		"  --cache-dir DIR   no daemon running: read the journal in DIR\n"
		"  --ack-conflicts   acknowledge the conflicts listed (each local version is\n"
		"                    already committed as its conflict copy); they no longer\n"
		"                    fail `durafs sync --flush`\n");
}

static uint64_t u(const json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));

	return v > 0 ? (uint64_t)v : 0;
}

static const char *s(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v ? v : "";
}

static void print_human(const json_t *st)
{
	const json_t *mnt = json_object_get(st, "mount"), *pend = json_object_get(st, "pending");
	const json_t *cache = json_object_get(st, "cache"), *com = json_object_get(st, "committed");
	const json_t *ups = json_object_get(st, "uploads"), *arr, *x, *rc;
	char b1[32], b2[32], dur[32];
	size_t i;

	prog_fmt_duration((int64_t)u(mnt, "uptime_s"), dur, sizeof(dur));
	if (json_is_true(json_object_get(mnt, "daemon")))
		printf("%s on %s (pid %" PRIu64 ", up %s%s)\n", s(mnt, "source"),
		       s(mnt, "mountpoint"), u(mnt, "pid"), dur,
		       json_is_true(json_object_get(mnt, "read_only")) ? ", read-only" : "");
	else
		printf("%s (no daemon: from the journal)\n", s(mnt, "source"));
	printf("  cache dir    %s\n", s(mnt, "cache_dir"));
	if (json_is_string(json_object_get(mnt, "log")))
		printf("  log          %s\n", s(mnt, "log"));
	if (json_is_true(json_object_get(mnt, "started_offline")))
		printf("  remote       unreachable at mount: serving the stored state, "
		       "uploads wait until it answers\n");
	prog_fmt_bytes(u(pend, "bytes"), b1, sizeof(b1));
	printf("  pending      %" PRIu64 " operation%s, %s", u(pend, "ops"),
	       u(pend, "ops") == 1 ? "" : "s", b1);
	if (u(pend, "retrying_ops"))
		printf(" (%" PRIu64 " retrying)", u(pend, "retrying_ops"));
	printf("; %" PRIu64 " dirty file%s\n", u(pend, "dirty_files"),
	       u(pend, "dirty_files") == 1 ? "" : "s");
	for (i = 0; i < json_array_size(ups); i++) {
		const json_t *up = json_array_get(ups, i);
		uint64_t tot = u(up, "total"), per = u(up, "persisted");

		prog_fmt_bytes(per, b1, sizeof(b1));
		prog_fmt_bytes(tot, b2, sizeof(b2));
		printf("  uploading    %s  %s / %s (%" PRIu64 "%%), attempt %" PRIu64 "%s\n",
		       s(up, "path"), b1, b2, tot ? per * 100 / tot : 100, u(up, "attempts"),
		       json_is_true(json_object_get(up, "snapshot")) ?
		       " (snapshot of open file)" : "");
	}
	prog_fmt_bytes(u(com, "bytes"), b1, sizeof(b1));
	printf("  committed    %" PRIu64 " operation%s, %s since start; %" PRIu64 " retr%s\n",
	       u(com, "ops"), u(com, "ops") == 1 ? "" : "s", b1, u(st, "retries"),
	       u(st, "retries") == 1 ? "y" : "ies");
	arr = json_object_get(st, "retrying");
	for (i = 0; i < json_array_size(arr); i++) {
		x = json_array_get(arr, i);
		printf("  retrying     %s: %s (attempt %" PRIu64 ")\n", s(x, "path"), s(x, "reason"),
		       u(x, "attempts"));
	}
	arr = json_object_get(st, "action_needed");
	for (i = 0; i < json_array_size(arr); i++) {
		x = json_array_get(arr, i);
		printf("  action       %s: Google says %s (%s); what to do: %s\n", s(x, "path"),
		       s(x, "google_reason"), s(x, "state"), s(x, "advice"));
	}
	arr = json_object_get(st, "failed");
	if (json_array_size(arr)) {
		printf("  failed       %zu\n", json_array_size(arr));
		mcli_print_failed(stdout, "    ", arr);
	}
	arr = json_object_get(st, "conflicts");
	if (json_array_size(arr)) {
		printf("  conflicts    %zu\n", json_array_size(arr));
		mcli_print_failed(stdout, "    ", arr);
	}
	prog_fmt_bytes(u(cache, "clean_bytes"), b1, sizeof(b1));
	prog_fmt_bytes(u(cache, "limit"), b2, sizeof(b2));
	printf("  cache        %s clean in %" PRIu64 " file%s (limit %s)", b1,
	       u(cache, "clean_files"), u(cache, "clean_files") == 1 ? "" : "s", b2);
	if (json_object_get(cache, "dirty_bytes")) {
		prog_fmt_bytes(u(cache, "dirty_bytes"), b1, sizeof(b1));
		printf(", %s dirty in %" PRIu64 " file%s", b1, u(cache, "dirty_files"),
		       u(cache, "dirty_files") == 1 ? "" : "s");
	}
	printf("\n");
	rc = json_object_get(st, "remote_changes");
	if (rc) {
		prog_fmt_duration((int64_t)(u(rc, "interval_ms") / 1000), dur, sizeof(dur));
		printf("  remote       polled every %s: %" PRIu64 " poll%s, %" PRIu64
		       " change%s seen, %" PRIu64 " failed poll%s\n", dur, u(rc, "polls"),
		       u(rc, "polls") == 1 ? "" : "s", u(rc, "changes"),
		       u(rc, "changes") == 1 ? "" : "s", u(rc, "failures"),
		       u(rc, "failures") == 1 ? "" : "s");
	}
}

/* Give every failed or retrying op whose message names one of Google's
 * quota or rate reasons the keys "google_reason" and "advice" (what to do),
 * and list them again under "action_needed" (path, op, state, reason,
 * advice), so that scripts need not parse messages. */
static void add_advice(json_t *st)
{
	static const char *const lists[] = { "failed", "retrying" };
	json_t *need = json_array(), *arr, *x, *o;
	const char *reason, *advice;
	size_t i, k;

	if (!need)
		return;
	for (k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
		arr = json_object_get(st, lists[k]);
		for (i = 0; i < json_array_size(arr); i++) {
			x = json_array_get(arr, i);
			reason = be_reason_find(s(x, "reason"));
			advice = be_reason_advice(reason);
			if (!reason || !advice)
				continue;
			json_object_set_new(x, "google_reason", json_string(reason));
			json_object_set_new(x, "advice", json_string(advice));
			o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "path", s(x, "path"),
				      "op", s(x, "op"), "state", s(x, "state"),
				      "google_reason", reason, "advice", advice);
			if (o)
				json_array_append_new(need, o);
		}
	}
	json_object_set_new(st, "action_needed", need);
}

static int show(json_t *st, int json)
{
	add_advice(st);
	if (json) {
		char *txt = json_dumps(st, JSON_INDENT(2) | JSON_SORT_KEYS);

		if (!txt)
			return CLI_FAIL;
		printf("%s\n", txt);
		free(txt);
	} else {
		print_human(st);
	}
	return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

static int status_mount(const char *mountpoint, int json, int ack)
{
	struct ctl_client c;
	json_t *req = NULL, *reply = NULL;
	struct err e;
	int code = CLI_FAIL;

	err_clear(&e);
	if (mcli_connect(mountpoint, &c, &e) < 0) {
		char *dir = e.sys_errno == ENOTCONN ? mcli_dead_cache_dir(mountpoint) : NULL;

		if (dir)
			fprintf(stderr, STATUS_PROG ": %s (its journal: `durafs status --cache-dir "
				"%s`)\n", e.msg, dir);
		else
			fprintf(stderr, STATUS_PROG ": %s%s\n", e.msg, e.sys_errno == ENOTCONN ?
				" (use `durafs status --cache-dir DIR`)" : "");
		free(dir);
		goto out;
	}
	if (ack) {
		req = json_pack("{s:s}", "cmd", "ack_conflicts");
		if (!req || mcli_call(&c, req, STATUS_TIMEOUT_MS, &reply, &e) < 0) {
			fprintf(stderr, STATUS_PROG ": %s\n", e.msg);
			goto out;
		}
		if (!json)
			printf("%" PRIu64 " conflict%s acknowledged\n", u(reply, "resolved"),
			       u(reply, "resolved") == 1 ? "" : "s");
		json_decref(req);
		json_decref(reply);
		req = reply = NULL;
	}
	req = json_pack("{s:s}", "cmd", "status");
	if (!req || mcli_call(&c, req, STATUS_TIMEOUT_MS, &reply, &e) < 0) {
		fprintf(stderr, STATUS_PROG ": %s\n", e.msg);
		goto out;
	}
	code = show(json_object_get(reply, "status"), json);
out:
	json_decref(req);
	json_decref(reply);
	ctl_client_close(&c);
	return code;
}

static int status_cache_dir(const char *dir_arg, int json)
{
	struct mopts mo;
	struct mnt m;
	struct jnl *j = NULL;
	json_t *st = NULL;
	struct err e;
	char *dir = NULL;
	int code = CLI_FAIL;

	memset(&mo, 0, sizeof(mo));
	memset(&m, 0, sizeof(m));
	err_clear(&e);
	log_set_level(LOG_LVL_WARN);
	if (mnt_cache_dir_open(dir_arg, "durafs status MOUNTPOINT", &dir, &j, &mo, &e) < 0) {
		fprintf(stderr, STATUS_PROG ": %s\n", e.msg);
		goto out;
	}
	if (mnt_init(&m, &mo, &e) < 0) {
		fprintf(stderr, STATUS_PROG ": %s\n", e.msg);
		goto out;
	}
	m.jnl = j;
	j = NULL;
	st = mnt_status(&m);
	if (!st) {
		fprintf(stderr, STATUS_PROG ": out of memory\n");
		goto out;
	}
	code = show(st, json);
out:
	json_decref(st);
	mnt_release(&m);
	jnl_close(j);
	mopts_release(&mo);
	free(dir);
	return code;
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "ack-conflicts", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cache_dir = NULL, *mnt = NULL;
	int json = 0, ack = 0, c;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'c': cache_dir = optarg; break;
		case 'a': ack = 1; break;
		case 'h':
			status_usage(stdout);
			return CLI_OK;
		default:
			fprintf(stderr, STATUS_PROG ": unknown option or missing value: '%s' (see "
				"durafs status --help)\n", argv[optind - 1]);
			return CLI_USAGE;
		}
	}
	if (optind < argc)
		mnt = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, STATUS_PROG ": unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	if (!!mnt == !!cache_dir) {
		fprintf(stderr, STATUS_PROG ": give either MOUNTPOINT or --cache-dir DIR\n");
		return CLI_USAGE;
	}
	if (ack && cache_dir) {
		fprintf(stderr, STATUS_PROG ": --ack-conflicts needs the running mount\n");
		return CLI_USAGE;
	}
	return cache_dir ? status_cache_dir(cache_dir, json) : status_mount(mnt, json, ack);
}
