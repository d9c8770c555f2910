/*
 * The vfio-user server of the vfio-worker binary (standalone mode, its seccomp filter loaded
 * except in sanitizer builds), driven over its SOCK_STREAM socket by tests/vfu/vfu_client:
 * every command and every error reply, QEMU's traps, and the worker's fd count before and after,
 * read from /proc/PID/fd. Reset, unknown commands, hostile framing and sessions are
 * test_vfio_user_framing.c's; the worker and the shared messages vfu_env.c's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "base.h"
#include "le.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "vfu_client.h"
#include "test_memfd.h"
#include "test_wait.h"
#include "vfu_env.h"

/* ---- VERSION ---------------------------------------------------------------------------- */

static json_object *version_json(const struct vfu_reply *r)
{
	json_object *o;

	assert_true(r->len > 4);
	assert_int_equal(r->data[r->len - 1], 0);
	o = json_tokener_parse((const char *)r->data + 4);
	assert_non_null(o);
	return o;
}

static int64_t cap_of(json_object *o, const char *name)
{
	json_object *caps, *v;

	if (!json_object_object_get_ex(o, "capabilities", &caps) ||
	    !json_object_object_get_ex(caps, name, &v))
		return -1;
	return json_object_get_int64(v);
}

static void test_vfio_user_protocol_version_caps_within_qemu_limits(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	json_object *o;

	close(f->fd);
	assert_int_equal(vfu_cli_connect(f->sock, &f->fd), -0);
	assert_int_equal(vfu_cli_version(f->fd, default_json, &r), 0);
	assert_int_equal(r.data[0] | r.data[1] << 8, 0); /* major */
	assert_int_equal(r.data[2] | r.data[3] << 8, 1); /* minor */
	o = version_json(&r);
	/* QEMU refuses max_msg_fds > 16 and max_data_xfer_size > 64 MiB. */
	assert_int_equal(cap_of(o, "max_msg_fds"), 16);
	assert_true(cap_of(o, "max_data_xfer_size") > 0);
	assert_true(cap_of(o, "max_data_xfer_size") <= 64 << 20);
	assert_int_equal(cap_of(o, "pgsizes"), 4096);
	assert_true(cap_of(o, "max_dma_maps") >= 1);
	json_object_put(o);
	vfu_reply_free(&r);
}

static void test_vfio_user_protocol_version_reply_fits_request_buffer(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	/* QEMU reads the reply into its request's buffer: a short proposal gets a reply no
	 * longer than it, capabilities dropped to fit. */
	const char *small[] = {NULL, "{}", "{\"capabilities\":{}}",
			       "{\"capabilities\":{\"max_msg_fds\":8, \"x\":\"yyyyyyyyyy\"}}"};

	for (size_t i = 0; i < ARRAY_SIZE(small); i++) {
		size_t req;

		reconnect_bare(f);
		req = 16 + 4 + (small[i] ? strlen(small[i]) + 1 : 0);
		assert_int_equal(vfu_cli_version(f->fd, small[i], &r), 0);
		assert_true(r.size <= req);
		if (r.len > 4)
			json_object_put(version_json(&r));
		vfu_reply_free(&r);
	}
}

static void version_fails(struct fx *f, const void *payload, size_t len, int err)
{
	struct vfu_reply r;

	reconnect_bare(f);
	assert_int_equal(vfu_cli_call(f->fd, 1, payload, len, NULL, 0, &r), 0);
	assert_true(r.flags & F_ERROR);
	assert_int_equal(r.error, err);
	vfu_reply_free(&r);
	/* The session goes on: a good VERSION is still accepted. */
	assert_int_equal(vfu_cli_version(f->fd, default_json, &r), 0);
	vfu_reply_free(&r);
}

