/*
 * fuzz_ctl: an orchestrator talking to vfio-brokerd's control socket. The daemon runs whole and
 * in-process (broker/daemon.c, daemon_status.c, worker.c, control*.c, the registry, the VFIO
 * core) on the fake VFIO kernel and sysfs tree of tests/ (fake_vfio.c, sysfs_tree.c) with three
 * devices in two IOMMU groups; only the worker processes are stood in for (fake_proc.c), and
 * each fake worker acknowledges its HANDOFF and REMOVAL as a healthy one would, so AddDevice and
 * RemoveDevice run to their end. The input's records (fuzz_msgs.h) are control requests on one
 * admitted connection: ADD_DEVICE, REMOVE_DEVICE, LIST_DEVICES, DEVICE_STATUS,
 * SUBSCRIBE_EVENTS, METRICS, unknown types, replies and events nobody asked for.
 *
 * Byte 0 bit 0: the fake workers refuse their HANDOFF instead (AddDevice then fails its way
 * out); bit 1: they ignore REMOVAL (forced removal). Checks: nothing crashes; once the
 * orchestrator hangs up and the daemon is freed, every handle is closed and no fd is left open
 * (the fake kernel's containers, groups and devices are fds too).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <uv.h>

#include "base.h"
#include "config.h"
#include "daemon.h"
#include "fake_proc.h"
#include "fake_vfio.h"
#include "fuzz_msgs.h"
#include "log.h"
#include "sysfs_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* runtime_dir is never touched: fake_proc.c binds VMM sockets on abstract addresses. */
static const char config_text[] = "[broker]\n"
				  "admin_uid = 0\n"
				  "runtime_dir = /nonexistent/vfio-broker-fuzz\n"
				  "log_level = err\n"
				  "[devices]\n"
				  "allow = 1234:11e8 8086:10d3\n"
				  "[limits]\n"
				  "max_dma_mappings = 64\n"
				  "max_pinned_bytes = 1M\n"
				  "max_vms = 2\n"
				  "max_devices = 3\n"
				  "remove_timeout_ms = 100\n"
				  "[worker]\n"
				  "uid_range = 61000-61002\n"
				  "heartbeat_interval_ms = 60000\n"
				  "heartbeat_timeout_ms = 120000\n"
				  "restart = on-failure\n"
				  "restart_max = 1\n"
				  /* fake_proc.c has no pre-started workers */
				  "prestart = 0\n";

static struct fake_vfio fv;
static struct brk_config *cfg;

static void setup_once(void)
{
	static const struct {
		const char *bdf, *vendor, *device;
		int group;
	} devs[] = {{"0000:00:03.0", "0x1234", "0x11e8", 5},
		    {"0000:00:04.0", "0x8086", "0x10d3", 6},
		    {"0000:00:04.1", "0x8086", "0x10d3", 6},
		    {"0000:00:05.0", "0x10de", "0x1234", 7}};
	uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
	char path[64], rel[128];
	struct vb_err err = {0};
	int fd = memfd_create("fuzz-ctl-config", MFD_CLOEXEC);

	if (fd < 0 || fchmod(fd, 0600) < 0 ||
	    write(fd, config_text, sizeof(config_text) - 1) != sizeof(config_text) - 1)
		fuzz_fail("set-up: writing the configuration to a memfd: %m");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (brk_config_load(path, &cfg, &err) < 0) {
		fuzz_fail("set-up: the configuration: %s", err.msg);
	}
	close(fd);
	/* Quiet, unless someone debugging an input asks: VB_FUZZ_LOG=debug. */
	brk_log_set_level(getenv("VB_FUZZ_LOG") ? brk_log_level_from_string(getenv("VB_FUZZ_LOG"))
						: LOG_CRIT);
	fake_vfio_init(&fv);
	tree_new(fv.root, sizeof(fv.root));
	for (size_t i = 0; i < ARRAY_SIZE(devs); i++) {
		tree_pci_device(fv.root, devs[i].bdf, "vfio-pci", devs[i].group);
		snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/vendor", devs[i].bdf);
		tree_file(fv.root, rel, devs[i].vendor);
		snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/device", devs[i].bdf);
		tree_file(fv.root, rel, devs[i].device);
	}
	fake_region_plain(&fv, 0, rw | VFIO_REGION_INFO_FLAG_MMAP, 0x100000, 0);
	fake_region_plain(&fv, VFIO_PCI_CONFIG_REGION_INDEX, rw, 0x1000, 7ull << 40);
	fake_irq(&fv, VFIO_PCI_INTX_IRQ_INDEX,
		 VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, 1);
	fake_irq(&fv, VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 1);
	fake_proc_reset();
	fuzz_uv_warm_up();
}

