/* CLI side of a running mount: connect to its daemon from the mountpoint,
 * one-shot control requests, and a flush shown with a progress display and
 * a per-file report of whatever was not committed. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "durafs/cli.h"
#include "durafs/mopts.h"
#include "durafs/mount_cli.h"
#include "durafs/progress.h"

int mcli_connect(const char *mountpoint, struct ctl_client *c, struct err *err)
{
	char *path = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (ctl_find(mountpoint, &path, err) < 0)
		return -1;
	rc = ctl_client_open(c, path, err);
	free(path);
	return rc;
}

/* Undo mountinfo's octal escapes (\040 for a space...) in place. */
static void unescape_octal(char *s)
{
	char *w = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*w++ = *s++;
		}
	}
	*w = '\0';
}

/* mountpoint made absolute with its parent resolved (a dead mount's own
 * root cannot be stat'ed, so realpath fails on it), as `durafs mount`
 * recorded it. malloc'd, or NULL. */
static char *dead_mount_path(const char *mountpoint)
{
	char *copy = strdup(mountpoint), *slash, *r = NULL;
	char parent[PATH_MAX];
	const char *base;
	size_t len;

	if (!copy)
		return NULL;
	len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	slash = strrchr(copy, '/');
	base = slash ? slash + 1 : copy;
	if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(copy, "/")) {
		r = realpath(copy, NULL);
		goto out;
	}
	if (slash && slash != copy)
		*slash = '\0';  /* copy is now the parent; base still follows it */
	if (!realpath(!slash ? "." : slash == copy ? "/" : copy, parent))
		goto out;
	if (asprintf(&r, "%s/%s", strcmp(parent, "/") ? parent : "", base) < 0)
		r = NULL;
out:
	free(copy);
	return r;
}

char *mcli_dead_cache_dir(const char *mountpoint)
{
	char *abs = dead_mount_path(mountpoint), *line = NULL, *dir = NULL, *jpath = NULL;
	size_t cap = 0;
	FILE *f = NULL;
	struct stat st;

	if (!abs)
		goto out;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		goto out;
	while (!dir && getline(&line, &cap, f) >= 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS */
		char *save = NULL, *mp = NULL, *tok, *sep = strstr(line, " - ");
		int i;

		if (!sep)
			continue;
		*sep = '\0';
		tok = strtok_r(line, " ", &save);
		for (i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		mp = tok;
		if (!mp)
			continue;
		unescape_octal(mp);
		if (strcmp(mp, abs))
			continue;
		save = NULL;
		tok = strtok_r(sep + 3, " ", &save);
		if (!tok || strcmp(tok, "fuse.durafs"))
			continue;
		tok = strtok_r(NULL, " ", &save);
		if (!tok || strncmp(tok, "durafs:", 7))
			continue;
		unescape_octal(tok);
		dir = mopts_default_cache_dir(tok + 7, abs);
	}
	if (!dir)
		goto out;
	if (asprintf(&jpath, "%s/journal.db", dir) < 0) {
		jpath = NULL;
		free(dir);
		dir = NULL;
		goto out;
	}
	if (stat(jpath, &st) < 0) {
		free(dir);
		dir = NULL;
	}
out:
	if (f)
		fclose(f);
	free(line);
	free(jpath);
	free(abs);
	return dir;
}

int mcli_call(struct ctl_client *c, const json_t *req, int64_t timeout_ms, json_t **reply,
	      struct err *err)
{
	json_t *msg = NULL;
	int rc;

	*reply = NULL;
	if (ctl_client_send(c, req, err) < 0)
		return -1;
	for (;;) {
		const char *res;

		rc = ctl_client_recv(c, timeout_ms, &msg, err);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return err_set(err, ERR_IO, "the mount's daemon closed the connection");
		res = json_string_value(json_object_get(msg, "result"));
		if (!res) {
			json_decref(msg);
			continue;
		}
		*reply = msg;
		if (strcmp(res, "ok")) {
			const char *why = json_string_value(json_object_get(msg, "error"));

			return err_set(err, ERR_INVAL, "%s", why ? why : "the daemon reported an error");
		}
		return 0;
	}
}

void mcli_print_failed(FILE *out, const char *indent, const json_t *failed)
{
	size_t i;

	for (i = 0; i < json_array_size(failed); i++) {
		const json_t *f = json_array_get(failed, i);
		const char *path = json_string_value(json_object_get(f, "path"));
		const char *path2 = json_string_value(json_object_get(f, "path2"));
		const char *op = json_string_value(json_object_get(f, "op"));
		const char *state = json_string_value(json_object_get(f, "state"));
		const char *code = json_string_value(json_object_get(f, "error"));
		const char *reason = json_string_value(json_object_get(f, "reason"));
		const char *copy = json_string_value(json_object_get(f, "copy"));

		if (state && !strcmp(state, "conflict")) {
			fprintf(out, "%s%s: conflict: changed remotely; the remote version was kept "
				"and yours was committed as %s\n", indent, path ? path : "?",
				copy ? copy : "a conflict copy");
			continue;
		}
		fprintf(out, "%s%s%s%s: %s %s: %s%s%s\n", indent, path ? path : "?",
			path2 ? " -> " : "", path2 ? path2 : "", op ? op : "change",
			state ? state : "failed", code && *code ? code : "error",
			reason && *reason ? ": " : "", reason ? reason : "");
	}
}

static uint64_t jint(const json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));

	return v > 0 ? (uint64_t)v : 0;
}

