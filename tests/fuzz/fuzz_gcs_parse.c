/* libFuzzer target for the GCS backend's reply parsers (sync/gcs.c): list
 * pages merged into a listing, object resources, and the x-goog-hash, 308
 * Range and Content-Range headers. Malformed input must give an error,
 * never a crash, a leak or an out-of-bounds read. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "durafs/backend.h"
#include "durafs/gcs.h"
#include "durafs/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	struct gcs_page pg;
	struct gcs_obj o;
	struct be_list l = { 0 };
	struct err err;
	char *s;
	uint64_t a, b, t;
	uint32_t crc;
	unsigned char md5[16];
	int hc = 0, hm = 0;
	size_t i;

	if (!quiet) {
		log_set_level(LOG_LVL_ERROR);  /* skipped names warn */
		quiet = 1;
	}
	/* The parsers take (buf, len) without a NUL. */
	if (gcs_parse_list_page((const char *)data, size, &pg, &err) == 0) {
		gcs_list_add_page(&l, "", &pg, &err);
		gcs_list_add_page(&l, "dir/", &pg, &err);
		be_list_finish(&l);
		for (i = 0; i < l.n; i++) {
			if (!be_name_valid(l.v[i].name, strlen(l.v[i].name)))
				abort();  /* an invalid name must never be listed */
			if (i > 0 && strcmp(l.v[i - 1].name, l.v[i].name) >= 0)
				abort();  /* sorted and unique */
		}
		be_list_release(&l);
		gcs_page_release(&pg);
	}
	if (gcs_parse_object((const char *)data, size, &o, &err) == 0) {
		struct be_entry e;

		if (gcs_obj_to_entry(&o, o.name, o.name_len, &e, &err) == 0)
			be_entry_release(&e);
		gcs_obj_release(&o);
	}
	/* Header parsers take C strings. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	gcs_parse_goog_hash(s, &hc, &crc, &hm, md5);
	be_range_persisted(s, &a);
	be_content_range_parse(s, &a, &b, &t);
	{
		struct timespec ts;

		be_parse_rfc3339(s, &ts);
	}
	{
		struct be_version v;

		be_version_parse(s, &v);
	}
	{
		char *bk = NULL, *px = NULL;

		if (gcs_parse_source(s, &bk, &px, &err) == 0) {
			free(bk);
			free(px);
		}
	}
	free(s);
	return 0;
}
