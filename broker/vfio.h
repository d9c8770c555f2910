/*
 * vfio: the broker's VFIO handles. One container per VM, the IOMMU groups attached to it, and
 * the device fds opened from those groups, with everything the kernel reports about them.
 *
 * Ownership: the container, groups and devices own their fds and close them (O_CLOEXEC) when
 * their last reference goes. A group holds a reference on the container it is attached to; a
 * device holds a reference on its group. So a VM's groups share its container, and the
 * container lives exactly as long as someone (the VM record or one of its groups) refers to it.
 * None of these objects is thread-safe; the broker runs one event loop.
 *
 * Errors: negative errno; when a `struct vb_err *` is given it also receives a message that
 * says what to do about it. Nothing here logs.
 *
 * IOMMU backend: the legacy VFIO container with type1v2, else type1. iommufd (/dev/iommu with the
 * VFIO device cdev, /dev/vfio/devices) is detected and reported, never used: the kernels this
 * broker is tested on have neither, and an untested backend is not shipped.
 */
#ifndef VB_BROKER_VFIO_H
#define VB_BROKER_VFIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dma.h"
#include "sys.h"

/* ---- containers ---------------------------------------------------------------------------- */

enum brk_iommu_type {
	BRK_IOMMU_UNSET = 0, /* no group attached yet: the type is chosen by the first attach */
	BRK_IOMMU_TYPE1V2,   /* VFIO_TYPE1v2_IOMMU */
	BRK_IOMMU_TYPE1,     /* VFIO_TYPE1_IOMMU */
};

/* An IOVA range the IOMMU can map, both ends inclusive. */
struct brk_iova_range {
	uint64_t start;
	uint64_t end;
};

/* Most usable IOVA ranges recorded; a kernel reporting more is treated as reporting none. */
#define BRK_MAX_IOVA_RANGES 16

struct brk_container_info {
	enum brk_iommu_type type;
	uint64_t iova_pgsizes; /* VFIO_IOMMU_GET_INFO bitmap; 0 while UNSET */
	uint64_t min_pgsize;   /* smallest page in iova_pgsizes: DMA alignment; 0 while UNSET */
	bool has_dma_avail;    /* the kernel reported VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL */
	uint32_t dma_avail;    /* mappings the kernel allows, as of the attach or
				  brk_container_dma_avail() */
	uint32_t groups;       /* groups attached now */
	/* Groups the broker detached but the kernel kept attached (VFIO_GROUP_UNSET_CONTAINER said
	 * EBUSY: a device file of theirs is open elsewhere): the IOMMU and its mappings live on. */
	uint32_t held_groups;
	/* VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: where DMA may go (reserved regions such as the
	 * MSI window excluded). 0 ranges: the kernel did not say; it still checks on map. */
	uint32_t n_iova_ranges;
	struct brk_iova_range iova_ranges[BRK_MAX_IOVA_RANGES];
	bool iommufd_present;	/* /dev/iommu exists */
	bool vfio_cdev_present; /* /dev/vfio/devices exists */
};

struct brk_container;

/* Opens /dev/vfio/vfio and checks VFIO_GET_API_VERSION; also probes for iommufd (see
 * brk_container_backend_note()). The container starts with one reference, the caller's.
 * Errors: -ENOENT (no /dev/vfio/vfio: vfio module not loaded), -EACCES/-EPERM, -EPROTO (API
 * version mismatch), -ENOMEM. */
int brk_container_new(const struct brk_sys *sys, struct vb_err *err, struct brk_container **ret);
/*
 * Takes over a container fd a previous broker left (fd store, re-exec): checks it is the
 * character device /dev/vfio/vfio and speaks this API version; with `attached` (its VM had
 * groups), reads the IOMMU's info as after the first attach (the type is the one select would
 * have chosen: type1v2 when the kernel offers it). Takes `fd` on success only. Errors: -EBADF
 * (not the VFIO container node), -EPROTO, the kernel's; each with a message.
 */
