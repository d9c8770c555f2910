/*
 * vfio-dump-image: writes a vfio-device-image (worker/DEVICE-IMAGE.md) of a device bound to
 * vfio-pci, as the kernel's VFIO uAPI reports it: device flags, every region with its sparse
 * mmap areas and MSI-X-mappable capability, every IRQ index, and the whole config space read
 * through the VFIO config region. The test fixtures of real devices are made with it inside the
 * test guest, so the worker's emulation is tested against what a real kernel hands the broker.
 *
 * Runs as root in the test guest; trusts the kernel, nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vfio.h>

static int die(const char *what, int err)
{
	fprintf(stderr, "vfio-dump-image: %s: %s\n", what, strerror(err));
	return 1;
}

static int group_of(const char *bdf)
{
	char path[PATH_MAX], link[PATH_MAX];
	ssize_t n;
	const char *slash;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = '\0';
	slash = strrchr(link, '/');
	return slash ? atoi(slash + 1) : -EINVAL;
}

/* Region info grows when the kernel has capabilities to report: ask again with its argsz. */
static struct vfio_region_info *region_info(int dev, unsigned index)
{
	struct vfio_region_info *ri = calloc(1, sizeof(*ri));
	size_t want;

	if (!ri)
		return NULL;
	ri->argsz = sizeof(*ri);
	ri->index = index;
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, ri) < 0) {
		free(ri);
		return NULL;
	}
	want = ri->argsz;
	if (want > sizeof(*ri)) {
		struct vfio_region_info *big = calloc(1, want);

		free(ri);
		if (!big)
			return NULL;
		big->argsz = want;
		big->index = index;
		if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, big) < 0) {
			free(big);
			return NULL;
		}
		ri = big;
	}
	return ri;
}

static void print_region(const struct vfio_region_info *ri)
{
	uint32_t off = (ri->flags & VFIO_REGION_INFO_FLAG_CAPS) ? ri->cap_offset : 0;
	int msix_mappable = 0, printed_mmap = 0;

	printf("region %u size=0x%llx flags=0x%x", ri->index, (unsigned long long)ri->size,
	       ri->flags & ~VFIO_REGION_INFO_FLAG_CAPS);
	/* Walk the capability chain, bounded by argsz and a hop count against a looping chain. */
	for (int hops = 0;
	     off && off + sizeof(struct vfio_info_cap_header) <= ri->argsz && hops < 16; hops++) {
		const struct vfio_info_cap_header *h = (const void *)((const char *)ri + off);

		if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
			const struct vfio_region_info_cap_sparse_mmap *s = (const void *)h;

			for (uint32_t i = 0; i < s->nr_areas; i++) {
				if (off + sizeof(*s) + (i + 1) * sizeof(s->areas[0]) > ri->argsz)
					break;
				printf("%s0x%llx+0x%llx", printed_mmap ? "," : " mmap=",
				       (unsigned long long)s->areas[i].offset,
				       (unsigned long long)s->areas[i].size);
				printed_mmap = 1;
			}
		} else if (h->id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) {
			msix_mappable = 1;
		}
		off = h->next;
	}
	if (msix_mappable)
		printf(" msix-mappable");
	printf("\n");
}

static int dump_config(int dev, const struct vfio_region_info *ri)
{
	uint8_t buf[4096];
	size_t size = ri->size < sizeof(buf) ? ri->size : sizeof(buf);
	ssize_t n = pread(dev, buf, size, (off_t)ri->offset);

	if (n < 0)
		return -errno;
	for (size_t i = 0; i < (size_t)n; i += 16) {
		int zero = 1;

		for (size_t j = i; j < i + 16 && j < (size_t)n; j++)
			zero &= buf[j] == 0;
		if (zero)
			continue; /* the format leaves zero lines out */
		printf("config 0x%03zx", i);
		for (size_t j = i; j < i + 16 && j < (size_t)n; j++)
			printf(" %02x", buf[j]);
		printf("\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct vfio_group_status gs = {.argsz = sizeof(gs)};
	struct vfio_device_info di = {.argsz = sizeof(di)};
	char path[64];
	int container, group, dev, gno, r;

	if (argc != 3) {
		fprintf(stderr,
			"usage: vfio-dump-image NAME BDF\n"
			"Writes a vfio-device-image of BDF (bound to vfio-pci) to stdout.\n");
		return 2;
	}
	gno = group_of(argv[2]);
	if (gno < 0)
		return die("iommu_group", -gno);
	container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (container < 0)
		return die("/dev/vfio/vfio", errno);
	snprintf(path, sizeof(path), "/dev/vfio/%d", gno);
	group = open(path, O_RDWR | O_CLOEXEC);
	if (group < 0)
		return die(path, errno);
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) < 0 || !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		return die("group not viable", EINVAL);
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0)
		return die("VFIO_GROUP_SET_CONTAINER", errno);
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0 &&
	    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		return die("VFIO_SET_IOMMU", errno);
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, argv[2]);
	if (dev < 0)
		return die("VFIO_GROUP_GET_DEVICE_FD", errno);
	if (ioctl(dev, VFIO_DEVICE_GET_INFO, &di) < 0)
		return die("VFIO_DEVICE_GET_INFO", errno);

	printf("# captured with vfio-dump-image from a device bound to vfio-pci\n");
	printf("vfio-device-image 1\nname %s\ndevice flags=0x%x bdf=%s\n", argv[1],
	       di.flags & ~VFIO_DEVICE_FLAGS_CAPS, argv[2]);
	for (unsigned i = 0; i < di.num_regions; i++) {
		struct vfio_region_info *ri = region_info(dev, i);

		if (!ri)
			continue; /* e.g. the VGA region of a device that has none */
		if (ri->size)
			print_region(ri);
		free(ri);
	}
	for (unsigned i = 0; i < di.num_irqs; i++) {
		struct vfio_irq_info ii = {.argsz = sizeof(ii), .index = i};

		if (ioctl(dev, VFIO_DEVICE_GET_IRQ_INFO, &ii) == 0 && ii.count)
			printf("irq %u count=%u flags=0x%x\n", i, ii.count, ii.flags);
	}
	{
		struct vfio_region_info *cfg = region_info(dev, VFIO_PCI_CONFIG_REGION_INDEX);

		if (!cfg)
			return die("config region", errno);
		r = dump_config(dev, cfg);
		free(cfg);
		if (r < 0)
			return die("config read", -r);
	}
	return 0;
}
