/* durafs: the one binary, CLI and daemon. Dispatches `durafs CMD ...` to the
 * command's function; commands of later milestones are listed in --help as
 * planned and refuse to run rather than pretend. */
#include <stdio.h>
#include <string.h>

#include "durafs/cli.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);   /* NULL: planned, not yet built */
	const char *usage;
	const char *summary;
};

static const struct command commands[] = {
	{ "mount", cmd_mount, "mount SOURCE MOUNTPOINT [-o opt,...] [--cache-dir D] [--foreground]",
	  "mount gs://bucket[/prefix] or drive:[path]" },
	{ "unmount", cmd_unmount, "unmount MOUNTPOINT [--no-flush] [--timeout S] [--json]",
	  "flush pending changes, then unmount" },
	{ "sync", cmd_sync,
	  "sync --flush MOUNTPOINT|--cache-dir D [--timeout S] [--json] [--retry-failed]",
	  "block until every pending change is committed" },
	{ "status", cmd_status, "status MOUNTPOINT|--cache-dir D [--json] [--ack-conflicts]",
	  "pending operations, uploads, errors, conflicts" },
	{ "trash", cmd_trash, "trash list|purge SOURCE [options]",
	  "list or purge the Drive trash / noncurrent GCS generations" },
	{ "cache", cmd_cache, "cache warm|status|drop PATH... [--max-size SIZE] [--json]",
	  "fetch a tree into the read cache, show or drop what is cached" },
	{ "auth", cmd_auth, "auth login|whoami|print-token [options]",
	  "obtain and inspect Google credentials" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: durafs COMMAND [ARGS...]\n"
		     "       durafs --version | --help\n\n"
		     "durafs mounts Google Drive or a Cloud Storage bucket and never loses a write.\n\n"
		     "Commands:\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  durafs %s\n      %s%s\n", commands[i].usage, commands[i].summary,
			commands[i].fn ? "" : " (planned, not built yet)");
	fprintf(out, "\nRun `durafs COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("durafs %s\n", DURAFS_VERSION);
		return CLI_OK;
	}
	for (i = 0; i < NCOMMANDS; i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		if (!commands[i].fn) {
			fprintf(stderr, "durafs: '%s' is planned but not built yet in durafs %s\n",
				commands[i].name, DURAFS_VERSION);
			return CLI_FAIL;
		}
		return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "durafs: unknown command '%s' (see durafs --help)\n", argv[1]);
	return CLI_USAGE;
}
