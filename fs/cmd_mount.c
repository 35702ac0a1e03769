/* `durafs mount SOURCE MOUNTPOINT`: validates the options, checks the
 * credentials and the bucket or Drive folder, builds the mount (fs/mount.c), mounts with
 * FUSE, goes to the background once the mount answers, serves the control
 * socket, and on unmount or SIGTERM/SIGINT stops cleanly, leaving whatever
 * is not uploaded queued in the journal for the next mount. A remount while
 * the remote is unreachable goes on from the stored state, with a warning. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durafs/cli.h"
#include "durafs/clock.h"
#include "durafs/ctl.h"
#include "durafs/daemon.h"
#include "durafs/fs.h"
#include "durafs/http.h"
#include "durafs/log.h"
#include "durafs/mopts.h"
#include "durafs/mount.h"

#define MOUNT_TAG "mount"
#define FUSE_MAX_THREADS 64
#define FUSE_MAX_IDLE 8
/* A remount (a journal is there) gives the remote this long to answer the
 * check before going on from the stored state: a frozen server would
 * otherwise hold the mount for the HTTP layer's stall timeouts. */
#define CHECK_DEADLINE_MS 10000
#define OFFLINE_WARNING "remote unreachable: mounting from the stored state; changes are " \
	"kept and uploaded when it is back"

/* A warning on stderr when the mountpoint directory holds entries: the
 * mount hides them until it is unmounted (FUSE 3 mounts over them without
 * complaint). Nothing when empty or unreadable. */