static void test_vfio_user_protocol_version_garbage_json_einval(void **state)
{
	const char *bad[] = {"{\"capabilities\":",
			     "[1,2]",
			     "{\"capabilities\":7}",
			     "{\"capabilities\":{\"max_msg_fds\":\"16\"}}",
			     "{\"capabilities\":{\"max_msg_fds\":-1}}",
			     "{} trailing"};
	uint8_t no_nul[8] = {0, 0, 1, 0, '{', '}', ' ', ' '};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t p[128] = {0, 0, 1, 0};

		memcpy(p + 4, bad[i], strlen(bad[i]) + 1);
		version_fails(*state, p, 4 + strlen(bad[i]) + 1, EINVAL);
	}
	/* JSON without its NUL. */
	version_fails(*state, no_nul, sizeof(no_nul), EINVAL);
}

static void test_vfio_user_protocol_version_other_major_enotsup(void **state)
{
	uint8_t p[4] = {1, 0, 0, 0};

	version_fails(*state, p, sizeof(p), ENOTSUP);
}

static void test_vfio_user_protocol_version_twice_einval(void **state)
{
	struct fx *f = *state;
	uint8_t p[4] = {0, 0, 1, 0};

	expect_error(f->fd, 1, p, sizeof(p), NULL, 0, EINVAL);
}

static void test_vfio_user_protocol_command_before_version_einval(void **state)
{
	struct fx *f = *state;
	uint8_t info[16] = {16};
	struct vfu_reply r;

	reconnect_bare(f);
	assert_int_equal(vfu_cli_call(f->fd, 4, info, sizeof(info), NULL, 0, &r), 0);
	assert_true(r.flags & F_ERROR);
	assert_int_equal(r.error, EINVAL);
	vfu_reply_free(&r);
}

/* ---- device, region and IRQ information ---------------------------------------------------- */

static void test_vfio_user_protocol_device_info_fits_request(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	/* The kernel's struct vfio_device_info is 24 bytes (with cap_offset): the reply keeps
	 * to the 16 the protocol defines, never more than was sent. */
	uint8_t p[24] = {24};

	expect_ok(f->fd, 4, p, sizeof(p), NULL, 0, &r);
	assert_int_equal(r.len, 16);
	assert_int_equal(vb_le32_get(r.data), 16);
	assert_int_equal(vb_le32_get(r.data + 4), VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
	assert_int_equal(vb_le32_get(r.data + 8), VFIO_PCI_NUM_REGIONS);
	assert_int_equal(vb_le32_get(r.data + 12), VFIO_PCI_NUM_IRQS);
	vfu_reply_free(&r);
	p[0] = 8; /* argsz below the structure */
	expect_error(f->fd, 4, p, sizeof(p), NULL, 0, EINVAL);
	expect_error(f->fd, 4, p, 12, NULL, 0, EINVAL); /* payload below it */
}

static void region_info(int fd, uint32_t index, uint32_t argsz, struct vfu_reply *r)
{
	uint8_t p[32] = {0};

	vb_le32_put(p, argsz);
	vb_le32_put(p + 8, index);
	expect_ok(fd, 5, p, sizeof(p), NULL, 0, r);
}

static void test_vfio_user_protocol_region_info_sparse_mmap_with_fd(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	uint32_t need;
	uint32_t flags;
	uint32_t cap;
	uint32_t n;
	uint64_t covered = 0;
	uint64_t base;
	void *m;
	uint8_t p[32] = {32};

	/* e1000e's BAR3 (16 KiB) holds the MSI-X table and PBA: the first query is too small
	 * for the capability, says how much is needed and carries no fd. */
	region_info(f->fd, 3, 32, &r);
	need = vb_le32_get(r.data);
	assert_int_equal(r.len, 32);
	assert_int_equal(r.nfds, 0);
	assert_true(need > 32);
	assert_true(vb_le32_get(r.data + 4) & VFIO_REGION_INFO_FLAG_CAPS);
	/* cap_offset points past the header even here: QEMU's client refuses the reply
	 * otherwise (the vfio_user_qemu_host tests realize the device through it). */
	assert_int_equal(vb_le32_get(r.data + 12), 32);
	vfu_reply_free(&r);
	region_info(f->fd, 3, need, &r);
	assert_int_equal(r.len, need);
	assert_int_equal(r.nfds, 1);
	flags = vb_le32_get(r.data + 4);
	assert_true(flags & VFIO_REGION_INFO_FLAG_MMAP);
	assert_int_equal(vb_le64_get(r.data + 16), 0x4000);
	cap = vb_le32_get(r.data + 12);
	assert_int_equal(cap, 32);
	assert_int_equal(r.data[cap] | r.data[cap + 1] << 8, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
	n = vb_le32_get(r.data + cap + 8);
	assert_true(n >= 1);
	/* No mappable area covers the MSI-X table's or the PBA's page (at 0 and 0x2000). */
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = vb_le64_get(r.data + cap + 16 + 16 * i);
		uint64_t size = vb_le64_get(r.data + cap + 24 + 16 * i);

		assert_true(off >= 0x1000 && off + size <= 0x4000);
		assert_false(off <= 0x2000 && 0x2000 < off + size);
		covered += size;
	}
	assert_true(covered > 0);
	/* The fd maps the region at the reply's offset. */
	base = vb_le64_get(r.data + 24);
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, r.fds[0], (off_t)(base + 0x1000));
	assert_true(m != MAP_FAILED);
	munmap(m, 4096);
	vfu_reply_free(&r);
	/* Config space is never mappable. */
	region_info(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 256, &r);
	assert_int_equal(r.nfds, 0);
	assert_int_equal(r.len, 32);
	assert_false(vb_le32_get(r.data + 4) & VFIO_REGION_INFO_FLAG_MMAP);
	assert_int_equal(vb_le64_get(r.data + 16), 0x1000);
	vfu_reply_free(&r);
	vb_le32_put(p + 8, VFIO_PCI_NUM_REGIONS);
	expect_error(f->fd, 5, p, sizeof(p), NULL, 0, EINVAL);
}

