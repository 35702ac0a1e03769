/* CLI side of a running mount: connect to its daemon from the mountpoint,
 * one-shot control requests, and a flush shown with a progress display and
 * a per-file report of whatever was not committed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
