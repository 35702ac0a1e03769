/* Progress display for long CLI waits (sync --flush, unmount): a \r-updated
 * bar on a terminal, plain lines otherwise, JSON lines on request; totals,
 * rate (smoothed) and ETA derived from what is left. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "durafs/clock.h"
#include "durafs/progress.h"

#define PROG_LINES_EVERY_MS 2000
#define PROG_JSON_EVERY_MS 500
#define PROG_TTY_EVERY_MS 100
#define PROG_BAR 24

int prog_mode_for(FILE *out, int json)
{
	if (json)
		return PROG_JSON;
	return isatty(fileno(out)) ? PROG_TTY : PROG_LINES;
}

void prog_init(struct prog *p, FILE *out, int mode, const char *label)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->mode = mode;
	snprintf(p->label, sizeof(p->label), "%s", label ? label : "");
	p->start_ms = clk_mono_ms();
	p->last_ms = p->start_ms;
	p->snap.eta_s = -1;
}

void prog_fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)n;
	int u = -1;

	if (n < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", n);
		return;
	}
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		u++;
	}
	if (v >= 99.95)
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else if (v >= 9.995)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
}

void prog_fmt_duration(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "--");
	else if (s < 60)
		snprintf(buf, len, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, (s % 3600) / 60);
}

size_t prog_format(const struct prog_snap *s, const char *label, int width, char *buf,
		   size_t len)
{
	char done[32], total[32], rate[32], eta[32], bar[PROG_BAR + 64];
	size_t n;
	int i, fill = 0;

	if (!len)
		return 0;
	bar[0] = '\0';
	if (width > 0) {
		if (width > PROG_BAR + 32)
			width = PROG_BAR + 32;
		if (s->bytes_total)
			fill = (int)((double)s->bytes_done / (double)s->bytes_total * width);
		else if (s->files_total)
			fill = (int)((double)s->files_done / (double)s->files_total * width);
		else
			fill = width;
		if (fill > width)
			fill = width;
		bar[0] = '[';
		for (i = 0; i < width; i++)
			bar[1 + i] = i < fill ? '#' : '.';
		bar[1 + width] = ']';
		bar[2 + width] = ' ';
		bar[3 + width] = '\0';
	}
	if (!s->files_total && !s->bytes_total && !s->failed) {
		n = (size_t)snprintf(buf, len, "%s%s%snothing pending", bar,
				     label && *label ? label : "", label && *label ? ": " : "");
		return n >= len ? len - 1 : n;
	}
	prog_fmt_bytes(s->bytes_done, done, sizeof(done));
	prog_fmt_bytes(s->bytes_total, total, sizeof(total));
	if (s->rate > 0) {
		prog_fmt_bytes((uint64_t)s->rate, rate, sizeof(rate));
		strncat(rate, "/s", sizeof(rate) - strlen(rate) - 1);
	} else {
		snprintf(rate, sizeof(rate), "-- B/s");
	}
	prog_fmt_duration(s->eta_s, eta, sizeof(eta));
	n = (size_t)snprintf(buf, len, "%s%s%s%" PRIu64 "/%" PRIu64 " files, %s/%s, %s, ETA %s%s",
			     bar, label && *label ? label : "", label && *label ? ": " : "",
			     s->files_done, s->files_total, done, total, rate, eta,
			     s->failed ? ", FAILED " : "");
	if (n < len && s->failed)
		n += (size_t)snprintf(buf + n, len - n, "%" PRIu64, s->failed);
	return n >= len ? len - 1 : n;
}

static void print_json(struct prog *p)
{
	const struct prog_snap *s = &p->snap;

	fprintf(p->out, "{\"progress\":{\"files_done\":%" PRIu64 ",\"files_total\":%" PRIu64
		",\"bytes_done\":%" PRIu64 ",\"bytes_total\":%" PRIu64 ",\"failed\":%" PRIu64
		",\"rate\":%.0f,\"eta_s\":%" PRId64 ",\"elapsed_ms\":%" PRId64 "}}\n",
		s->files_done, s->files_total, s->bytes_done, s->bytes_total, s->failed,
		s->rate, s->eta_s, s->elapsed_ms);
	fflush(p->out);
}

static void draw(struct prog *p, int final)
{
	char line[512];

	switch (p->mode) {
	case PROG_TTY:
		prog_format(&p->snap, p->label, PROG_BAR, line, sizeof(line));
		/* \r, the line, and clear to its end (a shorter line than before) */
		fprintf(p->out, "\r%s\033[K%s", line, final ? "\n" : "");
		p->drawn = !final;
		fflush(p->out);
		break;
	case PROG_LINES:
		prog_format(&p->snap, p->label, 0, line, sizeof(line));
		if (final && p->printed_files == p->snap.files_done &&
		    p->printed_bytes == p->snap.bytes_done && p->printed_failed == p->snap.failed &&
		    p->printed_total == p->snap.files_total)
			break;
		fprintf(p->out, "%s\n", line);
		fflush(p->out);
		break;
	case PROG_JSON:
		print_json(p);
		break;
	default:
		break;
	}
	p->printed_files = p->snap.files_done;
	p->printed_bytes = p->snap.bytes_done;
	p->printed_failed = p->snap.failed;
	p->printed_total = p->snap.files_total;
}

