/* `durafs auth login|whoami|print-token`: log in and store a refresh token,
 * show which credentials durafs would use and why, or print an access token
 * for scripts. Tokens are printed by print-token only, never by whoami. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "durafs/auth.h"
#include "durafs/auth_adc.h"
#include "durafs/auth_login.h"
#include "durafs/cli.h"
#include "durafs/log.h"

/* Access tokens are ~200 bytes; Google allows up to 2 KiB; leave room. */
#define TOKEN_BUF 8192

static void auth_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs auth login [--scope drive|drive.file|gcs|...] [--client-id ID "
		"--client-secret S]\n"
		"                         [--no-browser] [--device] [--timeout S]\n"
		"       durafs auth whoami [--json] [SOURCE OPTIONS]\n"
		"       durafs auth print-token [SOURCE OPTIONS]\n"
		"\n"
		"Source options (otherwise durafs looks in this order: $DURAFS_ACCESS_TOKEN,\n"
		"its own login from `durafs auth login`, then Application Default Credentials:\n"
		"$GOOGLE_APPLICATION_CREDENTIALS, gcloud's application_default_credentials.json,\n"
		"the metadata server):\n"
		"  --token-file FILE      use the access token in FILE\n"
		"  --credentials FILE     use a service-account key or authorized_user JSON file\n"
		"  --scope LIST           scopes to request (gcs, gcs.ro, cloud, drive, drive.file,\n"
		"                         drive.readonly or URLs, comma-separated); default gcs,drive\n"
		"  --subject EMAIL        service account: act as this user (domain-wide delegation)\n"
		"  --debug                log HTTP requests (secrets are never logged)\n"
		"\n"
		"login stores a refresh token in $XDG_CONFIG_HOME/durafs/credentials.json\n"
		"(~/.config/durafs/credentials.json), mode 0600. Default scope: drive.\n"
		"The OAuth client comes from --client-id/--client-secret or $DURAFS_CLIENT_ID and\n"
		"$DURAFS_CLIENT_SECRET.\n");
}

enum {
	OPT_TOKEN_FILE = 1000, OPT_CREDENTIALS, OPT_SCOPE, OPT_SUBJECT, OPT_JSON,
	OPT_CLIENT_ID, OPT_CLIENT_SECRET, OPT_NO_BROWSER, OPT_DEVICE, OPT_TIMEOUT, OPT_DEBUG,
	OPT_HELP,
};

struct auth_args {
	const char *token_file, *credentials, *scope, *subject, *client_id, *client_secret;
	int json, no_browser, device, debug;
	long timeout_s;
};

