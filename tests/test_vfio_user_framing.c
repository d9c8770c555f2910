/*
 * test_vfio_user_framing: the vfio-user server of the vfio-worker binary (vfu_env.c) against
 * what a VMM should not send, and the session's edges: reset and unknown commands, short and
 * lying headers, oversize messages, too many fds, ids out of order, replies from the client,
 * one VMM across both protocols, and quick reconnects; the worker's fds counted before and after.
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

/* ---- reset, unknown commands ------------------------------------------------------------------
 */

static void test_vfio_user_protocol_reset_reply_is_header_only(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	uint8_t before[2];
	uint16_t cmd;
	uint16_t msi = PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_64BIT;
	uint8_t got[2];
	uint8_t junk[4] = {0};

	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, before, 2), 0);
	cmd = 0x0006 ^ (before[0] & 0x6);
	assert_int_equal(vfu_cli_region_write(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, &cmd, 2, 0),
			 0);
	/* e1000e.img's MSI capability is at 0xd0: enabled before the reset, off after it. */
	assert_int_equal(vfu_cli_region_write(f->fd, VFIO_PCI_CONFIG_REGION_INDEX,
					      0xd0 + PCI_MSI_FLAGS, &msi, 2, 0),
			 0);
	expect_ok(f->fd, 13, NULL, 0, NULL, 0, &r);
	assert_int_equal(r.size, 16); /* QEMU's buffer is its request's: the header */
	vfu_reply_free(&r);
	/* Command is kept, as the kernel restores it across VFIO_DEVICE_RESET; MSI is back at
	 * power-on (worker/DEVICE-IMAGE.md, "Reset"). */
	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, got, 2), 0);
	assert_int_equal(got[0] & 0x6, cmd & 0x6);
	assert_int_equal(
	    vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 0xd0 + PCI_MSI_FLAGS, got, 2),
	    0);
	assert_int_equal(got[0] & PCI_MSI_FLAGS_ENABLE, 0);
	expect_error(f->fd, 13, junk, sizeof(junk), NULL, 0, EINVAL);
}

static void test_vfio_user_protocol_unknown_command_eopnotsupp(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int efd = eventfd(0, EFD_CLOEXEC);
	uint8_t p[16] = {16};

	expect_error(f->fd, 99, NULL, 0, NULL, 0, EOPNOTSUPP);
	/* Server-to-client commands and the optional IO_FDS are not served either; fds sent
	 * with any of them are closed. */
	expect_error(f->fd, 11, NULL, 0, &efd, 1, EOPNOTSUPP);
	expect_error(f->fd, 6, NULL, 0, NULL, 0, EOPNOTSUPP);
	/* fds with a command that takes none. */
	expect_error(f->fd, 7, p, sizeof(p), &efd, 1, EINVAL);
	close(efd);
	assert_int_equal(worker_fds(f), base);
}

/* ---- hostile framing
 * ----------------------------------------------------------------------------- */

static void test_vfio_user_protocol_short_header_then_close(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int efd = eventfd(0, EFD_CLOEXEC);
	uint8_t half[8] = {1, 0, 4, 0, 32, 0, 0, 0};

	/* Half a header, with an fd, then the VMM goes: the fd is closed, the worker serves
	 * the next VMM. */
	assert_int_equal(vfu_cli_raw(f->fd, half, sizeof(half), &efd, 1), 0);
	close(efd);
	reconnect(f);
	assert_int_equal(worker_fds(f), base);
}

static void test_vfio_user_protocol_size_below_header_ends_session(void **state)
{
	struct fx *f = *state;
	uint8_t h[16] = {7, 0, 4, 0, 8, 0, 0, 0};
	struct vfu_reply r;

	assert_int_equal(vfu_cli_raw(f->fd, h, sizeof(h), NULL, 0), 0);
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), 0);
	assert_int_equal(r.id, 7);
	assert_true(r.flags & F_ERROR);
	assert_int_equal(r.error, EMSGSIZE);
	vfu_reply_free(&r);
	/* Nothing after it can be framed: the session is over. */
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), -EPIPE);
	reconnect(f);
}