static void test_vfio_user_protocol_irq_info_every_index(void **state)
{
	struct fx *f = *state;
	/* e1000e.img: INTx, MSI, five MSI-X vectors, ERR, REQ. */
	const uint32_t want[][2] = {{0, 1}, {1, 1}, {2, 5}, {3, 1}, {4, 1}};
	uint8_t beyond[16] = {16};

	for (uint32_t i = 0; i < 5; i++) {
		struct vfu_reply r;
		uint8_t p[16] = {16};

		vb_le32_put(p + 8, i);
		expect_ok(f->fd, 7, p, sizeof(p), NULL, 0, &r);
		assert_int_equal(r.len, 16);
		assert_int_equal(vb_le32_get(r.data + 8), i);
		assert_int_equal(vb_le32_get(r.data + 12), want[i][1]);
		vfu_reply_free(&r);
	}
	vb_le32_put(beyond + 8, 5);
	expect_error(f->fd, 7, beyond, sizeof(beyond), NULL, 0, EINVAL);
}

/* ---- region access ------------------------------------------------------------------------ */

static void test_vfio_user_protocol_region_read_config_ids(void **state)
{
	struct fx *f = *state;
	uint8_t id[4];
	uint8_t all[256], dw[4];

	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 0, id, 4), 0);
	/* e1000e: 8086:10d3 */
	assert_int_equal(id[0] | id[1] << 8, 0x8086);
	assert_int_equal(id[2] | id[3] << 8, 0x10d3);
	/* A whole 256-byte read is split internally and equals 4-byte reads. */
	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 0, all, 256), 0);
	for (int off = 0; off < 256; off += 4) {
		assert_int_equal(
		    vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, off, dw, 4), 0);
		assert_memory_equal(all + off, dw, 4);
	}
}

