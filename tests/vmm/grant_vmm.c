/*
 * vfio-grant-vmm: a VMM of the guest tests that takes an mmap grant of an edu device and reports
 * what a holder can and cannot do with it, before and after the broker removes the device
 * (README, "Mmap grants"). It prints one line per finding and "FAIL: ..." on anything else.
 *
 *   vfio-grant-vmm SOCKET FIFO    hold the grant; on "removed" from FIFO, probe the revoked
 *                                 grant; on "release", close everything and exit
 *   vfio-grant-vmm --none SOCKET  check that a device without allow_mmap offers no grant
 *
 * The steps wait on the FIFO, never on time: the test decides when the removal happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <vfiobroker/client.h>

#include "edu_regs.h"

#define MAP_LEN 4096

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("FAIL: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return 1;
}

/* Blocks until the test writes a line to the FIFO; returns it without the newline. */
static int wait_word(const char *fifo, const char *want)
{
	char line[64] = "";
	FILE *f = fopen(fifo, "re");

	if (!f)
		return fail("open %s: %s", fifo, strerror(errno));
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	if (strcmp(line, want) != 0)
		return fail("expected '%s' on %s, got '%s'", want, fifo, line);
	return 0;
}

/* A read of the mapping in a child: 0 when it read `*val`, else the signal that ended it. */
static int child_read(volatile uint32_t *p, uint32_t *val)
{
	int fds[2], status;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		uint32_t v = p[EDU_IDENT / 4];

		_exit(write(fds[1], &v, sizeof(v)) == sizeof(v) ? 0 : 2);
	}
	close(fds[1]);
	if (read(fds[0], val, sizeof(*val)) != sizeof(*val))
		*val = 0;
	close(fds[0]);
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFSIGNALED(status))
		return WTERMSIG(status);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* The grant is a VFIO device file: what VFIO lets any holder do with it. */
