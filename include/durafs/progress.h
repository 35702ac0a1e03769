/* durafs progress display (fs/progress.c): what long CLI operations (sync
 * --flush, unmount) show while they wait: a bar updated in place with \r on
 * a terminal, a plain line every few seconds otherwise, or JSON lines with
 * --json. Fed with what is left (ops and bytes); totals, rate and ETA are
 * derived here. Not thread-safe: one caller per struct prog. */
#ifndef DURAFS_PROGRESS_H
#define DURAFS_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum prog_mode {
	PROG_QUIET = 0,     /* nothing */
	PROG_TTY = 1,       /* one line rewritten with \r */
	PROG_LINES = 2,     /* a plain line now and then */
	PROG_JSON = 3,      /* {"progress":{...}} lines */
};

/* What is shown; derived by prog_update, exposed for tests. */
struct prog_snap {
	uint64_t files_done, files_total;
	uint64_t bytes_done, bytes_total;
	uint64_t failed;            /* ops that failed permanently */
	double rate;                /* bytes/s, 0 when unknown */
	int64_t eta_s;              /* seconds, -1 when unknown */
	int64_t elapsed_ms;
};

struct prog {
	FILE *out;
	int mode;
	char label[32];
	int64_t start_ms;
	int64_t last_ms;            /* last sample */
	int64_t last_print_ms;      /* last line printed (LINES, JSON) */
	uint64_t last_bytes_done;
	int drawn;                  /* TTY: a line is on screen */
	int updates;
	/* what the last printed line showed (LINES: no duplicate final line) */
	uint64_t printed_files, printed_bytes, printed_failed, printed_total;
	struct prog_snap snap;
};

/* The mode for out: PROG_JSON when json, PROG_TTY when out is a terminal,
 * PROG_LINES otherwise. */
int prog_mode_for(FILE *out, int json);

/* Start a display (label: "flush", "unmount"...; copied, cut at 31). */
void prog_init(struct prog *p, FILE *out, int mode, const char *label);

/* New sample: ops and bytes still to commit, ops failed. now_ms is a
 * monotonic clock (prog_update uses CLOCK_MONOTONIC). Totals grow when more
 * work appears; done = total - left. Prints according to the mode. */
void prog_update_at(struct prog *p, int64_t now_ms, uint64_t ops_left, uint64_t bytes_left,
		    uint64_t failed);
void prog_update(struct prog *p, uint64_t ops_left, uint64_t bytes_left, uint64_t failed);

/* End the display: prints the final state (the TTY line gets its newline). */
void prog_finish(struct prog *p);

/* "0 B", "999 B", "1.0 KiB", "15.3 MiB", "2.00 GiB" (3 significant digits). */
void prog_fmt_bytes(uint64_t n, char *buf, size_t len);

/* "7s", "3m05s", "2h04m", "--" for < 0. */
void prog_fmt_duration(int64_t s, char *buf, size_t len);

/* The one-line text of a snapshot; with width > 0, a bar of that many
 * characters first ("[#####.....] "). Returns the length written (cut at
 * len - 1). Pure. */
size_t prog_format(const struct prog_snap *s, const char *label, int width, char *buf,
		   size_t len);

#endif