void prog_update_at(struct prog *p, int64_t now_ms, uint64_t ops_left, uint64_t bytes_left,
		    uint64_t failed)
{
	struct prog_snap *s = &p->snap;
	int64_t dt = now_ms - p->last_ms, every;
	uint64_t files_done = s->files_total >= ops_left ? s->files_total - ops_left : 0;
	uint64_t bytes_done = s->bytes_total >= bytes_left ? s->bytes_total - bytes_left : 0;

	/* Totals: what was left at first, grown by whatever appears later;
	 * done never goes backwards. */
	if (p->updates == 0 || ops_left + s->files_done > s->files_total) {
		s->files_total = ops_left + s->files_done;
		files_done = s->files_done;
	}
	if (p->updates == 0 || bytes_left + s->bytes_done > s->bytes_total) {
		s->bytes_total = bytes_left + s->bytes_done;
		bytes_done = s->bytes_done;
	}
	s->files_done = files_done;
	s->bytes_done = bytes_done;
	s->failed = failed;
	s->elapsed_ms = now_ms - p->start_ms;
	if (dt > 0 && p->updates > 0) {
		double inst = (double)(s->bytes_done - p->last_bytes_done) * 1000.0 / (double)dt;

		s->rate = s->rate > 0 ? 0.7 * s->rate + 0.3 * inst : inst;
	}
	if (s->rate < 1.0 && s->elapsed_ms > 0 && s->bytes_done)
		s->rate = (double)s->bytes_done * 1000.0 / (double)s->elapsed_ms;
	if (bytes_left == 0 && ops_left == 0)
		s->eta_s = 0;
	else if (s->rate >= 1.0)
		s->eta_s = (int64_t)((double)bytes_left / s->rate + 0.5);
	else
		s->eta_s = -1;
	if (dt > 0 || p->updates == 0) {
		p->last_ms = now_ms;
		p->last_bytes_done = s->bytes_done;
	}
	every = p->mode == PROG_LINES ? PROG_LINES_EVERY_MS :
		p->mode == PROG_JSON ? PROG_JSON_EVERY_MS : PROG_TTY_EVERY_MS;
	if (p->updates == 0 || now_ms - p->last_print_ms >= every) {
		p->last_print_ms = now_ms;
		draw(p, 0);
	}
	p->updates++;
}

void prog_update(struct prog *p, uint64_t ops_left, uint64_t bytes_left, uint64_t failed)
{
	prog_update_at(p, clk_mono_ms(), ops_left, bytes_left, failed);
}

void prog_finish(struct prog *p)
{
	p->snap.elapsed_ms = clk_mono_ms() - p->start_ms;
	if (p->updates == 0)
		return;
	draw(p, 1);
}