static int vfio_powers(int gfd, uint64_t *cfg_off)
{
	struct vfio_device_info di = {.argsz = sizeof(di)};
	struct vfio_region_info ri = {.argsz = sizeof(ri), .index = VFIO_PCI_CONFIG_REGION_INDEX};
	uint16_t vendor = 0;
	char link[64] = "", path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", gfd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	if (ioctl(gfd, VFIO_DEVICE_GET_INFO, &di) < 0)
		return fail("VFIO_DEVICE_GET_INFO on the grant: %s", strerror(errno));
	if (ioctl(gfd, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
		return fail("VFIO_DEVICE_GET_REGION_INFO on the grant: %s", strerror(errno));
	if (pread(gfd, &vendor, sizeof(vendor), (off_t)ri.offset) != sizeof(vendor))
		return fail("raw config read through the grant: %s", strerror(errno));
	*cfg_off = ri.offset;
	say("grant is a VFIO device file (%s): VFIO_DEVICE_GET_INFO answers %u regions, raw config "
	    "space reads vendor 0x%04x",
	    link, di.num_regions, vendor);
	return 0;
}

static int cmd_none(const char *sock)
{
	struct vfb_region_info ri = {.mmap_fd = -1};
	struct vfb_dev *dev;
	int r = vfb_dev_connect(sock, "vfio-grant-vmm", 0, &dev);

	if (r < 0)
		return fail("connect %s: %s", sock, strerror(-r));
	r = vfb_dev_region_info(dev, 0, &ri);
	vfb_dev_close(dev);
	if (r < 0)
		return fail("REGION_INFO 0: %s", strerror(-r));
	if (ri.mmap_fd >= 0 || ri.nareas || (ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		if (ri.mmap_fd >= 0)
			close(ri.mmap_fd);
		return fail("a device without allow_mmap offered a grant (flags 0x%x)", ri.flags);
	}
	say("no grant offered: BAR 0 is trapped only");
	return 0;
}

/* Before removal: the mapping and the trapped path see the same registers. */
static int before(struct vfb_dev *dev, volatile uint32_t *p, int gfd, uint64_t *cfg_off)
{
	uint32_t trapped = 0, mapped, live;
	uint16_t cmd = 0;
	int r;

	r = vfb_dev_cfg_read(dev, PCI_COMMAND, &cmd, sizeof(cmd));
	cmd |= PCI_COMMAND_MEMORY;
	r = r ?: vfb_dev_cfg_write(dev, PCI_COMMAND, &cmd, sizeof(cmd));
	r = r ?: vfb_dev_region_read(dev, 0, EDU_IDENT, &trapped, sizeof(trapped));
	if (r < 0)
		return fail("trapped access: %s (%s)", strerror(-r), vfb_dev_last_error(dev));
	mapped = p[EDU_IDENT / 4];
	p[EDU_LIVENESS / 4] = 0x12345678u;
	live = p[EDU_LIVENESS / 4];
	if (mapped != trapped || (mapped & 0xff) != 0xed || live != ~0x12345678u)
		return fail("mapped 0x%08x, trapped 0x%08x, liveness 0x%08x", mapped, trapped,
			    live);
	say("before removal: mapped and trapped reads agree (id 0x%08x), writes reach the device",
	    mapped);
	return vfio_powers(gfd, cfg_off);
}

/* After a forced removal: what the broker revoked, and what the holder still has. */
static int after(volatile uint32_t *p, int gfd, const struct vfb_region_info *ri, uint64_t cfg_off)
{
	uint32_t v = 0;
	uint16_t cmd = 0;
	int sig = child_read(p, &v);

	if (sig != SIGBUS)
		return fail("a read of the old mapping after removal: %s 0x%08x",
			    sig > 0 ? strsignal(sig) : "read", v);
	say("after removal: the mapping is revoked (a read gets SIGBUS)");
	errno = 0;
	if (pread(gfd, &v, sizeof(v), (off_t)(ri->offset + EDU_IDENT)) >= 0 || errno != EIO)
		return fail("a BAR read through the grant after removal: %s",
			    errno ? strerror(errno) : "succeeded");
	say("after removal: a BAR read through the grant gets EIO (decoding is off)");
	/* The limit of revocation: the file is still a device file, so its holder can turn
	 * decoding on again, on this device only, which no VM has while the file is open. */
	if (pread(gfd, &cmd, sizeof(cmd), (off_t)(cfg_off + PCI_COMMAND)) != sizeof(cmd))
		return fail("config read through the grant after removal: %s", strerror(errno));
	if (cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER))
		return fail("Command is 0x%04x after removal: decoding or bus mastering on", cmd);
	cmd |= PCI_COMMAND_MEMORY;
	if (pwrite(gfd, &cmd, sizeof(cmd), (off_t)(cfg_off + PCI_COMMAND)) != sizeof(cmd))
		return fail("config write through the grant: %s", strerror(errno));
	sig = child_read(p, &v);
	if (sig != 0 || (v & 0xff) != 0xed)
		return fail("after turning decoding on again: %s 0x%08x",
			    sig > 0 ? strsignal(sig) : "read", v);
	say("after removal: the holder can still turn decoding on through its file (id 0x%08x)", v);
	return 0;
}

static int cmd_hold(const char *sock, const char *fifo)
{
	struct vfb_region_info ri = {.mmap_fd = -1};
	volatile uint32_t *p = MAP_FAILED;
	struct vfb_dev *dev;
	uint64_t cfg_off = 0;
	int r, gfd;

	r = vfb_dev_connect(sock, "vfio-grant-vmm", 0, &dev);
	if (r < 0)
		return fail("connect %s: %s", sock, strerror(-r));
	r = vfb_dev_region_info(dev, 0, &ri);
	if (r < 0 || ri.mmap_fd < 0 || ri.nareas == 0 || ri.areas[0].size < MAP_LEN) {
		vfb_dev_close(dev);
		return fail("no grant for BAR 0: %s", r < 0 ? strerror(-r) : "no mmap fd or area");
	}
	gfd = ri.mmap_fd;
	p = mmap(NULL, MAP_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, gfd,
		 (off_t)(ri.offset + ri.areas[0].offset));
	if (p == MAP_FAILED) {
		vfb_dev_close(dev);
		close(gfd);
		return fail("mmap of the grant: %s", strerror(errno));
	}
	r = before(dev, p, gfd, &cfg_off);
	if (r == 0) {
		say("holding: pid %d", (int)getpid());
		r = wait_word(fifo, "removed");
	}
	/* The worker is gone with the device: only the grant is left. */
	vfb_dev_close(dev);
	r = r ?: after(p, gfd, &ri, cfg_off);
	if (r == 0) {
		say("holding after removal: pid %d", (int)getpid());
		r = wait_word(fifo, "release");
	}
	munmap((void *)p, MAP_LEN);
	close(gfd);
	if (r == 0)
		say("released");
	return r;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && strcmp(argv[1], "--none") == 0)
		return cmd_none(argv[2]);
	if (argc == 3)
		return cmd_hold(argv[1], argv[2]);
	fprintf(stderr, "usage: vfio-grant-vmm SOCKET FIFO | --none SOCKET\n");
	return 2;
}
