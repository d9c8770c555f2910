/*
 * wkr: the emulated PCI personality of one VFIO device, as the vfio-worker presents it to a VMM.
 *
 * The library (vb_worker_core) virtualizes config space, BARs, MSI, MSI-X and INTx, and bounds
 * checks trapped BAR accesses. It never makes a VFIO ioctl: it reads and writes the device with
 * the pread/pwrite of a `struct wkr_io`, and every interrupt routing change is handed to the
 * owner's set_irqs callback (the broker performs VFIO_DEVICE_SET_IRQS).
 *
 * Errors are negative errno values. The library never logs. Not thread safe: one device, one
 * thread.
 */
#ifndef VB_WKR_H
#define VB_WKR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/vfio.h>

/* Where vfio-pci places region i in the device fd (the kernel's VFIO_PCI_INDEX_TO_OFFSET). */
#define WKR_REGION_OFFSET(i) ((uint64_t)(i) << 40)

#define WKR_NUM_REGIONS	   VFIO_PCI_NUM_REGIONS /* BAR0-5, ROM, config, VGA */
#define WKR_NUM_IRQS	   VFIO_PCI_NUM_IRQS	/* INTx, MSI, MSI-X, ERR, REQ */
#define WKR_MMAP_AREAS_MAX 16
#define WKR_CFG_SIZE_MAX   4096
/* Largest single config or region access the library accepts. */
#define WKR_ACCESS_MAX 4096
/* Most MSI-X vectors a function can have (table size field is 11 bits). */
#define WKR_MSIX_VECTORS_MAX 2048

struct wkr_mmap_area {
	uint64_t offset; /* relative to the region start */
	uint64_t size;
};

/* One VFIO region as VFIO_DEVICE_GET_REGION_INFO reports it. size 0: the region is absent. */
struct wkr_region {
	uint32_t flags; /* VFIO_REGION_INFO_FLAG_* */
	uint64_t size;
	uint64_t offset; /* in the device fd */
	uint32_t nareas; /* sparse mmap areas; 0 with FLAG_MMAP means the whole region */
	struct wkr_mmap_area areas[WKR_MMAP_AREAS_MAX];
	bool msix_mappable;
};

struct wkr_irq_info {
	uint32_t flags; /* VFIO_IRQ_INFO_* */
	uint32_t count;
};

/* Everything the worker knows about the device without asking the kernel. */
struct wkr_devinfo {
	char name[64];
	char bdf[32];
	uint32_t flags; /* VFIO_DEVICE_FLAGS_* */
	struct wkr_region regions[WKR_NUM_REGIONS];
	struct wkr_irq_info irqs[WKR_NUM_IRQS];
};

/* How the library reaches the device: pread/pwrite semantics (bytes done or negative errno),
 * `off` is an offset in the device fd. */
struct wkr_io {
	ssize_t (*pread)(void *ctx, void *buf, size_t len, uint64_t off);
	ssize_t (*pwrite)(void *ctx, const void *buf, size_t len, uint64_t off);
	void *ctx;
};

/* Fills `io` with pread(2)/pwrite(2) on `fd` (not owned). */
void wkr_io_from_fd(struct wkr_io *io, int fd);

/*
 * One VFIO_DEVICE_SET_IRQS the owner must perform. `disable`: tear the index down (DATA_NONE,
 * count 0). Otherwise DATA_EVENTFD with `count` fds from `start`; fds[i] is -1 for "no trigger".
 * `fds` NULL (with `count` vectors): DATA_NONE, e.g. an INTx UNMASK without an eventfd.
 * The fds stay owned by the library; the callback must not keep them past its return (it may
 * send them). Returns 0 or a negative errno.
 */
struct wkr_irq_set {
	uint32_t index;
	uint32_t start;
	uint32_t count;
	uint32_t action; /* VFIO_IRQ_SET_ACTION_TRIGGER or _UNMASK */
	bool disable;
	/* The index was off and this request turns it on with `count` vectors from 0 (the kernel
	 * sizes MSI/MSI-X allocations by the first request). Otherwise it re-routes vectors of an
	 * enabled index. */
	bool enable;
	const int *fds;
};

