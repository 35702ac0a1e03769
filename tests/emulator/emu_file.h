/* durafs-emulator file helpers shared by the persistent stores (Drive and
 * GCS data dirs): whole reads and writes that survive short counts and
 * EINTR, path building, mkdir -p, read-only mappings of blob files and
 * growing session buffers. */
#ifndef DURAFS_EMU_FILE_H
#define DURAFS_EMU_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Write all len bytes of buf to fd: at off with pwrite when use_off, else
 * at the file position with write. 0, or -1 with errno. */
int emf_write_all(int fd, const void *buf, size_t len, off_t off, int use_off);
/* Read exactly len bytes of fd at off into buf. 0, or -1 with errno (EIO
 * when the file ends first). */
int emf_read_all(int fd, void *buf, size_t len, off_t off);
/* "dir/sub" or, when leaf is not NULL, "dir/sub/leaf"; malloc'd (the
 * caller frees it), NULL when out of memory. */
char *emf_path_join(const char *dir, const char *sub, const char *leaf);
/* Create path and its missing parents (mode 0700); existing ones are
 * fine. 0, or -1 with errno. */
int emf_mkdir_p(const char *path);
/* Map the first len (> 0) bytes of the file path read-only and shared;
 * the caller munmaps it. NULL with errno on failure. */
char *emf_map_ro(const char *path, size_t len);

/* Grow the malloc'd *buf (capacity *cap, 0 when none yet) to hold at
 * least need bytes: the capacity doubles from first (when *cap is 0) until
 * it does; contents kept. 0, or -1 when out of memory (*buf untouched). */
int emf_buf_reserve(char **buf, size_t *cap, size_t need, size_t first);

#endif