static void warn_not_empty(const char *mountpoint)
{
	DIR *dir = opendir(mountpoint);
	struct dirent *de;
	int n = 0;

	if (!dir)
		return;
	while ((de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(dir);
	if (n)
		fprintf(stderr, "durafs mount: warning: %s is not empty: its %d entr%s hidden "
			"while durafs is mounted there\n", mountpoint, n, n == 1 ? "y is" : "ies are");
}

static void mount_usage(FILE *out)
{
	fprintf(out,
		"usage: durafs mount SOURCE MOUNTPOINT [-o opt,...] [--cache-dir DIR] [--foreground]\n"
		"\n"
		"Mount a Cloud Storage bucket (gs://BUCKET[/PREFIX]) or Google Drive (drive:[PATH],\n"
		"drive:id=FOLDER_ID[/PATH], drive:shared=NAME[/PATH], drive:shared_id=ID[/PATH])\n"
		"at MOUNTPOINT. Writes land in a local cache with a journal and are uploaded in\n"
		"the background; fsync returns only once the file is committed remotely. The\n"
		"command returns once the mount answers, or prints why it could not mount (exit 1;\n"
		"2 for a bad option). A remount while the remote is unreachable goes on from the\n"
		"state stored in the cache dir, with a warning.\n"
		"\n"
		"  --cache-dir DIR   cache and journal [$XDG_CACHE_HOME/durafs/SOURCE-HASH]\n"
		"  -f, --foreground  stay in the foreground, log to stderr\n"
		"  -o OPTS           comma-separated options:\n");
	mopts_help(out);
	fprintf(out,
		"\n"
		"Sizes take K, M, G, T (powers of 1024); durations ms, s, m, h (bare: seconds).\n"
		"Options of mount(8) and systemd (_netdev, noauto, nofail, x-systemd.*, ...) are\n"
		"accepted and ignored. The endpoint follows $STORAGE_EMULATOR_HOST (gs://) or\n"
		"$DURAFS_DRIVE_ENDPOINT (drive:); then no credentials are sent unless token_file\n"
		"or credentials is given. Otherwise the credentials are found as `durafs auth\n"
		"whoami` shows.\n");
}

/* Everything the daemon holds. */
struct daemon {
	struct mopts mo;
	struct mnt m;
	struct fs *fs;
	struct fuse_session *se;
	struct ctl_server *ctl;
	int mounted;
	int handlers;
	int notify_fd;
	int log_fd;                 /* the log file, also for stderr once detached */
	int term_fd;                /* the terminal's stderr until detached, or -1 */
	char *log_path;
	pthread_t main_thread;      /* runs the FUSE loop */
};

/* Control command "unmount": end the loop as SIGTERM does. The signal goes
 * to the main thread, which waits in the FUSE loop and is woken by it (a
 * signal handled on another thread would only set the exit flag). */
static int ctl_unmount(void *ud, struct err *err)
{
	struct daemon *d = ud;
	int rc = pthread_kill(d->main_thread, SIGTERM);

	if (rc) {
		errno = rc;
		return err_sys(err, "unmount");
	}
	return 0;
}

/* "a,b\c" -> "a\,b\\c" for a fuse option value. */
static char *opt_escape(const char *s)
{
	size_t n = strlen(s), i, k = 0;
	char *r = malloc(2 * n + 1);

	if (!r)
		return NULL;
	for (i = 0; i < n; i++) {
		if (s[i] == ',' || s[i] == '\\')
			r[k++] = '\\';
		r[k++] = s[i];
	}
	r[k] = '\0';
	return r;
}

static int session_new(struct daemon *d, struct err *err)
{
	char *fsname = opt_escape(d->mo.source), *opts = NULL;
	char *argv[4] = { NULL, NULL, NULL, NULL };
	struct fuse_args args;
	int rc = -1;

	if (!fsname)
		return err_set(err, ERR_NOMEM, "out of memory");
	if (asprintf(&opts, "fsname=durafs:%s,subtype=durafs,default_permissions%s%s", fsname,
		     d->mo.allow_other ? ",allow_other" : "", d->mo.ro ? ",ro" : "") < 0) {
		opts = NULL;
		err_set(err, ERR_NOMEM, "out of memory");
		goto out;
	}
	argv[0] = "durafs";
	argv[1] = "-o";
	argv[2] = opts;
	args.argc = 3;
	args.argv = argv;
	args.allocated = 0;
	d->se = fuse_session_new(&args, fs_lowlevel_ops(), sizeof(struct fuse_lowlevel_ops),
				 d->fs);
	fuse_opt_free_args(&args);
	if (!d->se) {
		err_set(err, ERR_INVAL, "cannot create the FUSE session (see the log)");
		goto out;
	}
	rc = 0;
out:
	free(fsname);
	free(opts);
	return rc;
}

/* Open the log destination: -o log_file, or cache_dir/durafs.log unless in
 * the foreground (stderr then goes to the log too; the terminal's stderr
 * is kept in d->term_fd for warnings until detached). */
static int log_setup(struct daemon *d, struct err *err)
{
	if (d->mo.log_file)
		d->log_path = strdup(d->mo.log_file);
	else if (!d->mo.foreground && asprintf(&d->log_path, "%s/durafs.log", d->mo.cache_dir) < 0)
		d->log_path = NULL;
	if (!d->mo.foreground || d->mo.log_file) {
		if (!d->log_path)
			return err_set(err, ERR_NOMEM, "out of memory");
		if (log_open(d->log_path, err) < 0)
			return -1;
		if (!d->mo.foreground) {
			/* stderr of libraries (libfuse) goes to the log too */
			d->log_fd = open(d->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
					 0600);
			if (d->log_fd >= 0) {
				d->term_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
				dup2(d->log_fd, STDERR_FILENO);
			}
		}
	}
	return 0;
}

/* "durafs mount: warning: MSG" on the terminal that ran `durafs mount`
 * (nothing when the log itself goes to that terminal). Best effort. */
static void term_warn(struct daemon *d, const char *msg)
{
	char line[ERR_MSG_MAX + 64];
	int fd = d->term_fd >= 0 ? d->term_fd : STDERR_FILENO;
	size_t n, off = 0;
	ssize_t w;

	if (d->term_fd < 0 && d->mo.foreground && !d->mo.log_file)
		return;
	snprintf(line, sizeof(line), "durafs mount: warning: %s\n", msg);
	n = strlen(line);
	while (off < n) {
		w = write(fd, line + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

struct check_job {
	struct mnt *m;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int rc;
	struct err err;
};

static void *check_main(void *arg)
{
	struct check_job *j = arg;
	struct err e;
	int rc;

	err_clear(&e);
	rc = mnt_check(j->m, &e);
	pthread_mutex_lock(&j->mu);
	j->rc = rc;
	j->err = e;
	j->done = 1;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* mnt_check, given up after deadline_ms (<= 0: no deadline): the requests
 * still running are then cancelled and it fails with ERR_TIMEOUT. Runs the
 * check on a helper thread (joined before returning); nothing else may
 * use m->http meanwhile. */
static int check_remote(struct mnt *m, long deadline_ms, struct err *err)
{
	struct check_job j;
	pthread_condattr_t ca;
	pthread_t th;
	struct timespec ts;
	int late = 0, rc;

	if (deadline_ms <= 0)
		return mnt_check(m, err);
	memset(&j, 0, sizeof(j));
	j.m = m;
	pthread_mutex_init(&j.mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&th, NULL, check_main, &j) != 0) {
		rc = mnt_check(m, err);
		goto out;
	}
	ts = clk_mono_after(deadline_ms);
	pthread_mutex_lock(&j.mu);
	while (!j.done && !late)
		late = pthread_cond_timedwait(&j.cv, &j.mu, &ts) == ETIMEDOUT;
	late = !j.done;
	pthread_mutex_unlock(&j.mu);
	if (late)
		http_cancel_all(m->http);
	pthread_join(th, NULL);
	if (late)
		http_uncancel(m->http);
	rc = j.rc;
	if (rc < 0 && late) {
		err_set(err, ERR_TIMEOUT, "cannot reach %s: no answer within %ld s", m->endpoint,
			deadline_ms / 1000);
	} else if (rc < 0 && err) {
		*err = j.err;
	}
out:
	pthread_cond_destroy(&j.cv);
	pthread_mutex_destroy(&j.mu);
	return rc;
}

/* Check the remote; when it cannot be reached and an earlier mount of the
 * source left its state in the cache dir, go on from that state (warning
 * in the log and on the terminal) with the journal open; otherwise fail
 * with the check's message. */
static int check_and_open(struct daemon *d, struct err *err)
{
	struct stat st;
	struct err ce, je;
	long deadline = stat(d->m.journal_path, &st) == 0 ? CHECK_DEADLINE_MS : 0;
	char msg[ERR_MSG_MAX];

	err_clear(&ce);
	if (check_remote(&d->m, deadline, &ce) < 0) {
		if (!mnt_unreachable(&ce)) {
			if (err)
				*err = ce;
			return -1;
		}
		d->m.offline = 1;
	}
	err_clear(&je);
	if (mnt_journal_open(&d->m, 0, &je) < 0) {
		if (d->m.offline && je.code == ERR_NOTFOUND) {
			/* a first mount needs the remote: the check's message */
			if (err) {
				size_t n = strlen(ce.msg);

				*err = ce;
				snprintf(err->msg + n, sizeof(err->msg) - n, " (nothing from an "
					 "earlier mount of %s is stored in %s: a first mount needs "
					 "the remote)", d->mo.source, d->mo.cache_dir);
			}
			return -1;
		}
		if (err)
			*err = je;
		return -1;
	}
	if (d->m.offline) {
		log_warn(MOUNT_TAG, "%s (%s)", OFFLINE_WARNING, ce.msg);
		snprintf(msg, sizeof(msg), "%s (%s)", OFFLINE_WARNING, ce.msg);
		term_warn(d, msg);
	}
	return 0;
}

/* Build everything up to a served mount. On failure *code is the exit code. */
static int start(struct daemon *d, int *code, struct err *err)
{
	struct fs_config cfg;

	*code = CLI_FAIL;
	if (mnt_init(&d->m, &d->mo, err) < 0) {
		*code = CLI_USAGE;
		return -1;
	}
	if (mnt_cache_dir_create(&d->m, err) < 0)
		return -1;
	if (log_setup(d, err) < 0)
		return -1;
	log_info(MOUNT_TAG, "durafs %s mounting %s on %s (cache %s, pid %ld)", DURAFS_VERSION,
		 d->mo.source, d->mo.mountpoint, d->mo.cache_dir, (long)getpid());
	if (mnt_remote_open(&d->m, err) < 0) {
		if (err && err->code == ERR_INVAL)
			*code = CLI_USAGE;
		return -1;
	}
	if (check_and_open(d, err) < 0)
		return -1;
	if (mnt_sched_start(&d->m, err) < 0)
		return -1;
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = d->m.be;
	cfg.jnl = d->m.jnl;
	cfg.sched = d->m.sched;
	cfg.mo = &d->mo;
	cfg.files_dir = d->m.files_dir;
	cfg.ctl_path = d->m.ctl_path;
	if (fs_new(&cfg, &d->fs, err) < 0)
		return -1;
	if (session_new(d, err) < 0)
		return -1;
	fs_set_session(d->fs, d->se);
	if (fuse_set_signal_handlers(d->se) < 0)
		return err_set(err, ERR_IO, "cannot install signal handlers");
	d->handlers = 1;
	d->m.fs = d->fs;
	d->m.unmount_fn = ctl_unmount;
	d->m.unmount_ud = d;
	if (ctl_server_start(d->m.ctl_path, mnt_ctl_handler, &d->m, &d->ctl, err) < 0)
		return -1;
	if (fuse_session_mount(d->se, d->mo.mountpoint) < 0)
		return err_set(err, ERR_IO, "cannot mount on %s (see the log)", d->mo.mountpoint);
	d->mounted = 1;
	return 0;
}

/* Tear down in the order the parts depend on each other; pending work
 * stays in the journal. */
static void stop(struct daemon *d)
{
	atomic_store(&d->m.stopping, 1);
	if (d->handlers)
		fuse_remove_signal_handlers(d->se);
	if (d->mounted)
		fuse_session_unmount(d->se);
	ctl_server_free(d->ctl);
	d->ctl = NULL;
	if (d->se)
		fuse_session_destroy(d->se);  /* runs the fs's destroy op if needed */
	d->se = NULL;
	if (d->m.sched)
		sch_stop(d->m.sched);
	d->m.fs = NULL;
	fs_free(d->fs);
	d->fs = NULL;
	mnt_release(&d->m);
}

int cmd_mount(int argc, char **argv)
{
	struct daemon d;
	struct err e;
	int code = CLI_FAIL, rc, i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			mount_usage(stdout);
			return CLI_OK;
		}
		if (!strcmp(argv[i], "--"))
			break;
	}
	/* Few malloc arenas: the FUSE and upload threads otherwise each grow
	 * their own, and a 100k-entry listing leaves ~30 MiB more RSS. */
	mallopt(M_ARENA_MAX, 2);
	memset(&d, 0, sizeof(d));
	d.notify_fd = -1;
	d.log_fd = -1;
	d.term_fd = -1;
	err_clear(&e);
	if (mopts_parse(argc, argv, &d.mo, &e) < 0) {
		fprintf(stderr, "durafs mount: %s\n", e.msg);
		return CLI_USAGE;
	}
	if (dmn_is_fuse_mount(d.mo.mountpoint)) {
		fprintf(stderr, "durafs mount: %s is already a mount point of a FUSE filesystem "
			"(`durafs unmount %s` first)\n", d.mo.mountpoint, d.mo.mountpoint);
		mopts_release(&d.mo);
		return CLI_FAIL;
	}
	warn_not_empty(d.mo.mountpoint);
	log_set_level(d.mo.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	signal(SIGPIPE, SIG_IGN);
	if (!d.mo.foreground) {
		char hint[4200];

		snprintf(hint, sizeof(hint), "%s", d.mo.log_file ? d.mo.log_file : d.mo.cache_dir);
		if (!d.mo.log_file)
			strncat(hint, "/durafs.log", sizeof(hint) - strlen(hint) - 1);
		if (dmn_fork(d.mo.mountpoint, hint, &d.notify_fd, &e) < 0) {
			fprintf(stderr, "durafs mount: %s\n", e.msg);
			mopts_release(&d.mo);
			return CLI_FAIL;
		}
	}
	d.main_thread = pthread_self();  /* after the fork: the daemon's */
	if (start(&d, &code, &e) < 0) {
		if (d.log_path)
			log_error(MOUNT_TAG, "%s", e.msg);
		if (d.notify_fd >= 0)
			dmn_notify(&d.notify_fd, 0, code, e.msg);
		else
			fprintf(stderr, "durafs mount: %s\n", e.msg);
		stop(&d);
		goto out;
	}
	log_info(MOUNT_TAG, "mounted %s on %s", d.mo.source, d.mo.mountpoint);
	if (d.notify_fd >= 0) {
		dmn_notify(&d.notify_fd, 1, 0, NULL);
		dmn_detach(d.log_fd);
	}
	if (d.term_fd >= 0)
		close(d.term_fd);
	d.term_fd = -1;
	rc = dmn_session_loop(d.se, FUSE_MAX_THREADS, FUSE_MAX_IDLE, 1);
	if (rc > 0)
		log_info(MOUNT_TAG, "signal %d: unmounting %s (pending changes stay queued)", rc,
			 d.mo.mountpoint);
	else if (rc < 0)
		log_error(MOUNT_TAG, "FUSE loop ended with an error: %s", strerror(-rc));
	else
		log_info(MOUNT_TAG, "%s was unmounted", d.mo.mountpoint);
	stop(&d);
	log_info(MOUNT_TAG, "stopped cleanly");
	code = rc < 0 ? CLI_FAIL : CLI_OK;
out:
	log_close();
	if (d.term_fd >= 0)
		close(d.term_fd);
	if (d.log_fd >= 0)
		close(d.log_fd);
	free(d.log_path);
	mopts_release(&d.mo);
	return code;
}
