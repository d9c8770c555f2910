/*
 * Internal layout of struct wkr_dev, shared by the worker core's modules (cfg, caps, bar, msi,
 * msix, irq, region). Not installed, not used outside worker/.
 */
#ifndef VB_WKR_INTERNAL_H
#define VB_WKR_INTERNAL_H

#include "base.h"
#include "le.h"
#include "wkr.h"

#define WKR_CAPS_MAX   160
#define WKR_MAP_NONE   0xff /* byte belongs to no capability: raw (read and written through) */
#define WKR_CFG_HDR    0x40
#define WKR_CFG_LEGACY 0x100

struct wkr_dev;
struct wkr_cap;

/* One permission entry: masks repeat every 4 bytes over `len` bytes from `off` (at most to the
 * end of the capability; WKR_PERM_REST means exactly that). */
struct wkr_perm {
	uint16_t off;
	uint16_t len;
	uint32_t virt;	/* answered from the shadow */
	uint32_t write; /* the guest may change: in the shadow when virtual, else on the device */
	uint32_t rw1c;	/* written as 1 only when the guest writes 1 */
};
#define WKR_PERM_REST 0xffffu

/*
 * What the worker knows about one capability kind (caps.c holds the table, cfg.c the type 0
 * header's entry). Everything not in a permission entry reads through and is never written.
 */
struct wkr_capdesc {
	const char *name;
	uint16_t id;
	bool ext;     /* extended (0x100 and up) */
	bool hidden;  /* reads as zero, writes dropped, unlinked from its list */
	uint16_t len; /* fixed length, when len_fn is NULL */
	uint16_t (*len_fn)(const struct wkr_dev *d, uint16_t pos);
	const struct wkr_perm *perms;
	size_t nperms;
	/* After the permissions are applied; -EINVAL hides a standard capability instead. */
	int (*init)(struct wkr_dev *d, struct wkr_cap *cap);
	/* After a guest write to [off, off+len) inside the capability reached the shadow and the
	 * device. */
	int (*written)(struct wkr_dev *d, uint32_t off, size_t len);
};

struct wkr_cap {
	const struct wkr_capdesc *desc;
	uint16_t id;
	uint16_t off;
	uint16_t len;
};

struct wkr_bar {
	uint64_t size;
	uint32_t flags; /* low bits of the BAR: I/O, type, prefetchable */
	bool present;
	bool io;
	bool is64;
	bool upper;    /* upper half of the 64-bit BAR below */
	uint64_t addr; /* last address reported (ROM: bit 0 is its enable) */
};

struct wkr_vec {
	int vmm_fd;  /* dup of the VMM's irqfd, or -1 */
	int wfd;     /* worker eventfd (lazily created), or -1 */
	int routed;  /* fd the kernel signals now: -1 none */
	bool masked; /* as the guest sees it, function mask included */
	bool pending;
};

struct wkr_irqidx {
	uint32_t nvec; /* VFIO count of the index */
	struct wkr_vec *vec;
	bool hw_on;	   /* SET_IRQS enabled the index */
	uint32_t hw_count; /* vectors enabled in the kernel */
	/* Vectors the last enable asked for (0: the last request turned the index off), whether
	 * or not the owner carried it out: what wkr_irq_resync() restores. */
	uint32_t want;
	int resample_fd; /* INTx unmask eventfd (dup), or -1 */
};