static void test_vfio_user_protocol_region_access_errors(void **state)
{
	struct fx *f = *state;
	uint8_t b[8];
	uint8_t p[16] = {0};

	/* Past the end, an absent region, too large a count, an index out of range. */
	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 0x1000, b, 4),
			 -EINVAL);
	assert_int_equal(vfu_cli_region_read(f->fd, 4, 0, b, 4), -EINVAL);
	assert_int_equal(vfu_cli_region_read(f->fd, 9, 0, b, 4), -EINVAL);
	assert_int_equal(vfu_cli_region_read(f->fd, 0, 0, b, 0), -EINVAL);
	vb_le32_put(p + 8, 0);
	vb_le32_put(p + 12, (1u << 20) + 1); /* over max_data_xfer_size */
	expect_error(f->fd, 9, p, sizeof(p), NULL, 0, EINVAL);
	vb_le64_put(p, UINT64_MAX - 1);
	vb_le32_put(p + 12, 4); /* wraps */
	expect_error(f->fd, 9, p, sizeof(p), NULL, 0, EINVAL);
	/* The ROM is read-only. */
	assert_int_equal(vfu_cli_region_write(f->fd, 6, 0, b, 4, 0), -EACCES);
}

static void test_vfio_user_protocol_region_write_posted_gets_no_reply(void **state)
{
	struct fx *f = *state;
	/* QEMU posts BAR writes with NO_REPLY and waits for the next command's reply only: a
	 * reply to the write would be taken for it. A failing posted write is silent too. */
	uint16_t cmd = 0x0006;
	uint8_t got[2];
	struct pollfd pfd;

	assert_int_equal(vfu_cli_region_write(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, &cmd, 2, 1),
			 0);
	assert_int_equal(vfu_cli_region_write(f->fd, 6, 0, &cmd, 2, 1), 0); /* refused, silently */
	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, got, 2), 0);
	assert_int_equal(got[0] & 0x6, 0x6);
	/* Nothing else is waiting in the socket. */
	pfd = (struct pollfd){f->fd, POLLIN, 0};
	assert_int_equal(poll(&pfd, 1, 0), 0);
}

static void test_vfio_user_protocol_region_write_reply_echoes(void **state)
{
	struct fx *f = *state;
	uint8_t p[16 + 4] = {0};
	struct vfu_reply r;
	uint8_t back[4];

	vb_le64_put(p, 0x10);
	vb_le32_put(p + 8, 0);
	vb_le32_put(p + 12, 4);
	vb_le32_put(p + 16, 0x12345678);
	expect_ok(f->fd, 10, p, sizeof(p), NULL, 0, &r);
	assert_int_equal(r.len, 16);
	assert_memory_equal(r.data, p, 16);
	vfu_reply_free(&r);
	assert_int_equal(vfu_cli_region_read(f->fd, 0, 0x10, back, 4), 0);
	assert_int_equal(vb_le32_get(back), 0x12345678);
	/* A count that is not the data's length. */
	vb_le32_put(p + 12, 8);
	expect_error(f->fd, 10, p, sizeof(p), NULL, 0, EINVAL);
}

/* ---- DMA ------------------------------------------------------------------------------------ */