struct wkr_callbacks {
	int (*set_irqs)(void *data, const struct wkr_irq_set *set);
	/* Memory/IO decoding or a decoding BAR's address changed; `command` is the new Command
	 * register. Read the BARs with wkr_bar_state(). */
	void (*bars_changed)(void *data, uint16_t command);
	void *data;
};

struct wkr_dev;

/*
 * Builds the virtual device: reads the real config space through `io`, walks and filters the
 * capability lists, derives the BARs from the region table. Fails with -EINVAL when the region
 * table and config space disagree (a BAR size that is not a power of two, a 64-bit BAR whose
 * upper half is a region of its own, no config region), -ENOTSUP for a non-type-0 header, or
 * -EIO when config space cannot be read. `info`, `io` and `cb` are copied.
 */
int wkr_dev_new(const struct wkr_devinfo *info, const struct wkr_io *io,
		const struct wkr_callbacks *cb, struct wkr_dev **ret);
/* Closes every fd the library owns (worker eventfds, dups of VMM fds); makes no SET_IRQS. */
void wkr_dev_free(struct wkr_dev *d);
const struct wkr_devinfo *wkr_dev_info(const struct wkr_dev *d);
/*
 * After the device was reset (VFIO_DEVICE_RESET, which restores the device's BARs, Command and
 * capability control registers): tears interrupt routes down and rebuilds the virtual config
 * space from the device, so that every register reads as worker/DEVICE-IMAGE.md ("Reset")
 * says: the guest's BARs, ROM BAR, Cache Line Size, Latency Timer and Interrupt Line are kept,
 * as the device's own were; MSI and MSI-X are back at power-on (disabled, every MSI-X vector
 * masked, nothing pending); the rest reads from the device. The VMM's interrupt fds are kept:
 * INTx, ERR and REQ are routed to them again, MSI and MSI-X when the guest enables them.
 * Returns the first error (-EIO: config space could not be re-read, which leaves it all
 * virtual with no capabilities; a set_irqs error otherwise).
 */
int wkr_dev_reset(struct wkr_dev *d);

/* Config space. `off + len` must lie within the config region, 1 <= len <= WKR_ACCESS_MAX;
 * -EINVAL otherwise, before anything is touched. -EIO when the device access fails. */
int wkr_cfg_read(struct wkr_dev *d, uint32_t off, void *buf, size_t len);
int wkr_cfg_write(struct wkr_dev *d, uint32_t off, const void *buf, size_t len);
uint16_t wkr_cfg_command(const struct wkr_dev *d);
/* True once after the guest wrote Initiate FLR (PCI Express Device Control, or Advanced
 * Features) on a function that advertises FLR: the caller then resets the device as the kernel
 * would (wkr_vmm_guest_flr() in vmm_ops.h). The bit itself always reads as zero. */
bool wkr_dev_take_flr(struct wkr_dev *d);

/* BAR i (0-5) or the ROM (6) as the guest programmed it; `enabled`: the Command register (and
 * for the ROM its enable bit) lets it decode. -EINVAL for another index, -ENOENT for a BAR the
 * device does not implement (or the upper half of a 64-bit BAR). */
int wkr_bar_state(const struct wkr_dev *d, uint32_t index, uint64_t *ret_addr, bool *ret_enabled);

/*
 * Trapped region access: index < WKR_NUM_REGIONS, inside the region, 1 <= len <= WKR_ACCESS_MAX,
 * region readable/writable per its flags (-EINVAL, -ENOENT for an absent region, -EACCES for a
 * flag). The config region goes through wkr_cfg_*; MSI-X table and PBA ranges are emulated.
 */
int wkr_region_read(struct wkr_dev *d, uint32_t index, uint64_t off, void *buf, size_t len);
int wkr_region_write(struct wkr_dev *d, uint32_t index, uint64_t off, const void *buf, size_t len);
/* The areas of a region the VMM may mmap: the sparse areas (or the whole region) minus the
 * pages holding the MSI-X table and PBA. 0 areas when the region cannot be mapped. */
