/* Reading credentials files (include/durafs/auth_cred.h): bounded reads,
 * the group/other permission warning, and field access whose errors name
 * the file and the field without ever quoting a value. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durafs/auth_cred.h"

int auth_cred_perm_warn(const char *path, mode_t mode, FILE *out)
{
	if (!(mode & (S_IRWXG | S_IRWXO)))
		return 0;
	if (!out)
		out = stderr;
	fprintf(out, "durafs: warning: credentials file %s is accessible by %s "
		     "(mode %04o); protect it with: chmod 600 %s\n", path,
		(mode & S_IRWXG) && (mode & S_IRWXO) ? "group and others" :
		(mode & S_IRWXG) ? "group" : "others",
		(unsigned)(mode & 07777), path);
	fflush(out);
	return 1;
}

void auth_cred_wipe(char *s, size_t len)
{
	if (!s)
		return;
	explicit_bzero(s, len ? len : strlen(s));
	free(s);
}

int auth_cred_read(const char *path, FILE *warn, char **out, size_t *len, struct err *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd = -1, rc = -1;

	*out = NULL;
	/* O_NONBLOCK: a FIFO must not block the open; regular files ignore it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT) {
			err_set(err, ERR_NOTFOUND, "%s: no such file", path);
			goto out;
		}
		err_sys(err, "%s: cannot open", path);
		goto out;
	}
	if (fstat(fd, &st)) {
		err_sys(err, "%s: cannot stat", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, ERR_INVAL, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > AUTH_CRED_MAX_SIZE) {
		err_set(err, ERR_INVAL, "%s: too large for a credentials file (%lld bytes, "
			"at most %d)", path, (long long)st.st_size, AUTH_CRED_MAX_SIZE);
		goto out;
	}
	auth_cred_perm_warn(path, st.st_mode, warn);
	/* One byte more than allowed, to notice a file that grew. */
	buf = malloc(AUTH_CRED_MAX_SIZE + 2);
	if (!buf) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		n = read(fd, buf + got, AUTH_CRED_MAX_SIZE + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys(err, "%s: cannot read", path);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > AUTH_CRED_MAX_SIZE) {
			err_set(err, ERR_INVAL, "%s: too large for a credentials file", path);
			goto out;
		}
	}
	buf[got] = '\0';
	*out = buf;
	if (len)
		*len = got;
	buf = NULL;
	rc = 0;
out:
	if (buf)
		auth_cred_wipe(buf, got);
	if (fd >= 0)
		close(fd);
	return rc;
}

int auth_cred_parse(const char *buf, size_t len, const char *what, json_t **out,
		    struct err *err)
{
	json_error_t jerr;
	json_t *j = NULL;
	const char *cut;
	char why[80];
	size_t n;

	*out = NULL;
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		/* Jansson's text may end in "near '<input>'": keep what is
		 * before it, never the input itself. */
		cut = strstr(jerr.text, " near ");
		n = cut ? (size_t)(cut - jerr.text) : strlen(jerr.text);
		if (n >= sizeof(why))
			n = sizeof(why) - 1;
		memcpy(why, jerr.text, n);
		why[n] = '\0';
		return err_set(err, ERR_PARSE, "%s: not valid JSON (line %d, column %d%s%s)",
			       what, jerr.line, jerr.column, why[0] ? ": " : "", why);
	}
	if (!json_is_object(j)) {
		json_decref(j);
		return err_set(err, ERR_PARSE, "%s: not a JSON object", what);
	}
	*out = j;
	return 0;
}

int auth_cred_load(const char *path, FILE *warn, json_t **out, struct err *err)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (auth_cred_read(path, warn, &buf, &len, err))
		return -1;
	rc = auth_cred_parse(buf, len, path, out, err);
	auth_cred_wipe(buf, len);
	return rc;
}

int auth_cred_str(const json_t *obj, const char *what, const char *field, int required,
		  const char **out, struct err *err)
{
	json_t *v = json_object_get(obj, field);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		return err_set(err, ERR_PARSE, "%s: field \"%s\" missing", what, field);
	}
	if (!json_is_string(v))
		return err_set(err, ERR_PARSE, "%s: field \"%s\" is not a string", what, field);
	if (!json_string_length(v)) {
		/* gcloud writes "account": "" and the like: optional and
		 * empty is absent. */
		if (!required)
			return 0;
		return err_set(err, ERR_PARSE, "%s: field \"%s\" is empty", what, field);
	}
	if (strlen(json_string_value(v)) != json_string_length(v))
		return err_set(err, ERR_PARSE, "%s: field \"%s\" contains a NUL byte", what,
			       field);
	*out = json_string_value(v);
	return 0;
}

int auth_cred_check_token(const char *tok, const char *what, struct err *err)
{
	const unsigned char *p;

	if (!tok || !*tok)
		return err_set(err, ERR_PARSE, "%s: the access token is empty", what);
	for (p = (const unsigned char *)tok; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return err_set(err, ERR_PARSE, "%s: the access token contains a character "
				       "not allowed in an HTTP header (space, control or "
				       "non-ASCII)", what);
	return 0;
}
