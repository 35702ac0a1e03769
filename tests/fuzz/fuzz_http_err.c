/* libFuzzer target for the HTTP layer's parsers of remote input
 * (sync/http.c): http_status_to_err on any status and error body (Google
 * JSON, OAuth JSON, HTML, binary), http_parse_retry_after on any header
 * value, and http_redact_url on any URL. Beyond "no crash, no leak, no
 * out-of-bounds read", it checks the contract: the message and reason are
 * printable ASCII and NUL-terminated, the status is kept, the code is the
 * documented one for the status, and a Retry-After delay is never
 * negative (but -1) nor past the saturation point. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "durafs/err.h"
#include "durafs/http.h"
#include "durafs/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_printable(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	if (n == cap)
		abort();  /* not NUL-terminated */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			abort();
}

/* The code http_status_to_err must give for a status whatever the body
 * says, or -1 when it depends on the body (400, 403). */
static int fixed_code(long status)
{
	switch (status) {
	case 401: return ERR_AUTH;
	case 404: return ERR_NOTFOUND;
	case 409: return ERR_EXISTS;
	case 410: return ERR_GONE;
	case 412: return ERR_CONFLICT;
	case 416: return ERR_RANGE;
	case 429: return ERR_RATE;
	case 400: case 403: return -1;
	default: return ERR_HTTP;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long common[] = { 400, 401, 403, 404, 409, 410, 412, 416, 429,
				       500, 503 };
	static int quiet;
	const char *body;
	size_t blen;
	struct err e;
	long status, ms;
	char *s, out[512], tiny[8];
	int want;

	if (!quiet) {
		log_set_level(LOG_LVL_ERROR);
		quiet = 1;
	}
	/* First two bytes pick the status: a common one (most of the time)
	 * or any number 0..65535; the rest is the body, without a NUL. */
	if (size >= 2) {
		unsigned v = (unsigned)data[0] << 8 | data[1];

		status = v % 4 ? common[v % (sizeof(common) / sizeof(common[0]))] : (long)v;
		body = (const char *)data + 2;
		blen = size - 2;
	} else {
		status = 500;
		body = size ? (const char *)data : NULL;
		blen = size;
	}
	memset(&e, 0x5a, sizeof(e));  /* no reliance on a zeroed struct */
	if (http_status_to_err(status, body, blen, &e) != -1)
		abort();
	check_printable(e.msg, sizeof(e.msg));
	check_printable(e.reason, sizeof(e.reason));
	if (e.http_status != status)
		abort();
	want = fixed_code(status);
	if (want >= 0 && e.code != want)
		abort();
	if (status == 400 && e.code != ERR_INVAL && e.code != ERR_AUTH)
		abort();
	if (status == 403 && e.code != ERR_RATE && e.code != ERR_QUOTA &&
	    e.code != ERR_NOSPC && e.code != ERR_AUTH && e.code != ERR_PERM)
		abort();
	http_status_to_err(status, body, blen, NULL);  /* err may be NULL */

	/* Header values and URLs are C strings. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	/* delta-seconds saturate near 10^9 s, dates at 10^8 s: never an
	 * overflow, never negative but -1 */
	ms = http_parse_retry_after(s, (time_t)1700000000);
	if (ms < -1 || ms > 1000000000L * 1000L)
		abort();
	ms = http_parse_retry_after(s, (time_t)0);
	if (ms < -1 || ms > 1000000000L * 1000L)
		abort();
	http_redact_url(s, out, sizeof(out));
	if (strnlen(out, sizeof(out)) == sizeof(out))
		abort();
	http_redact_url(s, tiny, sizeof(tiny));
	if (strnlen(tiny, sizeof(tiny)) == sizeof(tiny))
		abort();
	http_redact_url(s, tiny, 1);
	if (tiny[0] != '\0')
		abort();
	free(s);
	return 0;
}
