/*
 * test_client: libvfiobroker's device handle against the fake worker of test_client_fake.c,
 * and, when vfio-worker is built, against the real worker's standalone mode serving
 * tests/fixtures/edu.img.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "base.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "test_client_fake.h"
#include "test_memfd.h"
#include "test_wait.h"
#include "vfiobroker/client.h"

static void test_client_handshake_reports_peer_limits_and_bdf(void **state)
{
	struct fake f = {.max_fds = 8, .max_message = 4096};
	struct vfb_dev *dev = connect_fake(&f);
	struct vfb_limits lim;

	vfb_dev_peer_limits(dev, &lim);
	assert_int_equal(lim.max_fds, 8);
	assert_int_equal(lim.max_message_bytes, 4096);
	assert_int_equal(lim.max_dma_mappings, 77);
	assert_string_equal(vfb_dev_bdf(dev), FAKE_BDF);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_int_equal(f.hello_seen_version, VB__DEV__VERSION__VERSION_CURRENT);
	assert_string_equal(f.client, "test-vmm");
}

static void test_client_handshake_wrong_version_fails_and_keeps_fd(void **state)
{
	struct fake f = {.hello_version = 99};
	struct vfb_dev *dev = NULL;
	int fd = fake_start(&f);

	assert_int_equal(vfb_dev_connect_fd(fd, NULL, 0, &dev), -EPROTONOSUPPORT);
	assert_null(dev);
	/* The caller still owns its socket after a failed connect. */
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	fake_join(&f);
}

static void test_client_connect_unknown_flags_rejected_nothing_sent(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = NULL;
	int fd = fake_start(&f);

	assert_int_equal(vfb_dev_connect_fd(fd, NULL, 0x80, &dev), -EINVAL);
	assert_null(dev);
	close(fd);
	fake_join(&f);
	assert_int_equal(f.requests, 0);
}

static void test_client_connect_missing_socket_fails_enoent(void **state)
{
	struct vfb_dev *dev = NULL;

	assert_int_equal(vfb_dev_connect("/nonexistent/vfio-worker.sock", NULL, 0, &dev), -ENOENT);
	assert_null(dev);
	assert_int_equal(vfb_dev_connect("", NULL, 0, &dev), -EINVAL);
}

/* A worker that refuses the handshake (as one does while no broker runs: ETIMEDOUT, "it may be
 * restarting; retry") leaves no handle for vfb_dev_last_error(): its message reaches the
 * caller through vfb_dev_connect_fd_why(), and the caller keeps its fd. */
static void test_client_connect_refused_worker_message_reaches_caller(void **state)
{
	struct fake f = {.error_type = VB__DEV__TYPE__HELLO, .error_code = -ETIMEDOUT};
	struct vfb_dev *dev = NULL;
	char why[128] = "stale";
	int fd = fake_start(&f);

	assert_int_equal(vfb_dev_connect_fd_why(fd, NULL, 0, &dev, why, sizeof(why)), -ETIMEDOUT);
	assert_null(dev);
	assert_string_equal(why, "denied by the fake's policy");
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	fake_join(&f);
	(void)state;
}

