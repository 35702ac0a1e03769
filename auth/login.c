/* `durafs auth login` (include/durafs/auth_login.h): the loopback flow with
 * PKCE, the pasted-redirect variant for headless machines, the device
 * flow, the code exchange and storing the refresh token. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "durafs/auth.h"
#include "durafs/auth_cred.h"
#include "durafs/auth_login.h"
#include "durafs/auth_oauth.h"
#include "durafs/auth_store.h"
#include "durafs/enc.h"

extern char **environ;

#define LOGIN_TIMEOUT_S 300
#define LOGIN_REQ_MAX 8192

const char *auth_login_client_help(void)
{
	return "durafs needs an OAuth client of your own (a secret cannot be shipped in "
	       "open-source code). Create one in the Google Cloud console: APIs & Services > "
	       "Credentials > Create credentials > OAuth client ID > Application type "
	       "\"Desktop app\"; enable the Google Drive API (and/or Cloud Storage) in the "
	       "same project, and add yourself as a test user on the OAuth consent screen. "
	       "Then run `durafs auth login --client-id ID --client-secret SECRET`, or set "
	       "$" AUTH_ENV_CLIENT_ID " and $" AUTH_ENV_CLIENT_SECRET " (better: not visible "
	       "in `ps`).";
}

int auth_login_random(char *out, size_t outsz, struct err *err)
{
	unsigned char rnd[32];
	char b64[64];
	size_t got = 0;
	ssize_t n;

	if (outsz < AUTH_PKCE_LEN + 1)
		return err_set(err, ERR_INVAL, "buffer too small for a PKCE verifier");
	while (got < sizeof(rnd)) {
		n = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(err, "getrandom");
		got += (size_t)n;
	}
	if (enc_b64(rnd, sizeof(rnd), b64, sizeof(b64), 1) != AUTH_PKCE_LEN) {
		explicit_bzero(rnd, sizeof(rnd));
		return err_set(err, ERR_INVAL, "cannot encode the PKCE verifier");
	}
	memcpy(out, b64, AUTH_PKCE_LEN + 1);
	explicit_bzero(rnd, sizeof(rnd));
	explicit_bzero(b64, sizeof(b64));
	return 0;
}

int auth_login_challenge(const char *verifier, char *out, size_t outsz)
{
	unsigned char md[32];
	char b64[64];
	unsigned int mdlen = 0;
	size_t n = strlen(verifier), i;

	if (n < 43 || n > 128 || outsz < AUTH_PKCE_LEN + 1)
		return -1;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)verifier[i]) && !strchr("-._~", verifier[i]))
			return -1;
	if (EVP_Digest(verifier, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -1;
	if (enc_b64(md, sizeof(md), b64, sizeof(b64), 1) != AUTH_PKCE_LEN)
		return -1;
	memcpy(out, b64, AUTH_PKCE_LEN + 1);
	return 0;
}

char *auth_login_auth_url(const char *auth_uri, const char *client_id,
			  const char *redirect_uri, const char *scopes, const char *state,
			  const char *challenge)
{
	const char *names[] = { "response_type", "client_id", "redirect_uri", "scope", "state",
				"code_challenge", "code_challenge_method", "access_type",
				"prompt" };
	const char *vals[] = { "code", client_id, redirect_uri, scopes, state, challenge,
			       "S256", "offline", "consent" };
	char *enc[9] = { NULL }, *url = NULL;
	size_t i, len;

	len = strlen(auth_uri) + 2;
	for (i = 0; i < 9; i++) {
		enc[i] = enc_url(vals[i]);
		if (!enc[i])
			goto out;
		len += strlen(names[i]) + strlen(enc[i]) + 2;
	}
	url = malloc(len);
	if (!url)
		goto out;
	snprintf(url, len, "%s", auth_uri);
	for (i = 0; i < 9; i++) {
		size_t at = strlen(url);

		snprintf(url + at, len - at, "%c%s=%s",
			 i == 0 ? (strchr(auth_uri, '?') ? '&' : '?') : '&', names[i], enc[i]);
	}
out:
	for (i = 0; i < 9; i++)
		free(enc[i]);
	return url;
}

/* The query parameters a redirect may carry. Values malloc'd. */
struct redirect {
	char *code, *state, *error, *error_description;
};

