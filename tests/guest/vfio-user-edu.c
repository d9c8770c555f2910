/*
 * vfio-user-edu SOCKET: a small vfio-user client of our own (tests/vfu/vfu_client) that drives
 * an edu device through a brokered worker's vfio-user socket, on a real kernel: VERSION, device
 * and region info, config space, BAR0 through REGION_READ/WRITE (posted writes included), guest
 * RAM as a memfd given with DMA_MAP (mapped by the broker through the real IOMMU), an edu DMA
 * each way checked byte for byte, and MSI delivered to an eventfd given with SET_IRQS. Proves the
 * server on VFIO before a stock VMM does. Prints "figures: dma_bytes_verified=N interrupts=M";
 * exit 0 on success, 1 with a reason on stderr.
 *
 * vfio-user-edu --reconnects N SOCKET: N sessions, each closed right after its last command and
 * the next one connected at once (every other one leaving 100 posted writes behind for the
 * worker to serve after the hangup): each must get in and read edu's identity. Prints
 * "figures: reconnects=N".
 *
 * vfio-user-edu --absent-unmap SOCKET: issue 12 over vfio-user. Maps 2 MiB of guest RAM
 * ("mapped:"); at SIGUSR1 (no broker runs) unmaps it, which must fail with ETIMEDOUT after the
 * worker's 30 s ("unmap: timed out"); at the next SIGUSR1 (a broker back, which carried the
 * first unmap out) retries the unmap, which must be answered done ("unmap retried: done"), as
 * over the native protocol. Holds the connection until SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "le.h"
#include "vfu_client.h"

#include "edu_regs.h"

/* QEMU 7.2's edu aborts on a transfer that ends exactly at its buffer's end: stay below. */
#define EDU_XFER 2048u
/* edu drives 28 address bits: guest RAM sits low in the IOVA space. */
#define RAM_IOVA 0x100000ull
#define RAM_SIZE (2u << 20)
#define DST_OFF	 (1u << 20)
#define NIRQ	 8

static int fd = -1;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vfio-user-edu: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* A command that must succeed; its reply payload stays in *r. */
static void ok(uint16_t cmd, const void *p, size_t len, const int *fds, size_t nfds,
	       struct vfu_reply *r, const char *what)
{
	int e = vfu_cli_call(fd, cmd, p, len, fds, nfds, r);

	if (e < 0)
		die("%s: %s", what, strerror(-e));
	if (r->flags & (1u << 5))
		die("%s: the server answered %s", what, strerror((int)r->error));
}

static uint32_t bar_read32(uint32_t off)
{
	uint8_t b[4];
	int e = vfu_cli_region_read(fd, VFIO_PCI_BAR0_REGION_INDEX, off, b, 4);

	if (e < 0)
		die("BAR0 read at %#x: %s", off, strerror(-e));
	return vb_le32_get(b);
}

/* Posted, as QEMU writes BARs: no reply comes, the next read orders after it. */
static void bar_write32(uint32_t off, uint32_t v)
{
	uint8_t b[4];
	int e;

	vb_le32_put(b, v);
	e = vfu_cli_region_write(fd, VFIO_PCI_BAR0_REGION_INDEX, off, b, 4, 1);
	if (e < 0)
		die("BAR0 write at %#x: %s", off, strerror(-e));
}

