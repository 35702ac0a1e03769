/* durafs' stored login (include/durafs/auth_store.h): where it lives and
 * how it is written (0600, atomic, durable) so a crash or a concurrent
 * reader never sees half a credentials file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "durafs/auth_cred.h"
#include "durafs/auth_store.h"

char *auth_store_config_dir(struct err *err)
{
	const char *x = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	struct passwd *pw;
	char *out = NULL;
	size_t n;

	if (x && x[0] == '/') {
		out = strdup(x);
		if (!out)
			err_set(err, ERR_NOMEM, "out of memory");
		return out;
	}
	if (!home || home[0] != '/') {
		pw = getpwuid(getuid());
		home = pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
	}
	if (!home) {
		err_set(err, ERR_INVAL, "cannot find the home directory: set $HOME or "
			"$XDG_CONFIG_HOME");
		return NULL;
	}
	n = strlen(home) + sizeof("/.config");
	out = malloc(n);
	if (!out) {
		err_set(err, ERR_NOMEM, "out of memory");
		return NULL;
	}
	snprintf(out, n, "%s/.config", home);
	return out;
}

char *auth_store_path(struct err *err)
{
	char *dir = NULL, *out = NULL;
	size_t n;

	dir = auth_store_config_dir(err);
	if (!dir)
		return NULL;
	n = strlen(dir) + sizeof("/durafs/credentials.json");
	out = malloc(n);
	if (!out)
		err_set(err, ERR_NOMEM, "out of memory");
	else
		snprintf(out, n, "%s/durafs/credentials.json", dir);
	free(dir);
	return out;
}

/* mkdir -p of path's parent, new directories 0700. */
static int make_parents(const char *path, struct err *err)
{
	char *dir = NULL, *p, c;
	int rc = -1;

	dir = strdup(path);
	if (!dir)
		return err_set(err, ERR_NOMEM, "out of memory");
	p = strrchr(dir, '/');
	if (!p || p == dir) {
		rc = 0;
		goto out;
	}
	*p = '\0';
	for (p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		c = *p;
		*p = '\0';
		if (mkdir(dir, 0700) && errno != EEXIST) {
			err_sys(err, "cannot create directory %s", dir);
			goto out;
		}
		*p = c;
		if (!c)
			break;
	}
	rc = 0;
out:
	free(dir);
	return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int auth_store_write(const char *path, const void *data, size_t len, struct err *err)
{
	char *tmp = NULL, *dir = NULL, *slash;
	size_t n;
	int fd = -1, dfd = -1, rc = -1, tries;

	if (make_parents(path, err))
		goto out;
	n = strlen(path) + 32;
	tmp = malloc(n);
	if (!tmp) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	for (tries = 0; tries < 100 && fd < 0; tries++) {
		snprintf(tmp, n, "%s.tmp.%ld.%d", path, (long)getpid(), tries);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno != EEXIST) {
			err_sys(err, "cannot create %s", tmp);
			goto out;
		}
	}
	if (fd < 0) {
		err_set(err, ERR_IO, "cannot create a temporary file next to %s", path);
		goto out;
	}
	/* The umask cannot widen 0600, but be explicit. */
	if (fchmod(fd, 0600) || write_all(fd, data, len) || fsync(fd)) {
		err_sys(err, "cannot write %s", tmp);
		goto fail;
	}
	if (close(fd)) {
		fd = -1;
		err_sys(err, "cannot write %s", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path)) {
		err_sys(err, "cannot replace %s", path);
		goto fail;
	}
	/* Make the rename durable. */
	dir = strdup(path);
	if (dir) {
		slash = strrchr(dir, '/');
		if (slash && slash != dir)
			*slash = '\0';
		else if (slash)
			slash[1] = '\0';
		dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0)
			fsync(dfd);
	}
	rc = 0;
	goto out;
fail:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	free(dir);
	free(tmp);
	return rc;
}

int auth_store_save(const char *path, const struct auth_login_record *rec, struct err *err)
{
	char *own = NULL, *text = NULL, when[32];
	json_t *o = NULL;
	struct tm tm;
	time_t now = time(NULL);
	int rc = -1;

	if (!path) {
		own = auth_store_path(err);
		if (!own)
			goto out;
		path = own;
	}
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	o = json_object();
	if (!o || json_object_set_new(o, "type", json_string("authorized_user")) ||
	    json_object_set_new(o, "client_id", json_string(rec->client_id)) ||
	    json_object_set_new(o, "client_secret", json_string(rec->client_secret)) ||
	    json_object_set_new(o, "refresh_token", json_string(rec->refresh_token)) ||
	    json_object_set_new(o, "token_uri", json_string(rec->token_uri)) ||
	    json_object_set_new(o, "scopes", json_string(rec->scopes ? rec->scopes : "")) ||
	    (rec->account && json_object_set_new(o, "account", json_string(rec->account))) ||
	    json_object_set_new(o, "created", json_string(when))) {
		err_set(err, ERR_INVAL, "cannot build the credentials JSON (a field is missing "
			"or not UTF-8)");
		goto out;
	}
	text = json_dumps(o, JSON_INDENT(2));
	if (!text) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (auth_store_write(path, text, strlen(text), err))
		goto out;
	rc = 0;
out:
	auth_cred_wipe(text, 0);
	json_decref(o);
	free(own);
	return rc;
}