struct wkr_dev {
	struct wkr_devinfo info;
	struct wkr_io io;
	struct wkr_callbacks cb;
	uint32_t cfg_size;
	uint64_t cfg_base; /* offset of the config region in the device fd */
	uint8_t vconfig[WKR_CFG_SIZE_MAX];
	uint8_t virt[WKR_CFG_SIZE_MAX];
	uint8_t wmask[WKR_CFG_SIZE_MAX];
	uint8_t rw1c[WKR_CFG_SIZE_MAX];
	uint8_t map[WKR_CFG_SIZE_MAX];
	struct wkr_cap caps[WKR_CAPS_MAX];
	unsigned ncaps;
	struct wkr_bar bars[VFIO_PCI_ROM_REGION_INDEX + 1];
	uint16_t command;
	bool flr_requested; /* the guest wrote Initiate FLR on a function that has it */
	struct {
		bool present;
		uint16_t off;
		bool is64;
		bool pvm;
		uint8_t mmc; /* log2 of vectors capable */
		uint16_t mask_off;
		bool enabled;
		uint32_t nvec;
	} msi;
	struct {
		bool present;
		uint16_t off;
		uint32_t size; /* vectors */
		uint8_t tbir;
		uint8_t pbir;
		uint64_t toff;
		uint64_t poff;
		bool enabled;
		bool fmask;
		uint8_t *table; /* size * 16 bytes, little endian */
	} msix;
	struct wkr_irqidx irq[WKR_NUM_IRQS];
	int epfd;
	uint64_t pagesize;
	enum wkr_irq_mode irq_mode;
	uint64_t irq_unsent; /* signals a VMM eventfd could not take without a wait (irq.c) */
};

/* cfg.c */
int wkr__cfg_phys_read(struct wkr_dev *d, uint32_t off, uint8_t *buf, size_t len);
/* Applies permission entries at offsets relative to `cap`, never beyond cap->len: a capability
 * shortened to its neighbour's start (or a short PCIe v1 one) must not lend its table's later
 * entries to the bytes of another. */
void wkr__perm_apply(struct wkr_dev *d, const struct wkr_cap *cap, const struct wkr_perm *p,
		     size_t n);
int wkr__cfg_build(struct wkr_dev *d);

/* caps.c */
int wkr__caps_init(struct wkr_dev *d);

/* bar.c */
int wkr__bars_init(struct wkr_dev *d);
int wkr__header_written(struct wkr_dev *d, uint32_t off, size_t len);
/* After a rebuild following a reset: takes the guest's BARs, ROM BAR, Cache Line Size, Latency
 * Timer and Interrupt Line back from `old` (the header shadow before the reset), because the
 * kernel restores the device's own across the reset and they must keep matching it. */
void wkr__header_keep(struct wkr_dev *d, const uint8_t *old);

/* msi.c */
int wkr__msi_init(struct wkr_dev *d, struct wkr_cap *cap);
int wkr__msi_written(struct wkr_dev *d, uint32_t off, size_t len);
/* Mirrors the per-vector pending bits into the shadow's Pending Bits register. */
void wkr__msi_pending_sync(struct wkr_dev *d);

/* msix.c */
int wkr__msix_init(struct wkr_dev *d, struct wkr_cap *cap);
int wkr__msix_written(struct wkr_dev *d, uint32_t off, size_t len);
/* Which emulated MSI-X structure [off, off+len) of region `index` starts in: 1 table, 2 PBA,
 * 0 neither; *ret_len is how much of the access stays in that structure (or before the next). */
int wkr__msix_classify(const struct wkr_dev *d, uint32_t index, uint64_t off, size_t len,
		       size_t *ret_len);
void wkr__msix_read(struct wkr_dev *d, int what, uint64_t off, uint8_t *buf, size_t len);
int wkr__msix_write(struct wkr_dev *d, int what, uint64_t off, const uint8_t *buf, size_t len);

/* irq.c */
int wkr__irq_init(struct wkr_dev *d);
void wkr__irq_free(struct wkr_dev *d);
/* Disables every hardware route; with `drop_vmm` also closes the VMM's fds. Pending bits and
 * guest-visible state stay. Returns the first error of the broker. */
int wkr__irq_quiesce(struct wkr_dev *d, bool drop_vmm);
/* After a device reset (routes already quiesced): forgets pending interrupts and routes INTx,
 * ERR and REQ to the VMM's fds again. Returns the first error of the broker. */
int wkr__irq_after_reset(struct wkr_dev *d);
/* Recomputes the routes of vectors [start, start+count) of an enabled index after their masks
 * or fds changed; delivers what is pending on vectors that now reach the VMM. */
int wkr__irq_sync(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count);
/* The guest enabled (nvec > 0) or disabled (nvec 0) MSI or MSI-X. */
int wkr__irq_enable(struct wkr_dev *d, uint32_t index, uint32_t nvec);

#endif
