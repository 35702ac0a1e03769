/* libFuzzer target for the emulator's Drive parsers: the first input byte
 * picks the `q` parser (then evaluates the tree against a file), the batch
 * splitter (multipart/mixed of application/http requests) or a multipart
 * upload (boundary, parts, JSON metadata); the rest is what a client would
 * send. Build and run: make fuzz && build/fuzz/fuzz_emu_drive -max_total_time=60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emu_drive_batch.h"
#include "emu_drive_q.h"
#include "emu_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_q(const char *s, size_t n)
{
	char why[200];
	int empty = 0;
	struct dq_node *t = dq_parse(s, n, &empty, why, sizeof(why));
	struct dq_file f;
	json_t *props = json_pack("{s:s}", "k", "v");

	if (!t) {
		if (!empty && !why[0])
			abort();  /* a refusal always says why (or it was ENOMEM) */
		json_decref(props);
		return;
	}
	memset(&f, 0, sizeof(f));
	f.id = "1id";
	f.name = "Report Final.docx";
	f.mime = "application/pdf";
	f.parent = "ROOT";
	f.owned_by_me = 1;
	f.properties = props;
	f.text = "some text";
	f.text_len = 9;
	(void)dq_eval(t, &f, "ROOT", "me@example.com");
	f.name = "";
	f.trashed = 1;
	(void)dq_eval(t, &f, NULL, NULL);
	(void)dq_parent_hint(t);
	(void)dq_has_fulltext(t);
	dq_free(t);
	json_decref(props);
}

static void fuzz_batch(const char *s, size_t n)
{
	const char *nl = memchr(s, '\n', n);
	char bnd[80], why[160];
	struct dbatch b;
	size_t i, k;
	char *ct;

	if (!nl)
		return;
	ct = strndup(s, (size_t)(nl - s));
	if (!ct)
		return;
	if (emu_parse_boundary(ct, bnd, sizeof(bnd)) == 0 &&
	    dbatch_parse(nl + 1, n - (size_t)(nl + 1 - s), bnd, 100, &b, why, sizeof(why)) == 0) {
		if (b.nparts == 0 || b.nparts > 100)
			abort();
		for (i = 0; i < b.nparts; i++) {
			char *rid = dbatch_response_id(b.parts[i].content_id);

			if (!b.parts[i].method || !b.parts[i].target || !b.parts[i].body ||
			    strlen(b.parts[i].method) == 0 || b.parts[i].body[b.parts[i].body_len])
				abort();
			for (k = 0; k < b.parts[i].nh; k++)
				(void)dbatch_header(&b.parts[i], b.parts[i].h[k].name);
			free(rid);
		}
		dbatch_release(&b);
	}
	free(ct);
}

static void fuzz_multipart(const char *s, size_t n)
{
	const char *nl = memchr(s, '\n', n);
	char bnd[80], why[160];
	struct emu_multipart mp;
	json_error_t jerr;
	char *ct;

	if (!nl)
		return;
	ct = strndup(s, (size_t)(nl - s));
	if (!ct)
		return;
	if (emu_parse_boundary(ct, bnd, sizeof(bnd)) == 0 &&
	    emu_parse_multipart(nl + 1, n - (size_t)(nl + 1 - s), bnd, &mp, why, sizeof(why)) == 0 &&
	    mp.nparts >= 1) {
		json_t *meta = json_loadb(mp.part[0].data, mp.part[0].len, 0, &jerr);
		char *q = NULL;

		/* a metadata name, quoted as a client would put it in a query */
		if (json_is_string(json_object_get(meta, "name")) &&
		    strlen(json_string_value(json_object_get(meta, "name"))) < DQ_MAX_LEN / 2 - 16) {
			const char *name = json_string_value(json_object_get(meta, "name"));
			size_t ln = strlen(name), j, o = 0;

			q = malloc(2 * ln + 16);
			if (q) {
				memcpy(q, "name = '", 8);
				o = 8;
				for (j = 0; j < ln; j++) {
					if (name[j] == '\'' || name[j] == '\\')
						q[o++] = '\\';
					q[o++] = name[j];
				}
				q[o++] = '\'';
				q[o] = '\0';
				{
					int empty;
					struct dq_node *t = dq_parse(q, o, &empty, why, sizeof(why));
					struct dq_file f;

					/* a correctly escaped name must parse and match itself */
					if (!t)
						abort();
					memset(&f, 0, sizeof(f));
					f.name = name;
					if (!dq_eval(t, &f, NULL, NULL))
						abort();
					dq_free(t);
				}
			}
		}
		free(q);
		json_decref(meta);
	}
	free(ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	switch (data[0] % 3) {
	case 0: fuzz_q(s, size - 1); break;
	case 1: fuzz_batch(s, size - 1); break;
	default: fuzz_multipart(s, size - 1); break;
	}
	free(s);
	return 0;
}
