/* libFuzzer target for the Drive backend's parsers of remote input
 * (sync/drive_parse.c, sync/drive_names.c): list pages (then the shown
 * names of their files), file resources, generateIds replies and batch
 * replies. Malformed input must give an error, never a crash, a leak or an
 * out-of-bounds read; shown names must be valid, distinct, and map back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/backend.h"
#include "durafs/drive.h"
#include "durafs/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Names for every file of a page, checked like a listing. */
static void check_names(const struct drive_page *pg)
{
	struct drive_name_in *in = calloc(pg->n ? pg->n : 1, sizeof(*in));
	char **out = calloc(pg->n ? pg->n : 1, sizeof(*out)), *back;
	const struct drive_export *x;
	struct err err;
	size_t i, j, skipped;
	int oom;

	if (!in || !out)
		goto done;
	for (i = 0; i < pg->n; i++) {
		x = drive_export_for(pg->files[i].mime);
		in[i].name = pg->files[i].name;
		in[i].name_len = pg->files[i].name_len;
		in[i].id = pg->files[i].id;
		in[i].ext = x ? x->ext : NULL;
		in[i].is_dir = strcmp(pg->files[i].mime, DRIVE_MIME_FOLDER) == 0;
		in[i].ctime = pg->files[i].ctime;
	}
	if (drive_names_assign(in, pg->n, out, NULL, &skipped, &err) < 0)
		goto done;
	for (i = 0; i < pg->n; i++) {
		if (!out[i])
			continue;
		if (!be_name_valid(out[i], strlen(out[i])))
			abort();
		for (j = i + 1; j < pg->n; j++)
			if (out[j] && strcmp(out[i], out[j]) == 0)
				abort();  /* two items shown under one name */
		/* An undeduplicated, unexported name maps back to the Drive name. */
		if (!in[i].ext) {
			char *enc = drive_name_encode(in[i].name, in[i].name_len, &oom);

			if (enc && strcmp(enc, out[i]) == 0) {
				back = drive_name_decode(out[i], strlen(out[i]), &oom);
				if (!back && !oom)
					abort();
				if (back && (strlen(back) != in[i].name_len ||
					     memcmp(back, in[i].name, in[i].name_len) != 0))
					abort();
				free(back);
			}
			free(enc);
		}
	}
done:
	if (out)
		for (i = 0; i < pg->n; i++)
			free(out[i]);
	free(out);
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	struct drive_page pg;
	struct drive_changes_page chg;
	struct drive_file f, c;
	struct drive_batch_part parts[DRIVE_BATCH_MAX];
	struct err err;
	char *ids[8], *s, *ctype;
	size_t n = 0, i;
	int k, oom;

	if (!quiet) {
		log_set_level(LOG_LVL_ERROR);  /* skipped names warn */
		quiet = 1;
	}
	if (drive_parse_list_page((const char *)data, size, &pg, &err) == 0) {
		check_names(&pg);
		drive_page_release(&pg);
	}
	if (drive_parse_file((const char *)data, size, &f, &err) == 0) {
		if (drive_file_copy(&c, &f, &err) == 0)
			drive_file_release(&c);
		drive_file_release(&f);
	}
	if (drive_parse_changes_page((const char *)data, size, &chg, &err) == 0) {
		/* the contract: exactly one of the two tokens, every change has
		 * an id */
		if (!chg.next_token == !chg.new_start)
			abort();
		for (i = 0; i < chg.n; i++)
			if (!chg.v[i].file_id || !chg.v[i].file_id[0])
				abort();
		drive_changes_page_release(&chg);
	} else if (chg.n || chg.v || chg.next_token || chg.new_start) {
		abort();
	}
	s = drive_parse_start_token((const char *)data, size, &err);
	free(s);
	k = drive_parse_ids((const char *)data, size, ids, 8, &err);
	for (i = 0; k > 0 && i < (size_t)k; i++)
		free(ids[i]);
	/* Batch replies: the first line is the Content-Type, the rest the
	 * body. */
	s = memchr(data, '\n', size);
	if (s) {
		size_t clen = (size_t)(s - (const char *)data);

		ctype = malloc(clen + 1);
		if (ctype) {
			memcpy(ctype, data, clen);
			ctype[clen] = '\0';
			drive_parse_batch_reply(ctype, s + 1, size - clen - 1, parts,
						DRIVE_BATCH_MAX, &n, &err);
			free(ctype);
		}
	}
	/* The name mapping on raw bytes: encode then decode is the identity. */
	s = drive_name_encode((const char *)data, size, &oom);
	if (s) {
		char *back = drive_name_decode(s, strlen(s), &oom);

		if (!back && !oom)
			abort();
		if (back && (strlen(back) != size || memcmp(back, data, size) != 0))
			abort();
		free(back);
		free(s);
	}
	return 0;
}