static void test_vfio_user_protocol_oversize_ends_session(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	uint8_t h[16] = {9, 0, 10, 0};
	int efd = eventfd(0, EFD_CLOEXEC);
	struct vfu_reply r;

	vb_le32_put(h + 4, 0xfffffff0u); /* 4 GiB: refused before anything is allocated */
	assert_int_equal(vfu_cli_raw(f->fd, h, sizeof(h), &efd, 1), 0);
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), 0);
	assert_int_equal(r.error, EMSGSIZE);
	vfu_reply_free(&r);
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), -EPIPE);
	close(efd);
	reconnect(f);
	assert_int_equal(worker_fds(f), base);
}

static void test_vfio_user_protocol_size_that_lies_einval(void **state)
{
	struct fx *f = *state;
	/* A REGION_READ whose size announces 8 bytes more than the command: framed, refused,
	 * and the session goes on. */
	uint8_t m[16 + 16 + 8] = {0};
	struct vfu_reply r;
	uint8_t info[16] = {16};
	uint8_t id[2];

	m[0] = 42;
	m[2] = 9;
	vb_le32_put(m + 4, sizeof(m));
	vb_le32_put(m + 16 + 8, VFIO_PCI_CONFIG_REGION_INDEX);
	vb_le32_put(m + 16 + 12, 4);
	assert_int_equal(vfu_cli_raw(f->fd, m, sizeof(m), NULL, 0), 0);
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), 0);
	assert_int_equal(r.id, 42);
	assert_int_equal(r.error, EINVAL);
	vfu_reply_free(&r);
	/* And a DEVICE_GET_INFO that announces less than its structure. */
	expect_error(f->fd, 4, info, 8, NULL, 0, EINVAL);
	assert_int_equal(vfu_cli_region_read(f->fd, VFIO_PCI_CONFIG_REGION_INDEX, 0, id, 2), 0);
}

static void test_vfio_user_protocol_too_many_fds_closed(void **state)
{
	struct fx *f = *state;
	int base = worker_fds(f);
	int mfd = test_memfd(4 << 20, F_SEAL_SHRINK);
	int fds[2] = {mfd, mfd};
	uint8_t p[32];
	int many[200];
	uint8_t irq[20];
	uint8_t m[36];
	struct vfu_reply r;

	/* DMA_MAP takes one fd. */
	dma_map_msg(p, 3, 0, 0x100000, 1 << 20);
	expect_error(f->fd, 2, p, 32, fds, 2, EINVAL);
	/* More fds than any command takes, across two sendmsgs of one message. */
	for (int i = 0; i < 200; i++)
		many[i] = mfd;
	set_irqs_msg(irq, TRIG_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1);
	m[0] = 5;
	m[1] = 0;
	m[2] = 8;
	m[3] = 0;
	vb_le32_put(m + 4, 36);
	vb_le32_put(m + 8, 0);
	vb_le32_put(m + 12, 0);
	memcpy(m + 16, irq, 20);
	assert_int_equal(vfu_cli_raw(f->fd, m, 10, many, 200), 0);
	assert_int_equal(vfu_cli_raw(f->fd, m + 10, 26, many, 200), 0);
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), 0);
	assert_int_equal(r.id, 5);
	assert_int_equal(r.error, EINVAL);
	vfu_reply_free(&r);
	close(mfd);
	assert_int_equal(worker_fds(f), base);
}

static void test_vfio_user_protocol_ids_out_of_order_echoed(void **state)
{
	struct fx *f = *state;
	/* Ids are the client's own: echoed as sent, in the order sent, even repeated. */
	const uint16_t ids[] = {7, 3, 65535, 3, 0};
	uint8_t p[16] = {0};

	vb_le32_put(p + 8, VFIO_PCI_CONFIG_REGION_INDEX);
	vb_le32_put(p + 12, 4);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(vfu_cli_send(f->fd, ids[i], 9, 0, p, 16, NULL, 0), 0);
	for (size_t i = 0; i < 5; i++) {
		struct vfu_reply r;

		assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), 0);
		assert_int_equal(r.id, ids[i]);
		assert_int_equal(r.cmd, 9);
		assert_int_equal(r.len, 20);
		vfu_reply_free(&r);
	}
}