static void redirect_release(struct redirect *r)
{
	auth_cred_wipe(r->code, 0);
	free(r->state);
	free(r->error);
	free(r->error_description);
	memset(r, 0, sizeof(*r));
}

/* Parse the n-byte query q into r. Unknown parameters are ignored; a
 * repeated known one is refused. */
static int parse_query(const char *q, size_t n, struct redirect *r, struct err *err)
{
	const char *end = q + n, *amp, *eq;
	char **slot, *val;

	while (q < end) {
		amp = memchr(q, '&', (size_t)(end - q));
		if (!amp)
			amp = end;
		eq = memchr(q, '=', (size_t)(amp - q));
		slot = NULL;
		if (eq) {
			size_t kl = (size_t)(eq - q);

			if (kl == 4 && !memcmp(q, "code", 4))
				slot = &r->code;
			else if (kl == 5 && !memcmp(q, "state", 5))
				slot = &r->state;
			else if (kl == 5 && !memcmp(q, "error", 5))
				slot = &r->error;
			else if (kl == 17 && !memcmp(q, "error_description", 17))
				slot = &r->error_description;
		}
		if (slot) {
			if (*slot)
				return err_set(err, ERR_INVAL, "the redirect repeats a parameter "
					       "(%.*s)", (int)(eq - q), q);
			val = enc_url_decode(eq + 1, (size_t)(amp - eq - 1), 1);
			if (!val)
				return err_set(err, ERR_INVAL, "the redirect has a malformed "
					       "percent-escape");
			*slot = val;
		}
		q = amp + 1;
	}
	return 0;
}

static void sanitize(const char *in, char *out, size_t outsz)
{
	size_t i = 0;

	for (; in && *in && i + 1 < outsz; in++)
		out[i++] = isprint((unsigned char)*in) ? *in : '?';
	out[i] = '\0';
}

int auth_login_parse_redirect(const char *input, const char *expected_state, char **code,
			      struct err *err)
{
	struct redirect r = { 0 };
	const char *s = input, *q, *e, *hash;
	size_t n;
	char a[64], b[200];
	int rc = -1;

