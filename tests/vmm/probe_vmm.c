/*
 * vfio-probe-vmm: a device-agnostic VMM on libvfiobroker. It knows nothing about the device it
 * is given: everything it expects comes from the host's own view of that device (sysfs: the
 * identification files, `resource`, the raw `config` a root reader gets in full), and it checks
 * that what a VMM sees through the broker and the device's worker agrees with it:
 *
 *   ident     vendor, device, subsystem ids, class and revision, from DEVICE_INFO and from
 *             config space, against sysfs;
 *   bars      every BAR (64-bit pairs and the ROM included): the region size against sysfs
 *             `resource`, and the size a guest's all-ones sizing probe reads back, with the
 *             type bits kept and the original value restored;
 *   readonly  identification, header type, capability pointer and interrupt pin keep their
 *             value when written, and the device's own registers (raw config) do not change;
 *   caps      the standard and extended capability chains against the raw ones: same offsets
 *             and ids in the same order; a capability may be hidden (skipped), never invented
 *             or moved; the ones a VMM cannot do without (PM, MSI, MSI-X, PCIe, AER) are never
 *             hidden; MSI and MSI-X geometry matches the raw capability and IRQ_INFO;
 *   irqs      IRQ_INFO counts: INTx exactly when the interrupt pin is set;
 *   regs      register reads through trapped access against the mapping where one is offered,
 *             and I/O BARs against the host's sysfs `resourceN` (which reads real ports);
 *   reset     after a RESET (when the device can), identification and both chains unchanged;
 *   fds       remove and re-add: the broker's open fd count is back where it started.
 *
 * Usage: vfio-probe-vmm [--control PATH] [--vm NAME] --broker-pid PID BDF...
 * Prints one "ok:" line per check that held, one "FAIL:" line per check that did not, and a
 * "note:" for what it could not check (a BAR with no mapping: nothing to compare with); exits
 * 0 only when every check on every device held (1 otherwise, 2 on bad usage).
 *
 * Reads only: the probe never writes a BAR's registers (a write's effect is device knowledge),
 * and it restores every config register it wrote. Registers whose two trapped reads differ (a
 * counter, a read-to-clear status) are counted as volatile, not compared.
 *
 * The checks are probe_checks.c's; probe.h is what the two files share.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <vfiobroker/client.h>

#include "base.h"
#include "probe.h"

void pass(struct probe *p, const char *fmt, ...)
{
	va_list ap;

	printf("ok: %s ", p->bdf);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	p->ok++;
}

/* Something the probe could not check, said so: neither a pass nor a failure. */
void note(const struct probe *p, const char *fmt, ...)
{
	va_list ap;

	printf("note: %s ", p->bdf);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

void fail(struct probe *p, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: %s ", p->bdf);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	p->failed++;
}

const char *why(struct probe *p, int r)
{
	static char buf[320];
	const char *peer = p->dev ? vfb_dev_last_error(p->dev) : "";

	snprintf(buf, sizeof(buf), "%s%s%s", strerror(-r), *peer ? ": " : "", peer);
	return buf;
}

uint32_t le(const uint8_t *b, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint32_t)b[i] << (8 * i);
	return v;
}

/* ---- the host's view: sysfs */

