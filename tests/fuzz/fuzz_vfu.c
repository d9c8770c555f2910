/*
 * fuzz_vfu: the vfio-user server's whole receive path on a byte stream from the input: framing
 * (vfu_conn over a socketpair, so partial messages, sizes that lie and oversize headers are
 * real), then the command table and every handler (vfu_cmd, VERSION's JSON through json-c)
 * against a device built from tests/fixtures/e1000e.img with a backend that accepts everything.
 * A VERSION is sent ahead of the input when its first byte is even, so that inputs reach the
 * handlers behind it. Nothing may crash or leak (the sanitizers say), and the backend must only
 * be asked about the device's own IRQ indexes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devimg.h"
#include "fuzz_fail.h"
#include "vfu_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int b_map(void *c, uint64_t iova, uint64_t size, uint64_t off, uint32_t prot, int fd,
		 struct vb_err *err)
{
	return 0;
}

static int b_unmap(void *c, uint64_t iova, uint64_t size, struct vb_err *err)
{
	return 0;
}

static int b_unmap_all(void *c)
{
	return 0;
}

static int b_set_irqs(void *c, const struct wkr_irq_set *s)
{
	if (s->index >= WKR_NUM_IRQS)
		fuzz_fail("SET_IRQS for index %u, past the device's interrupt types", s->index);
	return 0;
}

static int b_reset(void *c, struct vb_err *err)
{
	return 0;
}

static void b_vmm_state(void *c, bool connected, pid_t pid, uid_t uid)
{
}

static int b_admit(void *c, int fd, uid_t owner, struct wkr_admit *ret)
{
	ret->grant_fd = -1;
	return 0;
}

static const struct wkr_backend_ops ops = {b_map,	b_unmap, b_unmap_all, b_set_irqs, b_reset,
					   b_vmm_state, b_admit, NULL,	      NULL};

static int dev_set_irqs(void *data, const struct wkr_irq_set *s)
{
	return b_set_irqs(data, s);
}

/* Reads (and drops) every reply the server sent, so that its socket never fills. */
static void drain(int fd)
{
	uint8_t buf[65536];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct wkr_image *img;
	struct vb_err ierr;
	int memfd, sv[2];
	struct wkr_io io;
	struct wkr_callbacks cb;
	struct wkr_dev *dev;
	struct wkr_serve core;
	struct wkr_vfu s;
	struct vfu_session v;
	const struct vfu_limits lim = {.max_msg = VFU_MSG_MAX,
				       .max_fds = WKR_VFU_MAX_IRQ_FDS,
				       .out_bytes = VFU_OUT_BYTES,
				       .out_fds = VFU_OUT_FDS};

	if (!img && wkr_image_load(VB_FIXTURES "/e1000e.img", &img, &ierr) < 0)
		fuzz_fail("set-up: e1000e.img: %s", ierr.msg);
	if (wkr_image_build(img, &memfd) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fuzz_fail("set-up: the device memfd or the socketpair");
	cb = (struct wkr_callbacks){dev_set_irqs, NULL, NULL};
	wkr_io_from_fd(&io, memfd);
	if (wkr_dev_new(wkr_image_info(img), &io, &cb, &dev) < 0)
		fuzz_fail("set-up: wkr_dev_new on a good image");
	/* the VMM's grant: region info hands it out with the mmap areas */
	core = (struct wkr_serve){.grant_fd = memfd};
	s = (struct wkr_vfu){.cfg = {.dev = dev,
				     .backend = {&ops, NULL},
				     .allow_mmap = true,
				     .iommu_pgsize = 4096,
				     .max_dma_mappings = 64},
			     .sv = &core};
	v = (struct vfu_session){.s = &s};
	if (vfu_conn_new(sv[0], &lim, &v.conn) < 0)
		fuzz_fail("set-up: vfu_conn_new");
	core.vmm = &v.base;
	wkr_irq_set_mode(dev, WKR_IRQ_VFIO);
	if (size && !(data[0] & 1)) {
		static const char js[] = "{\"capabilities\":{\"max_msg_fds\":16}}";
		uint8_t m[16 + 4 + sizeof(js)] = {0};

		m[2] = 1;
		m[4] = sizeof(m);
		m[18] = 1;
		memcpy(m + 20, js, sizeof(js));
		if (send(sv[1], m, sizeof(m), 0) != sizeof(m))
			fuzz_fail("set-up: sending VERSION: %m");
	}
	/* The stream, in pieces of at most 4 KiB, each followed by what the server makes of it. */
	for (size_t at = size ? 1 : 0; at <= size;) {
		size_t n = size - at < 4096 ? size - at : 4096;

		if (n && send(sv[1], data + at, n, MSG_DONTWAIT) < 0)
			break;
		at += n;
		for (int i = 0; i < 256; i++) {
			struct vfu_msg *m = NULL;
			int r = vfu_conn_recv(v.conn, &m);

			if (r == 0)
				r = wkr__vfu_dispatch(&s, m);
			vfu_msg_free(m);
			if (r < 0)
				break;
			drain(sv[1]);
		}
		if (n == 0)
			break;
	}
	(void)wkr_irq_release(dev);
	vfu_conn_free(v.conn);
	wkr_held_free(&v.maps);
	close(sv[1]);
	wkr_dev_free(dev);
	close(memfd);
	return 0;
}