	*code = NULL;
	while (*s && isspace((unsigned char)*s))
		s++;
	n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (!n) {
		err_set(err, ERR_INVAL, "nothing was pasted");
		goto out;
	}
	if (n >= 4 && !memcmp(s, "GET ", 4)) {
		e = memchr(s + 4, ' ', n - 4);
		n = e ? (size_t)(e - s) : n;
		s += 4;
		n -= 4;
	}
	q = memchr(s, '?', n);
	if (!q && !memchr(s, '=', n)) {
		/* A bare code: no state to check, PKCE still binds it. (n is 0
		 * for "GET  /..." with an empty request target: no code.) */
		if (!n || memchr(s, ' ', n) || memchr(s, '&', n) || memchr(s, '\t', n) ||
		    (n >= 7 && !strncmp(s, "http://", 7)) ||
		    (n >= 8 && !strncmp(s, "https://", 8))) {
			err_set(err, ERR_INVAL, "this is neither the redirect URL nor an "
				"authorization code");
			goto out;
		}
		*code = strndup(s, n);
		if (!*code) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (q) {
		n -= (size_t)(q + 1 - s);
		s = q + 1;
	}
	hash = memchr(s, '#', n);
	if (hash)
		n = (size_t)(hash - s);
	if (parse_query(s, n, &r, err))
		goto out;
	if (r.error) {
		sanitize(r.error, a, sizeof(a));
		sanitize(r.error_description, b, sizeof(b));
		err_set(err, ERR_AUTH, "the authorization was refused: %s%s%s", a,
			b[0] ? ": " : "", b);
		if (err)
			memcpy(err->reason, a, sizeof(err->reason));
		goto out;
	}
	if (!r.code || !*r.code) {
		err_set(err, ERR_INVAL, "the redirect carries no authorization code");
		goto out;
	}
	if (!r.state || !expected_state || strcmp(r.state, expected_state)) {
		err_set(err, ERR_INVAL, "the redirect's state does not match this login "
			"(a stale or forged redirect); start `durafs auth login` again");
		goto out;
	}
	*code = r.code;
	r.code = NULL;
	rc = 0;
out:
	redirect_release(&r);
	return rc;
}

/* Write to a socket whose peer may be gone (no SIGPIPE). */
static int send_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void http_reply(int fd, int status, const char *title, const char *text)
{
	char body[1024], msg[1400];
	int bl, ml;

	bl = snprintf(body, sizeof(body), "<!doctype html><html><head><meta charset=\"utf-8\">"
		      "<title>durafs</title></head><body><h2>%s</h2><p>%s</p></body></html>\n",
		      title, text);
	if (bl < 0 || (size_t)bl >= sizeof(body))
		bl = 0;
	ml = snprintf(msg, sizeof(msg), "HTTP/1.1 %d %s\r\nContent-Type: text/html; "
		      "charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n"
		      "Cache-Control: no-store\r\n\r\n%s", status,
		      status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request", bl,
		      bl ? body : "");
	if (ml > 0 && (size_t)ml < sizeof(msg))
		send_all(fd, msg, (size_t)ml);
}

/* One connection to the listener: returns 1 with *code when it carried
 * the redirect, 0 to keep waiting, -1 with *err when the user refused. */
static int serve_one(int lfd, const char *state, char **code, FILE *out, struct err *err)
{
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	char req[LOGIN_REQ_MAX + 1], *eol;
	size_t got = 0;
	ssize_t n;
	struct err perr;
	int fd = -1, rc = 0;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < LOGIN_REQ_MAX) {
		n = read(fd, req + got, LOGIN_REQ_MAX - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	eol = strpbrk(req, "\r\n");
	if (eol)
		*eol = '\0';
	if (strncmp(req, "GET /", 5)) {
		http_reply(fd, 400, "durafs", "This address only receives the login redirect.");
		goto out;
	}
	if (strncmp(req, "GET /?", 6) && strncmp(req, "GET / ", 6)) {
		/* favicon.ico and the like */
		http_reply(fd, 404, "Not found", "");
		goto out;
	}
	err_clear(&perr);
	if (auth_login_parse_redirect(req, state, code, &perr) == 0) {
		http_reply(fd, 200, "durafs: signed in",
			   "You can close this window and return to the terminal.");
		rc = 1;
		goto out;
	}
	if (perr.code == ERR_AUTH) {
		http_reply(fd, 400, "durafs: sign-in refused", "The login was refused; see the "
			   "terminal.");
		if (err)
			*err = perr;
		rc = -1;
		goto out;
	}
	http_reply(fd, 400, "durafs: not a valid login redirect", "See the terminal.");
	fprintf(out, "durafs: ignored a request to the login listener: %s\n", perr.msg);
out:
	explicit_bzero(req, sizeof(req));
	close(fd);
	return rc;
}

/* Start the user's browser on url, without waiting for it. Returns the
 * child's pid, or -1 when no browser could be started. */
static pid_t open_browser(const char *url)
{
	const char *b = getenv("BROWSER");
	char prog[512];
	char *argv[3];
	posix_spawn_file_actions_t fa;
	pid_t pid = -1;

	if (b && *b) {
		/* $BROWSER may be a ':'-separated list: take the first. */
		snprintf(prog, sizeof(prog), "%.*s", (int)strcspn(b, ":"), b);
	} else if ((getenv("DISPLAY") && *getenv("DISPLAY")) ||
		   (getenv("WAYLAND_DISPLAY") && *getenv("WAYLAND_DISPLAY"))) {
		snprintf(prog, sizeof(prog), "xdg-open");
	} else {
		return -1;
	}
	argv[0] = prog;
	argv[1] = (char *)url;
	argv[2] = NULL;
	if (posix_spawn_file_actions_init(&fa))
		return -1;
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, prog, &fa, NULL, argv, environ))
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* The email in an id_token's claims, for display only (the token came
 * straight from the token endpoint over TLS; it is not verified here).
 * malloc'd or NULL. */
