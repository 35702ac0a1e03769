/* durafs local view (fs/view.c): the pure rules that turn a stored remote
 * listing plus the journal's live files minus its pending removals into
 * what the user sees, and that map a local path back to where the remote
 * still has it while renames are pending. No I/O: fs/ feeds it rows it
 * read from the journal. */
#ifndef DURAFS_VIEW_H
#define DURAFS_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "durafs/journal.h"

/*
 * The rule for one name N of a directory
 * --------------------------------------
 * Inputs: L, the stored remote entry for N (or none); J, the live journal
 * file at N (or none); R, whether N is among the journal's removed names.
 *   1. J exists and is dirty or was never committed (base NULL): J shows,
 *      with its own attributes ("local": a pending creation or change).
 *   2. J exists, is clean, and L shows the very version J mirrors (same
 *      type, same remote version, same mtime to the second): L shows, with
 *      J's fid. No journal query is needed (the common case of files the
 *      mount has read or has uploaded).
 *   3. Otherwise J is clean but disagrees with L (or L is absent): the
 *      caller's `active` callback says whether J still has unfinished
 *      operations (a pending rename or mtime change, a failed op). If so J
 *      shows, local; if not the remote is the authority: L shows (with J's
 *      fid; the remote changed since J was recorded) or, without L, N is
 *      hidden (removed remotely). An L of J's type without a remote
 *      version is the placeholder the mount stores for its own creations
 *      and renames until the commit tells it the remote version, and an L
 *      older than J's version (same object, lower generation) is a listing
 *      taken before our own commit: in both cases J shows (not local), so
 *      a file just committed never flickers away or back in time.
 *   4. No J: L shows unless R (a pending unlink or rename away hides it).
 * Strings in the results point into the inputs, which must outlive them.
 */

/* Flags of a view entry. */
#define VIEW_LOCAL 1u   /* attributes come from the journal (local state) */

struct view_ent {
	const char *name;       /* last component (borrowed) */
	int type;               /* enum jnl_type */
	uint64_t size;
	int64_t mtime_ns;
	uint64_t fid;           /* journal fid, 0 when the journal has none */
	const char *remote;     /* remote version the content is read from, or
				 * NULL (local content, or a prefix directory) */
	unsigned flags;
};

/* Whether clean journal file f still has unfinished operations: 1 yes,
 * 0 no, or a negative errno (the merge then fails with it). */
typedef int (*view_active_fn)(void *ud, const struct jnl_file *f);

/* Apply the rule to one name. l and jf may be NULL; jf must be live (path
 * set). Returns 1 when the name shows (*out filled), 0 when hidden, or the
 * negative errno of the callback. */
int view_pick(const struct jnl_entry *l, const struct jnl_file *jf, int removed,
	      view_active_fn active, void *ud, struct view_ent *out);

/* Merge a whole directory: l[0..nl) sorted by name (jnl_dir_get),
 * jv[0..nj) the live journal children sorted by path (jnl_children),
 * removed[0..nr) sorted (jnl_removed_children). *out (malloc'd, sorted by
 * name, NULL when *n is 0) gets the entries that show. 0, or a negative
 * errno (-ENOMEM, or the callback's). Unsorted inputs give -EINVAL. */
int view_merge(const struct jnl_entry *l, size_t nl, const struct jnl_file *jv,
	       size_t nj, char *const *removed, size_t nr, view_active_fn active,
	       void *ud, struct view_ent **out, size_t *n);

/* A rename the remote has not carried out yet: `from` is where the remote
 * still has what the mount shows at `to`. */
struct view_rename {
	uint64_t seq;
	uint64_t fid;
	const char *from;
	const char *to;
};

/* Whether rename r still applies (its op has not committed meanwhile):
 * 1 yes, 0 skip it. Asked only for renames that would change the path. */
typedef int (*view_keep_fn)(void *ud, const struct view_rename *r);

/* Where the remote has the content shown at `path`: undo the pending
 * renames v[0..n) (in journal order, oldest first) from the newest back,
 * skipping those keep (may be NULL: keep all) rejects. Returns a malloc'd
 * path, or NULL when out of memory. */
char *view_remote_path(const struct view_rename *v, size_t n, const char *path,
		       view_keep_fn keep, void *ud);

/* Split a mount path into its directory ("" for a top-level name) and last
 * component: *dir is malloc'd, *name points into path. 0 or -ENOMEM;
 * -EINVAL for "". */
int view_split(const char *path, char **dir /* OUT */, const char **name /* OUT */);

/* Join dir ("" = root) and name into a malloc'd path, or NULL (ENOMEM). */
char *view_join(const char *dir, const char *name);

/* 1 when path equals dir or lies below it ("" is above everything). */
int view_path_within(const char *path, const char *dir);

#endif
