/* Daemon plumbing for `durafs mount`: fork with a readiness pipe so the
 * parent exits 0 only once the mount answers, detaching from the terminal,
 * and the multithreaded FUSE loop (libfuse 3.12 configuration API, so the
 * thread cap can be raised above libfuse's default of 10). */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "durafs/cli.h"
#include "durafs/daemon.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define NOTIFY_MAX 2048

int dmn_is_fuse_mount(const char *path)
{
	char parent[4200];
	struct statfs sf;
	struct stat a, b;

	if (statfs(path, &sf) < 0 || (unsigned long)sf.f_type != FUSE_SUPER_MAGIC)
		return 0;
	/* the root of a mount, not just a directory inside a FUSE filesystem */
	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(path, &a) < 0 || stat(parent, &b) < 0)
		return 1;
	return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int write_full(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The parent: wait for the child's word, check the mount, exit. */
static void parent_wait(pid_t child, int fd, const char *mountpoint, const char *log_hint)
{
	char buf[NOTIFY_MAX + 1];
	ssize_t n = read_full(fd, buf, NOTIFY_MAX);
	int status = 0, code = CLI_FAIL;
	struct stat st;
	pid_t w;

	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (!strcmp(buf, "ok")) {
			const char *why = "not a FUSE mount";

			if (stat(mountpoint, &st) < 0)
				why = strerror(errno);
			else if (dmn_is_fuse_mount(mountpoint))
				exit(CLI_OK);
			fprintf(stderr, "durafs mount: the daemon started but %s does not answer "
				"as a durafs mount (%s); see %s\n", mountpoint, why, log_hint);
			exit(CLI_FAIL);
		}
		if (buf[0] == '2' && buf[1] == ' ')
			code = CLI_USAGE;
		fprintf(stderr, "durafs mount: %s\n", buf[0] && buf[1] == ' ' ? buf + 2 : buf);
		exit(code);
	}
	do
		w = waitpid(child, &status, 0);
	while (w < 0 && errno == EINTR);
	if (w == child && WIFSIGNALED(status))
		fprintf(stderr, "durafs mount: the daemon was killed by signal %d during start-up; "
			"see %s\n", WTERMSIG(status), log_hint);
	else
		fprintf(stderr, "durafs mount: the daemon exited during start-up (status %d); "
			"see %s\n", w == child && WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			log_hint);
	exit(CLI_FAIL);
}

int dmn_fork(const char *mountpoint, const char *log_hint, int *notify_fd, struct err *err)
{
	int p[2];
	pid_t pid;

	*notify_fd = -1;
	if (pipe2(p, O_CLOEXEC) < 0)
		return err_sys(err, "pipe");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return err_sys(err, "fork");
	}
	if (pid > 0) {
		close(p[1]);
		parent_wait(pid, p[0], mountpoint, log_hint);
		/* not reached */
	}
	close(p[0]);
	setsid();
	*notify_fd = p[1];
	return 0;
}

void dmn_notify(int *notify_fd, int ok, int exit_code, const char *msg)
{
	char buf[NOTIFY_MAX];
	int n;

	if (*notify_fd < 0)
		return;
	if (ok)
		n = snprintf(buf, sizeof(buf), "ok\n");
	else
		n = snprintf(buf, sizeof(buf), "%d %s\n", exit_code == CLI_USAGE ? 2 : 1,
			     msg && *msg ? msg : "failed");
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = (int)sizeof(buf) - 1;
	(void)write_full(*notify_fd, buf, (size_t)n);
	close(*notify_fd);
	*notify_fd = -1;
}

void dmn_detach(int log_fd)
{
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		dup2(nul, STDOUT_FILENO);
		dup2(log_fd >= 0 ? log_fd : nul, STDERR_FILENO);
		if (nul > STDERR_FILENO)
			close(nul);
	} else if (log_fd >= 0) {
		dup2(log_fd, STDERR_FILENO);
	}
	if (chdir("/") < 0) {
		/* "/" always exists; nothing to do */
	}
}

int dmn_session_loop(struct fuse_session *se, unsigned max_threads, unsigned max_idle,
		     int clone_fd)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, clone_fd ? 1 : 0);
	fuse_loop_cfg_set_max_threads(cfg, max_threads);
	fuse_loop_cfg_set_idle_threads(cfg, max_idle);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc;
}