static char *id_token_email(const char *idt)
{
	const char *p1, *p2;
	char *buf = NULL, *email = NULL;
	size_t n, outlen = 0;
	json_t *j = NULL, *e;
	json_error_t jerr;

	if (!idt)
		return NULL;
	p1 = strchr(idt, '.');
	p2 = p1 ? strchr(p1 + 1, '.') : NULL;
	if (!p2)
		return NULL;
	n = (size_t)(p2 - p1 - 1);
	buf = malloc(n + 4);
	if (!buf || enc_b64_decode(p1 + 1, n, buf, n + 4, &outlen))
		goto out;
	j = json_loadb(buf, outlen, 0, &jerr);
	e = j ? json_object_get(j, "email") : NULL;
	if (e && json_is_string(e) && strlen(json_string_value(e)) < 320)
		email = strdup(json_string_value(e));
out:
	json_decref(j);
	free(buf);
	return email;
}

/* Exchange code (loopback flow) and fill *tok. */
static int exchange_code(struct http *h, const struct auth_login_opts *o, const char *token_uri,
			 const char *code, const char *redirect_uri, const char *verifier,
			 struct auth_token *tok, struct err *err)
{
	char *form = NULL;
	int rc;

	form = auth_oauth_form((const char *const[]){
		"grant_type", "authorization_code",
		"code", code,
		"redirect_uri", redirect_uri,
		"client_id", o->client_id,
		"client_secret", o->client_secret,
		"code_verifier", verifier,
		NULL,
	});
	if (!form)
		return err_set(err, ERR_NOMEM, "out of memory");
	rc = auth_oauth_post(h, token_uri, form, "authorization code exchange", tok, err);
	auth_cred_wipe(form, 0);
	return rc;
}

/* The loopback flow: listen, show/open the URL, wait for the redirect on
 * the listener or pasted on in_fd, exchange the code. */