static int parse_args(int argc, char **argv, int login, struct auth_args *a)
{
	static const struct option common[] = {
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "credentials", required_argument, NULL, OPT_CREDENTIALS },
		{ "scope", required_argument, NULL, OPT_SCOPE },
		{ "subject", required_argument, NULL, OPT_SUBJECT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "debug", no_argument, NULL, OPT_DEBUG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option for_login[] = {
		{ "scope", required_argument, NULL, OPT_SCOPE },
		{ "client-id", required_argument, NULL, OPT_CLIENT_ID },
		{ "client-secret", required_argument, NULL, OPT_CLIENT_SECRET },
		{ "no-browser", no_argument, NULL, OPT_NO_BROWSER },
		{ "device", no_argument, NULL, OPT_DEVICE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "debug", no_argument, NULL, OPT_DEBUG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	char *end = NULL;
	int c;

	memset(a, 0, sizeof(*a));
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", login ? for_login : common, NULL)) != -1) {
		switch (c) {
		case OPT_TOKEN_FILE: a->token_file = optarg; break;
		case OPT_CREDENTIALS: a->credentials = optarg; break;
		case OPT_SCOPE: a->scope = optarg; break;
		case OPT_SUBJECT: a->subject = optarg; break;
		case OPT_JSON: a->json = 1; break;
		case OPT_CLIENT_ID: a->client_id = optarg; break;
		case OPT_CLIENT_SECRET: a->client_secret = optarg; break;
		case OPT_NO_BROWSER: a->no_browser = 1; break;
		case OPT_DEVICE: a->device = 1; break;
		case OPT_DEBUG: a->debug = 1; break;
		case OPT_TIMEOUT:
			a->timeout_s = strtol(optarg, &end, 10);
			if (!*optarg || *end || a->timeout_s <= 0) {
				fprintf(stderr, "durafs auth: --timeout needs a positive number of "
					"seconds\n");
				return CLI_USAGE;
			}
			break;
		case 'h':
		case OPT_HELP:
			auth_usage(stdout);
			return -1;
		default:
			if (optopt)
				fprintf(stderr, "durafs auth %s: option needs a value or is unknown "
					"(see durafs auth --help)\n", argv[0]);
			else
				fprintf(stderr, "durafs auth %s: unknown option '%s' (see durafs auth "
					"--help)\n", argv[0], argv[optind - 1]);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "durafs auth %s: unexpected argument '%s'\n", argv[0], argv[optind]);
		return CLI_USAGE;
	}
	if (a->debug)
		log_set_level(LOG_LVL_DEBUG);
	return 0;
}

/* Print the discovery trail indented, to out. */
static void print_trail(FILE *out, const char *trail)
{
	const char *p = trail, *nl;

	while (p && *p) {
		nl = strchr(p, '\n');
		fprintf(out, "  %.*s\n", (int)(nl ? nl - p : (long)strlen(p)), p);
		p = nl ? nl + 1 : NULL;
	}
}

/* Resolve the source and make a provider; on failure print the error (and
 * what was tried) and return NULL. */
static struct auth_provider *open_provider(const struct auth_args *a, char **trail)
{
	struct auth_opts o;
	struct auth_provider *p = NULL;
	struct err err;
	char *scopes = NULL;

	err_clear(&err);
	memset(&o, 0, sizeof(o));
	o.token_file = a->token_file;
	o.credentials = a->credentials;
	o.subject = a->subject;
	if (a->scope) {
		scopes = auth_scope_expand(a->scope, &err);
		if (!scopes)
			goto fail;
		o.scopes = scopes;
	}
	if (auth_adc_open(&o, &p, trail, &err))
		goto fail;
	free(scopes);
	return p;
fail:
	fprintf(stderr, "durafs: %s\n", err.msg);
	if (err.code == ERR_AUTH && trail && *trail && !a->token_file && !a->credentials) {
		fprintf(stderr, "what was tried, in order:\n");
		print_trail(stderr, *trail);
	}
	free(scopes);
	return NULL;
}

static int do_print_token(int argc, char **argv)
{
	struct auth_args a;
	struct auth_provider *p = NULL;
	struct err err;
	char *trail = NULL, *tok = NULL;
	int rc = CLI_FAIL, r;

	r = parse_args(argc, argv, 0, &a);
	if (r)
		return r < 0 ? CLI_OK : r;
	if (a.json) {
		fprintf(stderr, "durafs auth print-token: --json is for whoami\n");
		return CLI_USAGE;
	}
	p = open_provider(&a, &trail);
	if (!p)
		goto out;
	tok = malloc(TOKEN_BUF);
	if (!tok) {
		fprintf(stderr, "durafs: out of memory\n");
		goto out;
	}
	err_clear(&err);
	if (auth_provider_get(p, tok, TOKEN_BUF, NULL, &err)) {
		fprintf(stderr, "durafs: %s\n", err.msg);
		goto out;
	}
	printf("%s\n", tok);
	if (fflush(stdout) == 0)
		rc = CLI_OK;
out:
	if (tok) {
		explicit_bzero(tok, TOKEN_BUF);
		free(tok);
	}
	auth_provider_free(p);
	free(trail);
	return rc;
}

static void format_time(time_t t, char *buf, size_t n)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int do_whoami(int argc, char **argv)
{
	struct auth_args a;
	struct auth_provider *p = NULL;
	struct auth_info info;
	struct err err;
	json_t *j = NULL, *arr = NULL;
	char *trail = NULL, *tok = NULL, *text = NULL, when[40];
	const char *line, *nl;
	long left;
	int rc = CLI_FAIL, r;

	r = parse_args(argc, argv, 0, &a);
	if (r)
		return r < 0 ? CLI_OK : r;
	p = open_provider(&a, &trail);
	if (!p)
		goto out;
	tok = malloc(TOKEN_BUF);
	if (!tok) {
		fprintf(stderr, "durafs: out of memory\n");
		goto out;
	}
	err_clear(&err);
	r = auth_provider_get(p, tok, TOKEN_BUF, NULL, &err);
	explicit_bzero(tok, TOKEN_BUF);
	auth_provider_info(p, &info);
	if (r) {
		fprintf(stderr, "durafs: credentials found (%s, %s) but no token could be "
			"obtained: %s\n", info.kind, info.origin, err.msg);
		goto out;
	}
	when[0] = '\0';
	left = 0;
	if (info.expires_at) {
		format_time(info.expires_at, when, sizeof(when));
		left = (long)(info.expires_at - time(NULL));
	}
	if (a.json) {
		j = json_object();
		arr = json_array();
		if (!j || !arr)
			goto oom;
		for (line = trail; line && *line; line = nl ? nl + 1 : NULL) {
			nl = strchr(line, '\n');
			if (json_array_append_new(arr, json_stringn(line, nl ? (size_t)(nl - line) :
								    strlen(line))))
				goto oom;
		}
		if (json_object_set_new(j, "source", json_string(info.kind)) ||
		    json_object_set_new(j, "origin", json_string(info.origin)) ||
		    json_object_set_new(j, "path", info.path ? json_string(info.path) :
					json_null()) ||
		    json_object_set_new(j, "account", info.account ? json_string(info.account) :
					json_null()) ||
		    json_object_set_new(j, "scopes", info.scopes ? json_string(info.scopes) :
					json_null()) ||
		    json_object_set_new(j, "expires_at", when[0] ? json_string(when) :
					json_null()) ||
		    json_object_set_new(j, "expires_in", when[0] ? json_integer(left) :
					json_null()) ||
		    json_object_set(j, "checked", arr))
			goto oom;
		text = json_dumps(j, JSON_INDENT(2));
		if (!text)
			goto oom;
		printf("%s\n", text);
	} else {
		printf("source:   %s\n", info.kind);
		printf("chosen:   %s\n", info.origin ? info.origin : "-");
		if (info.path)
			printf("file:     %s\n", info.path);
		printf("account:  %s\n", info.account ? info.account : "(unknown)");
		printf("scopes:   %s\n", info.scopes ? info.scopes : "(unknown)");
		if (when[0])
			printf("expires:  %s (in %ld min %ld s)\n", when, left / 60, left % 60);
		else
			printf("expires:  unknown (a static token is never refreshed)\n");
		if (trail) {
			printf("checked:\n");
			print_trail(stdout, trail);
		}
	}
	if (fflush(stdout) == 0)
		rc = CLI_OK;
	goto out;
oom:
	fprintf(stderr, "durafs: out of memory\n");
out:
	free(tok);
	free(text);
	json_decref(arr);
	json_decref(j);
	auth_provider_free(p);
	free(trail);
	return rc;
}

static int do_login(int argc, char **argv)
{
	struct auth_login_opts o;
	struct auth_args a;
	struct err err;
	char *scopes = NULL, *stored = NULL;
	int rc = CLI_FAIL, r;

	r = parse_args(argc, argv, 1, &a);
	if (r)
		return r < 0 ? CLI_OK : r;
	err_clear(&err);
	memset(&o, 0, sizeof(o));
	o.client_id = a.client_id ? a.client_id : getenv(AUTH_ENV_CLIENT_ID);
	o.client_secret = a.client_secret ? a.client_secret : getenv(AUTH_ENV_CLIENT_SECRET);
	if (!o.client_id || !*o.client_id || !o.client_secret || !*o.client_secret) {
		fprintf(stderr, "durafs auth login: no OAuth client: %s\n",
			auth_login_client_help());
		return CLI_USAGE;
	}
	scopes = auth_scope_expand(a.scope ? a.scope : "drive", &err);
	if (!scopes) {
		fprintf(stderr, "durafs auth login: %s\n", err.msg);
		return CLI_USAGE;
	}
	if (a.device && strcmp(scopes, AUTH_SCOPE_DRIVE_FILE)) {
		fprintf(stderr, "durafs auth login: Google allows the device flow only for the "
			"drive.file scope among durafs' scopes; use --scope drive.file with "
			"--device, or the default browser flow (--no-browser on a headless "
			"machine)\n");
		free(scopes);
		return CLI_USAGE;
	}
	o.scopes = scopes;
	o.no_browser = a.no_browser;
	o.device = a.device;
	o.timeout_s = a.timeout_s;
	o.in_fd = STDIN_FILENO;
	o.out = stderr;
	if (auth_login_run(&o, &stored, &err)) {
		fprintf(stderr, "durafs auth login: %s\n", err.msg);
		goto out;
	}
	printf("Logged in. Credentials stored in %s (mode 0600).\n", stored);
	if (fflush(stdout) == 0)
		rc = CLI_OK;
out:
	free(stored);
	free(scopes);
	return rc;
}

int cmd_auth(int argc, char **argv)
{
	if (argc < 2) {
		auth_usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		auth_usage(stdout);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "print-token"))
		return do_print_token(argc - 1, argv + 1);
	if (!strcmp(argv[1], "whoami"))
		return do_whoami(argc - 1, argv + 1);
	if (!strcmp(argv[1], "login"))
		return do_login(argc - 1, argv + 1);
	fprintf(stderr, "durafs auth: unknown subcommand '%s' (login, whoami, print-token)\n",
		argv[1]);
	return CLI_USAGE;
}
