/* durafs command-line commands: each `durafs CMD ...` is one function in fs/
 * that takes the arguments after CMD and returns the process exit status
 * (0 success, 1 failure, 2 usage error). */
#ifndef DURAFS_CLI_H
#define DURAFS_CLI_H

/* Exit statuses shared by every command. */
enum {
	CLI_OK = 0,
	CLI_FAIL = 1,
	CLI_USAGE = 2,
};

/* `durafs auth login|whoami|print-token` (fs/cmd_auth.c). argv[0] is "auth". */
int cmd_auth(int argc, char **argv);

/* `durafs mount SOURCE MOUNTPOINT [-o ...]` (fs/cmd_mount.c). */
int cmd_mount(int argc, char **argv);
/* `durafs unmount MOUNTPOINT [--no-flush] [--timeout S]` (fs/cmd_unmount.c). */
int cmd_unmount(int argc, char **argv);
/* `durafs sync --flush MOUNTPOINT|--cache-dir D` (fs/cmd_sync.c). */
int cmd_sync(int argc, char **argv);
/* `durafs status MOUNTPOINT [--json]` (fs/cmd_status.c). */
int cmd_status(int argc, char **argv);
/* `durafs trash list|purge SOURCE [...]` (fs/cmd_trash.c). */
int cmd_trash(int argc, char **argv);
/* `durafs cache warm|status|drop PATH...` (fs/cmd_cache.c). */
int cmd_cache(int argc, char **argv);

#endif