static int loopback_flow(struct http *h, const struct auth_login_opts *o, const char *token_uri,
			 struct auth_token *tok, struct err *err)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	char verifier[AUTH_PKCE_LEN + 1], challenge[AUTH_PKCE_LEN + 1], state[AUTH_PKCE_LEN + 1];
	char redirect_uri[64], line[LOGIN_REQ_MAX + 1];
	char *url = NULL, *code = NULL;
	size_t linelen = 0;
	struct pollfd pfd[2];
	struct err perr;
	FILE *out = o->out ? o->out : stderr;
	time_t deadline;
	pid_t browser = -1;
	int lfd = -1, in_fd = o->in_fd, rc = -1, r, nfds;
	long left;
	ssize_t n;
	char *nl;

	if (auth_login_random(verifier, sizeof(verifier), err) ||
	    auth_login_random(state, sizeof(state), err))
		goto out;
	if (auth_login_challenge(verifier, challenge, sizeof(challenge))) {
		err_set(err, ERR_INVAL, "cannot derive the PKCE challenge");
		goto out;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		err_sys(err, "cannot create the login listener");
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 8) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen)) {
		err_sys(err, "cannot listen on 127.0.0.1 for the login redirect");
		goto out;
	}
	snprintf(redirect_uri, sizeof(redirect_uri), "http://127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	url = auth_login_auth_url(auth_oauth_uri(AUTH_ENV_AUTH_URI, AUTH_GOOGLE_AUTH_URI),
				  o->client_id, redirect_uri, o->scopes, state, challenge);
	if (!url) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!o->no_browser)
		browser = open_browser(url);
	if (browser > 0)
		fprintf(out, "Your browser has been opened to sign in. If it did not open, "
			"visit this URL:\n\n%s\n\n", url);
	else
		fprintf(out, "Open this URL in a browser, on this or any other machine, and "
			"sign in:\n\n%s\n\n"
			"After you approve, the browser is sent to %s/. If that page does not "
			"load (the browser runs on another machine), copy the full address from "
			"the browser's address bar and paste it here.\n", url, redirect_uri);
	if (in_fd >= 0)
		fprintf(out, "Redirect URL or code: ");
	fflush(out);

	deadline = time(NULL) + (o->timeout_s > 0 ? o->timeout_s : LOGIN_TIMEOUT_S);
	for (;;) {
		left = (long)(deadline - time(NULL));
		if (left <= 0) {
			err_set(err, ERR_TIMEOUT, "no login redirect within %ld s",
				o->timeout_s > 0 ? o->timeout_s : (long)LOGIN_TIMEOUT_S);
			goto out;
		}
		pfd[0].fd = lfd;
		pfd[0].events = POLLIN;
		nfds = 1;
		if (in_fd >= 0) {
			pfd[1].fd = in_fd;
			pfd[1].events = POLLIN;
			nfds = 2;
		}
		r = poll(pfd, (nfds_t)nfds, (int)(left > 1000 ? 1000000 : left * 1000));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_sys(err, "poll");
			goto out;
		}
		if (pfd[0].revents & POLLIN) {
			r = serve_one(lfd, state, &code, out, err);
			if (r < 0)
				goto out;
			if (r > 0)
				break;
		}
		if (nfds == 2 && pfd[1].revents) {
			n = read(in_fd, line + linelen, LOGIN_REQ_MAX - linelen);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				in_fd = -1;  /* EOF: keep waiting for the listener */
				continue;
			}
			linelen += (size_t)n;
			line[linelen] = '\0';
			nl = strchr(line, '\n');
			if (!nl && linelen < LOGIN_REQ_MAX)
				continue;
			if (nl)
				*nl = '\0';
			err_clear(&perr);
			r = auth_login_parse_redirect(line, state, &code, &perr);
			explicit_bzero(line, sizeof(line));
			linelen = 0;
			if (r == 0)
				break;
			if (perr.code == ERR_AUTH) {
				if (err)
					*err = perr;
				goto out;
			}
			fprintf(out, "durafs: %s\nRedirect URL or code: ", perr.msg);
			fflush(out);
		}
	}
	fprintf(out, "\nAuthorization received; exchanging it for a refresh token.\n");
	fflush(out);
	if (exchange_code(h, o, token_uri, code, redirect_uri, verifier, tok, err))
		goto out;
	rc = 0;
out:
	if (browser > 0)
		waitpid(browser, NULL, WNOHANG);
	if (lfd >= 0)
		close(lfd);
	auth_cred_wipe(code, 0);
	explicit_bzero(verifier, sizeof(verifier));
	explicit_bzero(line, sizeof(line));
	free(url);
	return rc;
}

/* The device flow (RFC 8628). */
static int device_flow(struct http *h, const struct auth_login_opts *o, const char *token_uri,
		       struct auth_token *tok, struct err *err)
{
	const char *device_uri = auth_oauth_uri(AUTH_ENV_DEVICE_URI, AUTH_GOOGLE_DEVICE_URI);
	const char *dcode = NULL, *ucode = NULL, *vurl = NULL;
	json_t *reply = NULL, *v;
	char *form = NULL, *poll_form = NULL, shown_code[64], shown_url[512];
	long status = 0, interval = 5, expires = 1800;
	time_t deadline;
	int rc = -1;

