/* `durafs unmount MOUNTPOINT [--no-flush] [--timeout S]`: flush the mount's
 * pending changes with progress, unmount it (umount(2) as root, else
 * fusermount3 -u), and wait until its daemon has exited, so the cache dir
 * is free for the next mount. --no-flush leaves pending work queued. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "durafs/cli.h"
#include "durafs/clock.h"
#include "durafs/daemon.h"
#include "durafs/mount_cli.h"

#define UNMOUNT_PROG "durafs unmount"
#define UNMOUNT_WAIT_MS 120000   /* default wait for the daemon to exit */

extern char **environ;

static void unmount_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs unmount MOUNTPOINT [--no-flush] [--timeout S] [--json]\n"
		"\n"
		"Flush the mount's pending changes (with progress), then unmount it and wait\n"
		"for its daemon to exit. If a change cannot be committed, the mount stays and\n"
		"the files are named (exit 1).\n"
		"\n"
		"  --no-flush   unmount at once; pending changes stay queued in the journal and\n"
		"               are uploaded by the next mount of the same cache dir (or by\n"
		"               `durafs sync --flush --cache-dir DIR`)\n"
		"  --timeout S  give up the flush (exit 1, still mounted) after S seconds, and\n"
		"               wait at most that long for the daemon to exit\n"
		"  --json       JSON progress lines and the flush result on stdout\n");
}

/* 1 while pid runs (a zombie counts as gone). */
static int alive(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int up = 1;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : 1;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
			up = 0;
	}
	fclose(f);
	return up;
}

static int run_fusermount(const char *mnt, char *why, size_t whylen)
{
	char *argv[] = { "fusermount3", "-u", "--", (char *)mnt, NULL };
	pid_t pid;
	int st = 0, rc;

	rc = posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ);
	if (rc) {
		snprintf(why, whylen, "cannot run fusermount3: %s", strerror(rc));
		return -1;
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			snprintf(why, whylen, "waitpid: %s", strerror(errno));
			return -1;
		}
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	snprintf(why, whylen, "fusermount3 -u failed (see its message above)");
	return -1;
}

static int do_unmount(const char *mnt, char *why, size_t whylen)
{
	if (geteuid() == 0) {
		if (umount2(mnt, 0) == 0)
			return 0;
		if (errno == EBUSY)
			snprintf(why, whylen, "%s is busy: a process has a file open there or its "
				 "current directory inside (a shell cd'ed into it counts; `fuser -vm "
				 "%s` lists them); it stays mounted", mnt, mnt);
		else
			snprintf(why, whylen, "umount %s: %s", mnt, strerror(errno));
		return -1;
	}
	return run_fusermount(mnt, why, whylen);
}

int cmd_unmount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-flush", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_client c = { .fd = -1 };
	json_t *req = NULL, *reply = NULL;
	char mnt[PATH_MAX], why[PATH_MAX + 128];
	int64_t timeout = -1, deadline;
	int no_flush = 0, json = 0, code = CLI_FAIL, ch, connected = 0;
	pid_t pid = 0;
	struct err e;

	opterr = 0;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'n': no_flush = 1; break;
		case 'j': json = 1; break;
		case 't':
			if (mcli_parse_timeout(optarg, &timeout) < 0) {
				fprintf(stderr, UNMOUNT_PROG ": --timeout: expected seconds, got '%s'\n",
					optarg);
				return CLI_USAGE;
			}
			break;
		case 'h':
			unmount_usage(stdout);
			return CLI_OK;
		default:
			fprintf(stderr, UNMOUNT_PROG ": unknown option or missing value: '%s' (see "
				"durafs unmount --help)\n", argv[optind - 1]);
			return CLI_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, UNMOUNT_PROG ": give one MOUNTPOINT (see durafs unmount --help)\n");
		return CLI_USAGE;
	}
	/* Not realpath: a mount whose daemon died cannot be resolved. */
	if (argv[optind][0] == '/' || !getcwd(mnt, sizeof(mnt)))
		snprintf(mnt, sizeof(mnt), "%s", argv[optind]);
	else
		snprintf(mnt + strlen(mnt), sizeof(mnt) - strlen(mnt), "/%s", argv[optind]);
	while (strlen(mnt) > 1 && mnt[strlen(mnt) - 1] == '/')
		mnt[strlen(mnt) - 1] = '\0';

	err_clear(&e);
	if (mcli_connect(mnt, &c, &e) == 0) {
		connected = 1;
		req = json_pack("{s:s}", "cmd", "ping");
		if (req && mcli_call(&c, req, 30000, &reply, &e) == 0)
			pid = (pid_t)json_integer_value(json_object_get(reply, "pid"));
		json_decref(req);
		json_decref(reply);
		req = reply = NULL;
	} else if (e.sys_errno == ENOTCONN) {
		char *dir = mcli_dead_cache_dir(mnt);

		fprintf(stderr, UNMOUNT_PROG ": the daemon of %s is gone; removing the dead mount "
			"(its pending changes stay in its cache dir's journal%s%s%s)\n", mnt,
			dir ? ": `durafs sync --flush --cache-dir " : "", dir ? dir : "",
			dir ? "` uploads them, or mount it again" : "");
		free(dir);
	} else {
		fprintf(stderr, UNMOUNT_PROG ": %s\n", e.msg);
		goto out;
	}
	if (connected && !no_flush) {
		code = mcli_flush(&c, UNMOUNT_PROG, timeout, 0, json, stdout);
		if (code != CLI_OK) {
			fprintf(stderr, UNMOUNT_PROG ": %s stays mounted (`durafs unmount --no-flush` "
				"unmounts anyway; the changes then wait in the journal)\n", mnt);
			goto out;
		}
	}
	ctl_client_close(&c);
	code = CLI_FAIL;
	if (do_unmount(mnt, why, sizeof(why)) < 0) {
		fprintf(stderr, UNMOUNT_PROG ": %s\n", why);
		goto out;
	}
	if (pid > 0) {
		deadline = clk_mono_ms() + (timeout >= 0 ? timeout : UNMOUNT_WAIT_MS);
		while (alive(pid)) {
			if (clk_mono_ms() > deadline) {
				fprintf(stderr, UNMOUNT_PROG ": unmounted, but the daemon (pid %ld) is "
					"still finishing; its cache dir is busy until it exits\n",
					(long)pid);
				goto out;
			}
			usleep(20000);
		}
	}
	code = CLI_OK;
out:
	ctl_client_close(&c);
	return code;
}