int mcli_flush(struct ctl_client *c, const char *prog_name, int64_t timeout_ms, int retry,
	       int json, FILE *out)
{
	json_t *req = NULL, *msg = NULL, *p;
	struct prog pg;
	struct err e;
	int code = CLI_FAIL, rc;

	err_clear(&e);
	req = json_pack("{s:s}", "cmd", "flush");
	if (!req) {
		fprintf(stderr, "%s: out of memory\n", prog_name);
		return CLI_FAIL;
	}
	if (timeout_ms >= 0)
		json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
	if (retry)
		json_object_set_new(req, "retry", json_true());
	if (ctl_client_send(c, req, &e) < 0) {
		fprintf(stderr, "%s: %s\n", prog_name, e.msg);
		goto out;
	}
	prog_init(&pg, out, prog_mode_for(out, json), "flush");
	for (;;) {
		const char *res;

		json_decref(msg);
		msg = NULL;
		rc = ctl_client_recv(c, -1, &msg, &e);
		if (rc <= 0) {
			prog_finish(&pg);
			fprintf(stderr, "%s: %s\n", prog_name, rc == 0 ?
				"the mount's daemon went away during the flush (the changes stay "
				"in its journal)" : e.msg);
			goto out;
		}
		p = json_object_get(msg, "progress");
		if (p) {
			prog_update(&pg, jint(p, "ops_left"), jint(p, "bytes_left"), jint(p, "failed"));
			continue;
		}
		res = json_string_value(json_object_get(msg, "result"));
		if (!res)
			continue;
		prog_finish(&pg);
		if (json) {
			char *s = json_dumps(msg, JSON_COMPACT);

			if (s)
				fprintf(out, "%s\n", s);
			free(s);
			fflush(out);
		}
		if (!strcmp(res, "ok")) {
			code = CLI_OK;
			goto out;
		}
		{
			const json_t *failed = json_object_get(msg, "failed");
			const char *why = json_string_value(json_object_get(msg, "error"));

			if (json_is_array(failed) && json_array_size(failed)) {
				fprintf(stderr, "%s: %zu change%s not committed:\n", prog_name,
					json_array_size(failed), json_array_size(failed) == 1 ? "" : "s");
				mcli_print_failed(stderr, "  ", failed);
				fprintf(stderr, "%s: the data stays in the cache and the journal; see "
					"`durafs status`\n", prog_name);
			} else {
				fprintf(stderr, "%s: %s\n", prog_name, why ? why : "flush failed");
			}
		}
		goto out;
	}
out:
	json_decref(msg);
	json_decref(req);
	return code;
}

int mcli_parse_timeout(const char *s, int64_t *ms)
{
	return mopts_parse_duration(s, ms);
}