int brk_container_adopt(const struct brk_sys *sys, int fd, bool attached, struct vb_err *err,
			struct brk_container **ret);
struct brk_container *brk_container_ref(struct brk_container *c);
/* Drops a reference; the last one closes the container fd, which makes the kernel drop every
 * DMA mapping still in it. NULL is allowed. */
void brk_container_unref(struct brk_container *c);
/* The container fd, owned by the container: for brk_dma (dma.h) only; never hand it out. */
int brk_container_fd(const struct brk_container *c);
const struct brk_container_info *brk_container_info(const struct brk_container *c);
/* Fills the container half of a DMA table's configuration: container_fd, pgsize and the usable
 * IOVA ranges. Errors: -ENODEV while no group is attached (the IOMMU is not chosen yet). */
int brk_container_dma_cfg(const struct brk_container *c, struct brk_dma_cfg *cfg);
/* "vfio-type1v2", "vfio-type1", or "none" while no group is attached (AddDeviceReply). */
const char *brk_container_backend_name(const struct brk_container *c);
/* One line for the operator about the backend choice, e.g. "iommufd not available (no
 * /dev/iommu), using the VFIO container". */
const char *brk_container_backend_note(const struct brk_container *c);

/* Asks the kernel again how many DMA mappings it still allows (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL),
 * a cross-check of the broker's own count. Errors: -ENODEV (no group attached yet),
 * -EOPNOTSUPP (the kernel does not report it), or the kernel's error. */
int brk_container_dma_avail(struct brk_container *c, uint32_t *ret_avail);

/* ---- groups -------------------------------------------------------------------------------- */

struct brk_group;

/* Opens /dev/vfio/<nr> and checks VFIO_GROUP_GET_STATUS. The group starts with one reference.
 * Errors: -ENOENT (no such group node: no device of the group is bound to vfio-pci),
 * -EBUSY (the group is open already: in this process, when the message names its owner (see
 * brk_group_set_owner) and the rule that a group belongs to one VM; or in another process; or
 * the group is not viable: the message then reads "bind every device of IOMMU group N to
 * vfio-pci" and lists the devices that are not), -EACCES, -ENOMEM. */
int brk_group_open(const struct brk_sys *sys, uint32_t nr, struct vb_err *err,
		   struct brk_group **ret);
/*
 * Takes over group `nr`'s fd a previous broker left, attached to `c`: checks it is the character
 * device /dev/vfio/<nr>, viable, with a container set (VFIO_GROUP_GET_STATUS). Counts as
 * attached to `c` (takes a reference on it). Takes `fd` on success only. Errors: -EBADF (not
 * that group's node), -EBUSY (not viable), -ENOTCONN (no container set), the kernel's.
 */
int brk_group_adopt(const struct brk_sys *sys, uint32_t nr, int fd, struct brk_container *c,
		    struct vb_err *err, struct brk_group **ret);
/* Longest owner description kept, NUL included. */
#define BRK_GROUP_OWNER_MAX 96
/* Who the group belongs to, e.g. "vm web1 (0000:3b:00.0)", for the refusal a second
 * brk_group_open() of the same group gets. Truncated to fit; NULL clears it. */
void brk_group_set_owner(struct brk_group *g, const char *owner);
const char *brk_group_owner(const struct brk_group *g);
/* Longest holder description kept, NUL included. */
#define BRK_GROUP_HOLDER_MAX 200
/* After the broker let go of group `nr`: whether the kernel let go too. 0: nobody holds it.
 * -EBUSY: something still has it open (a device file handed out as an mmap grant keeps its
 * group open); `holder` (may be NULL), e.g. "VMM pid 42 (uid 1000) kept ...", is then noted
 * and the EBUSY of a later brk_group_open() of it names it, until an open succeeds. Other
 * errors: the kernel's. */
