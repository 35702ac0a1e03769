/* durafs inode table (fs/inode.c): the FUSE inode numbers of one mount and
 * the (parent, name) node each stands for, with the kernel's lookup counts,
 * so that paths can be rebuilt from inode numbers and renames move nodes.
 * Pure in-memory bookkeeping: no journal, no backend. */
#ifndef DURAFS_INODE_H
#define DURAFS_INODE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Model
 * -----
 * - Inode 1 (INO_ROOT, FUSE_ROOT_ID) is the mount's root; it always exists
 *   and is never counted or freed.
 * - Every other node has a parent inode and a name (one path component) and
 *   a lookup count (nlookup): the number of times the kernel was handed the
 *   inode (lookup, create, mkdir, symlink replies, readdirplus entries)
 *   minus what it forgot. A node is freed when its nlookup is 0 and no node
 *   names it as parent.
 * - Inode numbers are never reused during the table's life; each node also
 *   gets a generation number, unique within the table, so (ino, generation)
 *   never names two different files even across forget.
 * - A name maps to at most one attached node. ino_rename moves a node (and
 *   with it, implicitly, its whole subtree); ino_detach takes a node out of
 *   the namespace (unlink, rmdir, replaced by a rename): it keeps its inode
 *   number while the kernel still holds it (an open unlinked file) but has
 *   no path any more.
 * - Thread-safety: every function locks the table's mutex; all may be
 *   called concurrently. Nothing here blocks or allocates while waiting.
 * - Results: 0 or a negative errno (-ENOMEM, -ENOENT, -ESTALE, -EINVAL).
 */

#define INO_ROOT 1u

struct ino_table;

/* Create an empty table holding only the root. 0, or -ENOMEM. */
int ino_table_new(struct ino_table **out);

/* Free the table and every node. NULL is a no-op. */
void ino_table_free(struct ino_table *t);

/* The node named `name` in directory `parent`, created when absent, with
 * its nlookup incremented by one: *ino and *gen (gen may be NULL) are what
 * to hand the kernel. -ENOENT if parent is not a known attached directory
 * node (forgotten or detached), -EINVAL for an empty name, -ENOMEM. */
int ino_get(struct ino_table *t, uint64_t parent, const char *name,
	    uint64_t *ino /* OUT */, uint64_t *gen /* OUT */);

/* The node named `name` in `parent` without creating or counting it:
 * 0 and *ino, or -ENOENT. */
int ino_find(struct ino_table *t, uint64_t parent, const char *name,
	     uint64_t *ino /* OUT */);

/* 1 when ino is a live node (the root included), else 0. */
int ino_exists(struct ino_table *t, uint64_t ino);

/* The kernel forgot n lookups of ino. The node is freed once its count is
 * 0 and it has no children; an unknown ino or a count going below zero is
 * clamped (the kernel's word is final). The root is never freed. */
void ino_forget(struct ino_table *t, uint64_t ino, uint64_t n);

/* The mount-relative path of ino ("" for the root, "a/b/c" otherwise) as a
 * malloc'd string in *path. -ENOENT for an unknown ino, -ESTALE for a node
 * that was detached (or whose ancestor was), -ENOMEM. */
int ino_path(struct ino_table *t, uint64_t ino, char **path /* OUT */);

/* The path of child `name` of directory `parent` (the child need not have a
 * node): malloc'd in *path. Same errors as ino_path. */
int ino_child_path(struct ino_table *t, uint64_t parent, const char *name,
		   char **path /* OUT */);

/* The parent inode and a malloc'd copy of the name of ino (*name may be
 * NULL to skip). -ENOENT unknown, -ESTALE detached, -EINVAL for the root. */
int ino_parent(struct ino_table *t, uint64_t ino, uint64_t *parent /* OUT */,
	       char **name /* OUT */);

/* Move the node at (parent, name), if there is one, to (newparent,
 * newname); a node already at the destination is detached first. When no
 * node is at the source nothing changes (the kernel did not know it).
 * -ENOENT when newparent is not a known attached node, -ENOMEM. */
int ino_rename(struct ino_table *t, uint64_t parent, const char *name,
	       uint64_t newparent, const char *newname);

/* Detach the node at (parent, name) if there is one: it loses its name
 * (unlink, rmdir). Its inode number stays valid until forgotten. */
void ino_detach(struct ino_table *t, uint64_t parent, const char *name);

/* The node's lookup count (tests, debugging): 0 and *n, or -ENOENT. */
int ino_nlookup(struct ino_table *t, uint64_t ino, uint64_t *n /* OUT */);

/* An opaque 64-bit tag the filesystem keeps per node (it remembers which
 * content version the kernel's page cache holds). Unknown ino: set is a
 * no-op and get returns 0. */
void ino_set_tag(struct ino_table *t, uint64_t ino, uint64_t tag);
uint64_t ino_get_tag(struct ino_table *t, uint64_t ino);

/* Times the filesystem keeps per node while the kernel holds it (neither
 * remote stores them): set sets ctime_ns, and mtime_ns unless it is 0;
 * get gives both, 0 where never set (or for an unknown ino). Unknown ino:
 * set is a no-op. */
void ino_set_times(struct ino_table *t, uint64_t ino, int64_t mtime_ns, int64_t ctime_ns);
void ino_get_times(struct ino_table *t, uint64_t ino, int64_t *mtime_ns, int64_t *ctime_ns);

/* Number of nodes, the root included. */
size_t ino_count(struct ino_table *t);

#endif