/* Without a worker's message, the failed step is named; a connect that succeeds leaves "". */
static void test_client_connect_why_names_failed_step_empty_on_success(void **state)
{
	struct fake f = {.max_fds = 8, .max_message = 4096, .hello_version = 99};
	struct fake ok = {.max_fds = 8, .max_message = 4096};
	struct vfb_dev *dev = NULL;
	char why[160];
	int fd;

	assert_int_equal(
	    vfb_dev_connect_why("/nonexistent/vfio-worker.sock", NULL, 0, &dev, why, sizeof(why)),
	    -ENOENT);
	assert_string_equal(why, "cannot connect to /nonexistent/vfio-worker.sock: No such file "
				 "or directory");
	fd = fake_start(&f);
	assert_int_equal(vfb_dev_connect_fd_why(fd, NULL, 0, &dev, why, sizeof(why)),
			 -EPROTONOSUPPORT);
	assert_non_null(strstr(why, "another device protocol version"));
	close(fd);
	fake_join(&f);
	fd = fake_start(&ok);
	strcpy(why, "stale");
	assert_int_equal(vfb_dev_connect_fd_why(fd, NULL, 0, &dev, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	vfb_dev_close(dev);
	fake_join(&ok);
	(void)state;
}

static void test_client_connect_fd_not_seqpacket_rejected(void **state)
{
	struct vfb_dev *dev = NULL;
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(vfb_dev_connect_fd(p[0], NULL, 0, &dev), -ENOTSOCK);
	assert_true(fcntl(p[0], F_GETFD) >= 0);
	close(p[0]);
	close(p[1]);
}

static void test_client_cfg_read_unaligned_splits_into_aligned_pieces(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t buf[16];

	/* 0x03..0x0d: 1 byte at 3, 4 at 4, 4 at 8, 1 at 0xc... */
	assert_int_equal(vfb_dev_cfg_read(dev, 0x03, buf, 11), 0);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_memory_equal(buf, f.cfg + 0x03, 11);
	assert_int_equal(f.nreads, 4);
	for (size_t i = 0; i < f.nreads; i++) {
		uint32_t s = f.reads[i].size;

		assert_true(s == 1 || s == 2 || s == 4);
		assert_int_equal(f.reads[i].off % s, 0); /* naturally aligned */
		if (i > 0)
			assert_int_equal(f.reads[i].off, f.reads[i - 1].off + f.reads[i - 1].size);
	}
	assert_int_equal(f.reads[0].off, 0x03);
	assert_int_equal(f.reads[3].off + f.reads[3].size, 0x0e);
}

static void test_client_cfg_read_two_bytes_at_odd_offset_is_two_reads(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t buf[2];

	assert_int_equal(vfb_dev_cfg_read(dev, 0x05, buf, 2), 0);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_int_equal(f.nreads, 2);
	assert_int_equal(f.reads[0].size, 1);
	assert_int_equal(f.reads[1].size, 1);
	assert_memory_equal(buf, f.cfg + 5, 2);
}

static void test_client_cfg_write_splits_and_reaches_worker(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	const uint8_t data[6] = {0xde, 0xad, 0xbe, 0xef, 0x55, 0xaa};

	assert_int_equal(vfb_dev_cfg_write(dev, 0x42, data, sizeof(data)), 0);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_memory_equal(f.cfg + 0x42, data, sizeof(data));
	assert_int_equal(f.nwrites, 2); /* 2 at 0x42, 4 at 0x44 */
	assert_int_equal(f.writes[0].size, 2);
	assert_int_equal(f.writes[1].off, 0x44);
	assert_int_equal(f.writes[1].size, 4);
}

static void test_client_cfg_access_past_end_rejected_nothing_sent(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t buf[8] = {0};

	assert_int_equal(vfb_dev_cfg_read(dev, 4094, buf, 4), -EINVAL);
	assert_int_equal(vfb_dev_cfg_read(dev, UINT32_MAX, buf, 2), -EINVAL);
	assert_int_equal(vfb_dev_cfg_write(dev, 4096, buf, 1), -EINVAL);
	assert_int_equal(vfb_dev_cfg_read(dev, 0, NULL, 4), -EINVAL);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_int_equal(f.nreads + f.nwrites, 0);
	assert_int_equal(f.requests, 1); /* HELLO only */
}

static void test_client_error_reply_surfaces_errno_and_message(void **state)
{
	struct fake f = {.error_type = VB__DEV__TYPE__CFG_WRITE, .error_code = -EPERM};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t v = 1;

	assert_int_equal(vfb_dev_cfg_write(dev, 4, &v, 1), -EPERM);
	assert_non_null(strstr(vfb_dev_last_error(dev), "denied by the fake's policy"));
	/* The handle keeps working, and the message belongs to the failed call only. */
	assert_int_equal(vfb_dev_cfg_read(dev, 0, &v, 1), 0);
	assert_string_equal(vfb_dev_last_error(dev), "");
	vfb_dev_close(dev);
	fake_join(&f);
}

static void test_client_region_info_fd_is_callers_and_mappable(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	struct vfb_region_info ri;
	int before = count_fds();
	struct stat st;

	assert_int_equal(vfb_dev_region_info(dev, 2, &ri), 0);
	assert_int_equal(ri.index, 2);
	assert_int_equal(ri.size, 0x4000);
	assert_int_equal(ri.nareas, 2);
	assert_int_equal(ri.areas[1].offset, 0x3000);
	assert_true(ri.mmap_fd >= 0);
	assert_int_equal(count_fds(), before + 1);
	assert_int_equal(fstat(ri.mmap_fd, &st), 0);
	assert_true(fcntl(ri.mmap_fd, F_GETFD) & FD_CLOEXEC);
	close(ri.mmap_fd);
	assert_int_equal(count_fds(), before);
	vfb_dev_close(dev);
	fake_join(&f);
}

static void test_client_region_info_area_outside_region_rejected_fd_closed(void **state)
{
	struct fake f = {.bad_area = true};
	struct vfb_dev *dev = connect_fake(&f);
	struct vfb_region_info ri = {.mmap_fd = -7};
	int before = count_fds();

	assert_int_equal(vfb_dev_region_info(dev, 0, &ri), -EPROTO);
	assert_int_equal(ri.mmap_fd, -7); /* untouched */
	assert_int_equal(count_fds(), before);
	vfb_dev_close(dev);
	fake_join(&f);
}

static void test_client_session_leaks_no_fds(void **state)
{
	int before = count_fds();
	struct fake f = {.max_fds = 4};
	struct vfb_dev *dev = connect_fake(&f);
	int memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	int efd[6];
	uint8_t buf[64];

	assert_true(memfd >= 0);
	assert_int_equal(ftruncate(memfd, 1 << 20), 0);
	for (int i = 0; i < 6; i++)
		assert_true((efd[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
	assert_int_equal(
	    vfb_dev_dma_map(dev, memfd, 0x1000, 0x100000, 0x2000, VFB_DMA_READ | VFB_DMA_WRITE), 0);
	assert_int_equal(vfb_dev_set_irq_fds(dev, VFB_IRQ_MSIX, 0, efd, 6), 0);
	assert_int_equal(vfb_dev_set_intx_fds(dev, efd[0], efd[1]), 0);
	assert_int_equal(vfb_dev_region_read(dev, 0, 0x10, buf, sizeof(buf)), 0);
	assert_int_equal(vfb_dev_reset(dev), 0);
	assert_int_equal(vfb_dev_removal_ack(dev), 0);
	/* The caller's fds stay open and stay the caller's. */
	assert_true(fcntl(memfd, F_GETFD) >= 0);
	for (int i = 0; i < 6; i++)
		assert_true(fcntl(efd[i], F_GETFD) >= 0);
	vfb_dev_close(dev);
	fake_join(&f);
	close(memfd);
	for (int i = 0; i < 6; i++)
		close(efd[i]);
	assert_int_equal(count_fds(), before);
	assert_int_equal(f.ndma, 1);
	assert_int_equal(f.dma_iova, 0x100000);
	assert_int_equal(f.dma_size, 0x2000);
	assert_int_equal(f.dma_offset, 0x1000);
	assert_int_equal(f.dma_prot,
			 VB__DEV__DMA_PROT__DMA_PROT_READ | VB__DEV__DMA_PROT__DMA_PROT_WRITE);
}

static void test_client_set_irq_fds_batches_by_peer_max_fds(void **state)
{
	struct fake f = {.max_fds = 4};
	struct vfb_dev *dev = connect_fake(&f);
	int efd[10];

	for (int i = 0; i < 10; i++)
		assert_true((efd[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
	assert_int_equal(vfb_dev_set_irq_fds(dev, VFB_IRQ_MSIX, 3, efd, 10), 0);
	assert_int_equal(vfb_dev_set_irq_fds(dev, VFB_IRQ_MSI, 0, NULL, 0), 0);
	vfb_dev_close(dev);
	fake_join(&f);
	for (int i = 0; i < 10; i++)
		close(efd[i]);
	assert_int_equal(f.nirqs, 4); /* 4 + 4 + 2, then the removal */
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(f.irqs[i].index, VFB_IRQ_MSIX);
		assert_int_equal(f.irqs[i].start, 3 + 4 * i);
		assert_int_equal(f.irqs[i].count, f.irqs[i].nfds);
		assert_true(f.irqs[i].nfds <= 4);
	}
	assert_int_equal(f.irqs[0].count + f.irqs[1].count + f.irqs[2].count, 10);
	assert_int_equal(f.irqs[3].index, VFB_IRQ_MSI);
	assert_int_equal(f.irqs[3].count, 0);
	assert_int_equal(f.irqs[3].nfds, 0);
}

static void test_client_intx_with_resample_sends_two_fds(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	int trig = eventfd(0, EFD_CLOEXEC), res = eventfd(0, EFD_CLOEXEC);

	assert_int_equal(vfb_dev_set_intx_fds(dev, trig, res), 0);
	assert_int_equal(vfb_dev_set_intx_fds(dev, -1, res), -EINVAL);
	vfb_dev_close(dev);
	fake_join(&f);
	close(trig);
	close(res);
	assert_int_equal(f.nirqs, 1);
	assert_true(f.irqs[0].resample);
	assert_int_equal(f.irqs[0].count, 1);
	assert_int_equal(f.irqs[0].nfds, 2);
}

static void test_client_bad_arguments_rejected_nothing_sent(void **state)
{
	struct fake f = {0};
	struct vfb_dev *dev = connect_fake(&f);
	int memfd = memfd_create("ram", MFD_CLOEXEC), efd = eventfd(0, EFD_CLOEXEC);
	int fds[2] = {efd, 1000};
	uint8_t b[4];

	assert_int_equal(vfb_dev_dma_map(dev, memfd, 0, 0x1000, 0x1000, 0), -EINVAL);
	assert_int_equal(vfb_dev_dma_map(dev, memfd, 0, 0x1000, 0x1000, 0x4 | VFB_DMA_READ),
			 -EINVAL);
	assert_int_equal(vfb_dev_dma_map(dev, memfd, 0, 0x1000, 0, VFB_DMA_READ), -EINVAL);
	assert_int_equal(vfb_dev_dma_map(dev, memfd, 0, UINT64_MAX - 0xfff, 0x2000, VFB_DMA_READ),
			 -EINVAL);
	assert_int_equal(vfb_dev_dma_map(dev, 1000, 0, 0x1000, 0x1000, VFB_DMA_READ), -EBADF);
	assert_int_equal(vfb_dev_dma_unmap(dev, UINT64_MAX, 2), -EINVAL);
	assert_int_equal(vfb_dev_set_irq_fds(dev, VFB_IRQ_MSI, 0, fds, 2), -EBADF);
	assert_int_equal(vfb_dev_set_irq_fds(dev, VFB_IRQ_MSI, UINT32_MAX, fds, 2), -EINVAL);
	assert_int_equal(vfb_dev_set_irq_fds(dev, VFB_IRQ_MSI, 0, NULL, 2), -EINVAL);
	assert_int_equal(vfb_dev_region_read(dev, 0, UINT64_MAX - 1, b, 4), -EINVAL);
	assert_int_equal(vfb_dev_set_timeout(dev, -2), -EINVAL);
	vfb_dev_close(dev);
	fake_join(&f);
	close(memfd);
	close(efd);
	assert_int_equal(f.requests, 1); /* HELLO only */
}

static void test_client_event_during_call_queued_on_event_fd(void **state)
{
	struct fake f = {.event_before_type = VB__DEV__TYPE__CFG_READ};
	struct vfb_dev *dev = connect_fake(&f);
	struct vfb_event ev;
	uint8_t v;

	assert_false(fd_readable(vfb_dev_event_fd(dev), 0));
	assert_int_equal(vfb_dev_next_event(dev, &ev), -EAGAIN);
	/* The event arrives before the reply: the call still returns its answer... */
	assert_int_equal(vfb_dev_cfg_read(dev, 0, &v, 1), 0);
	assert_int_equal(v, f.cfg[0]);
	/* ...and the event waits behind a readable event fd although the socket is drained. */
	assert_true(fd_readable(vfb_dev_event_fd(dev), 0));
	assert_int_equal(vfb_dev_next_event(dev, &ev), 0);
	assert_int_equal(ev.kind, VFB_EVENT_REMOVAL_REQUESTED);
	assert_int_equal(ev.timeout_ms, 1234);
	assert_string_equal(vfb_event_kind_name(ev.kind), "removal-requested");
	assert_int_equal(vfb_dev_next_event(dev, &ev), -EAGAIN);
	assert_false(fd_readable(vfb_dev_event_fd(dev), 0));
	vfb_dev_close(dev);
	fake_join(&f);
}

static void test_client_event_while_idle_wakes_event_fd(void **state)
{
	struct fake f = {.event_after_type = VB__DEV__TYPE__RESET};
	struct vfb_dev *dev = connect_fake(&f);
	struct vfb_event ev;

	assert_int_equal(vfb_dev_reset(dev), 0);
	assert_true(fd_readable(vfb_dev_event_fd(dev), 2000));
	assert_int_equal(vfb_dev_next_event(dev, &ev), 0);
	assert_int_equal(ev.kind, VFB_EVENT_REMOVAL_REQUESTED);
	assert_int_equal(vfb_dev_removal_ack(dev), 0);
	assert_false(fd_readable(vfb_dev_event_fd(dev), 0));
	vfb_dev_close(dev);
	fake_join(&f);
}

static void test_client_worker_hangup_reported_through_event_fd(void **state)
{
	struct fake f = {.hangup_after_hello = true};
	struct vfb_dev *dev = connect_fake(&f);
	struct vfb_event ev;
	int r;

	fake_join(&f);
	assert_true(fd_readable(vfb_dev_event_fd(dev), 2000));
	r = vfb_dev_next_event(dev, &ev);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	r = vfb_dev_reset(dev);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	vfb_dev_close(dev);
}

/* A worker that announces no broker wait (standalone, or older) is waited for the handle's
 * timeout alone, on any request. */
static void test_client_silent_worker_times_out(void **state)
{
	struct fake f = {.silent_type = VB__DEV__TYPE__RESET};
	struct vfb_dev *dev = connect_fake(&f);
	uint8_t v;

	assert_int_equal(vfb_dev_set_timeout(dev, 100), 0);
	assert_int_equal(vfb_dev_reset(dev), -ETIMEDOUT);
	/* The handle stays usable for the next request. */
	assert_int_equal(vfb_dev_cfg_read(dev, 1, &v, 1), 0);
	assert_int_equal(v, f.cfg[1]);
	vfb_dev_close(dev);
	fake_join(&f);
}

/* A worker whose HELLO says it may hold requests for the broker (its call timeout) is waited
 * for that much longer on a request the broker takes part in (here a DMA map answered after
 * 300 ms, six times the handle's timeout), so the VMM gets the worker's answer; a read, which
 * never waits for the broker, still times out at the handle's timeout. */
static void test_client_broker_wait_lets_worker_answer_first(void **state)
{
	struct fake f = {.broker_wait_ms = TEST_HANG_MS,
			 .late_type = VB__DEV__TYPE__DMA_MAP,
			 .late_ms = 300,
			 .silent_type = VB__DEV__TYPE__CFG_READ};
	struct vfb_dev *dev = connect_fake(&f);
	int mfd = test_memfd(1 << 20, F_SEAL_SHRINK);
	uint8_t v;

	(void)state;
	assert_int_equal(vfb_dev_set_timeout(dev, 50), 0);
	assert_int_equal(vfb_dev_cfg_read(dev, 1, &v, 1), -ETIMEDOUT);
	assert_int_equal(vfb_dev_dma_map(dev, mfd, 0, 0x100000, 1 << 20, VFB_DMA_READ), 0);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_int_equal(f.ndma, 1);
	assert_int_equal(f.dma_iova, 0x100000);
	close(mfd);
}

static void test_client_region_read_large_split_to_peer_limit(void **state)
{
	struct fake f = {.max_message = 4096};
	struct vfb_dev *dev = connect_fake(&f);
	static uint8_t buf[10000];
	size_t sum = 0;

	assert_int_equal(vfb_dev_region_read(dev, 1, 100, buf, sizeof(buf)), 0);
	vfb_dev_close(dev);
	fake_join(&f);
	assert_memory_equal(buf, f.bar + 100, sizeof(buf));
	assert_true(f.nrreads >= 3);
	for (size_t i = 0; i < f.nrreads; i++) {
		assert_true(f.rreads[i].size + 64 <= 4096);
		sum += f.rreads[i].size;
	}
	assert_int_equal(sum, sizeof(buf));
}

static void test_client_bdf_normalize_accepts_and_rejects(void **state)
{
	char out[VFB_BDF_MAX];

	/* The public wrapper of base/bdf.c's lenient form (test_base has its cases). */
	assert_int_equal(vfb_bdf_normalize("0A:1f.7", out, sizeof(out)), 0);
	assert_string_equal(out, "0000:0a:1f.7");
	assert_int_equal(vfb_bdf_normalize("10000:00:01.0", out, sizeof(out)), 0);
	assert_string_equal(out, "10000:00:01.0");
	assert_int_equal(vfb_bdf_normalize("0000:00:20.0", out, sizeof(out)), -EINVAL);
	assert_int_equal(vfb_bdf_normalize(NULL, out, sizeof(out)), -EINVAL);
	assert_int_equal(vfb_bdf_normalize("0000:00:03.0", NULL, 0), -EINVAL);
	assert_int_equal(vfb_bdf_normalize("0000:00:03.0", out, 5), -ENOBUFS);
	assert_int_equal(vfb_vm_name_check("web-1.prod_a"), 0);
	assert_int_equal(vfb_vm_name_check("a/b"), -EINVAL);
	assert_int_equal(vfb_vm_name_check(".."), -EINVAL);
	assert_int_equal(vfb_vm_name_check(""), -EINVAL);
}

/* The real worker, standalone, serving the captured edu image (tests/fixtures/edu.img). */
struct standalone {
	struct standalone_worker w;
	struct vfb_dev *dev;
};

/* The worker of the running test (static: the teardown ends it even when an assertion
 * failed and the test's frame is gone). */
static struct standalone sw;
static bool running;

static void standalone_start(struct standalone *w, const char *image)
{
	standalone_worker_start(&w->w, VB_WORKER_PATH, image, NULL);
	running = true;
	assert_int_equal(vfb_dev_connect(w->w.sock, "test_client", 0, &w->dev), 0);
}

static void standalone_stop(struct standalone *w)
{
	running = false;
	vfb_dev_close(w->dev);
	standalone_worker_stop(&w->w);
}

static int standalone_teardown(void **state)
{
	if (running)
		standalone_stop(&sw);
	return 0;
}

static void test_client_worker_standalone_edu_ids(void **state)
{
	struct vfb_device_info info;
	uint8_t id[4];

	standalone_start(&sw, VB_FIXTURES "/edu.img");
	assert_int_equal(vfb_dev_device_info(sw.dev, &info), 0);
	assert_int_equal(info.vendor_id, 0x1234);
	assert_int_equal(info.device_id, 0x11e8);
	assert_int_equal(vfb_dev_cfg_read(sw.dev, 0, id, 4), 0);
	assert_int_equal(id[0] | id[1] << 8, 0x1234);
	assert_int_equal(id[2] | id[3] << 8, 0x11e8);
	standalone_stop(&sw);
}

static void test_client_worker_standalone_edu_session(void **state)
{
	const uint8_t pattern[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
	struct vfb_region_info bar0;
	struct vfb_irq_info msi;
	struct vfb_event ev;
	uint8_t back[8];
	uint16_t cmd;
	int memfd, efd, before = count_fds();

	standalone_start(&sw, VB_FIXTURES "/edu.img");
	/* BAR0 as the image describes it: 1 MiB, mappable. */
	assert_int_equal(vfb_dev_region_info(sw.dev, 0, &bar0), 0);
	assert_int_equal(bar0.size, 0x100000);
	if (bar0.mmap_fd >= 0) {
		assert_true(bar0.nareas >= 1);
		close(bar0.mmap_fd);
	}
	assert_int_equal(vfb_dev_irq_info(sw.dev, VFB_IRQ_MSI, &msi), 0);
	assert_int_equal(msi.count, 1);
	/* Trapped BAR accesses reach the (inert) device and read back. */
	assert_int_equal(vfb_dev_region_write(sw.dev, 0, 0x80, pattern, sizeof(pattern)), 0);
	assert_int_equal(vfb_dev_region_read(sw.dev, 0, 0x80, back, sizeof(back)), 0);
	assert_memory_equal(back, pattern, sizeof(pattern));
	/* DMA and interrupt fds go through the broker's checks (a memfd sealed against
	 * shrinking) and are accounted. */
	memfd = memfd_create("edu-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	efd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(ftruncate(memfd, 1 << 20), 0);
	assert_int_equal(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	assert_int_equal(
	    vfb_dev_dma_map(sw.dev, memfd, 0, 0x200000, 0x10000, VFB_DMA_READ | VFB_DMA_WRITE), 0);
	assert_int_equal(vfb_dev_dma_unmap(sw.dev, 0x200000, 0x10000), 0);
	assert_true(vfb_dev_dma_unmap(sw.dev, 0x200000, 0x10000) < 0);
	assert_int_equal(vfb_dev_set_irq_fds(sw.dev, VFB_IRQ_MSI, 0, &efd, 1), 0);
	assert_true(vfb_dev_set_irq_fds(sw.dev, VFB_IRQ_MSI, 1, &efd, 1) < 0); /* one vector */
	/* Toggling memory decoding is reported to the VMM through the event fd, both ways. */
	assert_int_equal(vfb_dev_cfg_read(sw.dev, 0x04, &cmd, 2), 0);
	for (int i = 0; i < 2; i++) {
		cmd ^= 0x2;
		assert_int_equal(vfb_dev_cfg_write(sw.dev, 0x04, &cmd, 2), 0);
		assert_true(fd_readable(vfb_dev_event_fd(sw.dev), 2000));
		assert_int_equal(vfb_dev_next_event(sw.dev, &ev), 0);
		assert_int_equal(ev.kind, VFB_EVENT_BARS_CHANGED);
		assert_int_equal(ev.command & 0x2, cmd & 0x2);
		assert_true(ev.nbars >= 1);
		assert_int_equal(vfb_dev_next_event(sw.dev, &ev), -EAGAIN);
	}
	standalone_stop(&sw);
	close(memfd);
	close(efd);
	assert_int_equal(count_fds(), before);
}

/* RESET through the real worker on edu.img: VFB_EVENT_RESET is queued before the call returns,
 * with the Command register and every BAR as they are after the reset; the guest's BAR0 and
 * Command stay (the standalone device restores Command as the kernel does), MSI is off. */
static void test_client_worker_standalone_reset_event_and_view(void **state)
{
	struct vfb_event ev;
	uint32_t bar0 = 0xfea00000, got = 0;
	uint16_t cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, msi_ctrl = PCI_MSI_FLAGS_ENABLE;

	(void)state;
	standalone_start(&sw, VB_FIXTURES "/edu.img");
	assert_int_equal(vfb_dev_cfg_write(sw.dev, PCI_BASE_ADDRESS_0, &bar0, 4), 0);
	assert_int_equal(vfb_dev_cfg_write(sw.dev, PCI_COMMAND, &cmd, 2), 0);
	assert_int_equal(vfb_dev_cfg_write(sw.dev, 0x40 + PCI_MSI_FLAGS, &msi_ctrl, 2), 0);
	while (vfb_dev_next_event(sw.dev, &ev) == 0)
		; /* BARS_CHANGED from the enable */
	assert_int_equal(vfb_dev_reset(sw.dev), 0);
	assert_int_equal(vfb_dev_next_event(sw.dev, &ev), 0);
	assert_int_equal(ev.kind, VFB_EVENT_RESET);
	assert_int_equal(ev.command & cmd, cmd);
	assert_true(ev.nbars >= 1);
	assert_int_equal(ev.bars[0].index, 0);
	assert_int_equal(ev.bars[0].address, bar0);
	assert_true(ev.bars[0].enabled);
	assert_int_equal(vfb_dev_next_event(sw.dev, &ev), -EAGAIN);
	assert_int_equal(vfb_dev_cfg_read(sw.dev, PCI_BASE_ADDRESS_0, &got, 4), 0);
	assert_int_equal(got & ~0xfu, bar0);
	assert_int_equal(vfb_dev_cfg_read(sw.dev, PCI_COMMAND, &cmd, 2), 0);
	assert_int_equal(cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER),
			 PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_int_equal(vfb_dev_cfg_read(sw.dev, 0x40 + PCI_MSI_FLAGS, &msi_ctrl, 2), 0);
	assert_int_equal(msi_ctrl & PCI_MSI_FLAGS_ENABLE, 0);
	standalone_stop(&sw);
}

/* A guest's Initiate FLR, written through the VMM's config access, resets the device as the
 * kernel would (the specification image advertises FLR): the write's answer comes after
 * VFB_EVENT_RESET, and MSI-X is off again. */
static void test_client_worker_standalone_guest_flr_resets(void **state)
{
	struct vfb_event ev;
	uint16_t msix = PCI_MSIX_FLAGS_ENABLE, ctl, flr = PCI_EXP_DEVCTL_BCR_FLR;

	(void)state;
	standalone_start(&sw, VB_FIXTURES "/pcie_spec_sriov_ari_rebar.img");
	assert_int_equal(vfb_dev_cfg_write(sw.dev, 0x70 + PCI_MSIX_FLAGS, &msix, 2), 0);
	assert_int_equal(vfb_dev_next_event(sw.dev, &ev), -EAGAIN);
	assert_int_equal(vfb_dev_cfg_write(sw.dev, 0x80 + PCI_EXP_DEVCTL, &flr, 2), 0);
	assert_int_equal(vfb_dev_next_event(sw.dev, &ev), 0);
	assert_int_equal(ev.kind, VFB_EVENT_RESET);
	assert_int_equal(vfb_dev_next_event(sw.dev, &ev), -EAGAIN);
	assert_int_equal(vfb_dev_cfg_read(sw.dev, 0x70 + PCI_MSIX_FLAGS, &msix, 2), 0);
	assert_int_equal(msix & PCI_MSIX_FLAGS_ENABLE, 0);
	assert_int_equal(vfb_dev_cfg_read(sw.dev, 0x80 + PCI_EXP_DEVCTL, &ctl, 2), 0);
	assert_int_equal(ctl & PCI_EXP_DEVCTL_BCR_FLR, 0);
	standalone_stop(&sw);
}

/* Longer than one access the worker takes (ACCESS_MAX) and not a multiple of it: the library
 * splits it, every piece lands where it belongs, and what was written reads back. */
static void test_client_worker_standalone_large_region_access_split(void **state)
{
	enum { LEN = 64 * 1024 + 100, OFF = 0x10004 };
	uint8_t *in = malloc(LEN), *out = malloc(LEN);

	assert_non_null(in);
	assert_non_null(out);
	for (size_t i = 0; i < LEN; i++)
		in[i] = (uint8_t)(i * 131 + 7);
	standalone_start(&sw, VB_FIXTURES "/edu.img");
	assert_int_equal(vfb_dev_region_write(sw.dev, 0, OFF, in, LEN), 0);
	memset(out, 0, LEN);
	assert_int_equal(vfb_dev_region_read(sw.dev, 0, OFF, out, LEN), 0);
	assert_memory_equal(out, in, LEN);
	/* The piece sizes are the library's business; the bytes around the range are not. */
	assert_int_equal(vfb_dev_region_read(sw.dev, 0, OFF + LEN, out, 4), 0);
	assert_int_equal(out[0] | out[1] | out[2] | out[3], 0);
	standalone_stop(&sw);
	free(in);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_handshake_reports_peer_limits_and_bdf),
	    cmocka_unit_test(test_client_handshake_wrong_version_fails_and_keeps_fd),
	    cmocka_unit_test(test_client_connect_unknown_flags_rejected_nothing_sent),
	    cmocka_unit_test(test_client_connect_missing_socket_fails_enoent),
	    cmocka_unit_test(test_client_connect_fd_not_seqpacket_rejected),
	    cmocka_unit_test(test_client_connect_refused_worker_message_reaches_caller),
	    cmocka_unit_test(test_client_connect_why_names_failed_step_empty_on_success),
	    cmocka_unit_test(test_client_cfg_read_unaligned_splits_into_aligned_pieces),
	    cmocka_unit_test(test_client_cfg_read_two_bytes_at_odd_offset_is_two_reads),
	    cmocka_unit_test(test_client_cfg_write_splits_and_reaches_worker),
	    cmocka_unit_test(test_client_cfg_access_past_end_rejected_nothing_sent),
	    cmocka_unit_test(test_client_error_reply_surfaces_errno_and_message),
	    cmocka_unit_test(test_client_region_info_fd_is_callers_and_mappable),
	    cmocka_unit_test(test_client_region_info_area_outside_region_rejected_fd_closed),
	    cmocka_unit_test(test_client_session_leaks_no_fds),
	    cmocka_unit_test(test_client_set_irq_fds_batches_by_peer_max_fds),
	    cmocka_unit_test(test_client_intx_with_resample_sends_two_fds),
	    cmocka_unit_test(test_client_bad_arguments_rejected_nothing_sent),
	    cmocka_unit_test(test_client_event_during_call_queued_on_event_fd),
	    cmocka_unit_test(test_client_event_while_idle_wakes_event_fd),
	    cmocka_unit_test(test_client_worker_hangup_reported_through_event_fd),
	    cmocka_unit_test(test_client_silent_worker_times_out),
	    cmocka_unit_test(test_client_broker_wait_lets_worker_answer_first),
	    cmocka_unit_test(test_client_region_read_large_split_to_peer_limit),
	    cmocka_unit_test(test_client_bdf_normalize_accepts_and_rejects),
	    cmocka_unit_test_teardown(test_client_worker_standalone_edu_ids, standalone_teardown),
	    cmocka_unit_test_teardown(test_client_worker_standalone_large_region_access_split,
				      standalone_teardown),
	    cmocka_unit_test_teardown(test_client_worker_standalone_edu_session,
				      standalone_teardown),
	    cmocka_unit_test_teardown(test_client_worker_standalone_reset_event_and_view,
				      standalone_teardown),
	    cmocka_unit_test_teardown(test_client_worker_standalone_guest_flr_resets,
				      standalone_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