static void test_vfio_user_protocol_dma_map_unmap(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int mfd = test_memfd(4 << 20, F_SEAL_SHRINK);
	uint8_t p[32], u[24];
	struct vfu_reply r;

	dma_map_msg(p, 3, 0, 0x100000, 1 << 20);
	expect_ok(f->fd, 2, p, 32, &mfd, 1, &r);
	assert_int_equal(r.len, 0);
	vfu_reply_free(&r);
	dma_map_msg(p, 1, 1 << 20, 0x200000, 1 << 20);
	expect_ok(f->fd, 2, p, 32, &mfd, 1, &r);
	vfu_reply_free(&r);
	/* Overlap: EEXIST; unaligned, empty, wrapping, unknown flags: EINVAL. */
	dma_map_msg(p, 3, 0, 0x180000, 1 << 20);
	expect_error(f->fd, 2, p, 32, &mfd, 1, EEXIST);
	dma_map_msg(p, 3, 0, 0x400800, 1 << 20);
	expect_error(f->fd, 2, p, 32, &mfd, 1, EINVAL);
	dma_map_msg(p, 3, 0, 0x400000, 0);
	expect_error(f->fd, 2, p, 32, &mfd, 1, EINVAL);
	dma_map_msg(p, 4, 0, 0x400000, 1 << 20);
	expect_error(f->fd, 2, p, 32, &mfd, 1, EINVAL);
	/* Unmap: a range that cuts a mapping, one with nothing, then exactly. */
	dma_unmap_msg(u, 0, 0x100000, 0x80000);
	expect_error(f->fd, 3, u, 24, NULL, 0, EINVAL);
	dma_unmap_msg(u, 0, 0x800000, 0x100000);
	expect_error(f->fd, 3, u, 24, NULL, 0, ENOENT);
	dma_unmap_msg(u, 0, 0x100000, 0x100000);
	expect_ok(f->fd, 3, u, 24, NULL, 0, &r);
	assert_int_equal(r.len, 24); /* the request's entry, echoed */
	assert_memory_equal(r.data, u, 24);
	vfu_reply_free(&r);
	/* The dirty bitmap is not supported; unknown flags are refused. */
	dma_unmap_msg(u, 1, 0x200000, 0x100000);
	expect_error(f->fd, 3, u, 24, NULL, 0, ENOTSUP);
	dma_unmap_msg(u, 4, 0x200000, 0x100000);
	expect_error(f->fd, 3, u, 24, NULL, 0, EINVAL);
	/* Unmap-all takes address and size 0, and leaves nothing. */
	dma_unmap_msg(u, 2, 0x200000, 0);
	expect_error(f->fd, 3, u, 24, NULL, 0, EINVAL);
	dma_unmap_msg(u, 2, 0, 0);
	expect_ok(f->fd, 3, u, 24, NULL, 0, &r);
	vfu_reply_free(&r);
	dma_unmap_msg(u, 0, 0x200000, 0x100000);
	expect_error(f->fd, 3, u, 24, NULL, 0, ENOENT);
	close(mfd);
	/* The worker kept no copy of the memfd (standalone: nothing is mapped). */
	assert_int_equal(worker_fds(f), base);
}

/* A vfio-user unmap covers any number of whole mappings (the backend, like the broker, unmaps
 * one exact mapping at a time: the session splits it); one that cuts the first or the last
 * mapping it reaches is refused and removes none. */
static void test_vfio_user_protocol_dma_unmap_covering_several(void **state)
{
	struct fx *f = *state;
	int mfd = test_memfd(4 << 20, F_SEAL_SHRINK);
	uint8_t p[32], u[24];
	struct vfu_reply r;

	for (uint64_t i = 0; i < 3; i++) {
		dma_map_msg(p, 3, i << 20, (i + 1) << 20, 1 << 20);
		expect_ok(f->fd, 2, p, 32, &mfd, 1, &r);
		vfu_reply_free(&r);
	}
	dma_unmap_msg(u, 0, 0x100000, 0x280000); /* cuts the last */
	expect_error(f->fd, 3, u, 24, NULL, 0, EINVAL);
	dma_unmap_msg(u, 0, 0x180000, 0x280000); /* cuts the first */
	expect_error(f->fd, 3, u, 24, NULL, 0, EINVAL);
	for (uint64_t i = 0; i < 3; i++) { /* all three still mapped */
		dma_map_msg(p, 3, i << 20, (i + 1) << 20, 1 << 20);
		expect_error(f->fd, 2, p, 32, &mfd, 1, EEXIST);
	}
	dma_unmap_msg(u, 0, 0, 0x400000); /* covers all three and room around them */
	expect_ok(f->fd, 3, u, 24, NULL, 0, &r);
	vfu_reply_free(&r);
	for (uint64_t i = 0; i < 3; i++) {
		dma_unmap_msg(u, 0, (i + 1) << 20, 1 << 20);
		expect_error(f->fd, 3, u, 24, NULL, 0, ENOENT);
	}
	dma_map_msg(p, 3, 0, 0x200000, 2 << 20);
	expect_ok(f->fd, 2, p, 32, &mfd, 1, &r);
	vfu_reply_free(&r);
	close(mfd);
}