int wkr_region_mmap_areas(const struct wkr_dev *d, uint32_t index, struct wkr_mmap_area *areas,
			  size_t max, size_t *ret_n);

/*
 * The VMM's interrupt fds for one index, from vector `start`: `count` eventfds, dup'ed (the
 * caller keeps its own). For INTx, `resample_fd` (or -1) is the unmask eventfd. count 0 drops
 * every fd of the index. Routes are updated at once when the guest has the index enabled.
 */
int wkr_irq_set_fds(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count,
		    const int *fds, int resample_fd);
/*
 * Who decides interrupt routing. EMULATED (the native protocol, the default): the guest's
 * MSI/MSI-X enables and masks, as the worker emulates them, and the VMM only supplies fds.
 * VFIO (vfio-user): the VMM emulates MSI and MSI-X itself, as QEMU does in front of kernel
 * vfio-pci; config-space enables and masks are only recorded and wkr_irq_set_vfio() routes.
 */
enum wkr_irq_mode { WKR_IRQ_EMULATED, WKR_IRQ_VFIO };
void wkr_irq_set_mode(struct wkr_dev *d, enum wkr_irq_mode mode);

/*
 * VFIO_DEVICE_SET_IRQS as kernel vfio-pci answers it, for VFIO mode. `flags` is one DATA_ and
 * one ACTION_ flag. DATA_EVENTFD: `fds` has `count` entries, -1 (or fds NULL) de-assigns;
 * DATA_BOOL: `bools` has `count` entries. TRIGGER + NONE with count 0 turns the index off.
 * MSI-X is enabled with all its vectors at the first assignment (clients send vectors in
 * chunks); MSI with start+count. MASK/UNMASK only for INTx. -EINVAL for anything else, -ENOENT
 * for an index the device lacks; fds are dup'ed, the caller keeps its own.
 */
int wkr_irq_set_vfio(struct wkr_dev *d, uint32_t index, uint32_t flags, uint32_t start,
		     uint32_t count, const int *fds, const uint8_t *bools);
/* An epoll fd (owned by the library) that becomes readable when a masked vector fired. */
int wkr_irq_poll_fd(const struct wkr_dev *d);
/* Reads every fired worker eventfd and sets the pending bits. Returns how many vectors fired. */
int wkr_irq_service(struct wkr_dev *d);
/*
 * Sends the whole routing of one index again, as the worker intends it: the index off, then on
 * with the vectors its last enable asked for (the guest's MSI/MSI-X enable, or the VMM's last
 * SET_IRQS in VFIO mode; INTx, ERR and REQ with the VMM's fds), whether or not that enable was
 * carried out. For an owner whose earlier answer never came or came too late (a broker that
 * restarted): afterwards the kernel's state is the worker's again. Returns the first set_irqs
 * error; the intent is kept for a later attempt.
 */
int wkr_irq_resync(struct wkr_dev *d, uint32_t index);
/* A SET_IRQS of `index` failed or went unanswered (the owner answers later): what the kernel
 * routes is in doubt, so the next change of any of its vectors sends that vector's route again
 * instead of trusting what was last sent. */
void wkr_irq_doubt(struct wkr_dev *d, uint32_t index);
/* The VMM went away: tears down every hardware route, closes the VMM's fds; the emulated state
 * (enables, masks, table contents, pending bits) is kept for a reconnect. */
int wkr_irq_release(struct wkr_dev *d);
/* Vectors with a pending bit set, over MSI and MSI-X. */
uint64_t wkr_irq_pending(const struct wkr_dev *d);
/* Signals the worker did not write to a VMM's eventfd because it could not take them without a
 * wait (its counter at the maximum: the VMM has that many interrupts outstanding, unread). */
uint64_t wkr_irq_unsent(const struct wkr_dev *d);

#endif