int sys_read(const struct probe *p, const char *attr, char *buf, size_t len)
{
	char path[192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", p->sysdir, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

int sys_hex(const struct probe *p, const char *attr, uint64_t *ret)
{
	char buf[64], *end;
	int r = sys_read(p, attr, buf, sizeof(buf));

	if (r < 0)
		return r;
	errno = 0;
	*ret = strtoull(buf, &end, 16);
	return errno || end == buf ? -EINVAL : 0;
}

int sys_config(struct probe *p)
{
	char path[192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/config", p->sysdir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, p->raw, sizeof(p->raw), 0);
	close(fd);
	if (n < 0)
		return -errno;
	p->rawlen = (size_t)n;
	return n >= 64 ? 0 : -EIO;
}

/* Line `index` of sysfs `resource`: "start end flags". Size 0 for an unused BAR. */
int sys_resource(const struct probe *p, unsigned index, uint64_t *size, uint64_t *flags)
{
	char buf[2048], *line = buf;
	uint64_t start, end;
	int r = sys_read(p, "resource", buf, sizeof(buf));

	if (r < 0)
		return r;
	for (unsigned i = 0; i < index && line; i++) {
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	if (!line || sscanf(line, "%" SCNx64 " %" SCNx64 " %" SCNx64, &start, &end, flags) != 3)
		return -EINVAL;
	*size = end ? end - start + 1 : 0;
	return 0;
}

/* ---- the VMM's view: config space through the worker */

int cfg_rd(struct probe *p, uint32_t off, size_t n, uint32_t *val)
{
	uint8_t b[4] = {0};
	int r = vfb_dev_cfg_read(p->dev, off, b, n);

	*val = le(b, n);
	return r;
}

int cfg_wr(struct probe *p, uint32_t off, size_t n, uint32_t val)
{
	uint8_t b[4];

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(val >> (8 * i));
	return vfb_dev_cfg_write(p->dev, off, b, n);
}

/* ---- fds and the whole run */

/* The broker's open fds: their count, and (when `list` is not NULL) "fd:target" words. */
static int count_fds(pid_t pid, char *list, size_t listlen)
{
	char path[64];
	struct dirent *e;
	size_t used = 0;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	if (list && listlen)
		list[0] = 0;
	while ((e = readdir(d))) {
		char link[320], target[128];
		ssize_t t;

		if (e->d_name[0] == '.')
			continue;
		n++;
		if (!list || used >= listlen)
			continue;
		snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
		t = readlink(link, target, sizeof(target) - 1);
		target[t < 0 ? 0 : t] = 0;
		used += (size_t)snprintf(list + used, listlen - used, " %s:%s", e->d_name, target);
	}
	closedir(d);
	return n;
}

/* The broker closes a removed worker's fds as it reaps it: wait until the count is `want`. */
static int settled_fds(pid_t pid, int want)
{
	int n = count_fds(pid, NULL, 0);

	for (int i = 0; i < SETTLE_TRIES && n != want && n >= 0; i++) {
		nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
		n = count_fds(pid, NULL, 0);
	}
	return n;
}

struct opts {
	const char *control, *vm;
	pid_t broker;
};

static int add(struct probe *p, struct vfb_ctl *ctl, const struct opts *o,
	       struct vfb_ctl_add_reply *rep)
{
	struct vfb_ctl_add_request req = {
	    .bdf = p->bdf, .vm = o->vm, .flags = VFB_CTL_ADD_ALLOW_MMAP};
	int r = vfb_ctl_add(ctl, &req, rep);

	if (r < 0)
		fail(p, "fds: AddDevice: %s: %s", strerror(-r), vfb_ctl_last_error(ctl));
	return r;
}

static int removed(struct probe *p, struct vfb_ctl *ctl)
{
	int r = vfb_ctl_remove(ctl, p->bdf, 0, VFB_CTL_REMOVE_FORCE, NULL);

	if (r < 0)
		fail(p, "fds: RemoveDevice: %s: %s", strerror(-r), vfb_ctl_last_error(ctl));
	return r;
}

static void probe_device(struct probe *p, struct vfb_ctl *ctl, const struct opts *o)
{
	static char fds_before[4096], fds_after[4096];
	struct vfb_ctl_add_reply rep;
	struct vfb_device_info info;
	struct vfb_ctl_device *list;
	size_t nlist;
	int n0, n1, n2, r;

	snprintf(p->sysdir, sizeof(p->sysdir), "/sys/bus/pci/devices/%s", p->bdf);
	r = sys_config(p);
	if (r < 0) {
		fail(p, "sysfs config: %s", strerror(-r));
		return;
	}
	/* A round trip first: the broker has then accepted this probe's own control connection,
	 * which would otherwise show up as one more fd after the first removal. */
	r = vfb_ctl_list(ctl, &list, &nlist);
	if (r < 0) {
		fail(p, "fds: ListDevices: %s: %s", strerror(-r), vfb_ctl_last_error(ctl));
		return;
	}
	vfb_ctl_device_list_free(list, nlist);
	n0 = count_fds(o->broker, fds_before, sizeof(fds_before));
	if (n0 < 0) {
		fail(p, "fds: /proc/%d/fd: %s", (int)o->broker, strerror(-n0));
		return;
	}
	if (add(p, ctl, o, &rep) < 0)
		return;
	r = vfb_dev_connect(rep.socket_path, "vfio-probe-vmm", 0, &p->dev);
	if (r < 0) {
		fail(p, "connect %s: %s", rep.socket_path, strerror(-r));
		removed(p, ctl);
		return;
	}
	r = vfb_dev_device_info(p->dev, &info);
	if (r < 0) {
		fail(p, "DEVICE_INFO: %s", why(p, r));
	} else {
		ident(p, &info);
		bars(p);
		readonly(p);
		caps(p);
		irqs(p);
		regs(p);
		reset(p, &info);
	}
	vfb_dev_close(p->dev);
	p->dev = NULL;
	if (removed(p, ctl) < 0)
		return;
	n1 = settled_fds(o->broker, n0);
	/* Again: a second assignment must cost nothing either. */
	if (add(p, ctl, o, &rep) < 0)
		return;
	r = vfb_dev_connect(rep.socket_path, "vfio-probe-vmm", 0, &p->dev);
	if (r >= 0) {
		if (ident_cfg(p, " after re-add") < 0)
			r = -EIO;
		vfb_dev_close(p->dev);
		p->dev = NULL;
	} else {
		fail(p, "connect %s after re-add: %s", rep.socket_path, strerror(-r));
	}
	if (removed(p, ctl) < 0)
		return;
	n2 = settled_fds(o->broker, n0);
	if (n1 != n0 || n2 != n0) {
		count_fds(o->broker, fds_after, sizeof(fds_after));
		fail(p,
		     "fds: the broker holds %d fds before, %d after remove, %d after re-add and "
		     "remove: before [%s ], after [%s ]",
		     n0, n1, n2, fds_before, fds_after);
	} else if (r >= 0)
		pass(p, "fds: remove and re-add: the broker holds %d fds each time", n0);
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: vfio-probe-vmm [--control PATH] [--vm NAME] --broker-pid PID BDF...\n"
		"Adds each device (vfio-pci bound, allowed by the broker) to VM NAME (default "
		"'probe')\nthrough the broker's control socket (default %s), probes it as a "
		"VMM against\nthe host's sysfs, removes and re-adds it, and compares the "
		"broker's (PID's) open fds.\nPrints ok:/FAIL:/note: lines; exit 0 when every "
		"check held, 1 when one did not, 2 on bad usage.\n",
		VFB_CTL_SOCKET_DEFAULT);
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	struct opts o = {VFB_CTL_SOCKET_DEFAULT, PROBE_VM, 0};
	struct vfb_ctl *ctl;
	unsigned ok = 0, failed = 0;
	int i, r;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return usage(stdout);
	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
		if (i + 1 >= argc)
			return usage(stderr);
		if (!strcmp(argv[i], "--control"))
			o.control = argv[i + 1];
		else if (!strcmp(argv[i], "--vm"))
			o.vm = argv[i + 1];
		else if (!strcmp(argv[i], "--broker-pid"))
			o.broker = (pid_t)atoi(argv[i + 1]);
		else
			return usage(stderr);
	}
	if (i == argc || o.broker <= 0 || vfb_vm_name_check(o.vm) < 0)
		return usage(stderr);
	for (int j = i; j < argc; j++) {
		char bdf[VFB_BDF_MAX];

		if (vfb_bdf_normalize(argv[j], bdf, sizeof(bdf)) < 0 || strcmp(bdf, argv[j])) {
			fprintf(stderr, "vfio-probe-vmm: '%s' is not a canonical PCI address\n",
				argv[j]);
			return 2;
		}
	}
	r = vfb_ctl_connect(o.control, 0, &ctl);
	if (r < 0) {
		fprintf(stderr, "vfio-probe-vmm: %s: %s\n", o.control, strerror(-r));
		return 1;
	}
	vfb_ctl_set_timeout(ctl, 60000);
	for (; i < argc; i++) {
		static struct probe p;

		memset(&p, 0, sizeof(p));
		p.bdf = argv[i];
		probe_device(&p, ctl, &o);
		printf("probe: %s: %u checks held, %u failed\n", p.bdf, p.ok, p.failed);
		ok += p.ok;
		failed += p.failed;
	}
	vfb_ctl_close(ctl);
	printf("figures: checks=%u failed=%u\n", ok, failed);
	return failed || !ok ? 1 : 0;
}