static void test_vfio_user_protocol_dma_map_without_fd_enotsup(void **state)
{
	struct fx *f = *state;
	uint8_t p[32];

	/* Message-based DMA is not served: the error tells the client so. */
	dma_map_msg(p, 3, 0, 0x100000, 1 << 20);
	expect_error(f->fd, 2, p, 32, NULL, 0, ENOTSUP);
}

static void test_vfio_user_protocol_dma_map_quota_enospc(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	const char *js = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,"
			 "\"pgsizes\":4096,\"max_dma_maps\":2}}";
	json_object *o;
	int mfd;
	uint8_t p[32];

	/* The client may lower max_dma_maps; the server holds it to that. */
	reconnect_bare(f);
	assert_int_equal(vfu_cli_version(f->fd, js, &r), 0);
	o = version_json(&r);
	assert_int_equal(cap_of(o, "max_dma_maps"), 2);
	json_object_put(o);
	vfu_reply_free(&r);
	mfd = test_memfd(4 << 20, F_SEAL_SHRINK);
	for (int i = 0; i < 2; i++) {
		dma_map_msg(p, 3, 0, 0x100000 * (uint64_t)(i + 1), 0x1000);
		expect_ok(f->fd, 2, p, 32, &mfd, 1, &r);
		vfu_reply_free(&r);
	}
	dma_map_msg(p, 3, 0, 0x800000, 0x1000);
	expect_error(f->fd, 2, p, 32, &mfd, 1, ENOSPC);
	close(mfd);
}

/* ---- interrupts ----------------------------------------------------------------------------- */

/* One QEMU-style MSI-X setup and teardown on nvme's 65 vectors; the worker's fd count with
 * the vectors assigned. */