int brk_group_check_released(const struct brk_sys *sys, uint32_t nr, const char *holder);
struct brk_group *brk_group_ref(struct brk_group *g);
/* Drops a reference; the last one detaches the group from its container and closes it. */
void brk_group_unref(struct brk_group *g);
uint32_t brk_group_nr(const struct brk_group *g);
/* The group fd, owned by the group: for the fd store (fdstore.h) only; never hand it out. */
int brk_group_fd(const struct brk_group *g);
/* The container the group is attached to, or NULL. No reference is taken. */
struct brk_container *brk_group_container(const struct brk_group *g);

/* VFIO_GROUP_SET_CONTAINER. The first group of a container also selects the IOMMU type (type1v2,
 * then type1) and reads VFIO_IOMMU_GET_INFO. Takes a reference on `c`. Attaching to the
 * container it already has is a no-op. Errors: -EBUSY (attached to another container),
 * -ENODEV (the kernel offers no type1 IOMMU), -EINVAL/-EPERM from the kernel (e.g. the group
 * cannot share this container's IOMMU domain), -EIO (GET_INFO reported no page size). */
int brk_group_attach(struct brk_group *g, struct brk_container *c, struct vb_err *err);
/* VFIO_GROUP_UNSET_CONTAINER and drops the container reference. When the last group leaves, the
 * kernel tears the IOMMU down (and with it every DMA mapping): the container's type goes back to
 * UNSET. Returns 0, also when not attached; -EBUSY while a device of the group is open (the
 * kernel refuses then too: free the devices first). When the kernel refuses although the
 * broker's devices are freed (another process holds a device file), the group counts in the
 * container's held_groups: the IOMMU and its mappings stay until that file is closed. */
int brk_group_detach(struct brk_group *g);

/* ---- devices ------------------------------------------------------------------------------- */

struct brk_mmap_area {
	uint64_t offset; /* relative to the region start */
	uint64_t size;
};

struct brk_region {
	uint32_t index;
	bool present;	/* the kernel answered; false for e.g. VGA on a non-VGA device. An
			 * unimplemented BAR is present with size 0 and no flags. */
	uint32_t flags; /* VFIO_REGION_INFO_FLAG_* */
	uint64_t size;
	uint64_t offset;  /* in the device fd */
	uint32_t n_areas; /* sparse mmap areas; 0 with FLAG_MMAP: the whole region is mappable */
	struct brk_mmap_area *areas;
	bool has_sparse;    /* VFIO_REGION_INFO_CAP_SPARSE_MMAP was present (n_areas may be 0) */
	bool msix_mappable; /* VFIO_REGION_INFO_CAP_MSIX_MAPPABLE */
	bool has_type;	    /* VFIO_REGION_INFO_CAP_TYPE */
	uint32_t type, subtype;
};

struct brk_irq_info {
	uint32_t index;
	uint32_t flags; /* VFIO_IRQ_INFO_* */
	uint32_t count; /* 0: the device does not have this interrupt */
};

/* Upper bounds on what a device may report; the kernel is trusted but allocation is bounded. */
#define BRK_DEVICE_MAX_REGIONS 64
#define BRK_DEVICE_MAX_IRQS    16
#define BRK_REGION_MAX_AREAS   256

struct brk_vfio_dev_info {
	uint32_t flags; /* VFIO_DEVICE_FLAGS_* */
	uint32_t num_regions;
	uint32_t num_irqs;
};

struct brk_vfio_dev;
struct brk_irqs;

/* VFIO_GROUP_GET_DEVICE_FD for `bdf` (validated, see bind.h), then VFIO_DEVICE_GET_INFO, every
 * region's info with its capability chain, and every IRQ index's info. The group must be
 * attached to a container. Takes a reference on the group. Errors: -EINVAL (bad BDF, or
 * inconsistent info from the kernel), -EPERM (group not attached), -ENODEV/-EBUSY from the
 * kernel (not in this group, already open), -E2BIG (more regions/IRQs/areas than the bounds
 * above), -ENOMEM. */
