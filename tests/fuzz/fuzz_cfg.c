/*
 * fuzz_cfg: a device whose config space and accesses both come from the input. Bytes 0-511 are
 * config space 0x000-0x1ff (shorter inputs are zero padded) of a device with a fixed region
 * table (64-bit BAR0 16 KiB, BAR2 4 KiB, I/O BAR3, ROM, 4 KiB config) and every IRQ index; the
 * rest is a list of operations, each `op off_lo off_hi len data[len]`:
 *   op % 8: 0 config read, 1 config write, 2 region read, 3 region write (region = off >> 12,
 *   offset = off & 0xfff), 4 set VMM eventfds (index len % 5, start off % 80, count data[0]),
 *   5 service worker eventfds, 6 release (VMM gone), 7 device reset.
 * The broker callback checks what the library asks for and fails on request when op bit 7 is
 * set. Nothing may crash, leak, or ask for a SET_IRQS outside the index's vector count.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_fail.h"
#include "wkr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CFG_IN 512

static const uint32_t counts[WKR_NUM_IRQS] = {1, 32, 80, 1, 1};
static int fail_next;

static int check_irqs(void *data, const struct wkr_irq_set *s)
{
	(void)data;
	if (s->index >= WKR_NUM_IRQS)
		fuzz_fail("SET_IRQS for index %u, past the device's interrupt types", s->index);
	if (!s->disable) {
		if (s->count == 0 || s->start + s->count > counts[s->index] || !s->fds)
			fuzz_fail("SET_IRQS index %u enables vectors %u+%u (%s fds) of %u",
				  s->index, s->start, s->count, s->fds ? "with" : "without",
				  counts[s->index]);
		for (uint32_t i = 0; i < s->count; i++)
			if (s->fds[i] < -1)
				fuzz_fail("SET_IRQS index %u vector %u has fd %d", s->index,
					  s->start + i, s->fds[i]);
	}
	if (fail_next) {
		fail_next = 0;
		return -EIO;
	}
	return 0;
}

static void bars_changed(void *data, uint16_t command)
{
	(void)data;
	(void)command;
}

/* The device's memory: one memfd for the whole run, emptied and refilled for every input.
 * Truncating to 0 drops every page, so an input finds exactly what a fresh memfd would hold
 * (zeros, then its config space) and nothing a previous input wrote to a region; creating and
 * closing one per input cost more than most inputs' accesses. */
static int device_memfd(void)
{
	static int fd = -1;

	if (fd < 0)
		fd = memfd_create("fuzz-cfg", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)(WKR_REGION_OFFSET(8))) < 0)
		fuzz_fail("set-up: the device memfd: %m");
	return fd;
}

static int make_device(const uint8_t *data, size_t size, int *ret_fd, struct wkr_devinfo *in)
{
	uint8_t cfg[4096] = {0};
	const uint64_t sizes[WKR_NUM_REGIONS] = {0x4000, 0, 0x1000, 32, 0, 0, 0x10000, 4096, 0};
	int fd;

	memcpy(cfg, data, size < CFG_IN ? size : CFG_IN);
	memset(in, 0, sizeof(*in));
	in->flags = VFIO_DEVICE_FLAGS_PCI;
	for (unsigned i = 0; i < WKR_NUM_REGIONS; i++) {
		in->regions[i].size = sizes[i];
		in->regions[i].offset = WKR_REGION_OFFSET(i);
		in->regions[i].flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	}
	for (unsigned i = 0; i < WKR_NUM_IRQS; i++)
		in->irqs[i] = (struct wkr_irq_info){VFIO_IRQ_INFO_EVENTFD, counts[i]};
	fd = device_memfd();
	if (pwrite(fd, cfg, sizeof(cfg), (off_t)WKR_REGION_OFFSET(7)) != sizeof(cfg))
		return -1;
	*ret_fd = fd;
	return 0;
}

/* What the input got back: every call's result and the bytes every read returned (FNV-1a). The
 * replay test runs the corpus twice, in opposite orders, and compares: the memfd and eventfd
 * kept from one input to the next must leave nothing behind (replay.c). */
static uint64_t digest;

static void digest_add(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		digest = (digest ^ b[i]) * 0x100000001b3ull;
}

static void digest_result(int r, const uint8_t *buf, size_t len)
{
	digest_add(&r, sizeof(r));
	if (r >= 0 && buf)
		digest_add(buf, len);
}

uint64_t fuzz_output_digest(void);
uint64_t fuzz_output_digest(void)
{
	return digest;
}

static void run_ops(struct wkr_dev *d, const uint8_t *p, size_t n, int efd)
{
	uint8_t buf[256];

	while (n >= 4) {
		size_t rlen = 0; /* bytes read into buf */
		int r = 0;
		uint8_t op = p[0], len = p[3];
		uint32_t off = (uint32_t)p[1] | (uint32_t)p[2] << 8;
		size_t dlen;

		p += 4;
		n -= 4;
		dlen = (op & 7) == 1 || (op & 7) == 3 || (op & 7) == 4 ? len : 0;
		if (dlen > n)
			dlen = n;
		fail_next = op & 0x80;
		switch (op & 7) {
		case 0:
			rlen = len % 9;
			memset(buf, 0, rlen);
			r = wkr_cfg_read(d, off, buf, rlen);
			break;
		case 1:
			r = wkr_cfg_write(d, off, p, dlen % 9);
			break;
		case 2:
			rlen = len % 16;
			memset(buf, 0, rlen);
			r = wkr_region_read(d, off >> 12, off & 0xfff, buf, rlen);
			break;
		case 3:
			r = wkr_region_write(d, off >> 12, off & 0xfff, p, dlen % 16);
			break;
		case 4: {
			int fds[80];
			uint32_t count = dlen ? p[0] % 81 : 0;

			for (uint32_t i = 0; i < count; i++)
				fds[i] = efd;
			r = wkr_irq_set_fds(d, len % 5, off % 80, count, fds, (len & 8) ? efd : -1);
			break;
		}
		case 5:
			r = wkr_irq_service(d);
			break;
		case 6:
			wkr_irq_release(d);
			r = 0;
			break;
		case 7:
			r = wkr_dev_reset(d);
			break;
		}
		fail_next = 0;
		digest_result(r, rlen ? buf : NULL, rlen);
		p += dlen;
		n -= dlen;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int efd = -1;
	struct wkr_devinfo in;
	struct wkr_io io;
	struct wkr_callbacks cb = {check_irqs, bars_changed, NULL};
	struct wkr_dev *d;
	uint64_t count;
	int fd;
	int r;

	/* One eventfd for the run too, its counter read back to 0 before each input. */
	if (efd < 0)
		efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		fuzz_fail("set-up: eventfd: %m");
	(void)!read(efd, &count, sizeof(count));
	digest = 0xcbf29ce484222325ull;
	if (make_device(data, size, &fd, &in) < 0)
		return 0;
	wkr_io_from_fd(&io, fd);
	r = wkr_dev_new(&in, &io, &cb, &d);
	digest_result(r, NULL, 0);
	if (r == 0) {
		if (size > CFG_IN)
			run_ops(d, data + CFG_IN, size - CFG_IN, efd);
		wkr_dev_free(d);
	}
	return 0;
}
