/* File helpers of the durafs-emulator's persistent stores (emu_file.h):
 * full reads/writes, path joins, mkdir -p, read-only mappings, growing
 * buffers. Stateless and thread-safe. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emu_file.h"

int emf_write_all(int fd, const void *buf, size_t len, off_t off, int use_off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = use_off ? pwrite(fd, p, len, off) : write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int emf_read_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

char *emf_path_join(const char *dir, const char *sub, const char *leaf)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s%s%s", dir, sub, leaf ? "/" : "", leaf ? leaf : "") < 0)
		return NULL;
	return p;
}

static int mkdir_one(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int emf_mkdir_p(const char *path)
{
	char *tmp = strdup(path), *p;
	int rc = -1;

	if (!tmp)
		return -1;
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir_one(tmp) < 0)
			goto out;
		*p = '/';
	}
	rc = mkdir_one(tmp);
out:
	free(tmp);
	return rc;
}

char *emf_map_ro(const char *path, size_t len)
{
	void *m;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

int emf_buf_reserve(char **buf, size_t *cap, size_t need, size_t first)
{
	size_t c;
	char *g;

	if (need <= *cap)
		return 0;
	c = *cap ? *cap : (first ? first : 1);
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return -1;
		c *= 2;
	}
	g = realloc(*buf, c);
	if (!g)
		return -1;
	*buf = g;
	*cap = c;
	return 0;
}