int brk_vfio_dev_open(struct brk_group *g, const char *bdf, struct vb_err *err,
		      struct brk_vfio_dev **ret);
/*
 * Takes over device `bdf`'s fd a previous broker left, in group `g`: checks it is a VFIO device
 * fd (anon inode [vfio-device]) of a PCI device, that sysfs puts `bdf` in IOMMU group
 * brk_group_nr(g), and that its config header (vendor, device, revision, class, subsystem)
 * reads the same through the fd as sysfs's `config` of `bdf`; then reads its regions and IRQs
 * as brk_vfio_dev_open() does. The BARs are not compared: vfio-pci virtualizes them, and a VMM's
 * sizing writes change what the fd reads back. Takes `fd` on success only. Errors: -EBADF (not
 * a VFIO device fd), -ENODEV (not that PCI device, or not in that group), others as open.
 */
int brk_vfio_dev_adopt(struct brk_group *g, const char *bdf, int fd, struct vb_err *err,
		       struct brk_vfio_dev **ret);
/* Disables nothing by itself: callers quiesce first (brk_irq_disable_all, DMA unmap, reset).
 * Closes the device fd and drops the group reference. NULL is allowed. */
void brk_vfio_dev_free(struct brk_vfio_dev *d);
/* The device fd, owned by the device. Dup it to hand it to a worker. */
int brk_vfio_dev_fd(const struct brk_vfio_dev *d);
const char *brk_vfio_dev_bdf(const struct brk_vfio_dev *d);
const struct brk_vfio_dev_info *brk_vfio_dev_info(const struct brk_vfio_dev *d);
/* NULL when index >= num_regions. Check `present`. */
const struct brk_region *brk_vfio_dev_region(const struct brk_vfio_dev *d, uint32_t index);
/* NULL when index >= num_irqs. */
const struct brk_irq_info *brk_vfio_dev_irq(const struct brk_vfio_dev *d, uint32_t index);
/* The device's interrupt state (irq.h), created with the device and owned by it. */
struct brk_irqs *brk_vfio_dev_irqs(struct brk_vfio_dev *d);
/* VFIO_DEVICE_RESET. Errors: -ENOTTY (the device has no VFIO_DEVICE_FLAGS_RESET: no reset
 * method the kernel can use), or the kernel's error. Counts successful resets. */
int brk_vfio_dev_reset(struct brk_vfio_dev *d, struct vb_err *err);
uint32_t brk_vfio_dev_resets(const struct brk_vfio_dev *d);

/* ---- mmap grants ---------------------------------------------------------------------------- */

/* What the device has handed out for mmap. */
struct brk_grant_info {
	uint32_t issued; /* grant files opened for VMMs */
	pid_t pid;	 /* the VMM the last one went to, as the broker admitted it */
	uid_t uid;
};

/* A new open file of the device (VFIO_GROUP_GET_DEVICE_FD again; O_CLOEXEC) for the VMM `pid`
 * to mmap BARs with; the caller owns *ret_fd. Whoever holds it can do everything VFIO allows on
 * a device file (README, "Mmap grants"), and keeps the device, its group and their container
 * open until it closes it. Errors: the kernel's, e.g. -EMFILE. */
int brk_vfio_dev_grant(struct brk_vfio_dev *d, pid_t pid, uid_t uid, int *ret_fd,
		       struct vb_err *err);
const struct brk_grant_info *brk_vfio_dev_grants(const struct brk_vfio_dev *d);
/* Turns memory and I/O decoding and bus mastering off (Command register, through the config
 * region of the broker's own file): vfio-pci then zaps every mapping of the device's BARs,
 * whichever file it was made through, and a fault on them gets SIGBUS (a BAR read through a
 * device file EIO) until decoding is on again. Nothing to do when all three are off. Errors:
 * -ENODEV (no PCI config region), or the kernel's. */
int brk_vfio_dev_stop_decoding(struct brk_vfio_dev *d, struct vb_err *err);

#endif