static void test_vfio_user_protocol_reply_from_client_ignored(void **state)
{
	struct fx *f = *state;
	uint8_t info[16] = {16};
	struct vfu_reply r;

	/* The server sends no commands: a "reply" answers nothing and gets nothing back. */
	assert_int_equal(vfu_cli_send(f->fd, 1, 4, F_REPLY, info, 16, NULL, 0), 0);
	expect_ok(f->fd, 4, info, 16, NULL, 0, &r);
	vfu_reply_free(&r);
	/* Unknown flag bits are refused. */
	assert_int_equal(vfu_cli_send(f->fd, 2, 4, 1u << 9, info, 16, NULL, 0), 0);
	assert_int_equal(vfu_cli_recv(f->fd, 30000, &r), 0);
	assert_int_equal(r.id, 2);
	assert_int_equal(r.error, EINVAL);
	vfu_reply_free(&r);
}

static void test_vfio_user_protocol_one_vmm_across_protocols(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	/* A second vfio-user client is closed at once. */
	int second;
	uint8_t p[4] = {0, 0, 1, 0};
	int e;
	int nfd;
	struct ipc_chan *c;
	struct ipc_msg *m = NULL;
	struct ipc_error err;
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;

	assert_int_equal(vfu_cli_connect(f->sock, &second), 0);
	e = vfu_cli_call(second, 1, p, 4, NULL, 0, &r);
	assert_true(e == -EPIPE || e == -ECONNRESET);
	close(second);
	/* The native socket refuses too, its first request answered with EBUSY (so the
	 * worker's loop runs while a VMM holds the device). */
	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	h.client = "test";
	assert_int_equal(ipc_connect(f->native, &nfd), 0);
	assert_int_equal(ipc_chan_new(nfd, &ipc_proto_device, NULL, &c), 0);
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__HELLO, &h.base, NULL, 0, TEST_HANG_MS, &m, &err),
	    -EBUSY);
	ipc_chan_free(c);
	expect_ok(f->fd, 4, (uint8_t[16]){16}, 16, NULL, 0, &r);
	vfu_reply_free(&r);
}

/* A VMM that closes and reconnects at once gets in (issue 14, finding 5), also when its hangup
 * waits behind more messages than the worker serves per wakeup. */
static void test_vfio_user_protocol_quick_reconnects_admitted(void **state)
{
	struct fx *f = *state;
	uint8_t info[16] = {16};
	uint16_t v = 0;
	struct vfu_reply r;

	/* Posted writes the device refuses: no reply whose failed send would end the session
	 * early, no state changed. Stopping the worker puts them, the hangup and the next
	 * connection in front of it at once. */
	assert_int_equal(kill(f->pid, SIGSTOP), 0);
	for (int i = 0; i < 150; i++)
		assert_int_equal(vfu_cli_region_write(f->fd, 6, 0, &v, 2, 1), 0);
	reconnect_bare(f);
	assert_int_equal(kill(f->pid, SIGCONT), 0);
	assert_int_equal(vfu_cli_version(f->fd, default_json, &r), 0);
	vfu_reply_free(&r);
	/* And plain close-and-reconnect, many times over, each session served. */
	for (int i = 0; i < 200; i++) {
		reconnect(f);
		expect_ok(f->fd, 4, info, sizeof(info), NULL, 0, &r);
		vfu_reply_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define E(t) cmocka_unit_test_setup_teardown(t, setup_e1000e, teardown)
#define N(t) cmocka_unit_test_setup_teardown(t, setup_nvme, teardown)
#define D(t) cmocka_unit_test_setup_teardown(t, setup_edu, teardown)
	    E(test_vfio_user_protocol_reset_reply_is_header_only),
	    E(test_vfio_user_protocol_unknown_command_eopnotsupp),
	    E(test_vfio_user_protocol_short_header_then_close),
	    E(test_vfio_user_protocol_size_below_header_ends_session),
	    E(test_vfio_user_protocol_oversize_ends_session),
	    E(test_vfio_user_protocol_size_that_lies_einval),
	    E(test_vfio_user_protocol_too_many_fds_closed),
	    E(test_vfio_user_protocol_ids_out_of_order_echoed),
	    E(test_vfio_user_protocol_reply_from_client_ignored),
	    E(test_vfio_user_protocol_one_vmm_across_protocols),
	    E(test_vfio_user_protocol_quick_reconnects_admitted),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