	form = auth_oauth_form((const char *const[]){
		"client_id", o->client_id,
		"scope", o->scopes,
		NULL,
	});
	if (!form) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	if (auth_oauth_post_json(h, device_uri, form, "device code request", &status, &reply,
				 err))
		goto out;
	if (auth_cred_str(reply, "device code reply", "device_code", 1, &dcode, err) ||
	    auth_cred_str(reply, "device code reply", "user_code", 1, &ucode, err))
		goto out;
	if (auth_cred_str(reply, "device code reply", "verification_url", 0, &vurl, err) ||
	    (!vurl && auth_cred_str(reply, "device code reply", "verification_uri", 1, &vurl,
				    err)))
		goto out;
	v = json_object_get(reply, "interval");
	if (v && json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) < 300)
		interval = (long)json_integer_value(v);
	v = json_object_get(reply, "expires_in");
	if (v && json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) < 86400)
		expires = (long)json_integer_value(v);
	if (o->timeout_s > 0 && o->timeout_s < expires)
		expires = o->timeout_s;
	sanitize(ucode, shown_code, sizeof(shown_code));
	sanitize(vurl, shown_url, sizeof(shown_url));
	fprintf(o->out ? o->out : stderr, "On any device, open %s and enter the code:\n\n"
		"    %s\n\nWaiting for you to approve (up to %ld s)...\n", shown_url,
		shown_code, expires);
	fflush(o->out ? o->out : stderr);
	poll_form = auth_oauth_form((const char *const[]){
		"client_id", o->client_id,
		"client_secret", o->client_secret,
		"device_code", dcode,
		"grant_type", "urn:ietf:params:oauth:grant-type:device_code",
		NULL,
	});
	if (!poll_form) {
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	deadline = time(NULL) + expires;
	for (;;) {
		if (time(NULL) + interval > deadline) {
			err_set(err, ERR_TIMEOUT, "the device code expired before it was approved");
			goto out;
		}
		sleep((unsigned)interval);
		if (auth_oauth_post(h, token_uri, poll_form, "device code grant", tok, err) == 0)
			break;
		if (err && !strcmp(err->reason, "authorization_pending"))
			continue;
		if (err && !strcmp(err->reason, "slow_down")) {
			interval += 5;
			continue;
		}
		goto out;
	}
	rc = 0;
out:
	auth_cred_wipe(form, 0);
	auth_cred_wipe(poll_form, 0);
	json_decref(reply);
	return rc;
}

int auth_login_run(const struct auth_login_opts *o, char **stored, struct err *err)
{
	const char *token_uri = auth_oauth_uri(AUTH_ENV_TOKEN_URI, AUTH_GOOGLE_TOKEN_URI);
	struct auth_login_record rec;
	struct auth_token tok = { 0 };
	struct http *h = NULL;
	char *path = NULL, *account = NULL;
	int rc = -1;

	if (stored)
		*stored = NULL;
	if (!o->client_id || !*o->client_id || !o->client_secret || !*o->client_secret) {
		err_set(err, ERR_INVAL, "no OAuth client given");
		goto out;
	}
	if (!o->scopes || !*o->scopes) {
		err_set(err, ERR_INVAL, "no scope given");
		goto out;
	}
	if (o->store_path) {
		path = strdup(o->store_path);
		if (!path) {
			err_set(err, ERR_NOMEM, "out of memory");
			goto out;
		}
	} else {
		path = auth_store_path(err);
		if (!path)
			goto out;
	}
	if (auth_oauth_http(0, &h, err))
		goto out;
	if (o->device ? device_flow(h, o, token_uri, &tok, err) :
	    loopback_flow(h, o, token_uri, &tok, err))
		goto out;
	if (!tok.refresh_token) {
		err_set(err, ERR_AUTH, "the token endpoint returned no refresh_token, so the login "
			"cannot be kept; remove durafs' access at "
			"https://myaccount.google.com/permissions and log in again");
		goto out;
	}
	account = id_token_email(tok.id_token);
	memset(&rec, 0, sizeof(rec));
	rec.client_id = o->client_id;
	rec.client_secret = o->client_secret;
	rec.refresh_token = tok.refresh_token;
	rec.token_uri = token_uri;
	rec.scopes = tok.scope ? tok.scope : o->scopes;
	rec.account = account;
	if (auth_store_save(path, &rec, err))
		goto out;
	if (stored) {
		*stored = path;
		path = NULL;
	}
	rc = 0;
out:
	auth_token_release(&tok);
	http_free(h);
	free(account);
	free(path);
	return rc;
}