static void bar_write64(uint32_t off, uint64_t v)
{
	bar_write32(off, (uint32_t)v);
	bar_write32(off + 4, (uint32_t)(v >> 32));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One transfer; the engine runs on a device timer, so wait (bounded) for it to finish. */
static void edu_dma(uint64_t src, uint64_t dst, uint32_t cmd)
{
	bar_write64(EDU_DMA_SRC, src);
	bar_write64(EDU_DMA_DST, dst);
	bar_write32(EDU_DMA_COUNT, EDU_XFER);
	bar_write32(EDU_DMA_CMD, cmd | EDU_DMA_START);
	for (double end = now() + 30; bar_read32(EDU_DMA_CMD) & EDU_DMA_START;) {
		if (now() > end)
			die("edu DMA %#llx -> %#llx did not finish in 30 s",
			    (unsigned long long)src, (unsigned long long)dst);
		usleep(1000);
	}
}

static void setup(void)
{
	struct vfu_reply r;
	const char *js = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,"
			 "\"pgsizes\":4096,\"max_dma_maps\":65535}}";
	int e = vfu_cli_version(fd, js, &r);
	uint8_t info[16] = {16};
	uint8_t id[4];
	uint8_t cmd[2];
	uint32_t ident;
	uint32_t live;

	if (e < 0)
		die("VERSION: %s", strerror(-e));
	printf("  VERSION %u.%u %s\n", r.data[0] | r.data[1] << 8, r.data[2] | r.data[3] << 8,
	       r.len > 4 ? (char *)r.data + 4 : "");
	vfu_reply_free(&r);
	ok(4, info, 16, NULL, 0, &r, "DEVICE_GET_INFO");
	if (vb_le32_get(r.data + 8) != VFIO_PCI_NUM_REGIONS ||
	    !(vb_le32_get(r.data + 4) & VFIO_DEVICE_FLAGS_PCI))
		die("DEVICE_GET_INFO: %u regions, flags %#x", vb_le32_get(r.data + 8),
		    vb_le32_get(r.data + 4));
	vfu_reply_free(&r);
	if ((e = vfu_cli_region_read(fd, VFIO_PCI_CONFIG_REGION_INDEX, 0, id, 4)) < 0)
		die("config read: %s", strerror(-e));
	if (vb_le32_get(id) != 0x11e81234u)
		die("config space says %08x, not edu 1234:11e8", vb_le32_get(id));
	/* Memory decode and bus mastering, as a guest driver would enable them. */
	if ((e = vfu_cli_region_read(fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, cmd, 2)) < 0)
		die("config read: %s", strerror(-e));
	cmd[0] |= 0x6;
	if ((e = vfu_cli_region_write(fd, VFIO_PCI_CONFIG_REGION_INDEX, 4, cmd, 2, 0)) < 0)
		die("config write: %s", strerror(-e));
	ident = bar_read32(EDU_IDENT);
	bar_write32(EDU_LIVENESS, 0x5a5aa5a5u);
	live = bar_read32(EDU_LIVENESS);
	if ((ident & 0xff) != 0xed || live != ~0x5a5aa5a5u)
		die("edu does not answer: ident %#x liveness %#x", ident, live);
	printf("  edu version %u.%u answers through REGION_READ/WRITE\n", ident >> 24,
	       (ident >> 16) & 0xff);
}

/* The VMM's RAM: a memfd sealed against shrinking, as the broker requires of memory it pins (and
 * as QEMU's memory-backend-memfd does by default). */
static int ram_memfd(void)
{
	int mfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (mfd < 0 || ftruncate(mfd, RAM_SIZE) < 0 ||
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		die("memfd: %s", strerror(errno));
	return mfd;
}

/* DMA_MAP of all of it, read and write, at RAM_IOVA; it must succeed. */
static void map_ram(int mfd)
{
	struct vfu_reply r;
	uint8_t map[32];

	vb_le32_put(map, 32);
	vb_le32_put(map + 4, 3);
	vb_le64_put(map + 8, 0);
	vb_le64_put(map + 16, RAM_IOVA);
	vb_le64_put(map + 24, RAM_SIZE);
	ok(2, map, 32, &mfd, 1, &r, "DMA_MAP");
	vfu_reply_free(&r);
}

/* DMA_UNMAP of the RAM, waited for longer than the worker's 30 s call timeout (vfu_cli_call
 * waits 30 s): 0 or the server's errno. */
static int unmap_ram(void)
{
	struct vfu_reply r;
	uint8_t unmap[24];
	int e;

	vb_le32_put(unmap, 24);
	vb_le32_put(unmap + 4, 0);
	vb_le64_put(unmap + 8, RAM_IOVA);
	vb_le64_put(unmap + 16, RAM_SIZE);
	e = vfu_cli_send(fd, 7, 3, 0, unmap, 24, NULL, 0);
	if (e < 0)
		die("DMA_UNMAP: %s", strerror(-e));
	e = vfu_cli_recv(fd, 120000, &r);
	if (e < 0)
		die("DMA_UNMAP's reply: %s", strerror(-e));
	e = r.flags & (1u << 5) ? -(int)r.error : 0;
	vfu_reply_free(&r);
	return e;
}

static unsigned dma(void)
{
	int mfd = ram_memfd();
	uint8_t *ram;
	int e;

	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (ram == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (unsigned i = 0; i < EDU_XFER; i++)
		ram[i] = (uint8_t)(i * 7 + 3);
	memset(ram + DST_OFF, 0, EDU_XFER);
	map_ram(mfd);
	/* RAM -> device, device -> RAM elsewhere: the bytes went through the IOMMU twice. */
	edu_dma(RAM_IOVA, EDU_BUF, 0);
	edu_dma(EDU_BUF, RAM_IOVA + DST_OFF, EDU_DMA_TO_RAM);
	if (memcmp(ram, ram + DST_OFF, EDU_XFER))
		die("the DMA round trip did not bring the bytes back");
	printf("  DMA through the IOMMU: %u bytes there and back, matched\n", EDU_XFER);
	e = unmap_ram();
	if (e < 0)
		die("DMA_UNMAP: %s", strerror(-e));
	munmap(ram, RAM_SIZE);
	close(mfd);
	return EDU_XFER;
}

static unsigned msi(void)
{
	struct vfu_reply r;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint8_t set[20];
	unsigned got = 0;

	vb_le32_put(set, 20);
	vb_le32_put(set + 4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
	vb_le32_put(set + 8, VFIO_PCI_MSI_IRQ_INDEX);
	vb_le32_put(set + 12, 0);
	vb_le32_put(set + 16, 1);
	ok(8, set, 20, &efd, 1, &r, "SET_IRQS MSI");
	vfu_reply_free(&r);
	for (unsigned i = 0; i < NIRQ; i++) {
		struct pollfd p;
		uint64_t n;
		uint32_t st;

		bar_write32(EDU_IRQ_RAISE, 1u << i);
		p = (struct pollfd){efd, POLLIN, 0};
		if (poll(&p, 1, 30000) != 1)
			die("MSI %u did not arrive on the eventfd within 30 s", i);
		if (read(efd, &n, sizeof(n)) != sizeof(n))
			die("eventfd read: %s", strerror(errno));
		got++;
		st = bar_read32(EDU_IRQ_STATUS);
		bar_write32(EDU_IRQ_ACK, st);
	}
	vb_le32_put(set + 4, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER);
	vb_le32_put(set + 16, 0);
	ok(8, set, 20, NULL, 0, &r, "SET_IRQS MSI off");
	vfu_reply_free(&r);
	close(efd);
	printf("  MSI: %u of %u interrupts arrived on the eventfd\n", got, NIRQ);
	return got;
}

/* Sessions that close and reconnect at once: the worker settles the old one's hangup before it
 * judges the new connection (issue 14, finding 5), so none is turned away. */
static int reconnects(const char *sock, unsigned n)
{
	const char *js = "{\"capabilities\":{\"max_msg_fds\":16}}";

	for (unsigned i = 0; i < n; i++) {
		struct vfu_reply r;
		uint8_t id[4], zero[4] = {0};
		int e = vfu_cli_connect(sock, &fd);

		if (e < 0)
			die("reconnect %u: connect: %s", i, strerror(-e));
		if ((e = vfu_cli_version(fd, js, &r)) < 0)
			die("reconnect %u: VERSION: %s (the connection was turned away)", i,
			    strerror(-e));
		vfu_reply_free(&r);
		if ((e = vfu_cli_region_read(fd, VFIO_PCI_CONFIG_REGION_INDEX, 0, id, 4)) < 0)
			die("reconnect %u: config read: %s", i, strerror(-e));
		if (vb_le32_get(id) != 0x11e81234u)
			die("reconnect %u: config space says %08x", i, vb_le32_get(id));
		/* Posted writes to a read-only register: nothing changes, nothing answers. */
		for (unsigned k = 0; i % 2 && k < 100; k++)
			if ((e = vfu_cli_region_write(fd, VFIO_PCI_CONFIG_REGION_INDEX, 0, zero, 4,
						      1)) < 0)
				die("reconnect %u: posted write: %s", i, strerror(-e));
		close(fd);
	}
	printf("figures: reconnects=%u\n", n);
	return 0;
}

/* Waits for SIGUSR1 (true) or SIGTERM/SIGINT (false), all blocked in `set`. */
static bool wait_step(const sigset_t *set)
{
	int sig;

	while ((sig = sigwaitinfo(set, NULL)) < 0 && errno == EINTR)
		;
	return sig == SIGUSR1;
}

static int absent_unmap(const char *sock)
{
	int mfd = ram_memfd();
	sigset_t set;
	int e;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die("sigprocmask: %s", strerror(errno));
	e = vfu_cli_connect(sock, &fd);
	if (e < 0)
		die("%s: %s", sock, strerror(-e));
	setup();
	map_ram(mfd);
	printf("mapped: 2048 KiB at IOVA 0x%llx; SIGUSR1 when no broker runs\n", RAM_IOVA);
	fflush(stdout);
	if (!wait_step(&set))
		return 0;
	e = unmap_ram();
	if (e != -ETIMEDOUT)
		die("DMA_UNMAP while no broker runs: %s, not ETIMEDOUT", e ? strerror(-e) : "done");
	printf("unmap: timed out; SIGUSR1 when a broker is back\n");
	fflush(stdout);
	if (!wait_step(&set))
		return 0;
	e = unmap_ram();
	if (e < 0)
		die("the retried DMA_UNMAP: %s, not done", strerror(-e));
	printf("unmap retried: done; holding until SIGTERM\n");
	fflush(stdout);
	while (wait_step(&set))
		;
	close(fd);
	close(mfd);
	return 0;
}

int main(int argc, char **argv)
{
	int e;
	unsigned bytes;
	unsigned irqs;
	struct vfu_reply r;

	if (argc == 4 && !strcmp(argv[1], "--reconnects"))
		return reconnects(argv[3], (unsigned)strtoul(argv[2], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "--absent-unmap"))
		return absent_unmap(argv[2]);
	if (argc != 2) {
		fprintf(stderr, "usage: vfio-user-edu SOCKET\n"
				"       vfio-user-edu --reconnects N SOCKET\n"
				"       vfio-user-edu --absent-unmap SOCKET\n");
		return 2;
	}
	e = vfu_cli_connect(argv[1], &fd);
	if (e < 0)
		die("%s: %s", argv[1], strerror(-e));
	setup();
	bytes = dma();
	irqs = msi();
	ok(13, NULL, 0, NULL, 0, &r, "DEVICE_RESET");
	vfu_reply_free(&r);
	printf("figures: dma_bytes_verified=%u interrupts=%u\n", bytes, irqs);
	close(fd);
	return 0;
}