/* One fake worker reads what the broker sent it and answers like a healthy worker. */
static void worker_answers(int peer, uint8_t mode)
{
	static const uint8_t refusal[] = {0x08, 0x05, 0x12, 0x02, 'n', 'o'}; /* EIO, "no" */
	static const uint8_t acked[] = {0x08, 0x01};			     /* acknowledged */
	uint8_t buf[8192];
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];

	for (;;) {
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		struct cmsghdr *cm;
		struct raw_hdr h;
		ssize_t n = recvmsg(peer, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			return;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[8];

			memcpy(fds, CMSG_DATA(cm), k * sizeof(int));
			for (size_t i = 0; i < k; i++)
				close(fds[i]);
		}
		if (n < IPC_HDR_SIZE)
			fuzz_fail("the broker sent a worker %zd bytes, not a whole message", n);
		raw_decode(buf, &h);
		if (h.kind != IPC_KIND_REQUEST)
			continue;
		h.kind = IPC_KIND_REPLY;
		h.nfds = 0;
		h.len = 0;
		if (h.type == 1 /* HANDOFF */ && (mode & 1)) {
			h.kind = IPC_KIND_ERROR;
			h.len = sizeof(refusal);
			(void)raw_send(peer, &h, refusal, sizeof(refusal), NULL, 0);
		} else if (h.type == 8 /* REMOVAL */) {
			if (mode & 2)
				continue;
			h.len = sizeof(acked);
			(void)raw_send(peer, &h, acked, sizeof(acked), NULL, 0);
		} else if (h.type == 1) {
			(void)raw_send(peer, &h, NULL, 0, NULL, 0);
		}
	}
}

static void turn(uv_loop_t *loop, int client, uint8_t mode)
{
	for (int i = 0; i < 4; i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		for (int p = 0; p < FAKE_PROC_MAX; p++)
			if (fake_procs[p].live && !fake_procs[p].killed && fake_procs[p].peer >= 0)
				worker_answers(fake_procs[p].peer, mode);
		fake_proc_reap();
		if (client >= 0)
			fuzz_drain(client);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct brk_daemon *dmn;
	struct fuzz_rec rec;
	uv_loop_t loop;
	int before, lfd, client;
	uint32_t id = 1;
	uint8_t mode;
	static const struct brk_daemon_env env = {.sys = &fv.sys};

	if (size < 1)
		return 0;
	if (!cfg)
		setup_once();
	before = count_fds();
	mode = data[0];
	data++;
	size--;
	fv.ncalls = 0;
	if (uv_loop_init(&loop) < 0)
		fuzz_fail("set-up: uv_loop_init");
	fuzz_listen_pair(&lfd, &client);
	/* The real worker ops (broker/worker.c) on the fake kernel; fake_proc.c under them. */
	if (brk_daemon_new(&loop, cfg, lfd, &env, &dmn) < 0)
		fuzz_fail("set-up: brk_daemon_new");
	turn(&loop, client, mode);
	while (fuzz_rec_next(&data, &size, &rec)) {
		(void)fuzz_rec_send(client, &ipc_proto_control, id++, &rec);
		turn(&loop, client, mode);
	}
	close(client);
	turn(&loop, -1, mode);
	brk_daemon_free(dmn);
	turn(&loop, -1, mode);
	fake_proc_reset();
	uv_run(&loop, UV_RUN_NOWAIT);
	fuzz_loop_close(&loop);
	fuzz_fds_check(before);
	return 0;
}
