/* durafs `-o layout=colab` (sync/layout.c): a backend that shows Google
 * Drive the way Colab's drive.mount does, by routing paths to one Drive
 * backend per drive:
 *
 *   ""                      fixed directory: MyDrive, Shareddrives
 *   MyDrive[/PATH]          My Drive (drive:)
 *   Shareddrives            fixed directory: one entry per shared drive
 *                           (drives.list, every page; names mapped like
 *                           Drive names, duplicates suffixed by id)
 *   Shareddrives/NAME[/P]   that shared drive (drive:shared_id=ID)
 *
 * Nothing can be created, removed or renamed in the two fixed directories
 * (be_ns_check: BE_NS_FIXED, EPERM at the mount); a rename between two
 * drives is BE_NS_XDEV (EXDEV: mv copies). The change feed combines each
 * drive's feed; its token holds one position per drive. */
#ifndef DURAFS_LAYOUT_H
#define DURAFS_LAYOUT_H

#include "durafs/backend.h"
#include "durafs/drive.h"
#include "durafs/err.h"

#define LAYOUT_MY "MyDrive"
#define LAYOUT_SHARED "Shareddrives"

/* Create the colab layout over Drive. o is used as for drive_new (its
 * source must be exactly "drive:"; ERR_INVAL otherwise, naming the
 * problem); o->http is borrowed. Makes no request. */
int layout_colab_new(const struct drive_opts *o, struct be **out, struct err *err);

/* What a remount needs when the remote cannot be reached: My Drive's root
 * id and the shared drives known (ids and shown names), as JSON text
 * (malloc'd), or NULL when My Drive's root is not resolved yet (or out of
 * memory). Thread-safe. */
char *layout_state_save(struct be *b);
/* Give a layout that has made no request the state an earlier mount saved
 * (layout_state_save): My Drive's root is the stored id, and each stored
 * shared drive is routed by its stored name to a backend whose root is its
 * id, until a drives.list (on listing Shareddrives/, an unknown name, a
 * poll) replaces the list. ERR_PARSE (prefixed "layout=colab") when state
 * is malformed; nothing is changed then. */
int layout_state_restore(struct be *b, const char *state, struct err *err);

/* Split a position of the combined change feed ("ID=TOKEN" lines, "my" for
 * My Drive) and find the token of id: malloc'd, or NULL when absent (or
 * out of memory: *oom = 1). Pure. */
char *layout_token_get(const char *combined, const char *id, int *oom);

#endif
