/* Mount options: the command line of `durafs mount` (positionals, -o lists,
 * --cache-dir, --foreground) parsed and validated into struct mopts, with
 * the size/duration syntax and the default cache directory. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durafs/gcs.h"
#include "durafs/mopts.h"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define MS_PER_S 1000ll
#define MAX_SIZE (1ull << 62)
#define MAX_DURATION_MS (366ll * 24 * 3600 * 1000)
#define MAX_WORKERS 256
#define MAX_CHUNK (2ull * GIB)

void mopts_defaults(struct mopts *o)
{
	memset(o, 0, sizeof(*o));
	o->cache_size = 10 * GIB;
	o->min_free_space = 1 * GIB;
	o->upload_workers = 8;
	o->chunk_size = 16 * MIB;
	o->writeback_delay_ms = 2 * MS_PER_S;
	o->dir_cache_ttl_ms = 60 * MS_PER_S;
	o->file_mode = 0644;
	o->dir_mode = 0755;
	o->conflict = MOPTS_CONFLICT_KEEP_BOTH;
	o->fsync_timeout_ms = 10 * 60 * MS_PER_S;
	o->retry_max_ms = 30 * MS_PER_S;
	o->small_max = 8 * MIB;
	o->docs = MOPTS_DOCS_EXPORT;
	o->delete_mode = MOPTS_DELETE_TRASH;
	o->layout = MOPTS_LAYOUT_PLAIN;
	o->stream_uploads = MOPTS_STREAM_ON;
	o->poll_interval_ms = 60 * MS_PER_S;
	o->prefetch_workers = 16;
	o->open_upload_interval_ms = 60 * MS_PER_S;
}

void mopts_release(struct mopts *o)
{
	if (!o)
		return;
	free(o->source);
	free(o->mountpoint);
	free(o->cache_dir);
	free(o->log_file);
	free(o->endpoint);
	free(o->token_file);
	free(o->credentials);
	memset(o, 0, sizeof(*o));
}

/* ---- numbers ------------------------------------------------------------ */

/* Parse "DIGITS[.DIGITS]" at *s into a value scaled by 1000 (milli-units),
 * advancing *s. -1 when there is no digit or it overflows. */
static int parse_milli(const char **s, uint64_t *out)
{
	const char *p = *s;
	uint64_t whole = 0, frac = 0, scale = 100;
	int digits = 0;

	while (isdigit((unsigned char)*p)) {
		if (whole > (UINT64_MAX / 1000 - 9) / 10)
			return -1;
		whole = whole * 10 + (uint64_t)(*p - '0');
		p++;
		digits++;
	}
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			frac += (uint64_t)(*p - '0') * scale;
			scale /= 10;
			p++;
			digits++;
		}
	}
	if (!digits)
		return -1;
	*out = whole * 1000 + frac;
	*s = p;
	return 0;
}

int mopts_parse_size(const char *s, uint64_t *out)
{
	uint64_t milli = 0, mult = 1;
	const char *p = s;

	if (!s || parse_milli(&p, &milli) < 0)
		return -1;
	switch (toupper((unsigned char)*p)) {
	case '\0': break;
	case 'B': mult = 1; p++; break;
	case 'K': mult = KIB; p++; break;
	case 'M': mult = MIB; p++; break;
	case 'G': mult = GIB; p++; break;
	case 'T': mult = 1024 * GIB; p++; break;
	default: return -1;
	}
	if (mult > 1) {
		/* K, KB, KiB, Ki */
		if (*p == 'i' || *p == 'I')
			p++;
		if (*p == 'b' || *p == 'B')
			p++;
	}
	if (*p)
		return -1;
	if (milli / 1000 > MAX_SIZE / mult)
		return -1;
	/* milli * mult / 1000 without overflow: split whole and fraction */
	*out = (milli / 1000) * mult + (milli % 1000) * mult / 1000;
	if (*out > MAX_SIZE)
		return -1;
	return 0;
}