static int msix_chunks_cycle(struct fx *f)
{
	int base = worker_fds(f);
	int efd[65];
	uint8_t p[20];
	struct vfu_reply r;
	int assigned;

	for (int i = 0; i < 65; i++)
		assert_true((efd[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
	/* QEMU's way: chunks of max_msg_fds (16), the last one shorter. */
	for (uint32_t start = 0; start < 65; start += 16) {
		uint32_t n = 65 - start < 16 ? 65 - start : 16;

		set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, start, n);
		expect_ok(f->fd, 8, p, 20, efd + start, n, &r);
		assert_int_equal(r.len, 0);
		vfu_reply_free(&r);
	}
	/* One dup per vector, and at most one worker eventfd per vector (the first chunk
	 * enabled all 65; the others fired into worker eventfds until their chunk came). */
	assigned = worker_fds(f);
	assert_true(assigned >= base + 65 && assigned <= base + 65 + 65);
	/* An all -1 chunk carries no fds and de-assigns those vectors. */
	set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, 16, 16);
	expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(worker_fds(f), assigned - 16);
	/* Off: the VMM's fds go. */
	set_irqs_msg(p, TRIG_NONE, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0);
	expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(worker_fds(f), assigned - 65);
	for (int i = 0; i < 65; i++)
		close(efd[i]);
	reconnect(f);
	return assigned;
}

static void test_vfio_user_protocol_set_irqs_msix_in_chunks(void **state)
{
	struct fx *f = *state;
	int first = msix_chunks_cycle(f);
	int after = worker_fds(f);

	/* A second VMM doing the same holds exactly as many: nothing was left behind. */
	assert_int_equal(msix_chunks_cycle(f), first);
	assert_int_equal(worker_fds(f), after);
}

static void test_vfio_user_protocol_set_irqs_all_vectors_one_message(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int efd[65];
	uint8_t p[20];
	struct vfu_reply r;

	for (int i = 0; i < 65; i++)
		assert_true((efd[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
	/* cloud-hypervisor's way: every vector at once, whatever max_msg_fds said. */
	set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, 0, 65);
	expect_ok(f->fd, 8, p, 20, efd, 65, &r);
	vfu_reply_free(&r);
	assert_int_equal(worker_fds(f), base + 65);
	for (int i = 0; i < 65; i++)
		close(efd[i]);
	/* The VMM leaving drops them all. */
	reconnect(f);
	assert_int_equal(worker_fds(f), base);
}

static void test_vfio_user_protocol_set_irqs_errors_close_fds(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int efd[4];
	uint8_t p[24];

	for (int i = 0; i < 4; i++)
		assert_true((efd[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
	/* fds that are not the vectors' count; fds where the data type takes none; a range
	 * past the index; two data types; MSI-X masking (not maskable through SET_IRQS). */
	set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3);
	expect_error(f->fd, 8, p, 20, efd, 2, EINVAL);
	set_irqs_msg(p, TRIG_NONE, VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	expect_error(f->fd, 8, p, 20, efd, 1, EINVAL);
	set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, 64, 2);
	expect_error(f->fd, 8, p, 20, efd, 2, EINVAL);
	set_irqs_msg(p, TRIG_EVENTFD | VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1);
	expect_error(f->fd, 8, p, 20, efd, 1, EINVAL);
	set_irqs_msg(p, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSIX_IRQ_INDEX,
		     0, 1);
	expect_error(f->fd, 8, p, 20, NULL, 0, EINVAL);
	set_irqs_msg(p, TRIG_EVENTFD, 7, 0, 1);
	expect_error(f->fd, 8, p, 20, efd, 1, EINVAL);
	/* DATA_BOOL must carry its bytes. */
	set_irqs_msg(p, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
		     VFIO_PCI_MSIX_IRQ_INDEX, 0, 4);
	expect_error(f->fd, 8, p, 22, NULL, 0, EINVAL);
	for (int i = 0; i < 4; i++)
		close(efd[i]);
	assert_int_equal(worker_fds(f), base);
}

static void test_vfio_user_protocol_set_irqs_intx_trigger_unmask(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int trig = eventfd(0, EFD_CLOEXEC), unmask = eventfd(0, EFD_CLOEXEC);
	uint8_t p[21];
	struct vfu_reply r;
	uint64_t v = 0;

	set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	expect_ok(f->fd, 8, p, 20, &trig, 1, &r);
	vfu_reply_free(&r);
	set_irqs_msg(p, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
		     VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	expect_ok(f->fd, 8, p, 20, &unmask, 1, &r);
	vfu_reply_free(&r);
	set_irqs_msg(p, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
		     VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(worker_fds(f), base + 2);
	/* A loopback trigger signals the VMM's eventfd. */
	set_irqs_msg(p, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
		     VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	p[20] = 1;
	expect_ok(f->fd, 8, p, 21, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(read(trig, &v, sizeof(v)), sizeof(v));
	assert_int_equal(v, 1);
	set_irqs_msg(p, TRIG_NONE, VFIO_PCI_INTX_IRQ_INDEX, 0, 0);
	expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(worker_fds(f), base);
	close(trig);
	close(unmask);
}

/* The VMM's INTx eventfd is blocking (the kernel takes it) and its counter is full: a write of 1
 * would sleep until the VMM reads it. The worker answers the loopback trigger at once, the
 * counter untouched, and signals the same eventfd again once it has room. Before the worker
 * polled first, it slept in that write and this test hung. */
static void test_vfio_user_protocol_loopback_into_full_blocking_eventfd_answered(void **state)
{
	struct fx *f = *state;
	uint64_t v = 0xfffffffffffffffeull;
	int trig = eventfd(0, EFD_CLOEXEC);
	uint8_t p[21];
	struct vfu_reply r;

	assert_int_equal(write(trig, &v, sizeof(v)), sizeof(v));
	set_irqs_msg(p, TRIG_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	expect_ok(f->fd, 8, p, 20, &trig, 1, &r);
	vfu_reply_free(&r);
	set_irqs_msg(p, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
		     VFIO_PCI_INTX_IRQ_INDEX, 0, 1);
	p[20] = 1;
	expect_ok(f->fd, 8, p, 21, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(read(trig, &v, sizeof(v)), sizeof(v));
	assert_true(v == 0xfffffffffffffffeull);
	expect_ok(f->fd, 8, p, 21, NULL, 0, &r);
	vfu_reply_free(&r);
	assert_int_equal(read(trig, &v, sizeof(v)), sizeof(v));
	assert_int_equal(v, 1);
	set_irqs_msg(p, TRIG_NONE, VFIO_PCI_INTX_IRQ_INDEX, 0, 0);
	expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
	vfu_reply_free(&r);
	close(trig);
}

static void test_vfio_user_protocol_set_irqs_err_req_eventfds(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	uint8_t p[21];
	struct vfu_reply r;

	/* ERR and REQ take one eventfd each; a loopback trigger signals it, DATA_NONE with
	 * count 0 takes it away. */
	for (uint32_t index = VFIO_PCI_ERR_IRQ_INDEX; index <= VFIO_PCI_REQ_IRQ_INDEX; index++) {
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		uint64_t v = 0;

		set_irqs_msg(p, TRIG_EVENTFD, index, 0, 1);
		expect_ok(f->fd, 8, p, 20, &efd, 1, &r);
		vfu_reply_free(&r);
		assert_int_equal(worker_fds(f), base + 1);
		set_irqs_msg(p, TRIG_NONE, index, 0, 1);
		expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
		vfu_reply_free(&r);
		assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
		assert_int_equal(v, 1);
		/* Two vectors of a one-vector index, and MASK (not maskable), are refused. */
		set_irqs_msg(p, TRIG_EVENTFD, index, 0, 2);
		expect_error(f->fd, 8, p, 20, NULL, 0, EINVAL);
		set_irqs_msg(p, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, index, 0, 1);
		expect_error(f->fd, 8, p, 20, NULL, 0, EINVAL);
		set_irqs_msg(p, TRIG_NONE, index, 0, 0);
		expect_ok(f->fd, 8, p, 20, NULL, 0, &r);
		vfu_reply_free(&r);
		assert_int_equal(worker_fds(f), base);
		close(efd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define E(t) cmocka_unit_test_setup_teardown(t, setup_e1000e, teardown)
#define N(t) cmocka_unit_test_setup_teardown(t, setup_nvme, teardown)
#define D(t) cmocka_unit_test_setup_teardown(t, setup_edu, teardown)
	    E(test_vfio_user_protocol_version_caps_within_qemu_limits),
	    E(test_vfio_user_protocol_version_reply_fits_request_buffer),
	    E(test_vfio_user_protocol_version_garbage_json_einval),
	    E(test_vfio_user_protocol_version_other_major_enotsup),
	    E(test_vfio_user_protocol_version_twice_einval),
	    E(test_vfio_user_protocol_command_before_version_einval),
	    E(test_vfio_user_protocol_device_info_fits_request),
	    E(test_vfio_user_protocol_region_info_sparse_mmap_with_fd),
	    E(test_vfio_user_protocol_irq_info_every_index),
	    E(test_vfio_user_protocol_region_read_config_ids),
	    E(test_vfio_user_protocol_region_access_errors),
	    E(test_vfio_user_protocol_region_write_posted_gets_no_reply),
	    D(test_vfio_user_protocol_region_write_reply_echoes),
	    E(test_vfio_user_protocol_dma_map_unmap),
	    E(test_vfio_user_protocol_dma_unmap_covering_several),
	    E(test_vfio_user_protocol_dma_map_without_fd_enotsup),
	    E(test_vfio_user_protocol_dma_map_quota_enospc),
	    N(test_vfio_user_protocol_set_irqs_msix_in_chunks),
	    N(test_vfio_user_protocol_set_irqs_all_vectors_one_message),
	    N(test_vfio_user_protocol_set_irqs_errors_close_fds),
	    E(test_vfio_user_protocol_set_irqs_intx_trigger_unmask),
	    E(test_vfio_user_protocol_set_irqs_err_req_eventfds),
	    E(test_vfio_user_protocol_loopback_into_full_blocking_eventfd_answered),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
