/*
 * Helpers shared by the worker-core tests: open a device image (a fixture file or text written
 * in the test) as a memfd laid out like a VFIO device fd, and record what the library asks the
 * broker to do (SET_IRQS) and tells the VMM (BARs changed). The recorder plays the kernel's
 * part for interrupts: routed_fd() says which eventfd a vector fires into.
 */
#ifndef VB_WKR_TEST_UTIL_H
#define VB_WKR_TEST_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devimg.h"
#include "wkr.h"

#define REC_MAX	    64
#define REC_FDS_MAX 128

struct rec_set {
	struct wkr_irq_set s;
	int fds[REC_FDS_MAX];
};

struct rec {
	int nsets;
	struct rec_set sets[REC_MAX];
	int fail_next; /* negative errno the next set_irqs returns */
	int bars_changed;
	uint16_t last_command;
};

struct tdev {
	struct wkr_dev *dev;
	struct wkr_image *img;
	int fd; /* the memfd standing in for the device fd */
	struct rec rec;
};

static inline int rec_set_irqs(void *data, const struct wkr_irq_set *s)
{
	struct rec *r = data;
	struct rec_set *e;

	if (r->fail_next) {
		int err = r->fail_next;

		r->fail_next = 0;
		return err;
	}
	if (r->nsets == REC_MAX)
		return -ENOSPC;
	e = &r->sets[r->nsets++];
	e->s = *s;
	e->s.fds = NULL;
	for (uint32_t i = 0; !s->disable && s->fds && i < s->count && i < REC_FDS_MAX; i++)
		e->fds[i] = s->fds[i];
	return 0;
}

static inline void rec_bars_changed(void *data, uint16_t command)
{
	struct rec *r = data;

	r->bars_changed++;
	r->last_command = command;
}

/* The eventfd the kernel would signal for vector v of index, per the requests so far; -1 when
 * the index is disabled or the vector has no trigger. */
static inline int routed_fd(const struct rec *r, uint32_t index, uint32_t v)
{
	for (int i = r->nsets - 1; i >= 0; i--) {
		const struct wkr_irq_set *s = &r->sets[i].s;

		if (s->index != index || s->action != VFIO_IRQ_SET_ACTION_TRIGGER)
			continue;
		if (s->disable)
			return -1;
		if (v >= s->start && v < s->start + s->count)
			return r->sets[i].fds[v - s->start];
	}
	return -1;
}

static inline int tdev_open_text(struct tdev *t, const char *text)
{
	struct vb_err err;
	struct wkr_io io;
	int r;
	struct wkr_callbacks cb;

	memset(t, 0, sizeof(*t));
	t->fd = -1;
	r = wkr_image_parse(text, strlen(text), &t->img, &err);
	if (r < 0) {
		fprintf(stderr, "# image: %s\n", err.msg);
		return r;
	}
	r = wkr_image_build(t->img, &t->fd);
	if (r < 0)
		return r;
	wkr_io_from_fd(&io, t->fd);
	cb = (struct wkr_callbacks){rec_set_irqs, rec_bars_changed, &t->rec};
	return wkr_dev_new(wkr_image_info(t->img), &io, &cb, &t->dev);
}

static inline int tdev_open_fixture(struct tdev *t, const char *name)
{
	char path[512];
	FILE *f;
	static char buf[1 << 20];
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", VB_FIXTURES, name);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return tdev_open_text(t, buf);
}

static inline void tdev_close(struct tdev *t)
{
	wkr_dev_free(t->dev);
	wkr_image_free(t->img);
	if (t->fd >= 0)
		close(t->fd);
	t->dev = NULL;
	t->img = NULL;
	t->fd = -1;
}

static inline uint32_t cfg_rd(struct tdev *t, uint32_t off, size_t len)
{
	uint8_t b[4] = {0};

	if (wkr_cfg_read(t->dev, off, b, len) < 0)
		return 0xdeadbeef;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline int cfg_wr(struct tdev *t, uint32_t off, size_t len, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

	return wkr_cfg_write(t->dev, off, b, len);
}

/* What the device itself holds at a config offset (bypassing the emulation). */
static inline uint32_t phys_rd(struct tdev *t, uint32_t off, size_t len)
{
	uint8_t b[4] = {0};

	if (pread(t->fd, b, len, (off_t)(WKR_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + off)) !=
	    (ssize_t)len)
		return 0xdeadbeef;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline int phys_wr(struct tdev *t, uint32_t off, size_t len, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

	return pwrite(t->fd, b, len,
		      (off_t)(WKR_REGION_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + off)) ==
		       (ssize_t)len
		   ? 0
		   : -EIO;
}

/* Reads an eventfd without blocking: its counter, 0 when nothing fired. */
static inline uint64_t efd_count(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* True when fd `a` is the same eventfd as `b` (the library routes dups of the VMM's fds):
 * signals through `a` and drains `b`. Both must be otherwise quiet. */
static inline bool same_efd(int a, int b)
{
	uint64_t one = 1;

	if (a < 0 || b < 0 || write(a, &one, sizeof(one)) != sizeof(one))
		return false;
	return efd_count(b) == 1;
}

static inline int new_efd(void)
{
	return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

#endif