int mopts_parse_duration(const char *s, int64_t *out_ms)
{
	uint64_t milli = 0, mult_ms = 1000;
	const char *p = s;

	if (!s || parse_milli(&p, &milli) < 0)
		return -1;
	if (!*p || !strcmp(p, "s") || !strcmp(p, "sec"))
		mult_ms = 1000;
	else if (!strcmp(p, "ms"))
		mult_ms = 1;
	else if (!strcmp(p, "m") || !strcmp(p, "min"))
		mult_ms = 60 * 1000;
	else if (!strcmp(p, "h"))
		mult_ms = 3600 * 1000;
	else
		return -1;
	/* milli is in thousandths of the unit */
	if (milli / 1000 > (uint64_t)MAX_DURATION_MS / mult_ms)
		return -1;
	milli = milli * mult_ms / 1000;
	if (milli > (uint64_t)MAX_DURATION_MS)
		return -1;
	*out_ms = (int64_t)milli;
	return 0;
}

static int parse_uint(const char *s, unsigned long long max, int base, unsigned long long *out)
{
	char *end = NULL;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

/* ---- paths ---------------------------------------------------------------- */

char *mopts_abs_path(const char *path)
{
	char cwd[PATH_MAX];
	char *r = NULL;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (asprintf(&r, "%s/%s", strcmp(cwd, "/") ? cwd : "", path) < 0)
		return NULL;
	return r;
}

char *mopts_default_cache_dir(const char *source, const char *mountpoint)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char base[PATH_MAX], name[80];
	char *r = NULL;
	uint32_t h = 2166136261u;  /* FNV-1a */
	const char *p;
	size_t n = 0;

	if (!source || !mountpoint)
		return NULL;
	if (xdg && xdg[0] == '/')
		snprintf(base, sizeof(base), "%s/durafs", xdg);
	else if (home && home[0] == '/')
		snprintf(base, sizeof(base), "%s/.cache/durafs", strcmp(home, "/") ? home : "");
	else
		return NULL;
	for (p = source; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ 0) * 16777619u;
	for (p = mountpoint; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	/* sanitized source: the part after the scheme, [A-Za-z0-9._-] kept,
	 * anything else '_', at most 48 characters */
	p = strstr(source, "://");
	p = p ? p + 3 : source;
	for (; *p && n < 48; p++) {
		unsigned char c = (unsigned char)*p;

		name[n++] = (isalnum(c) || c == '.' || c == '-' || c == '_') ? (char)c : '_';
	}
	if (n == 0 || (n <= 2 && name[0] == '.'))
		name[n++] = '_';
	name[n] = '\0';
	if (asprintf(&r, "%s/%s-%08x", base, name, h) < 0)
		return NULL;
	return r;
}

/* ---- -o options ------------------------------------------------------------ */

/* Options of mount(8), fstab and systemd that mean nothing to us. */
static const char *const ignored[] = {
	"_netdev", "noauto", "auto", "nofail", "user", "users", "nouser", "owner",
	"group", "defaults", "dev", "nodev", "suid", "nosuid", "exec", "noexec",
	"async", "atime", "noatime", "relatime", "norelatime", "strictatime",
	"nostrictatime", "diratime", "nodiratime", "lazytime", "nolazytime",
	"default_permissions", "nobootwait", "bg", "fg", "loud", "silent",
	NULL,
};
static const char *const ignored_prefixes[] = {
	"x-", "comment=", "fsname=", "subtype=", NULL,
};

enum okind { O_FLAG, O_SIZE, O_DUR, O_INT, O_ID, O_MODE, O_PATH, O_URL, O_CONFLICT, O_CHOICE };

struct odef {
	const char *name;
	enum okind kind;
	size_t off;
	const char *help;
	const char *choices;        /* O_CHOICE: "a|b|c", stored as the index */
};

#define OFF(f) offsetof(struct mopts, f)

static const struct odef odefs[] = {
	{ "cache_size", O_SIZE, OFF(cache_size), "clean read cache limit [10G]" , NULL },
	{ "min_free_space", O_SIZE, OFF(min_free_space),
	  "free space kept on the cache filesystem [1G]" , NULL },
	{ "upload_workers", O_INT, OFF(upload_workers), "parallel uploads, 1-256 [8]" , NULL },
	{ "chunk_size", O_SIZE, OFF(chunk_size),
	  "resumable upload chunk, a multiple of 256K [16M]" , NULL },
	{ "small_file_max", O_SIZE, OFF(small_max),
	  "files smaller go in one request, larger ones resumable [8M]" , NULL },
	{ "writeback_delay", O_DUR, OFF(writeback_delay_ms),
	  "wait after close before uploading (coalesces rewrites) [2s]" , NULL },
	{ "dir_cache_ttl", O_DUR, OFF(dir_cache_ttl_ms), "directory listings kept fresh for [60s]" , NULL },
	{ "sync_on_close", O_FLAG, OFF(sync_on_close), "close() waits for the upload, like fsync" , NULL },
	{ "ro", O_FLAG, OFF(ro), "read-only mount" , NULL },
	{ "rw", O_FLAG, OFF(ro), "read-write mount [default]" , NULL },
	{ "allow_other", O_FLAG, OFF(allow_other), "let other users access the mount" , NULL },
	{ "uid", O_ID, OFF(uid), "owner shown for every file [mounting user]" , NULL },
	{ "gid", O_ID, OFF(gid), "group shown for every file [mounting user's]" , NULL },
	{ "file_mode", O_MODE, OFF(file_mode), "permissions of files, octal [0644]" , NULL },
	{ "dir_mode", O_MODE, OFF(dir_mode), "permissions of directories, octal [0755]" , NULL },
	{ "conflict", O_CONFLICT, OFF(conflict),
	  "keep-both (commit ours as NAME.conflict-STAMP) or fail [keep-both]" , NULL },
	{ "fsync_timeout", O_DUR, OFF(fsync_timeout_ms),
	  "fsync gives EIO after waiting this long (the change stays queued) [10min]" , NULL },
	{ "retry_max", O_DUR, OFF(retry_max_ms),
	  "longest pause between attempts of a failing upload [30s]" , NULL },
	{ "log_file", O_PATH, OFF(log_file),
	  "log here [stderr with --foreground, else CACHE_DIR/durafs.log]" , NULL },
	{ "debug", O_FLAG, OFF(debug), "debug logging (secrets are never logged)" , NULL },
	{ "endpoint", O_URL, OFF(endpoint),
	  "API endpoint URL [$STORAGE_EMULATOR_HOST, else Google]" , NULL },
	{ "token_file", O_PATH, OFF(token_file), "file holding an OAuth access token" , NULL },
	{ "credentials", O_PATH, OFF(credentials),
	  "service-account key or authorized_user JSON file" , NULL },
	{ "no_auth", O_FLAG, OFF(no_auth),
	  "send no credentials (emulators, public buckets)" , NULL },
	{ "docs", O_CHOICE, OFF(docs),
	  "Drive: Google Docs shown read-only as exports, or hidden [export]", "export|hide" },
	{ "delete", O_CHOICE, OFF(delete_mode),
	  "Drive: unlink moves to the trash, or deletes for good [trash]", "trash|permanent" },
	{ "layout", O_CHOICE, OFF(layout),
	  "Drive: colab shows MyDrive/ and Shareddrives/NAME/ as Colab does [plain]", "plain|colab" },
	{ "poll_interval", O_DUR, OFF(poll_interval_ms),
	  "look for remote changes this often (Drive changes; 0 = never) [60s]" , NULL },
	{ "prefetch_workers", O_INT, OFF(prefetch_workers),
	  "parallel downloads of `durafs cache warm`, 1-256 [16]" , NULL },
	{ "open_upload_interval", O_DUR, OFF(open_upload_interval_ms),
	  "snapshot-upload files kept open and dirty this often, 0 off [60s]" , NULL },
	{ "splice_writes", O_FLAG, OFF(splice_writes),
	  "large writes move into the cache without a copy; small requests cost more" , NULL },
	{ "stream_uploads", O_CHOICE, OFF(stream_uploads),
	  "GCS: upload a file written sequentially while it is written [on]", "on|off" },
};

#define NODEFS (sizeof(odefs) / sizeof(odefs[0]))

void mopts_help(FILE *out)
{
	size_t i;

	for (i = 0; i < NODEFS; i++) {
		const char *arg = "";

		switch (odefs[i].kind) {
		case O_SIZE: arg = "=SIZE"; break;
		case O_DUR: arg = "=DURATION"; break;
		case O_INT: case O_ID: arg = "=N"; break;
		case O_MODE: arg = "=OCTAL"; break;
		case O_PATH: arg = "=PATH"; break;
		case O_URL: arg = "=URL"; break;
		case O_CONFLICT: arg = "=keep-both|fail"; break;
		case O_CHOICE: arg = "="; break;
		case O_FLAG: break;
		}
		if (odefs[i].kind == O_CHOICE)
			fprintf(out, "  %s=%-*s %s\n", odefs[i].name,
				(int)(21 - strlen(odefs[i].name)), odefs[i].choices, odefs[i].help);
		else
			fprintf(out, "  %s%-*s %s\n", odefs[i].name,
				(int)(22 - strlen(odefs[i].name)), arg, odefs[i].help);
	}
}

static int is_ignored(const char *opt)
{
	size_t i;

	for (i = 0; ignored[i]; i++)
		if (!strcmp(opt, ignored[i]))
			return 1;
	for (i = 0; ignored_prefixes[i]; i++)
		if (!strncmp(opt, ignored_prefixes[i], strlen(ignored_prefixes[i])))
			return 1;
	return 0;
}

static int set_str(char **field, const char *val, int make_abs, const char *opt, struct err *err)
{
	char *v;

	if (!*val)
		return err_set(err, ERR_INVAL, "option '%s' needs a value", opt);
	v = make_abs ? mopts_abs_path(val) : strdup(val);
	if (!v)
		return err_set(err, ERR_NOMEM, "out of memory");
	free(*field);
	*field = v;
	return 0;
}

/* An O_CHOICE value: the index of val among d->choices ("a|b|c"). */
static int set_choice(int *field, const struct odef *d, const char *val, const char *opt,
		      struct err *err)
{
	const char *c = d->choices, *bar;
	size_t len, vlen = strlen(val);
	int i;

	for (i = 0; c && *c; i++) {
		bar = strchr(c, '|');
		len = bar ? (size_t)(bar - c) : strlen(c);
		if (len == vlen && !strncmp(c, val, len)) {
			*field = i;
			return 0;
		}
		c = bar ? bar + 1 : NULL;
	}
	return err_set(err, ERR_INVAL, "mount option '%s': expected one of %s", opt, d->choices);
}

/* One option "name" or "name=value". */
static int apply_opt(struct mopts *o, const char *opt, struct err *err)
{
	const char *eq = strchr(opt, '=');
	size_t nlen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *val = eq ? eq + 1 : NULL;
	const struct odef *d = NULL;
	unsigned long long u = 0;
	uint64_t sz = 0;
	int64_t ms = 0;
	char *base = (char *)o;
	size_t i;

	if (!*opt)
		return 0;  /* "a,,b" */
	for (i = 0; i < NODEFS; i++) {
		if (strlen(odefs[i].name) == nlen && !strncmp(odefs[i].name, opt, nlen)) {
			d = &odefs[i];
			break;
		}
	}
	if (!d) {
		if (is_ignored(opt))
			return 0;
		return err_set(err, ERR_INVAL, "unknown mount option '%s' (see durafs mount --help)",
			       opt);
	}
	if (d->kind == O_FLAG) {
		if (val)
			return err_set(err, ERR_INVAL, "mount option '%.*s' takes no value",
				       (int)nlen, opt);
		if (!strcmp(d->name, "rw"))
			o->ro = 0;
		else
			*(int *)(base + d->off) = 1;
		return 0;
	}
	if (!val || !*val)
		return err_set(err, ERR_INVAL, "mount option '%.*s' needs a value (%.*s=...)",
			       (int)nlen, opt, (int)nlen, opt);
	switch (d->kind) {
	case O_SIZE:
		if (mopts_parse_size(val, &sz) < 0)
			return err_set(err, ERR_INVAL, "mount option '%s': not a size (e.g. 512K, "
				       "16M, 10G)", opt);
		if (!strcmp(d->name, "chunk_size") &&
		    (sz == 0 || sz % (256 * KIB) || sz > MAX_CHUNK))
			return err_set(err, ERR_INVAL, "mount option '%s': the chunk size must be a "
				       "positive multiple of 256K, at most 2G", opt);
		*(uint64_t *)(base + d->off) = sz;
		return 0;
	case O_DUR:
		if (mopts_parse_duration(val, &ms) < 0)
			return err_set(err, ERR_INVAL, "mount option '%s': not a duration (e.g. "
				       "500ms, 2s, 10m, 1h)", opt);
		if ((!strcmp(d->name, "fsync_timeout") || !strcmp(d->name, "retry_max")) && ms <= 0)
			return err_set(err, ERR_INVAL, "mount option '%s': must be more than 0", opt);
		*(int64_t *)(base + d->off) = ms;
		return 0;
	case O_INT:
		if (parse_uint(val, MAX_WORKERS, 10, &u) < 0 || u < 1)
			return err_set(err, ERR_INVAL, "mount option '%s': expected a number from 1 "
				       "to %d", opt, MAX_WORKERS);
		*(int *)(base + d->off) = (int)u;
		return 0;
	case O_ID:
		if (parse_uint(val, (unsigned long long)UINT32_MAX - 1, 10, &u) < 0)
			return err_set(err, ERR_INVAL, "mount option '%s': expected a numeric id",
				       opt);
		if (!strcmp(d->name, "uid")) {
			o->uid = (uid_t)u;
			o->has_uid = 1;
		} else {
			o->gid = (gid_t)u;
			o->has_gid = 1;
		}
		return 0;
	case O_MODE:
		if (parse_uint(val, 07777, 8, &u) < 0)
			return err_set(err, ERR_INVAL, "mount option '%s': expected an octal mode "
				       "such as 0644", opt);
		*(mode_t *)(base + d->off) = (mode_t)u;
		return 0;
	case O_PATH:
		return set_str((char **)(base + d->off), val, 1, opt, err);
	case O_URL:
		if (strncmp(val, "http://", 7) && strncmp(val, "https://", 8))
			return err_set(err, ERR_INVAL, "mount option '%s': expected an http:// or "
				       "https:// URL", opt);
		return set_str((char **)(base + d->off), val, 0, opt, err);
	case O_CONFLICT:
		if (!strcmp(val, "keep-both") || !strcmp(val, "keep_both"))
			o->conflict = MOPTS_CONFLICT_KEEP_BOTH;
		else if (!strcmp(val, "fail"))
			o->conflict = MOPTS_CONFLICT_FAIL;
		else
			return err_set(err, ERR_INVAL, "mount option '%s': expected keep-both or "
				       "fail", opt);
		return 0;
	case O_CHOICE:
		return set_choice((int *)(base + d->off), d, val, opt, err);
	case O_FLAG:
		break;
	}
	return 0;
}

/* A comma-separated list. */
static int apply_list(struct mopts *o, const char *list, struct err *err)
{
	char *copy = strdup(list), *p, *comma;
	int rc = 0;

	if (!copy)
		return err_set(err, ERR_NOMEM, "out of memory");
	for (p = copy; p; p = comma) {
		comma = strchr(p, ',');
		if (comma)
			*comma++ = '\0';
		if (apply_opt(o, p, err) < 0) {
			rc = -1;
			break;
		}
	}
	free(copy);
	return rc;
}

static int check_source(const char *src, struct err *err)
{
	char *bucket = NULL, *prefix = NULL;
	struct err e;
	int rc;

	if (!strncmp(src, "gs://", 5)) {
		err_clear(&e);
		rc = gcs_parse_source(src, &bucket, &prefix, &e);
		free(bucket);
		free(prefix);
		if (rc < 0)
			return err_set(err, ERR_INVAL, "bad source '%s': %s", src, e.msg);
		return 0;
	}
	if (!strncmp(src, "drive:", 6))
		return 0;
	return err_set(err, ERR_INVAL, "bad source '%s': expected gs://BUCKET[/PREFIX] or "
		       "drive:[PATH]", src);
}

static int resolve_mountpoint(const char *arg, char **out, struct err *err)
{
	char buf[PATH_MAX];
	struct stat st;

	if (!realpath(arg, buf) || stat(buf, &st) < 0) {
		if (errno == ENOTCONN)
			return err_set(err, ERR_INVAL, "mountpoint '%s': a mount whose daemon is gone "
				       "is left there (run `durafs unmount %s`)", arg, arg);
		if (errno == ENOENT)
			return err_set(err, ERR_INVAL, "mountpoint '%s' does not exist (create "
				       "the directory first: mkdir -p '%s')", arg, arg);
		return err_sys(err, "mountpoint '%s'", arg);
	}
	if (!S_ISDIR(st.st_mode))
		return err_set(err, ERR_INVAL, "mountpoint '%s' is not a directory", arg);
	*out = strdup(buf);
	if (!*out)
		return err_set(err, ERR_NOMEM, "out of memory");
	return 0;
}

int mopts_parse(int argc, char **argv, struct mopts *o, struct err *err)
{
	const char *pos[2] = { NULL, NULL };
	const char *cache_dir = NULL;
	int npos = 0, i, only_pos = 0;

	mopts_defaults(o);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (only_pos || a[0] != '-' || !a[1]) {
			if (npos >= 2) {
				err_set(err, ERR_INVAL, "unexpected argument '%s' (usage: durafs mount "
					"SOURCE MOUNTPOINT [-o opt,...])", a);
				goto fail;
			}
			pos[npos++] = a;
		} else if (!strcmp(a, "--")) {
			only_pos = 1;
		} else if (!strcmp(a, "-o")) {
			if (i + 1 >= argc) {
				err_set(err, ERR_INVAL, "-o needs a list of options");
				goto fail;
			}
			if (apply_list(o, argv[++i], err) < 0)
				goto fail;
		} else if (!strncmp(a, "-o", 2)) {
			if (apply_list(o, a + 2, err) < 0)
				goto fail;
		} else if (!strcmp(a, "--cache-dir")) {
			if (i + 1 >= argc || !argv[i + 1][0]) {
				err_set(err, ERR_INVAL, "--cache-dir needs a directory");
				goto fail;
			}
			cache_dir = argv[++i];
		} else if (!strncmp(a, "--cache-dir=", 12)) {
			cache_dir = a + 12;
			if (!*cache_dir) {
				err_set(err, ERR_INVAL, "--cache-dir needs a directory");
				goto fail;
			}
		} else if (!strcmp(a, "--foreground") || !strcmp(a, "-f")) {
			o->foreground = 1;
		} else {
			err_set(err, ERR_INVAL, "unknown option '%s' (see durafs mount --help)", a);
			goto fail;
		}
	}
	if (npos < 2) {
		err_set(err, ERR_INVAL, "missing %s (usage: durafs mount SOURCE MOUNTPOINT "
			"[-o opt,...])", npos ? "MOUNTPOINT" : "SOURCE and MOUNTPOINT");
		goto fail;
	}
	if (check_source(pos[0], err) < 0)
		goto fail;
	o->source = strdup(pos[0]);
	if (!o->source) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto fail;
	}
	if (resolve_mountpoint(pos[1], &o->mountpoint, err) < 0)
		goto fail;
	o->cache_dir = cache_dir ? mopts_abs_path(cache_dir)
				 : mopts_default_cache_dir(o->source, o->mountpoint);
	if (!o->cache_dir) {
		err_set(err, ERR_INVAL, cache_dir ? "cannot make the cache dir path absolute"
			: "no default cache dir ($HOME and $XDG_CACHE_HOME unset): give --cache-dir");
		goto fail;
	}
	return 0;
fail:
	mopts_release(o);
	return -1;
}
